package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promshard/promshard/internal/tick"
	"github.com/promshard/promshard/internal/weight"
)

// Probe checks that one collector is alive. It returns nil when it is.
type Probe func(ctx context.Context, m Member) error

// HTTPProbe returns a probe that GETs path (default [DefaultCheckPath]) on
// the member's address over plain HTTP with client (default
// http.DefaultClient) and wants a 2xx status.
func HTTPProbe(client *http.Client, path string) Probe {
	if client == nil {
		client = http.DefaultClient
	}
	if path == "" {
		path = DefaultCheckPath
	}
	return func(ctx context.Context, m Member) error {
		u := (&url.URL{Scheme: "http", Host: m.HostPort(), Path: path}).String()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("GET %s: status %s", u, resp.Status)
		}
		return nil
	}
}

// ProbeByName returns the probe a config names: "http" ([HTTPProbe] of
// [DefaultCheckPath] with http.DefaultClient), "tcp" ([TCPProbe]), or nil
// for "" and "none".
func ProbeByName(name string) (Probe, error) {
	switch name {
	case "", "none":
		return nil, nil
	case "http":
		return HTTPProbe(nil, ""), nil
	case "tcp":
		return TCPProbe(), nil
	}
	return nil, fmt.Errorf("watch: probe %q: want none, http or tcp", name)
}

// TCPProbe returns a probe that opens a TCP connection to the member.
func TCPProbe() Probe {
	return func(ctx context.Context, m Member) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", m.HostPort())
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// Defaults of [StaticOptions].
const (
	DefaultProbeInterval = 5 * time.Second
	DefaultProbeTimeout  = 2 * time.Second
)

// StaticOptions configures a [StaticWatcher] source.
type StaticOptions struct {
	// Name labels the source's metrics and logs; default "static".
	Name string
	// Members is the fixed collector list. Each needs an ID or an address
	// and port; an empty ID becomes address:port.
	Members []Member
	// Probe, when set, is run against every member each Interval (default
	// [DefaultProbeInterval]) with a Timeout (default
	// [DefaultProbeTimeout]); members whose last probe failed leave the set.
	// Without a probe every member is always in the set.
	Probe             Probe
	Interval, Timeout time.Duration
	// Logger receives probe failures and changes; nil discards them.
	Logger *slog.Logger
	// Registerer receives the source's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// StaticWatcher is a [Source] over a fixed list of collectors, optionally probed.
type StaticWatcher struct {
	opts    StaticOptions
	members []Member
	m       *watchMetrics

	mu        sync.Mutex
	unhealthy []Member // the configured members that failed their probe
}

var (
	_ Source = (*StaticWatcher)(nil)
	_ Roster = (*StaticWatcher)(nil)
)

// Unhealthy returns the configured members whose last probe failed, with
// State critical, as of the last set sent.
func (s *StaticWatcher) Unhealthy() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unhealthy)
}

// NewStaticWatcher validates opts and registers the source's metrics. It does no
// I/O and starts nothing.
func NewStaticWatcher(opts StaticOptions) (*StaticWatcher, error) {
	if len(opts.Members) == 0 {
		return nil, errors.New("watch: StaticOptions.Members is empty")
	}
	if opts.Interval < 0 || opts.Timeout < 0 {
		return nil, fmt.Errorf("watch: StaticOptions.Interval %v / Timeout %v: must not be negative", opts.Interval, opts.Timeout)
	}
	opts.Name = cmp.Or(opts.Name, "static")
	opts.Interval = cmp.Or(opts.Interval, DefaultProbeInterval)
	opts.Timeout = cmp.Or(opts.Timeout, DefaultProbeTimeout)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ms := make([]Member, 0, len(opts.Members))
	seen := map[string]bool{}
	for i, m := range opts.Members {
		if m.ID == "" {
			if m.Address == "" || m.Port <= 0 {
				return nil, fmt.Errorf("watch: StaticOptions.Members[%d]: needs an ID or an address and port", i)
			}
			m.ID = m.HostPort()
		}
		if seen[m.ID] {
			return nil, fmt.Errorf("watch: StaticOptions.Members[%d]: duplicate ID %q", i, m.ID)
		}
		if m.Weight > weight.Max {
			return nil, fmt.Errorf("watch: StaticOptions.Members[%d] %q: weight %d above %d", i, m.ID, m.Weight, weight.Max)
		}
		if opts.Probe != nil && (m.Address == "" || m.Port <= 0) {
			return nil, fmt.Errorf("watch: StaticOptions.Members[%d] %q: a probed member needs an address and port", i, m.ID)
		}
		seen[m.ID] = true
		ms = append(ms, m)
	}
	m, err := newWatchMetrics(opts.Registerer, "static", opts.Name)
	if err != nil {
		return nil, err
	}
	return &StaticWatcher{opts: opts, members: sortMembers(ms), m: m}, nil
}

// Run sends the member set (the healthy members, when probing) at once and
// again each time it changes, until ctx is done. It returns nil then.
func (s *StaticWatcher) Run(ctx context.Context, out chan<- []Member) error {
	var reported []Member
	first := true
	round := func() bool { // reports the set when it changed; false when ctx ended
		set := s.probe(ctx)
		if ctx.Err() != nil {
			return false
		}
		if !first && sameMembers(set, reported) {
			return true
		}
		first, reported = false, set
		s.m.changes.Inc()
		s.m.members.Set(float64(len(set)))
		s.opts.Logger.Info("member set changed", "source", s.opts.Name, "members", len(set))
		var sick []Member
		for _, m := range s.members {
			if !slices.ContainsFunc(set, func(h Member) bool { return h.ID == m.ID }) {
				m.State = StateCritical
				sick = append(sick, m)
			}
		}
		s.mu.Lock()
		s.unhealthy = sick
		s.mu.Unlock()
		select {
		case out <- slices.Clone(set):
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !round() {
		return nil
	}
	if s.opts.Probe == nil {
		<-ctx.Done()
		return nil
	}
	tick.Every[struct{}](ctx, s.opts.Interval, nil, round)
	return nil
}

// probe runs the probe against every member at once and returns those that
// passed.
func (s *StaticWatcher) probe(ctx context.Context) []Member {
	if s.opts.Probe == nil {
		return s.members
	}
	start := time.Now()
	ok := make([]bool, len(s.members))
	var wg sync.WaitGroup
	for i, m := range s.members {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
			defer cancel()
			if err := s.opts.Probe(pctx, m); err != nil {
				if ctx.Err() == nil {
					s.opts.Logger.Warn("probe failed", "source", s.opts.Name, "member", m.ID, "err", err)
				}
				return
			}
			ok[i] = true
		})
	}
	wg.Wait()
	s.m.queries.Inc()
	s.m.duration.Observe(time.Since(start).Seconds())
	s.m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	var set []Member
	for i, m := range s.members {
		if ok[i] {
			set = append(set, m)
		} else {
			s.m.errors.Inc()
		}
	}
	return set
}
