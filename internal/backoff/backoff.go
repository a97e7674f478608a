// Package backoff is the one retry delay of the module: exponential, capped,
// with jitter, and a wait that a context cancels.
//
// cenkalti/backoff/v5 was considered; its Retry loop owns the call and its
// state is a stateful object per operation, while promshard's callers keep a
// count of consecutive failures in their own state (the Consul watcher,
// the reload queue of the sharder, the registrar) and only need the delay
// for the n-th failure. That is one pure function.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the wait after n consecutive failures (n ≥ 1): lo doubled
// n-1 times and capped at hi, with up to half of it taken off at random so
// that many clients do not retry in step. n < 1 counts as 1.
func Delay(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	if d <= 0 {
		return 0
	}
	return d - time.Duration(rand.Int64N(int64(d)/2+1))
}

// Sleep waits d or until ctx is done, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
