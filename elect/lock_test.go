package elect_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/internal/testenv"
)

func TestLockOptionsErrors(t *testing.T) {
	c, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    elect.LockOptions
		want string
	}{
		{elect.LockOptions{}, "LockOptions.Key is empty"},
		{elect.LockOptions{Key: "/"}, "LockOptions.Key is empty"},
		{elect.LockOptions{Key: "k", SessionTTL: time.Second}, "LockOptions.SessionTTL 1s: want 10s to 24h0m0s"},
		{elect.LockOptions{Key: "k", LockDelay: 2 * time.Minute}, "LockOptions.LockDelay 2m0s: want 0 (none, the default) to 1m0s"},
		{elect.LockOptions{Key: "k", LockDelay: -time.Second}, "LockOptions.LockDelay -1s"},
		{elect.LockOptions{Key: "k", CheckTTL: 20 * time.Second}, "LockOptions.CheckTTL 20s: want 1s to the session TTL (10s)"},
		{elect.LockOptions{Key: "../../x"}, `segment ".."`},
		{elect.LockOptions{Key: "a//b"}, `segment ""`},
		{elect.LockOptions{Key: "a/./b"}, `segment "."`},
		{elect.LockOptions{Key: "a\nb"}, "a control character"},
	} {
		if _, err := elect.NewConsulLock(c, tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.o, err, tc.want)
		}
	}
	if _, err := elect.NewConsulLock(nil, elect.LockOptions{Key: "k"}); err == nil {
		t.Error("a nil client was accepted")
	}
}

// runLock runs a lock (no lock delay, the default) until the test ends or
// stop is called.
func runLock(t *testing.T, client *api.Client, o elect.LockOptions) (l *elect.ConsulLock, stop func()) {
	t.Helper()
	o.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := elect.NewConsulLock(client, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, nil) }()
	stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", o.Name, err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return l, stop
}

func waitLeading(t *testing.T, l *elect.ConsulLock, want bool) {
	t.Helper()
	if err := testenv.WaitFor(30*time.Second, 20*time.Millisecond, func() error {
		if l.Leading() != want {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("%s: leading is not %v after 30 s", l.Name(), want)
	}
}

// TestConsulLock runs two copies against a real agent: one leads, only it
// can publish epochs, which count up; when its session ends the other
// takes over and continues the count; a copy that stops hands the lock
// over at once.
func TestConsulLock(t *testing.T) {
	_, client := startAgent(t)
	ctx := context.Background()
	a, stopA := runLock(t, client, elect.LockOptions{Key: "promshard/test", Name: "a"})
	waitLeading(t, a, true)
	b, stopB := runLock(t, client, elect.LockOptions{Key: "promshard/test", Name: "b"})
	if err := testenv.WaitFor(10*time.Second, 20*time.Millisecond, func() error {
		if b.Leader() != "a" {
			return errors.New("b does not see a as the leader")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if b.Leading() {
		t.Fatal("both lead")
	}
	for want := uint64(1); want <= 2; want++ {
		e, err := a.Publish(ctx, elect.Epoch{Job: "j", Members: []string{"c1", "c2"}, Hash: "h"})
		if err != nil || e.Epoch != want || e.Leader != "a" {
			t.Fatalf("a.Publish: %+v, %v; want epoch %d by a", e, err, want)
		}
	}
	if _, err := b.Publish(ctx, elect.Epoch{Job: "j"}); !errors.Is(err, elect.ErrNotLeader) {
		t.Fatalf("b.Publish: %v, want ErrNotLeader", err)
	}
	if err := a.Check(ctx); err != nil {
		t.Fatalf("a.Check: %v", err)
	}
	if err := b.Check(ctx); !errors.Is(err, elect.ErrNotLeader) {
		t.Fatalf("b.Check: %v, want ErrNotLeader", err)
	}
	if e, err := b.Published(ctx, "j"); err != nil || e.Epoch != 2 || e.Leader != "a" || e.Hash != "h" {
		t.Fatalf("b.Published: %+v, %v", e, err)
	}

	// a's session ends (as when its check fails): a is fenced at once. The
	// lock is free; a campaigns again with a new session at once, so either
	// copy may take it. Whoever does publishes the next number.
	sessions, _, err := client.Session().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.Name == "promshard a" {
			if _, err := client.Session().Destroy(s.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := a.Check(ctx); !errors.Is(err, elect.ErrNotLeader) {
		t.Fatalf("a.Check after its session ended: %v, want ErrNotLeader", err)
	}
	copies := map[*elect.ConsulLock]func(){a: stopA, b: stopB}
	leader := func() *elect.ConsulLock {
		t.Helper()
		var l *elect.ConsulLock
		if err := testenv.WaitFor(30*time.Second, 20*time.Millisecond, func() error {
			var leading []*elect.ConsulLock
			for c := range copies {
				if c.Leading() {
					leading = append(leading, c)
				}
			}
			if len(leading) != 1 {
				return fmt.Errorf("%d copies lead", len(leading))
			}
			l = leading[0]
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	next := leader()
	if e, err := next.Publish(ctx, elect.Epoch{Job: "j"}); err != nil || e.Epoch != 3 {
		t.Fatalf("%s.Publish after the session ended: %+v, %v", next.Name(), e, err)
	}

	// The leader stops: it releases the lock, and the other takes it.
	copies[next]()
	delete(copies, next)
	last := leader()
	if e, err := last.Publish(ctx, elect.Epoch{Job: "j"}); err != nil || e.Epoch != 4 || e.Leader != last.Name() {
		t.Fatalf("%s.Publish after %s stopped: %+v, %v", last.Name(), next.Name(), e, err)
	}
}

// TestConsulLockOutage: while Consul is down the leader's fence fails at
// once, and it stops leading once its session could not be renewed for a
// TTL; when Consul is back (a dev agent that starts empty) it leads again.
func TestConsulLockOutage(t *testing.T) {
	agent, client := startAgent(t)
	l, _ := runLock(t, client, elect.LockOptions{Key: "promshard/outage", Name: "a", BackoffMax: time.Second,
		LockDelay: 15 * time.Second})
	waitLeading(t, l, true)
	agent.Stop()
	down := time.Now()
	if err := l.Check(context.Background()); err == nil {
		t.Fatal("the fence passed with Consul down")
	}
	waitLeading(t, l, false)
	if who := l.Leader(); who == "a" {
		t.Fatal("a copy that no longer leads names itself the leader while Consul is down")
	}
	if d := time.Since(down); d > elect.DefaultCheckTTL+5*time.Second {
		t.Errorf("stopped leading %v after Consul went down, want about the check TTL (%v)", d, elect.DefaultCheckTTL)
	}
	agent.Start()
	waitLeading(t, l, true)
	if err := l.Check(context.Background()); err != nil {
		t.Fatalf("the fence after Consul came back: %v", err)
	}
}

// TestConsulLockBlobs: only the leader publishes a blob; a standby
// and an observer read it back whole, however many chunks it takes; a new
// table replaces the old one and its chunks.
func TestConsulLockBlobs(t *testing.T) {
	_, client := startAgent(t)
	ctx := context.Background()
	a, _ := runLock(t, client, elect.LockOptions{Key: "promshard/costs", Name: "a"})
	waitLeading(t, a, true)
	b, _ := runLock(t, client, elect.LockOptions{Key: "promshard/costs", Name: "b"})
	obs, _ := runLock(t, client, elect.LockOptions{Key: "promshard/costs", Name: "obs", Observe: true})
	if table, sum, err := b.ReadBlob(ctx, "j"); table != nil || sum != "" || err != nil {
		t.Fatalf("before any table: %d bytes, %q, %v", len(table), sum, err)
	}
	big := make([]byte, 700<<10) // three chunks
	for i := range big {
		big[i] = byte(i * 7)
	}
	if err := b.PublishBlob(ctx, "j", big); !errors.Is(err, elect.ErrNotLeader) {
		t.Fatalf("b.PublishBlob: %v, want ErrNotLeader", err)
	}
	if err := a.PublishBlob(ctx, "j", big); err != nil {
		t.Fatal(err)
	}
	var first string
	for _, l := range []*elect.ConsulLock{b, obs} {
		table, sum, err := l.ReadBlob(ctx, "j")
		if err != nil || !bytes.Equal(table, big) || sum == "" {
			t.Fatalf("%s read %d bytes (%q, %v), want the %d published", l.Name(), len(table), sum, err, len(big))
		}
		first = sum
	}
	small := []byte("small")
	if err := a.PublishBlob(ctx, "j", small); err != nil {
		t.Fatal(err)
	}
	table, sum, err := obs.ReadBlob(ctx, "j")
	if err != nil || string(table) != "small" || sum == first {
		t.Fatalf("after a new table: %q, %q, %v", table, sum, err)
	}
	keys, _, err := client.KV().Keys("promshard/costs/blobs-data/j/", "", nil)
	if err != nil || len(keys) != 1 {
		t.Fatalf("chunks left: %v, %v; want only the new table's one", keys, err)
	}
}

// A copy whose token Consul denies a session (ACLs that deny by default)
// can never lead: Run ends with ErrDenied instead of campaigning forever
// while the copy looks like a healthy standby.
func TestConsulLockDenied(t *testing.T) {
	agent := testenv.StartConsulWith(t, `acl { enabled = true, default_policy = "deny", tokens { initial_management = "root" } }`)
	client, err := api.NewClient(&api.Config{Address: agent.Addr}) // no token: anonymous, denied
	if err != nil {
		t.Fatal(err)
	}
	l, err := elect.NewConsulLock(client, elect.LockOptions{Key: "promshard/denied", Name: "a", BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.Run(ctx, nil); !errors.Is(err, elect.ErrDenied) {
		t.Fatalf("Run: %v, want ErrDenied", err)
	}
}

// Unreadable data where a job's epoch should be is replaced when the
// leader publishes next, with a number above every one published before,
// rather than blocking every write.
func TestCorruptEpochIsReplaced(t *testing.T) {
	_, client := startAgent(t)
	ctx := context.Background()
	a, _ := runLock(t, client, elect.LockOptions{Key: "promshard/corrupt", Name: "a"})
	waitLeading(t, a, true)
	var last elect.Epoch
	for range 3 {
		var err error
		if last, err = a.Publish(ctx, elect.Epoch{Job: "j", Hash: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "promshard/corrupt/epoch/j", Value: []byte("{garbage")}, nil); err != nil {
		t.Fatal(err)
	}
	e, err := a.Publish(ctx, elect.Epoch{Job: "j", Hash: "h2"})
	if err != nil || e.Epoch <= last.Epoch || a.Replaced() != 1 {
		t.Fatalf("publish over a corrupt epoch: %+v, %v (last %d, replaced %d)", e, err, last.Epoch, a.Replaced())
	}
	if got, err := a.Published(ctx, "j"); err != nil || got.Epoch != e.Epoch || got.Hash != "h2" {
		t.Fatalf("read back: %+v, %v", got, err)
	}
}
