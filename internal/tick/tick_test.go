package tick

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		kick := make(chan struct{}, 1)
		var calls atomic.Int32
		done := make(chan struct{})
		go func() {
			Every(ctx, time.Second, kick, func() bool { return calls.Add(1) < 3 })
			close(done)
		}()
		synctest.Wait()
		if n := calls.Load(); n != 0 {
			t.Fatalf("%d calls before the first tick", n)
		}
		kick <- struct{}{}
		synctest.Wait()
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d calls after a kick, want 1", n)
		}
		time.Sleep(2 * time.Second)
		<-done // the third call returned false
		if n := calls.Load(); n != 3 {
			t.Fatalf("%d calls, want 3", n)
		}
	})
}
