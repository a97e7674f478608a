package targets

import (
	"context"
	"slices"

	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Provider returns the target groups of one job. Implementations must be
// safe for concurrent use and must not modify the returned groups after
// returning them; one that keeps a group to return it again when it did not
// change saves its validation: the registry checks a *Group it has seen,
// with as many targets, only once. The registry holds the groups in the
// module's compact form (each target its address, a label set kept only
// for a target with labels besides __address__): [File] and [HTTPSD]
// answer it in that form, so that a fetch of a million file_sd targets
// makes no label set at all.
type Provider interface {
	Targets(ctx context.Context) ([]*targetgroup.Group, error)
}

// Runner is implemented by providers that learn of changes by themselves
// (a watched file, a service discovery). Run works until ctx is done and
// sends on changed whenever Targets would return something new; a send
// waits for the receiver or for ctx. Run returns nil when ctx is done, or an
// error when it fails for good (a retry cannot mend it). It never closes
// changed.
//
// This is the idiom of every part that learns of changes by itself (see
// watch.Source): a channel given to Run. A member source sends the whole set,
// which is small; a Runner sends only the news, and the consumer reads the
// targets through Targets, because a target set can be large, is validated
// and guarded against sudden drops on every read, and a provider such as
// [File] can tell that something changed without parsing it.
type Runner interface {
	Run(ctx context.Context, changed chan<- struct{}) error
}

// Func adapts a plain function to a [Provider].
type Func func(ctx context.Context) ([]*targetgroup.Group, error)

// Targets calls f.
func (f Func) Targets(ctx context.Context) ([]*targetgroup.Group, error) { return f(ctx) }

// Static is a [Provider] of fixed groups.
type Static []*targetgroup.Group

// Targets returns a copy of the groups.
func (s Static) Targets(context.Context) ([]*targetgroup.Group, error) { return slices.Clone(s), nil }
