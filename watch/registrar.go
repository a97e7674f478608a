package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

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
	// DeregisterTimeout bounds the deregistration when Run ends; default
	// [DefaultDeregisterTimeout].
	DeregisterTimeout time.Duration
	// Logger receives registrations and failures; nil discards them.
	Logger *slog.Logger
}

// Registrar keeps collectors registered in Consul for the life of a process,
// in the manner of go-kit's sd/consul registrar: it registers them, retries
// with backoff while Consul is unreachable, registers them again every
// Interval, and deregisters what it registered when Run ends. Create it with
// [NewRegistrar].
type Registrar struct {
	agent AgentClient
	regs  []Registration
	opts  RegistrarOptions

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
		"BackoffMax": opts.BackoffMax, "DeregisterTimeout": opts.DeregisterTimeout} {
		if d < 0 {
			return nil, fmt.Errorf("watch: RegistrarOptions.%s %v: must not be negative", name, d)
		}
	}
	opts.Interval = cmp.Or(opts.Interval, DefaultReregisterInterval)
	opts.BackoffMin = cmp.Or(opts.BackoffMin, DefaultBackoffMin)
	opts.BackoffMax = cmp.Or(opts.BackoffMax, DefaultBackoffMax)
	opts.DeregisterTimeout = cmp.Or(opts.DeregisterTimeout, DefaultDeregisterTimeout)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registrar{agent: agent, regs: slices.Clone(regs), opts: opts, done: map[string]bool{}}, nil
}

// Register registers every collector once. It is idempotent; the first
// error stops it and is returned.
func (r *Registrar) Register(ctx context.Context) error {
	for _, reg := range r.regs {
		if err := Register(ctx, r.agent, reg); err != nil {
			return err
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
	for _, id := range ids {
		if err := Deregister(ctx, r.agent, id); err != nil {
			errs = append(errs, err)
			continue
		}
		r.opts.Logger.Info("deregistered collector from consul", "id", id)
	}
	return errors.Join(errs...)
}

// Run keeps the collectors registered until ctx is done, then deregisters
// them (with a fresh context bounded by DeregisterTimeout) and returns nil.
// Failures are logged and retried; they never end Run.
func (r *Registrar) Run(ctx context.Context) error {
	defer func() {
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
		}
		if !backoff.Sleep(ctx, wait) {
			return nil
		}
	}
}
