package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/promshard/promshard/internal/backoff"
	"github.com/promshard/promshard/internal/weight"
)

// HealthClient is the part of the Consul health API the watcher uses.
// *api.Health satisfies it.
type HealthClient interface {
	ServiceMultipleTags(service string, tags []string, passingOnly bool, q *api.QueryOptions) ([]*api.ServiceEntry, *api.QueryMeta, error)
}

// Defaults of [ConsulOptions].
const (
	DefaultWaitTime    = 5 * time.Minute
	DefaultMinInterval = 100 * time.Millisecond
	DefaultBackoffMin  = 100 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
	DefaultWeightMeta  = "weight"
	// DefaultSettle is how long a joining member must pass before it is
	// reported: long enough to absorb a flapping check, short next to the
	// time a returning collector needs anyway to load its targets.
	DefaultSettle = 5 * time.Second
)

// ConsulOptions configures a [ConsulWatcher]. Zero values get the documented
// defaults.
type ConsulOptions struct {
	// Service is the Consul service name of the collectors. Required.
	Service string
	// Tags, when set, keeps only instances that have all of them.
	Tags []string
	// Datacenter to query; empty means the agent's own.
	Datacenter string
	// Token is an ACL token for the queries; empty means the client's.
	Token string
	// AllowStale lets any Consul server answer, not only the leader.
	AllowStale bool
	// WaitTime is how long one blocking query may wait for a change.
	// Default [DefaultWaitTime]; Consul caps it at 10 minutes.
	WaitTime time.Duration
	// MinInterval is the least time between the starts of two queries, so a
	// service whose index changes all the time cannot spin the loop.
	// Default [DefaultMinInterval].
	MinInterval time.Duration
	// BackoffMin and BackoffMax bound the wait after a failed query. It
	// doubles with every consecutive error, with up to 50% random jitter.
	// Defaults [DefaultBackoffMin] and [DefaultBackoffMax].
	BackoffMin, BackoffMax time.Duration
	// Settle damps flapping: a member that joins, or comes back, is
	// reported only once it has passed its check for Settle without a break;
	// a member that stops passing is reported at once, so failover is never
	// delayed. Zero means [DefaultSettle]; a negative value turns damping
	// off. The first answer is reported as it is.
	Settle time.Duration
	// WeightMeta is the service metadata key holding a member's weight.
	// Default [DefaultWeightMeta]; "-" disables weights.
	WeightMeta string
	// Logger receives errors and changes; nil discards them.
	Logger *slog.Logger
	// Registerer receives the watcher's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (o *ConsulOptions) setDefaults() error {
	if o.Service == "" {
		return errors.New("watch: ConsulOptions.Service is empty")
	}
	for name, d := range map[string]time.Duration{"WaitTime": o.WaitTime, "MinInterval": o.MinInterval,
		"BackoffMin": o.BackoffMin, "BackoffMax": o.BackoffMax} {
		if d < 0 {
			return fmt.Errorf("watch: ConsulOptions.%s %v: must not be negative", name, d)
		}
	}
	o.WaitTime = cmp.Or(o.WaitTime, DefaultWaitTime)
	o.MinInterval = cmp.Or(o.MinInterval, DefaultMinInterval)
	o.BackoffMin = cmp.Or(o.BackoffMin, DefaultBackoffMin)
	o.BackoffMax = cmp.Or(o.BackoffMax, DefaultBackoffMax)
	o.Settle = cmp.Or(o.Settle, DefaultSettle)
	if o.BackoffMax < o.BackoffMin {
		return fmt.Errorf("watch: ConsulOptions.BackoffMax %v: less than BackoffMin %v", o.BackoffMax, o.BackoffMin)
	}
	if o.WeightMeta == "" {
		o.WeightMeta = DefaultWeightMeta
	}
	if o.WeightMeta == "-" {
		o.WeightMeta = ""
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// State is what a watcher knows about its own health.
type State struct {
	// LastSuccess is when Consul last answered a query.
	LastSuccess time.Time
	// LastError is the error of the last failed query, nil after a success.
	LastError error
	// ConsecutiveErrors counts failed queries since the last success.
	ConsecutiveErrors int
	// LastIndex is the Consul index the next query waits on.
	LastIndex uint64
	// Members is the last reported member set, and Unhealthy the
	// registered instances that are not passing (see [Roster]).
	Members, Unhealthy []Member
}

// ConsulWatcher follows the passing instances of a Consul service with
// blocking queries. Create it with [NewConsulWatcher]; start it with Run.
type ConsulWatcher struct {
	client HealthClient
	opts   ConsulOptions
	m      *watchMetrics

	mu     sync.Mutex
	state  State
	warned map[string]bool // warnings already logged, so each is logged once
}

var (
	_ Source = (*ConsulWatcher)(nil)
	_ Roster = (*ConsulWatcher)(nil)
)

// NewConsulWatcher validates opts and registers the watcher's metrics. It
// does no I/O and starts nothing.
func NewConsulWatcher(client HealthClient, opts ConsulOptions) (*ConsulWatcher, error) {
	if client == nil {
		return nil, errors.New("watch: nil HealthClient")
	}
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newWatchMetrics(opts.Registerer, "consul", opts.Service)
	if err != nil {
		return nil, err
	}
	return &ConsulWatcher{client: client, opts: opts, m: m}, nil
}

// State returns a snapshot of the watcher's state.
func (w *ConsulWatcher) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state
	s.Members, s.Unhealthy = slices.Clone(s.Members), slices.Clone(s.Unhealthy)
	return s
}

// Unhealthy returns the instances that are registered but not passing
// (critical, warning, or in maintenance), as of the last set sent.
func (w *ConsulWatcher) Unhealthy() []Member { return w.State().Unhealthy }

// Run queries Consul until ctx is done and sends the member set on out each
// time it changes, starting with the first answer. Errors are logged,
// counted and retried with backoff; the last reported set stands meanwhile.
// Run returns nil when ctx is done, and an error only when Consul refuses
// the token (401 or 403) before the first answer: retrying cannot fix that.
func (w *ConsulWatcher) Run(ctx context.Context, out chan<- []Member) error {
	var (
		index     uint64
		errs      int
		first     = true
		joinAt    time.Time // when the next pending member may join
		damper    = NewDamper(w.opts.Settle)
		lastStart time.Time
	)
	for {
		// Rate limit: never start queries closer than MinInterval.
		if wait := w.opts.MinInterval - time.Since(lastStart); !lastStart.IsZero() && wait > 0 {
			if !backoff.Sleep(ctx, wait) {
				return nil
			}
		}
		waitTime := w.opts.WaitTime
		if !joinAt.IsZero() {
			waitTime = max(time.Until(joinAt), time.Millisecond)
		}
		lastStart = time.Now()
		entries, meta, err := w.query(ctx, index, waitTime)
		if ctx.Err() != nil {
			return nil
		}
		w.m.queries.Inc()
		w.m.duration.Observe(time.Since(lastStart).Seconds())
		if err != nil && first && permanent(err) {
			// A wrong token or a missing ACL before any answer is a
			// mistake that retrying cannot fix: say so at once.
			return fmt.Errorf("%w (check the Consul token and its ACL policy)", err)
		}
		if err != nil {
			errs++
			w.m.errors.Inc()
			d := backoff.Delay(w.opts.BackoffMin, w.opts.BackoffMax, errs)
			w.opts.Logger.Warn("consul query failed; keeping the last member set",
				"service", w.opts.Service, "consecutive_errors", errs, "retry_in", d, "err", err)
			w.setState(func(s *State) { s.LastError, s.ConsecutiveErrors = err, errs })
			if !backoff.Sleep(ctx, d) {
				return nil
			}
			// The next query must not block: it tells at once that Consul
			// is back (the log, the last-success time) and what changed
			// during the outage, instead of waiting for the next change.
			index = 0
			continue
		}
		if errs > 0 {
			w.opts.Logger.Info("consul query recovered", "service", w.opts.Service, "after_errors", errs)
		}
		errs = 0
		index = nextIndex(index, meta.LastIndex)
		if meta.LastIndex == 0 {
			w.opts.Logger.Warn("consul returned index 0; backing off", "service", w.opts.Service)
			if !backoff.Sleep(ctx, w.opts.BackoffMin) {
				return nil
			}
		}
		now := time.Now()
		w.m.lastSuccess.Set(float64(now.UnixNano()) / 1e9)
		w.setState(func(s *State) { s.LastSuccess, s.LastError, s.ConsecutiveErrors, s.LastIndex = now, nil, 0, index })

		all := w.members(entries)
		healthy := slices.DeleteFunc(slices.Clone(all), func(m Member) bool { return m.State != "" })
		unhealthy := slices.DeleteFunc(all, func(m Member) bool { return m.State == "" })
		set, unhealthy, next, changed := damper.Damp(healthy, sortMembers(unhealthy), now)
		joinAt = next
		if !changed {
			continue // an index bump with the same sets, or a join still pending
		}
		first = false
		w.m.changes.Inc()
		w.m.members.Set(float64(len(set)))
		w.setState(func(s *State) { s.Members, s.Unhealthy = set, unhealthy })
		w.opts.Logger.Info("member set changed", "service", w.opts.Service, "members", len(set), "index", index)
		select {
		case out <- slices.Clone(set):
		case <-ctx.Done():
			return nil
		}
	}
}

func (w *ConsulWatcher) setState(f func(*State)) {
	w.mu.Lock()
	f(&w.state)
	w.mu.Unlock()
}

// query runs one blocking query. The request's context outlives the wait
// plus the up to 1/16 jitter Consul adds, plus a margin for the answer.
func (w *ConsulWatcher) query(ctx context.Context, index uint64, wait time.Duration) ([]*api.ServiceEntry, *api.QueryMeta, error) {
	rctx, cancel := context.WithTimeout(ctx, wait+wait/16+10*time.Second)
	defer cancel()
	q := &api.QueryOptions{
		Datacenter: w.opts.Datacenter,
		Token:      w.opts.Token,
		AllowStale: w.opts.AllowStale,
		WaitIndex:  index,
		WaitTime:   wait,
	}
	// All instances, not only the passing ones: one that fails its check or
	// is in maintenance may still run, and the Sharder empties its file.
	entries, meta, err := w.client.ServiceMultipleTags(w.opts.Service, w.opts.Tags, false, q.WithContext(rctx))
	if err != nil {
		return nil, nil, fmt.Errorf("consul health query for service %q: %w", w.opts.Service, err)
	}
	if meta == nil {
		return nil, nil, fmt.Errorf("consul health query for service %q: no query metadata", w.opts.Service)
	}
	if meta.ResultsFilteredByACLs && len(entries) == 0 {
		// Not "no healthy collectors": the token may not read them. The
		// last member set stands, as in an outage.
		return nil, nil, fmt.Errorf("consul health query for service %q: every result was filtered by ACLs "+
			"(the token needs service:read and node:read)", w.opts.Service)
	}
	return entries, meta, nil
}

// warnOnce reports whether the warning with this key is new: a condition
// in Consul's data is seen again on every answer, and logged only once.
func (w *ConsulWatcher) warnOnce(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.warned[key] {
		return false
	}
	if w.warned == nil {
		w.warned = map[string]bool{}
	}
	w.warned[key] = true
	return true
}

// permanent reports whether a query error is one that retrying cannot fix:
// Consul refused the token (401, 403, "ACL not found").
func permanent(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && (se.Code == http.StatusUnauthorized || se.Code == http.StatusForbidden)
}

// nextIndex applies Consul's rules to the index a query returned: an index
// lower than the one waited on means the state was reset (a restarted or
// new leader) and the next query must not block; an index of 0 is not sane
// and is never sent back (it would return at once, forever): the next query
// waits on 1, after a backoff.
func nextIndex(prev, got uint64) uint64 {
	if got == 0 {
		return 1
	}
	if got < prev {
		return 0
	}
	return got
}

// members turns the instances into a sorted member set; those not passing
// carry their State.
func (w *ConsulWatcher) members(entries []*api.ServiceEntry) []Member {
	out := make([]Member, 0, len(entries))
	for _, e := range entries {
		if e == nil || e.Service == nil {
			continue
		}
		s := e.Service
		m := Member{ID: s.ID, Service: s.Service, Address: s.Address, Port: s.Port,
			Tags: slices.Clone(s.Tags), Meta: s.Meta}
		if m.ID == "" {
			m.ID = s.Service
		}
		if e.Node != nil {
			m.Node, m.NodeMeta = e.Node.Node, e.Node.Meta
			if m.Address == "" {
				m.Address = e.Node.Address
			}
		}
		slices.Sort(m.Tags)
		w8, ok := parseWeight(s.Meta, w.opts.WeightMeta)
		if v := s.Meta[w.opts.WeightMeta]; !ok && w.warnOnce("weight "+m.ID+"="+v) {
			w.opts.Logger.Warn("ignoring bad weight: want an integer from 1 to max", "max", weight.Max, "service_id", m.ID,
				"meta_key", w.opts.WeightMeta, "value", v)
		}
		m.Weight = w8
		switch st := e.Checks.AggregatedStatus(); st {
		case api.HealthPassing:
		case api.HealthMaint:
			m.State = StateMaintenance
		case api.HealthWarning:
			m.State = StateWarning
		default:
			m.State = StateCritical
		}
		out = append(out, m)
	}
	// The same service ID on several nodes is one collector when every
	// instance has the same address (registered on several agents: they
	// collapse into one), and distinct collectors when the addresses differ
	// (instances registered with only a Name get ID = Name on every host):
	// each then gets the stable identity "ID@node".
	addrs := map[string]map[string]bool{}
	for _, m := range out {
		if addrs[m.ID] == nil {
			addrs[m.ID] = map[string]bool{}
		}
		addrs[m.ID][m.HostPort()] = true
	}
	renamed := map[int]bool{}
	for i, m := range out {
		if len(addrs[m.ID]) > 1 && m.Node != "" {
			renamed[i] = true
			if w.warnOnce("node " + m.ID + "@" + m.Node) {
				w.opts.Logger.Warn("service ID registered on several nodes with different addresses; using ID@node",
					"service_id", m.ID, "member", m.ID+"@"+m.Node)
			}
			out[i].ID = m.ID + "@" + m.Node
		}
	}
	// A renamed ID@node that is also another instance's literal service
	// ID would collapse with it: the renamed one becomes ID@node#2, loudly.
	literal := map[string]bool{}
	for i, m := range out {
		if !renamed[i] {
			literal[m.ID] = true
		}
	}
	for i, m := range out {
		if renamed[i] && literal[m.ID] {
			if w.warnOnce("collision " + m.ID) {
				w.opts.Logger.Error("a collector renamed ID@node collides with another's literal service ID; naming it ID@node#2",
					"member", m.ID)
			}
			out[i].ID = m.ID + "#2"
		}
	}
	return sortMembers(out)
}
