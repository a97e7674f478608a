package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestDelayDoublesCapsAndJitters(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	for n, full := range map[int]time.Duration{0: lo, 1: lo, 2: 2 * lo, 3: 4 * lo, 4: 8 * lo, 5: hi, 50: hi} {
		for range 100 {
			d := Delay(lo, hi, n)
			if d < full/2 || d > full {
				t.Fatalf("Delay(n=%d) = %v, want within [%v, %v]", n, d, full/2, full)
			}
		}
	}
	if d := Delay(0, 0, 3); d != 0 {
		t.Fatalf("Delay with zero bounds = %v", d)
	}
}

func TestSleepEndsWithTheContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if !Sleep(context.Background(), time.Hour) {
			t.Fatal("an uncancelled sleep reported cancellation")
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(time.Second); cancel() }()
		start := time.Now()
		if Sleep(ctx, time.Hour) {
			t.Fatal("a cancelled sleep reported that the time passed")
		}
		if got := time.Since(start); got != time.Second {
			t.Fatalf("cancelled after %v, want 1s", got)
		}
	})
}
