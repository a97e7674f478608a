package elect

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/backoff"
	"github.com/promshard/promshard/internal/tick"
)

// Defaults and bounds of [LockOptions].
const (
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
	// DefaultSessionTTL is the session's own TTL: Consul's shortest.
	DefaultSessionTTL = 10 * time.Second
	MinSessionTTL     = 10 * time.Second
	MaxSessionTTL     = 24 * time.Hour
	// DefaultCheckTTL is how long a leader that stopped answering keeps
	// the lock: the TTL of the heartbeat check its session is tied to.
	DefaultCheckTTL = 5 * time.Second
	MinCheckTTL     = time.Second
	// DefaultLockDelay is none: the fence (a check of the session in the
	// same transaction as each write) keeps a leader that was merely slow
	// from writing after another took over, so the lock need not stay
	// closed after a leader's session ended.
	DefaultLockDelay = 0
	MaxLockDelay     = 60 * time.Second
	// LockService is the Consul service that carries each copy's lock
	// check (one instance per copy).
	LockService = "promshard-lock"
	// lockReap is how long the agent keeps the lock service of a copy that
	// died (Consul's shortest).
	lockReap = time.Minute
	// lockRetry is the wait before taking a free lock again while a lock
	// delay is in force (Consul does not say how long it has left).
	lockRetry = 250 * time.Millisecond
)

// ErrNotLeader is returned by [ConsulLock.Check] and [ConsulLock.Publish]
// when this copy does not hold the lock (any more).
var ErrNotLeader = errors.New("elect: not the leader")

// LockOptions configures a [ConsulLock]. Zero values get the documented
// defaults.
type LockOptions struct {
	// Key is the KV prefix of the election. The lock is Key+"/leader";
	// each job's published epoch is Key+"/epoch/"+job, and each blob
	// (see [ConsulLock.PublishBlob]) Key+"/blobs/"+name. Required.
	Key string
	// Name says who this copy is, in the lock's value, the session's name
	// and logs; default hostname-pid.
	Name string
	// SessionTTL is the session's own TTL, between MinSessionTTL and
	// MaxSessionTTL; default [DefaultSessionTTL].
	SessionTTL time.Duration
	// CheckTTL bounds how long a leader that stopped answering (killed,
	// paused, cut off) keeps the lock: its heartbeat check turns critical
	// after CheckTTL, which ends its session at once. Between MinCheckTTL
	// and SessionTTL; default [DefaultCheckTTL]. A leader that cannot pass
	// its check for CheckTTL stops leading by itself.
	CheckTTL time.Duration
	// LockDelay is how long the lock stays closed to everyone after a
	// leader's session ended (not after a clean release); zero (the
	// default) is none; at most MaxLockDelay.
	LockDelay time.Duration
	// Observe reads published epochs without ever taking the lock (a copy
	// in self mode, a dashboard).
	Observe bool
	// BackoffMin and BackoffMax bound the wait after a failure to reach
	// Consul; defaults [DefaultBackoffMin] and [DefaultBackoffMax].
	BackoffMin, BackoffMax time.Duration
	// Logger receives leadership changes and failures; nil discards them.
	Logger *slog.Logger
}

// Epoch is one assignment of a job as its leader published it, in Consul KV
// beside the lock: a number that grows with every assignment published,
// who published it, for which members, and a hash of the plan.
type Epoch struct {
	Job     string    `json:"job"`
	Epoch   uint64    `json:"epoch"`
	Leader  string    `json:"leader"`
	Members []string  `json:"members"`
	Hash    string    `json:"hash"`
	Time    time.Time `json:"time"`
}

// ConsulLock is leader election with a Consul session and a KV lock, for
// central mode run as several copies: one holds the lock and writes, the
// others wait. Create it with [NewConsulLock] and run it with
// [ConsulLock.Run].
//
// It is built on sessions and KV acquire directly rather than on
// consul/api's Lock, because the leader must fence each write with an
// atomic transaction that names its session (Lock keeps the session to
// itself), every blocking read must end with a context (Lock's waits
// cannot be cancelled), and a brief Consul error must not end a
// leadership that the session still holds (Lock's monitor gives up on the
// first error).
//
// The session carries, besides Consul's node check, a TTL check that this
// copy passes with every renewal, on an instance of the service
// [LockService] of its own (a node check would fail the node's other
// services with it). Consul ends a session only some time
// after twice its TTL, but a TTL check turns critical after exactly its
// TTL, and a critical check ends the session at once: a leader that is
// killed or paused loses the lock after SessionTTL, and another copy takes
// it after LockDelay more.
type ConsulLock struct {
	c       *api.Client
	opts    LockOptions
	checkID string

	lease  atomic.Pointer[lease] // nil while not leading
	holder atomic.Value          // string: the lock holder's name, as last read
	notify chan struct{}         // size 1: leadership changed

	mu      sync.Mutex    // serialises Publish
	corrupt atomic.Uint64 // unreadable epochs replaced
}

// lease is one stretch of leadership.
type lease struct {
	session string
}

// lockValue is what the lock key holds.
type lockValue struct {
	Name  string    `json:"name"`
	Since time.Time `json:"since"`
}

// Validate checks the options and names the first bad field.
func (o LockOptions) Validate() error {
	switch {
	case strings.Trim(o.Key, "/") == "":
		return errors.New("elect: LockOptions.Key is empty")
	case o.SessionTTL != 0 && (o.SessionTTL < MinSessionTTL || o.SessionTTL > MaxSessionTTL):
		return fmt.Errorf("elect: LockOptions.SessionTTL %v: want %v to %v", o.SessionTTL, MinSessionTTL, MaxSessionTTL)
	case o.LockDelay > MaxLockDelay || o.LockDelay < 0:
		return fmt.Errorf("elect: LockOptions.LockDelay %v: want 0 (none, the default) to %v", o.LockDelay, MaxLockDelay)
	case o.CheckTTL != 0 && (o.CheckTTL < MinCheckTTL || o.CheckTTL > cmp.Or(o.SessionTTL, DefaultSessionTTL)):
		return fmt.Errorf("elect: LockOptions.CheckTTL %v: want %v to the session TTL (%v)", o.CheckTTL, MinCheckTTL,
			cmp.Or(o.SessionTTL, DefaultSessionTTL))
	}
	return checkKey(strings.Trim(o.Key, "/"))
}

// checkKey refuses a KV key that Consul's HTTP API would not keep as
// given: an empty, "." or ".." segment (the URL is cleaned, and the
// request redirected or refused), or a control character.
func checkKey(key string) error {
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("elect: LockOptions.Key %q: segment %q: Consul would not keep the key as given", key, seg)
		}
	}
	if i := strings.IndexFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }); i >= 0 {
		return fmt.Errorf("elect: LockOptions.Key %q: a control character at byte %d", key, i)
	}
	return nil
}

// ErrDenied means Consul refused this copy a session or the lock for
// good (a token without session:write or key:write, HTTP 403): it can
// never lead, so Run ends with it.
var ErrDenied = errors.New("elect: Consul denies this copy the election (check the token's session and key policy)")

// NewConsulLock validates the options. It does no I/O.
func NewConsulLock(c *api.Client, o LockOptions) (*ConsulLock, error) {
	if c == nil {
		return nil, errors.New("elect: nil Consul client")
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.Key = strings.Trim(o.Key, "/")
	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	o.SessionTTL = cmp.Or(o.SessionTTL, DefaultSessionTTL)
	o.CheckTTL = cmp.Or(o.CheckTTL, DefaultCheckTTL)
	if o.LockDelay == 0 {
		o.LockDelay = time.Millisecond // none: Consul takes 0 for its own default, 15 s
	}
	o.BackoffMin = cmp.Or(o.BackoffMin, DefaultBackoffMin)
	o.BackoffMax = cmp.Or(o.BackoffMax, DefaultBackoffMax)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &ConsulLock{c: c, opts: o, checkID: "promshard-lock:" + strings.NewReplacer("/", "_", " ", "_").Replace(o.Key+":"+o.Name), notify: make(chan struct{}, 1)}
	l.holder.Store("")
	return l, nil
}

// Name is this copy's name.
func (l *ConsulLock) Name() string { return l.opts.Name }

// Leading reports whether this copy holds the lock, as far as it knows
// without asking Consul; [ConsulLock.Check] asks.
func (l *ConsulLock) Leading() bool { return l.lease.Load() != nil }

// Leader is the name of the lock holder as last read ("" when nobody
// holds it or before the first read).
func (l *ConsulLock) Leader() string { return l.holder.Load().(string) }

// Run campaigns for the lock until ctx ends, sending on changed (without
// blocking) each time this copy becomes leader or stops being one. On the
// way out it releases the lock (so that another copy takes it without the
// lock delay), destroys its session and deregisters its check's service. Consul errors
// are retried with backoff; Run returns nil when ctx ends.
func (l *ConsulLock) Run(ctx context.Context, changed chan<- struct{}) error {
	if changed != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-l.notify:
					select {
					case changed <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	if l.opts.Observe {
		<-ctx.Done()
		return nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = l.c.Agent().ServiceDeregisterOpts(l.checkID, (&api.QueryOptions{}).WithContext(cctx))
	}()
	for n := 0; ; {
		err := l.campaign(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if denied(err) {
			l.opts.Logger.Error("leader election: Consul denies this copy a session or the lock; it can never lead", "key", l.lockKey(),
				"name", l.opts.Name, "err", err)
			return fmt.Errorf("%w: %v", ErrDenied, err)
		}
		if errors.Is(err, errSessionEnded) {
			n = 0 // lost the lock: campaign again at once, with a new session
		} else {
			n++
		}
		l.opts.Logger.Warn("leader election: campaigning again", "key", l.lockKey(), "name", l.opts.Name, "err", err)
		if !backoff.Sleep(ctx, backoff.Delay(l.opts.BackoffMin, l.opts.BackoffMax, n)) {
			return nil
		}
	}
}

var errSessionEnded = errors.New("session ended")

// denied reports whether Consul refused a request for lack of permission.
func denied(err error) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.Code == http.StatusForbidden ||
		err != nil && strings.Contains(err.Error(), "Permission denied")
}

func (l *ConsulLock) lockKey() string            { return l.opts.Key + "/leader" }
func (l *ConsulLock) epochKey(job string) string { return l.opts.Key + "/epoch/" + job }

func (l *ConsulLock) setLease(ls *lease) {
	if old := l.lease.Swap(ls); (old == nil) != (ls == nil) {
		if ls != nil {
			l.holder.Store(l.opts.Name)
			l.opts.Logger.Info("leader election: leading", "key", l.lockKey(), "name", l.opts.Name)
		} else {
			l.holder.Store("") // unknown until the lock is read again: not this copy
			l.opts.Logger.Warn("leader election: no longer leading", "key", l.lockKey(), "name", l.opts.Name)
		}
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
}

// campaign makes a session and holds the lock with it as long as it can.
// It returns when the session ends (errSessionEnded) or Consul fails.
func (l *ConsulLock) campaign(ctx context.Context) error {
	ttl := l.opts.SessionTTL
	q := (&api.QueryOptions{}).WithContext(ctx)
	w := (&api.WriteOptions{}).WithContext(ctx)
	// The check belongs to a service of its own: a node check that turns
	// critical would fail every service on the node, collectors included.
	reg := &api.AgentServiceRegistration{ID: l.checkID, Name: LockService, Meta: map[string]string{"key": l.opts.Key, "name": l.opts.Name},
		Check: &api.AgentServiceCheck{CheckID: l.checkID, TTL: l.opts.CheckTTL.String(), Status: api.HealthPassing,
			Notes:                          "passed by the promshard copy with every session renewal; critical when it stops answering",
			DeregisterCriticalServiceAfter: lockReap.String()}}
	if err := l.c.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("register the lock check: %w", err)
	}
	if err := l.c.Agent().UpdateTTLOpts(l.checkID, "", api.HealthPassing, q); err != nil {
		return fmt.Errorf("pass the lock check: %w", err)
	}
	sid, _, err := l.c.Session().Create(&api.SessionEntry{Name: "promshard " + l.opts.Name, TTL: ttl.String(),
		LockDelay: l.opts.LockDelay, Behavior: api.SessionBehaviorRelease,
		NodeChecks: []string{"serfHealth"}, ServiceChecks: []api.ServiceCheck{{ID: l.checkID}}}, w)
	if err != nil {
		return fmt.Errorf("create a session: %w", err)
	}
	sctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel(nil)
		wg.Wait()
		l.setLease(nil)
		cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer stop()
		cw := (&api.WriteOptions{}).WithContext(cctx)
		_, _, _ = l.c.KV().Release(&api.KVPair{Key: l.lockKey(), Session: sid}, cw) // no lock delay after a release
		_, _ = l.c.Session().Destroy(sid, cw)
	}()
	wg.Go(func() { l.heartbeat(sctx, sid, cancel) })
	err = l.hold(sctx, sid)
	if c := context.Cause(sctx); c != nil && ctx.Err() == nil {
		return c
	}
	return err
}

// heartbeat renews the session and passes its check every third of the
// TTL. A session that Consul no longer knows ends the campaign; so does
// one not renewed for a whole TTL (Consul may be gone: the leader stops
// before Consul could give the lock to another).
func (l *ConsulLock) heartbeat(ctx context.Context, sid string, end context.CancelCauseFunc) {
	ttl := l.opts.CheckTTL
	last := time.Now()
	tick.Every[struct{}](ctx, ttl/3, nil, func() bool {
		if time.Since(last) >= ttl {
			end(fmt.Errorf("%w: not renewed for %v", errSessionEnded, time.Since(last).Round(time.Second)))
			return false
		}
		rctx, cancel := context.WithTimeout(ctx, ttl/3)
		err := l.c.Agent().UpdateTTLOpts(l.checkID, "", api.HealthPassing, (&api.QueryOptions{}).WithContext(rctx))
		var se *api.SessionEntry
		if err == nil {
			se, _, err = l.c.Session().Renew(sid, (&api.WriteOptions{}).WithContext(rctx))
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return false
		case err != nil:
			l.opts.Logger.Warn("leader election: renewing the session failed", "name", l.opts.Name, "err", err)
		case se == nil:
			end(fmt.Errorf("%w: Consul no longer knows session %s", errSessionEnded, sid))
			return false
		default:
			last = time.Now()
		}
		return true
	})
}

// hold takes the lock when it is free and leads while the key names this
// session, until ctx ends. A failed read is retried with backoff; a leader
// stays one meanwhile, as its session may well be valid (the heartbeat
// ends a session it cannot renew, and every write is checked anyway).
func (l *ConsulLock) hold(ctx context.Context, sid string) error {
	var index uint64
	for fails := 0; ctx.Err() == nil; {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Minute, RequireConsistent: true}).WithContext(ctx)
		pair, meta, err := l.c.KV().Get(l.lockKey(), q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			fails++
			l.opts.Logger.Warn("leader election: reading the lock failed", "key", l.lockKey(), "err", err)
			index = 0
			backoff.Sleep(ctx, backoff.Delay(l.opts.BackoffMin, l.opts.BackoffMax, fails))
			continue
		}
		fails = 0
		if meta.LastIndex < index || meta.LastIndex == 0 {
			index = 0 // an index that went back or is not positive: start over
		} else {
			index = meta.LastIndex
		}
		holder := ""
		if pair != nil && pair.Session != "" {
			var v lockValue
			_ = json.Unmarshal(pair.Value, &v)
			holder = cmp.Or(v.Name, pair.Session)
		}
		l.holder.Store(holder)
		switch {
		case pair != nil && pair.Session == sid:
			if !l.Leading() {
				l.setLease(&lease{session: sid})
			}
		case pair != nil && pair.Session != "":
			l.setLease(nil) // another holds it: wait for a change
		default:
			l.setLease(nil)
			v, _ := json.Marshal(lockValue{Name: l.opts.Name, Since: time.Now().UTC()})
			ok, _, err := l.c.KV().Acquire(&api.KVPair{Key: l.lockKey(), Value: v, Session: sid}, (&api.WriteOptions{}).WithContext(ctx))
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("take the lock: %w", err)
			}
			index = 0 // read again at once: taken, or someone was quicker, or a lock delay is in force
			if !ok {
				backoff.Sleep(ctx, lockRetry)
			}
		}
	}
	return nil
}

// Check asks Consul whether this copy holds the lock right now. It returns
// nil only then; [ErrNotLeader] when it does not (it then stops leading),
// and Consul's error when Consul cannot tell. A leader calls it
// immediately before each write and each reload batch.
func (l *ConsulLock) Check(ctx context.Context) error {
	ls := l.lease.Load()
	if ls == nil {
		return ErrNotLeader
	}
	_, err := l.txn(ctx, ls, api.TxnOps{})
	return err
}

// txn runs ops after a check that the lease's session holds the lock,
// atomically.
func (l *ConsulLock) txn(ctx context.Context, ls *lease, ops api.TxnOps) (*api.TxnResponse, error) {
	all := append(api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: l.lockKey(), Session: ls.session}}}, ops...)
	ok, resp, _, err := l.c.Txn().Txn(all, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("elect: check the lock: %w", err)
	}
	if ok {
		return resp, nil
	}
	for _, e := range resp.Errors {
		if e.OpIndex == 0 {
			if l.lease.Load() == ls {
				l.setLease(nil)
			}
			return nil, fmt.Errorf("%w: the lock %s is not held by session %s", ErrNotLeader, l.lockKey(), ls.session)
		}
	}
	return nil, fmt.Errorf("elect: transaction failed: %v", resp.Errors)
}

// Publish records e as job e.Job's next epoch, numbered one above the last
// published, in one transaction with the check that this copy holds the
// lock: it succeeds only on the leader, and two leaders can never publish
// the same number. It returns e as published (Epoch, Leader and Time set).
func (l *ConsulLock) Publish(ctx context.Context, e Epoch) (Epoch, error) {
	ls := l.lease.Load()
	if ls == nil {
		return Epoch{}, ErrNotLeader
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, index, err := l.published(ctx, e.Job, true)
	var bad *corruptEpoch
	switch {
	case errors.As(err, &bad):
		// Unreadable data where the epoch should be must not stop every
		// write: it is replaced, and the numbers keep increasing, for
		// each epoch published there was at most its key's modify index.
		l.corrupt.Add(1)
		l.opts.Logger.Error("leader election: the published epoch is unreadable; replacing it", "key", bad.key,
			"modify_index", index, "err", bad.err)
		prev = Epoch{Epoch: index}
	case err != nil:
		return Epoch{}, err
	}
	e.Epoch = prev.Epoch + 1
	e.Leader, e.Time = l.opts.Name, time.Now().UTC()
	v, err := json.Marshal(e)
	if err != nil {
		return Epoch{}, err
	}
	// The check of the lock and the compare-and-set on the epoch's index
	// are one transaction: nobody published in between, and we lead.
	if _, err := l.txn(ctx, ls, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: l.epochKey(e.Job), Value: v, Index: index}}}); err != nil {
		return Epoch{}, err
	}
	return e, nil
}

// Published reads the last epoch published for job; the zero Epoch when
// none was.
func (l *ConsulLock) Published(ctx context.Context, job string) (Epoch, error) {
	e, _, err := l.published(ctx, job, false)
	return e, err
}

func (l *ConsulLock) published(ctx context.Context, job string, consistent bool) (Epoch, uint64, error) {
	pair, _, err := l.c.KV().Get(l.epochKey(job), (&api.QueryOptions{RequireConsistent: consistent}).WithContext(ctx))
	if err != nil {
		return Epoch{}, 0, fmt.Errorf("elect: read the epoch of job %q: %w", job, err)
	}
	if pair == nil {
		return Epoch{}, 0, nil
	}
	var e Epoch
	if err := json.Unmarshal(pair.Value, &e); err != nil {
		return Epoch{}, pair.ModifyIndex, &corruptEpoch{key: pair.Key, err: err}
	}
	return e, pair.ModifyIndex, nil
}

// corruptEpoch is an epoch key whose data cannot be read.
type corruptEpoch struct {
	key string
	err error
}

func (e *corruptEpoch) Error() string {
	return fmt.Sprintf("elect: the epoch at %s is unreadable: %v", e.key, e.err)
}
func (e *corruptEpoch) Unwrap() error { return e.err }

// Replaced counts the unreadable epochs this lock replaced when it
// published.
func (l *ConsulLock) Replaced() uint64 { return l.corrupt.Load() }
