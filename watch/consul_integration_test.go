package watch_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// collector is a stand-in for a Prometheus server: /-/healthy answers 200
// or 503 as the test says.
type collector struct {
	srv     *httptest.Server
	healthy atomic.Bool
	reg     watch.Registration
}

func newCollector(t *testing.T, i int) *collector {
	c := &collector{}
	c.healthy.Store(true)
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.healthy.Load() {
			http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(c.srv.Close)
	host, port, _ := net.SplitHostPort(c.srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	c.reg = watch.Registration{Service: "prometheus-collector", ID: "collector-" + strconv.Itoa(i),
		Address: host, Port: p, Tags: []string{"shard"},
		Check: watch.Check{Interval: time.Second, Timeout: time.Second}}
	return c
}

// startAgent starts a real Consul agent and a client of it.
func startAgent(t *testing.T) (*testenv.Consul, *api.Client) {
	t.Helper()
	agent := testenv.StartConsul(t)
	client, err := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return agent, client
}

func ids(ms []watch.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// waitFor reads reports until one has exactly want, and returns how long it
// took.
func waitFor(t *testing.T, ch <-chan []watch.Member, within time.Duration, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	var last []string
	for {
		select {
		case ms := <-ch:
			last = ids(ms)
			if slices.Equal(last, want) {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("no report of %v within %v; last %v", want, within, last)
		}
	}
}

func TestConsulWatcherWithRealAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	agent, client := startAgent(t)
	ctx := t.Context()
	cs := []*collector{newCollector(t, 1), newCollector(t, 2), newCollector(t, 3)}
	registerAll := func() {
		for _, c := range cs {
			if err := watch.Register(ctx, client.Agent(), c.reg); err != nil {
				t.Fatal(err)
			}
		}
	}
	registerAll()
	registerAll() // idempotent
	svcs, err := client.Agent().Services()
	if err != nil || len(svcs) != 3 {
		t.Fatalf("agent has %d services after registering 3 twice (%v)", len(svcs), err)
	}
	checks, _ := client.Agent().Checks()
	if len(checks) != 3 {
		t.Fatalf("agent has %d checks after registering 3 twice", len(checks))
	}

	w, err := watch.NewConsulWatcher(client.Health(), watch.ConsulOptions{
		Service: "prometheus-collector", Tags: []string{"shard"}, WaitTime: 10 * time.Second,
		BackoffMin: 100 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Settle: 500 * time.Millisecond, // a returning collector joins after passing for 0.5 s
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	out := make(chan []watch.Member)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx, out) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("watcher did not stop within 5s of cancel")
		}
	}()

	all := []string{"collector-1", "collector-2", "collector-3"}
	waitFor(t, out, 15*time.Second, all...)

	// A failing check leaves the set within the check interval + 2 s.
	var reactions []time.Duration
	for range 5 {
		cs[1].healthy.Store(false)
		reactions = append(reactions, waitFor(t, out, 3*time.Second, "collector-1", "collector-3"))
		cs[1].healthy.Store(true)
		waitFor(t, out, 3*time.Second, all...)
	}
	slices.Sort(reactions)
	t.Logf("check critical -> watcher report: median %v (min %v, max %v) with 1s check interval",
		reactions[len(reactions)/2], reactions[0], reactions[len(reactions)-1])

	if err := watch.Deregister(ctx, client.Agent(), "collector-3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, 3*time.Second, "collector-1", "collector-2")

	// Consul goes away: the watcher keeps the last set, counts errors and
	// reports nothing.
	agent.Stop()
	select {
	case ms := <-out:
		t.Fatalf("report during the outage: %v", ids(ms))
	case <-time.After(2 * time.Second):
	}
	st := w.State()
	if st.ConsecutiveErrors == 0 || st.LastError == nil || !slices.Equal(ids(st.Members), []string{"collector-1", "collector-2"}) {
		t.Fatalf("state during the outage: errors %d (%v), members %v", st.ConsecutiveErrors, st.LastError, ids(st.Members))
	}
	// It comes back empty (a dev agent keeps nothing); the collectors
	// register again and the same watcher follows.
	agent.Start()
	registerAll()
	waitFor(t, out, 15*time.Second, all...)
	if st := w.State(); st.ConsecutiveErrors != 0 || st.LastError != nil {
		t.Fatalf("state after recovery: %+v", st)
	}
}

func TestTTLCheckWithRealAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	_, client := startAgent(t)
	ctx := t.Context()
	reg := watch.Registration{Service: "ttl-collector", Address: "127.0.0.1", Port: 9090, Weight: 4,
		Check: watch.Check{Type: watch.CheckTTL, TTL: 10 * time.Second}}
	if err := watch.Register(ctx, client.Agent(), reg); err != nil {
		t.Fatal(err)
	}
	passing := func() int {
		es, _, err := client.Health().Service("ttl-collector", "", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	if n := passing(); n != 0 {
		t.Fatalf("%d passing before the first TTL pass", n)
	}
	if err := watch.PassTTL(ctx, client.Agent(), reg.CheckID(), "alive"); err != nil {
		t.Fatal(err)
	}
	if n := passing(); n != 1 {
		t.Fatalf("%d passing after a TTL pass, want 1", n)
	}
	w, _ := watch.NewConsulWatcher(client.Health(), watch.ConsulOptions{Service: "ttl-collector", WaitTime: time.Second})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan []watch.Member, 1)
	go w.Run(wctx, out)
	select {
	case ms := <-out:
		if len(ms) != 1 || ms[0].Weight != 4 || ms[0].ID != "ttl-collector-127.0.0.1-9090" || ms[0].HostPort() != "127.0.0.1:9090" {
			t.Fatalf("member %+v", ms)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no report")
	}
}
