package watch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/consul/api"
)

// fakeAgent records registrations; it fails while down is set.
type fakeAgent struct {
	mu           sync.Mutex
	down         bool
	registered   map[string]int
	deregistered []string
	passAt       map[string]time.Time
}

func (a *fakeAgent) ServiceRegisterOpts(s *api.AgentServiceRegistration, _ api.ServiceRegisterOpts) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return errors.New("connection refused")
	}
	a.registered[s.ID]++
	return nil
}

func (a *fakeAgent) ServiceDeregisterOpts(id string, _ *api.QueryOptions) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deregistered = append(a.deregistered, id)
	return nil
}

func (a *fakeAgent) UpdateTTLOpts(string, string, string, *api.QueryOptions) error { return nil }

// ChecksWithFilterOpts reports a registered service's check passing once
// passAt[id] has come (never when it is not set).
func (a *fakeAgent) ChecksWithFilterOpts(string, *api.QueryOptions) (map[string]*api.AgentCheck, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]*api.AgentCheck{}
	for id := range a.registered {
		st := api.HealthCritical
		if at, ok := a.passAt[id]; ok && !time.Now().Before(at) {
			st = api.HealthPassing
		}
		out["service:"+id] = &api.AgentCheck{CheckID: "service:" + id, Status: st}
	}
	return out, nil
}

func (a *fakeAgent) count(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.registered[id]
}

func TestRegistrarKeepsRegisteredAndDeregisters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agent := &fakeAgent{down: true, registered: map[string]int{}, passAt: map[string]time.Time{"c1": {}, "c2": {}}}
		regs := []Registration{{Service: "prom", ID: "c1", Address: "10.0.0.1", Port: 9090},
			{Service: "prom", ID: "c2", Address: "10.0.0.2", Port: 9090}}
		r, err := NewRegistrar(agent, regs, RegistrarOptions{Interval: time.Minute, BackoffMin: time.Second, BackoffMax: 4 * time.Second,
			DeregisterOnStop: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		// Consul is down for 10 s: retried with backoff (at most 4 s apart).
		time.Sleep(10 * time.Second)
		agent.mu.Lock()
		agent.down = false
		agent.mu.Unlock()
		time.Sleep(4*time.Second + time.Millisecond)
		synctest.Wait()
		if agent.count("c1") != 1 || agent.count("c2") != 1 {
			t.Fatalf("after Consul came back: %v", agent.registered)
		}
		// Registered again every interval, so an agent that lost its state
		// gets them back.
		time.Sleep(time.Minute)
		synctest.Wait()
		if agent.count("c1") != 2 {
			t.Fatalf("not registered again after an interval: %v", agent.registered)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(agent.deregistered, []string{"c1", "c2"}) {
			t.Fatalf("deregistered %v, want [c1 c2]", agent.deregistered)
		}
	})
}

// By default a registration outlives Run: the collectors stay registered
// when the process stops. Remove takes every one of them out, whoever
// registered it, and a collector already gone is no error.
func TestRegistrationOutlivesRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agent := &fakeAgent{registered: map[string]int{}, passAt: map[string]time.Time{"c1": {}, "c2": {}}}
		regs := []Registration{{Service: "prom", ID: "c1", Address: "10.0.0.1", Port: 9090},
			{Service: "prom", ID: "c2", Address: "10.0.0.2", Port: 9090}}
		r, err := NewRegistrar(agent, regs, RegistrarOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		<-r.Ready()
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(agent.deregistered) != 0 {
			t.Fatalf("Run deregistered %v when it ended", agent.deregistered)
		}
		// Another process (the deregister command) takes them out.
		other, _ := NewRegistrar(agent, regs, RegistrarOptions{})
		if err := other.Remove(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(agent.deregistered, []string{"c1", "c2"}) {
			t.Fatalf("Remove deregistered %v, want [c1 c2]", agent.deregistered)
		}
	})
}

func TestRegistrarValidates(t *testing.T) {
	a := &fakeAgent{}
	for _, regs := range [][]Registration{
		{{Service: "p", ID: "x", Address: "h", Port: 0}},
		{{Service: "p", ID: "x", Address: "h", Port: 1}, {Service: "p", ID: "x", Address: "h", Port: 2}},
	} {
		if _, err := NewRegistrar(a, regs, RegistrarOptions{}); err == nil {
			t.Errorf("NewRegistrar(%v) accepted", regs)
		}
	}
	if _, err := NewRegistrar(a, nil, RegistrarOptions{Interval: -1}); err == nil {
		t.Error("a negative interval was accepted")
	}
}

// Ready waits for the first checks to pass, so a sharder started after it
// never reshards to the one collector whose check happened to run first;
// a collector that stays down delays it by InitialWait at most.
func TestRegistrarReadyAfterChecksPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agent := &fakeAgent{registered: map[string]int{}, passAt: map[string]time.Time{
			"c1": time.Now().Add(time.Second), "c2": time.Now().Add(3 * time.Second)}}
		regs := []Registration{{Service: "prom", ID: "c1", Address: "10.0.0.1", Port: 9090},
			{Service: "prom", ID: "c2", Address: "10.0.0.2", Port: 9090}, {Service: "prom", ID: "c3", Address: "10.0.0.3", Port: 9090}}
		r, _ := NewRegistrar(agent, regs, RegistrarOptions{InitialWait: 10 * time.Second})
		if failing, err := r.WaitPassing(context.Background(), 5*time.Second); err != nil || !slices.Equal(failing, []string{"c1", "c2", "c3"}) {
			t.Fatalf("before registering: %v %v", failing, err) // nothing registered yet: none passes
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		<-r.Ready()
		if el := time.Since(start); el != 10*time.Second {
			t.Fatalf("ready after %v, want the 10s bound (c3 never passes)", el)
		}
		cancel()
		<-done
	})
	synctest.Test(t, func(t *testing.T) {
		agent := &fakeAgent{registered: map[string]int{}, passAt: map[string]time.Time{"c1": time.Now().Add(3 * time.Second)}}
		r, _ := NewRegistrar(agent, []Registration{{Service: "prom", ID: "c1", Address: "h", Port: 1}}, RegistrarOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		start := time.Now()
		go func() { done <- r.Run(ctx) }()
		<-r.Ready()
		if el := time.Since(start); el < 3*time.Second || el > 3200*time.Millisecond {
			t.Fatalf("ready after %v, want right after the check passed at 3s", el)
		}
		cancel()
		<-done
	})
}

// fakeKV is Consul's KV store in memory.
type fakeKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (k *fakeKV) Put(p *api.KVPair, _ *api.WriteOptions) (*api.WriteMeta, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[p.Key] = p.Value
	return nil, nil
}

func (k *fakeKV) List(prefix string, _ *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out api.KVPairs
	for key, v := range k.m {
		if strings.HasPrefix(key, prefix) {
			out = append(out, &api.KVPair{Key: key, Value: v})
		}
	}
	return out, nil, nil
}

func (k *fakeKV) Delete(key string, _ *api.WriteOptions) (*api.WriteMeta, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.m, key)
	return nil, nil
}

// Two processes that register the same collector: the first to stop leaves
// it registered, the last one deregisters it; an owner that vanished
// without a word (kill -9) stops counting after three intervals.
func TestRegistrarOwnership(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agent := &fakeAgent{registered: map[string]int{}}
		kv := &fakeKV{m: map[string][]byte{}}
		regs := []Registration{{Service: "prom", ID: "c1", Address: "10.0.0.1", Port: 9090}}
		a, _ := NewRegistrar(agent, regs, RegistrarOptions{Interval: time.Minute, Owners: kv, Owner: "a"})
		b, _ := NewRegistrar(agent, regs, RegistrarOptions{Interval: time.Minute, Owners: kv, Owner: "b"})
		ctx := context.Background()
		if err := a.Register(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Register(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Deregister(ctx); err != nil || len(agent.deregistered) != 0 {
			t.Fatalf("the first owner to stop deregistered: %v %v", agent.deregistered, err)
		}
		if err := b.Deregister(ctx); err != nil || !slices.Equal(agent.deregistered, []string{"c1"}) {
			t.Fatalf("the last owner did not deregister: %v %v", agent.deregistered, err)
		}
		// b registers and dies without a word; a registers much later.
		agent.deregistered = nil
		_ = b.Register(ctx)
		time.Sleep(4 * time.Minute)
		_ = a.Register(ctx)
		if err := a.Deregister(ctx); err != nil || !slices.Equal(agent.deregistered, []string{"c1"}) {
			t.Fatalf("a stale owner kept the registration: %v %v", agent.deregistered, err)
		}
		if len(kv.m) != 0 {
			t.Fatalf("owner keys left: %v", kv.m)
		}
	})
}

// Keep leaves the registrations in place when Run ends (a reload in place).
func TestRegistrarKeep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		agent := &fakeAgent{registered: map[string]int{}, passAt: map[string]time.Time{"c1": {}}}
		r, _ := NewRegistrar(agent, []Registration{{Service: "prom", ID: "c1", Address: "h", Port: 1}}, RegistrarOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		<-r.Ready()
		r.Keep()
		cancel()
		<-done
		if len(agent.deregistered) != 0 || agent.count("c1") != 1 {
			t.Fatalf("Keep: deregistered %v, registered %v", agent.deregistered, agent.registered)
		}
		var nilR *Registrar
		nilR.Keep()
		if err := nilR.RegisterAndWait(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}
