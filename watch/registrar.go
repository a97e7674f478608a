package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/backoff"
)

// Defaults of [RegistrarOptions].
const (
	DefaultReregisterInterval = time.Minute
	DefaultDeregisterTimeout  = 5 * time.Second
)

// RegistrarOptions configures a [Registrar]. Zero values get the documented
// defaults.
type RegistrarOptions struct {
	// Interval is how often the collectors are registered again while all
	// is well, so that they come back after an agent lost its state.
	// Default [DefaultReregisterInterval].
	Interval time.Duration
	// BackoffMin and BackoffMax bound the wait after a failed registration;
	// defaults [DefaultBackoffMin] and [DefaultBackoffMax].
	BackoffMin, BackoffMax time.Duration
	// DeregisterOnStop makes Run deregister the collectors it registered
	// when it ends. Off by default: a registration outlives the process
	// (its health check says whether the collector lives), so that a
	// restart or an upgrade neither moves targets nor hides the collectors
	// from others that find them through the same Consul service. Take a
	// pool out of service with [Registrar.Remove].
	DeregisterOnStop bool
	// DeregisterTimeout bounds the deregistration when Run ends (with
	// DeregisterOnStop); default [DefaultDeregisterTimeout].
	DeregisterTimeout time.Duration
	// InitialWait bounds the wait for the checks to pass after the first
	// registration; default two check intervals plus a check timeout of the
	// slowest registration's check, plus 5 s for the agent to sync (every
	// collector that is up has passed by then). It ends as soon as all pass.
	InitialWait time.Duration
	// Health, when set, is where WaitPassing looks for passing checks: the
	// health endpoint that watchers read. Without it, the agent's own view,
	// which runs ahead of the catalog by the agent's sync.
	Health HealthClient
	// Owners, when set (*api.KV satisfies it), makes registrations owned
	// per process: each Registrar records under OwnersPrefix (default
	// [DefaultOwnersPrefix]) that it registered a collector, refreshed with
	// every registration, and on stop deregisters only the collectors no
	// other live Registrar registered too. Without it, stopping deregisters
	// what this Registrar registered, whoever else did.
	Owners       KVClient
	OwnersPrefix string
	// Owner names this owner; default hostname-pid, which a Registrar made
	// again in the same process (a config reload) keeps.
	Owner string
	// Logger receives registrations and failures; nil discards them.
	Logger *slog.Logger
}

// KVClient is the part of the Consul KV API that a [Registrar] uses to
// record owners. *api.KV satisfies it.
type KVClient interface {
	Put(p *api.KVPair, q *api.WriteOptions) (*api.WriteMeta, error)
	List(prefix string, q *api.QueryOptions) (api.KVPairs, *api.QueryMeta, error)
	Delete(key string, w *api.WriteOptions) (*api.WriteMeta, error)
}

// initialSyncMargin is added to the default InitialWait for the agent to
// run the first checks of fresh registrations and sync their results to
// the catalog, which takes seconds on a loaded machine.
const initialSyncMargin = 5 * time.Second

// DefaultOwnersPrefix is where Registrars record who registered a collector.
const DefaultOwnersPrefix = "promshard/registrations"

// Registrar keeps collectors registered in Consul for the life of a process,
// in the manner of go-kit's sd/consul registrar: it registers them, retries
// with backoff while Consul is unreachable, registers them again every
// Interval, and deregisters what it registered when Run ends. Create it with
// [NewRegistrar].
type Registrar struct {
	agent AgentClient
	regs  []Registration
	opts  RegistrarOptions

	token     string // this Registrar's owner key
	keep      atomic.Bool
	ready     chan struct{}
	readyOnce sync.Once

	mu   sync.Mutex
	done map[string]bool // service IDs registered by this Registrar
}

// NewRegistrar validates the registrations. It does no I/O.
func NewRegistrar(agent AgentClient, regs []Registration, opts RegistrarOptions) (*Registrar, error) {
	if agent == nil {
		return nil, errors.New("watch: nil AgentClient")
	}
	seen := map[string]bool{}
	for _, r := range regs {
		if err := r.Validate(); err != nil {
			return nil, err
		}
		if seen[r.ServiceID()] {
			return nil, fmt.Errorf("watch: service ID %q registered twice", r.ServiceID())
		}
		seen[r.ServiceID()] = true
	}
	for name, d := range map[string]time.Duration{"Interval": opts.Interval, "BackoffMin": opts.BackoffMin,
		"BackoffMax": opts.BackoffMax, "DeregisterTimeout": opts.DeregisterTimeout, "InitialWait": opts.InitialWait} {
		if d < 0 {
			return nil, fmt.Errorf("watch: RegistrarOptions.%s %v: must not be negative", name, d)
		}
	}
	opts.Interval = cmp.Or(opts.Interval, DefaultReregisterInterval)
	opts.BackoffMin = cmp.Or(opts.BackoffMin, DefaultBackoffMin)
	opts.BackoffMax = cmp.Or(opts.BackoffMax, DefaultBackoffMax)
	opts.DeregisterTimeout = cmp.Or(opts.DeregisterTimeout, DefaultDeregisterTimeout)
	if opts.InitialWait == 0 {
		for _, reg := range regs {
			c := reg.Check
			opts.InitialWait = max(opts.InitialWait, 2*cmp.Or(c.Interval, DefaultCheckInterval)+cmp.Or(c.Timeout, DefaultCheckTimeout))
		}
		opts.InitialWait += initialSyncMargin
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.OwnersPrefix = cmp.Or(opts.OwnersPrefix, DefaultOwnersPrefix)
	if opts.Owner == "" {
		host, _ := os.Hostname()
		opts.Owner = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return &Registrar{agent: agent, regs: slices.Clone(regs), opts: opts, done: map[string]bool{}, token: url.PathEscape(opts.Owner),
		ready: make(chan struct{})}, nil
}

// Register registers every collector once. It is idempotent; the first
// error stops it and is returned.
func (r *Registrar) Register(ctx context.Context) error {
	for _, reg := range r.regs {
		if err := Register(ctx, r.agent, reg); err != nil {
			return err
		}
		if r.opts.Owners != nil {
			stamp := []byte(strconv.FormatInt(time.Now().Unix(), 10))
			if _, err := r.opts.Owners.Put(&api.KVPair{Key: r.ownerKey(reg) + r.token, Value: stamp},
				(&api.WriteOptions{}).WithContext(ctx)); err != nil && ctx.Err() == nil {
				// The registration stands; only the sharing of it is lost
				// (a token without key write permission, say).
				r.opts.Logger.Warn("could not record this process as an owner of the registration; "+
					"stopping will deregister it whoever else registered it", "id", reg.ServiceID(), "err", err)
			}
		}
		r.mu.Lock()
		first := !r.done[reg.ServiceID()]
		r.done[reg.ServiceID()] = true
		r.mu.Unlock()
		if first {
			r.opts.Logger.Info("registered collector in consul", "service", reg.Service, "id", reg.ServiceID(),
				"address", reg.HostPort())
		}
	}
	return nil
}

// ownerKey is the KV prefix of a registration's owners.
func (r *Registrar) ownerKey(reg Registration) string {
	return fmt.Sprintf("%s/%s/%s/", strings.TrimSuffix(r.opts.OwnersPrefix, "/"), url.PathEscape(reg.Service),
		url.PathEscape(reg.ServiceID()))
}

// othersOwn drops this process's ownership of reg and reports whether
// another process registered it within the last three intervals (it is
// still running: its registration must stay).
func (r *Registrar) othersOwn(ctx context.Context, reg Registration) (bool, error) {
	prefix := r.ownerKey(reg)
	if _, err := r.opts.Owners.Delete(prefix+r.token, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return false, err
	}
	pairs, _, err := r.opts.Owners.List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, err
	}
	fresh := false
	for _, p := range pairs {
		at, perr := strconv.ParseInt(string(p.Value), 10, 64)
		if perr == nil && time.Since(time.Unix(at, 0)) < 3*r.opts.Interval {
			fresh = true
		} else {
			// An owner that stopped without a word (kill -9): forget it.
			_, _ = r.opts.Owners.Delete(p.Key, (&api.WriteOptions{}).WithContext(ctx))
		}
	}
	return fresh, nil
}

// RegisterAndWait registers every collector once and waits, for at most
// InitialWait, for their checks to pass: what a one-shot run needs before it
// reads the healthy set. A nil Registrar does nothing.
func (r *Registrar) RegisterAndWait(ctx context.Context) error {
	if r == nil {
		return nil
	}
	if err := r.Register(ctx); err != nil {
		return err
	}
	_, err := r.WaitPassing(ctx, 0)
	return err
}

// WaitPassing waits until the health check of every collector passes, for
// at most timeout (and ctx), polling the agent. A check starts critical, so
// right after registering, the healthy set holds only the collectors whose
// first check already ran: a sharder that reshards then gives everything to
// them. Zero means RegistrarOptions.InitialWait. It returns the IDs still
// not passing when the time is up (a collector that is really down), or
// ctx's error.
func (r *Registrar) WaitPassing(ctx context.Context, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(cmp.Or(timeout, r.opts.InitialWait))
	for {
		passing := r.passing(ctx)
		var failing []string
		for _, reg := range r.regs {
			if !passing[reg.ServiceID()] {
				failing = append(failing, reg.ServiceID())
			}
		}
		if len(failing) == 0 || !time.Now().Before(deadline) {
			return failing, nil
		}
		if !backoff.Sleep(ctx, min(200*time.Millisecond, time.Until(deadline))) {
			return failing, ctx.Err()
		}
	}
}

// passing returns the service IDs whose checks pass: as the health
// endpoint answers (what watchers see, once the agent synced its state to
// the catalog) when RegistrarOptions.Health is set, else as the agent has
// them.
func (r *Registrar) passing(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	q := (&api.QueryOptions{}).WithContext(ctx)
	if r.opts.Health == nil {
		checks, _ := r.agent.ChecksWithFilterOpts("", q)
		for _, reg := range r.regs {
			if c := checks[reg.CheckID()]; c != nil && c.Status == api.HealthPassing {
				out[reg.ServiceID()] = true
			}
		}
		return out
	}
	services := map[string]bool{}
	for _, reg := range r.regs {
		if services[reg.Service] {
			continue
		}
		services[reg.Service] = true
		entries, _, _ := r.opts.Health.ServiceMultipleTags(reg.Service, nil, true, q)
		for _, e := range entries {
			if e != nil && e.Service != nil {
				out[e.Service.ID] = true
			}
		}
	}
	return out
}

// Deregister removes every collector this Registrar registered. It tries
// them all and joins the errors.
func (r *Registrar) Deregister(ctx context.Context) error {
	r.mu.Lock()
	ids := make([]string, 0, len(r.done))
	for _, reg := range r.regs {
		if r.done[reg.ServiceID()] {
			ids = append(ids, reg.ServiceID())
		}
	}
	clear(r.done)
	r.mu.Unlock()
	var errs []error
	for _, reg := range r.regs {
		id := reg.ServiceID()
		if !slices.Contains(ids, id) {
			continue
		}
		if r.opts.Owners != nil {
			others, err := r.othersOwn(ctx, reg)
			if err != nil {
				r.opts.Logger.Warn("could not read the other owners of a registration; deregistering it", "id", id, "err", err)
			}
			if others {
				r.opts.Logger.Info("left collector registered: another process registered it too", "id", id)
				continue
			}
		}
		if err := Deregister(ctx, r.agent, id); err != nil {
			errs = append(errs, err)
			continue
		}
		r.opts.Logger.Info("deregistered collector from consul", "id", id)
	}
	return errors.Join(errs...)
}

// Remove deregisters every collector of this Registrar from the agent,
// whether or not this process registered it, and drops every owner
// record of them: for a pool taken out of service. A collector that is not
// registered is no error. It tries them all and joins the errors.
func (r *Registrar) Remove(ctx context.Context) error {
	var errs []error
	for _, reg := range r.regs {
		id := reg.ServiceID()
		if err := Deregister(ctx, r.agent, id); err != nil && !isNotFound(err) {
			errs = append(errs, err)
			continue
		}
		r.mu.Lock()
		delete(r.done, id)
		r.mu.Unlock()
		r.opts.Logger.Info("deregistered collector from consul", "id", id)
		if r.opts.Owners == nil {
			continue
		}
		pairs, _, err := r.opts.Owners.List(r.ownerKey(reg), (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			errs = append(errs, fmt.Errorf("watch: owners of %q: %w", id, err))
			continue
		}
		for _, p := range pairs {
			if _, err := r.opts.Owners.Delete(p.Key, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				errs = append(errs, fmt.Errorf("watch: owners of %q: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// isNotFound reports whether the agent answered that it has no such
// service.
func isNotFound(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// Keep makes Run leave the registrations in place when it ends, for a
// process that starts again at once (a config reload), even with
// DeregisterOnStop. Nil-safe.
func (r *Registrar) Keep() {
	if r != nil {
		r.keep.Store(true)
	}
}

// Ready is closed once Run has registered the collectors and their checks
// passed (or InitialWait ran out), or Run ended: start resharding after it.
// A nil Registrar (nothing to register) is ready at once.
func (r *Registrar) Ready() <-chan struct{} {
	if r == nil {
		return closed
	}
	return r.ready
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Run keeps the collectors registered until ctx is done and returns nil;
// with DeregisterOnStop it then deregisters them (with a fresh context
// bounded by DeregisterTimeout).
// After the first registration it waits for the checks to pass (at most
// InitialWait) and closes Ready. Failures are logged and retried; they
// never end Run.
func (r *Registrar) Run(ctx context.Context) error {
	defer r.readyOnce.Do(func() { close(r.ready) })
	defer func() {
		if !r.opts.DeregisterOnStop || r.keep.Load() {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), r.opts.DeregisterTimeout)
		defer cancel()
		if err := r.Deregister(dctx); err != nil {
			r.opts.Logger.Warn("deregistering collectors failed", "err", err)
		}
	}()
	fails := 0
	for {
		wait := r.opts.Interval
		if err := r.Register(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fails++
			wait = backoff.Delay(r.opts.BackoffMin, r.opts.BackoffMax, fails)
			r.opts.Logger.Error("registering collectors in consul failed; retrying", "in", wait, "err", err)
		} else {
			fails = 0
			r.readyOnce.Do(func() {
				if failing, _ := r.WaitPassing(ctx, r.opts.InitialWait); len(failing) > 0 && ctx.Err() == nil {
					r.opts.Logger.Warn("collectors whose check does not pass yet", "ids", failing, "after", r.opts.InitialWait)
				}
				close(r.ready)
			})
		}
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}
