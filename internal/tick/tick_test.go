package tick

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestEvery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		kick := make(chan struct{}, 1)
		calls := 0
		done := make(chan struct{})
		go func() {
			Every(ctx, time.Second, kick, func() bool { calls++; return calls < 3 })
			close(done)
		}()
		synctest.Wait()
		if calls != 0 {
			t.Fatalf("%d calls before the first tick", calls)
		}
		kick <- struct{}{}
		synctest.Wait()
		if calls != 1 {
			t.Fatalf("%d calls after a kick, want 1", calls)
		}
		time.Sleep(2 * time.Second)
		<-done // the third call returned false
		if calls != 3 {
			t.Fatalf("%d calls, want 3", calls)
		}
	})
}
