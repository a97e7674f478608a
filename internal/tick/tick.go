// Package tick is the one ticker loop of promshard's packages.
package tick

import (
	"context"
	"time"
)

// Every calls fn every d, and at once whenever kick delivers (a nil kick
// never does), until ctx ends or fn returns false. It does not call fn
// before the first tick or kick.
func Every[T any](ctx context.Context, d time.Duration, kick <-chan T, fn func() bool) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		if ctx.Err() != nil || !fn() {
			return
		}
	}
}
