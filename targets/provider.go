package targets

import (
	"context"
	"slices"

	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Provider returns the target groups of one job. Implementations must be
// safe for concurrent use and must not keep or modify the returned groups
// after returning them.
type Provider interface {
	Targets(ctx context.Context) ([]*targetgroup.Group, error)
}

// Runner is implemented by providers that learn of changes by themselves
// (a watched file, a service discovery). Run works until ctx is done and
// calls notify whenever Targets would return something new; notify never
// blocks. Run returns nil when ctx is done.
type Runner interface {
	Run(ctx context.Context, notify func()) error
}

// Func adapts a plain function to a [Provider].
type Func func(ctx context.Context) ([]*targetgroup.Group, error)

// Targets calls f.
func (f Func) Targets(ctx context.Context) ([]*targetgroup.Group, error) { return f(ctx) }

// Static is a [Provider] of fixed groups.
type Static []*targetgroup.Group

// Targets returns a copy of the groups.
func (s Static) Targets(context.Context) ([]*targetgroup.Group, error) { return slices.Clone(s), nil }
