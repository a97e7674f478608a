package web

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/elect"
	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/targets"
	"github.com/promshard/promshard/watch"
)

// source sends the member sets a test gives it; it is a watch.Roster of
// the sick collectors given with them.
type source struct {
	sets chan []watch.Member
	mu   sync.Mutex
	sick []watch.Member
}

func (s *source) Run(ctx context.Context, out chan<- []watch.Member) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ms := <-s.sets:
			select {
			case out <- ms:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

func (s *source) Unhealthy() []watch.Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sick
}

func members(ids ...string) []watch.Member {
	out := make([]watch.Member, len(ids))
	for i, id := range ids {
		out[i] = watch.Member{ID: id, Address: fmt.Sprintf("10.9.%d.%d", i/250, i%250+1), Port: 9090}
	}
	return out
}

// pool is n targets in one group.
func pool(n int) targets.Provider {
	g := &targetgroup.Group{Source: "test", Labels: model.LabelSet{"env": "test"}}
	for i := range n {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.1.%d.%d:9100", i/250, i%250))})
	}
	return targets.Static([]*targetgroup.Group{g})
}

// elector is an election the test decides; it always publishes epoch 1
// and up.
type elector struct {
	mu      sync.Mutex
	leading bool
	changed chan<- struct{}
	ready   chan struct{}
	epoch   uint64
}

func (e *elector) Run(ctx context.Context, changed chan<- struct{}) error {
	e.mu.Lock()
	e.changed = changed
	e.mu.Unlock()
	close(e.ready)
	<-ctx.Done()
	return nil
}

func (e *elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

func (e *elector) Leader() string { return "copy-1" }

func (e *elector) Check(context.Context) error {
	if !e.Leading() {
		return elect.ErrNotLeader
	}
	return nil
}

func (e *elector) Publish(_ context.Context, ep elect.Epoch) (elect.Epoch, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.epoch++
	ep.Epoch = e.epoch
	return ep, nil
}

func (e *elector) Published(context.Context, string) (elect.Epoch, error) { return elect.Epoch{}, nil }

func (e *elector) lead() {
	<-e.ready
	e.mu.Lock()
	e.leading = true
	ch := e.changed
	e.mu.Unlock()
	ch <- struct{}{}
	synctest.Wait()
}

func start(t *testing.T, n int, job promshard.Job, opts promshard.Options) (*promshard.Sharder, *source) {
	t.Helper()
	job.Name = "node"
	if job.Targets == nil {
		job.Targets = pool(n)
	}
	if job.Outputs == nil {
		job.Outputs = []promshard.Output{&filesd.Handler{}}
	}
	s, err := promshard.New([]promshard.Job{job}, opts)
	if err != nil {
		t.Fatal(err)
	}
	src := &source{sets: make(chan []watch.Member)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, src) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	synctest.Wait()
	return s, src
}

// send gives the source a member set, and the sick collectors.
func (s *source) send(ms []watch.Member, sick ...watch.Member) {
	s.mu.Lock()
	s.sick = sick
	s.mu.Unlock()
	s.sets <- ms
	synctest.Wait()
}

// serve answers one GET.
func serve(s *promshard.Sharder, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	Handler(s, Options{}).ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	return rec
}
