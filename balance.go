package promshard

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// BalanceBy is what a job balances its collectors by ([Balance.By]).
type BalanceBy string

// What a job balances by.
const (
	BalanceByCount  BalanceBy = "count"
	BalanceBySeries BalanceBy = "series"
)

// String is the name, as a config writes it.
func (b BalanceBy) String() string { return string(b) }

// Defaults and floors of [Balance].
const (
	defaultBalanceInterval = time.Minute
	// defaultSettle is how long a collector must stay above its bound
	// before targets move for load: longer than a deploy or a scrape
	// failure, shorter than a capacity problem may last.
	defaultSettle          = 15 * time.Minute
	defaultMaxMoveFraction = 0.1
)

// MaxSeriesMeta is the collector's Consul service meta key (else node
// meta, or meta of a static member) that caps its series, over
// Balance.MaxSeries.
const MaxSeriesMeta = "max_series"

// Balance is how a job balances its collectors: by target count (the
// default), or by measured series, each target costing the most samples one
// scrape of it yielded (after metric relabelling) over the last Window.
//
// By series, the decider (the only copy in central mode, the leader with
// Options.Elector) reads the collectors every Interval. Targets move for
// load only when a collector has stayed above its bound ((1+Epsilon) times
// its weight's share of the total, or its cap) for Settle, and then at most
// MaxMoveFraction of the targets per reshard: a momentary spike moves
// nothing, and a heavy target never hops around. A collector that dies
// moves its targets at once, with the costs in use. The decider publishes
// the cost table it balanced with in Options.Store; standbys and copies in
// self mode read that table rather than the collectors, so every copy
// computes the same assignment. A copy in self mode without a Store
// balances by count and says so at start.
type Balance struct {
	// By is BalanceByCount ("" too) or BalanceBySeries.
	By BalanceBy
	// Epsilon is how far above its share a collector may go; zero means
	// [shard.DefaultEpsilon] (10 %).
	Epsilon float64
	// Settle is how long a collector stays above its bound before targets
	// move for load; zero means 15 minutes.
	Settle time.Duration
	// MaxMoveFraction bounds the targets that move for load in one
	// reshard, as a fraction of all (0 < f ≤ 1); zero means 0.1.
	MaxMoveFraction float64
	// Interval is how often costs are read; zero means a minute, and at
	// least a second. Window is how far back a target's most series count
	// ([audit.DefaultSeriesWindow] when zero; at least 10 seconds).
	Interval, Window time.Duration
	// Capacity caps the collectors' series.
	Capacity Capacity
	// IsolateAbove gives a target whose measured series are above it a
	// collector of its own (shard.Options.IsolateAbove); zero means above
	// every collector's cap, when all have one: a target no collector can
	// hold is isolated rather than left unplaced.
	IsolateAbove uint64
	// Costs reads what targets cost; nil means the collectors' Prometheus
	// API ([audit.Auditor.Series], with Options.Audit's client when set).
	Costs CostReader
}

// Capacity caps the collectors' series (By series only). A cap is never
// exceeded: when the survivors of a failure cannot take a dead collector's
// targets within their caps, the targets that do not fit are left
// unplaced (scraped by nobody; logged, counted in
// promshard_unplaced_targets and reported as orphans by the audit) rather
// than pushing the survivors into an out-of-memory cascade, unless
// Overcommit gives them their usual collectors anyway. A cap is what a
// user sets to say "never more", so refusing is the default: an
// unscraped target is visible, where an OOM takes everything down. A
// single target above every cap is the exception: it is isolated on a
// collector of its own (Balance.IsolateAbove), never left unplaced.
type Capacity struct {
	// MaxSeries caps every collector (a collector's MaxSeriesMeta meta
	// overrides it); zero means no cap.
	MaxSeries  uint64
	Overcommit bool
}

// CostReader reads what each target of a scrape pool costs, by address,
// from the collectors that scrape it; [audit.Auditor] is one. It may return
// costs with an error when some collectors did not answer.
type CostReader interface {
	Series(ctx context.Context, collectors []audit.Collector, pool string, window time.Duration) (map[string]uint64, error)
}

// The floors of Balance.Interval and Balance.Window.
const (
	minBalanceInterval = time.Second
	minBalanceWindow   = 10 * time.Second
)

func (b Balance) validate() error {
	switch {
	case b.By != "" && b.By != BalanceByCount && b.By != BalanceBySeries:
		return fmt.Errorf("Job.Balance.By %q: want %s or %s", b.By, BalanceByCount, BalanceBySeries)
	case b.Epsilon < 0 || b.Epsilon > 10 || math.IsNaN(b.Epsilon):
		return fmt.Errorf("Job.Balance.Epsilon %v: want 0 (the default, %v) to 10", b.Epsilon, shard.DefaultEpsilon)
	case b.MaxMoveFraction < 0 || b.MaxMoveFraction > 1 || math.IsNaN(b.MaxMoveFraction):
		return fmt.Errorf("Job.Balance.MaxMoveFraction %v: want 0 (the default, %v) to 1", b.MaxMoveFraction, defaultMaxMoveFraction)
	case b.Settle < 0 || b.Interval < 0 || b.Window < 0:
		return fmt.Errorf("Job.Balance: Settle %v, Interval %v, Window %v: must not be negative", b.Settle, b.Interval, b.Window)
	case b.Interval != 0 && b.Interval < minBalanceInterval:
		// Each read is a range query to every collector.
		return fmt.Errorf("Job.Balance.Interval %v: want at least %v (each read queries every collector)", b.Interval, minBalanceInterval)
	case b.Window != 0 && b.Window < minBalanceWindow:
		return fmt.Errorf("Job.Balance.Window %v: want at least %v (a target's series over a few scrapes)", b.Window, minBalanceWindow)
	case b.By != BalanceBySeries && (b.Capacity != Capacity{}):
		return fmt.Errorf("Job.Balance.Capacity %+v: caps series, so By must be %s, not %q", b.Capacity, BalanceBySeries, b.By)
	}
	return nil
}

// costTable is the cost table a job places with: by the hash of each
// target's address (shard.Options.Costs), and its fingerprint.
type costTable struct {
	costs  map[uint64]uint64
	placed *shard.Costs // costs, as Assign reads them
	key    uint64
}

// newCostTable is the table of costs, whose published form is enc.
func newCostTable(costs map[uint64]uint64, enc []byte) *costTable {
	return &costTable{costs: costs, placed: shard.NewCosts(costs), key: xxhash.Sum64(enc) | 1}
}

// encodeCosts is the published form of a cost table: a version byte, the
// number of entries, then the hashes in order, each as the varint of its
// distance from the one before, followed by the varint of its cost.
func encodeCosts(costs map[uint64]uint64) []byte {
	hs := slices.Sorted(maps.Keys(costs))
	out := binary.AppendUvarint(make([]byte, 1, 10+len(hs)*12), uint64(len(hs)))
	out[0] = 1
	var last uint64
	for _, h := range hs {
		out = binary.AppendUvarint(out, h-last)
		out = binary.AppendUvarint(out, costs[h])
		last = h
	}
	return out
}

func decodeCosts(b []byte) (map[uint64]uint64, error) {
	if len(b) == 0 || b[0] != 1 {
		return nil, errors.New("cost table: not version 1")
	}
	n, i := binary.Uvarint(b[1:])
	if i <= 0 || n > uint64(len(b)) {
		return nil, errors.New("cost table: bad length")
	}
	i++
	out := make(map[uint64]uint64, n)
	var h uint64
	for range n {
		d, k := binary.Uvarint(b[i:])
		if k <= 0 {
			return nil, fmt.Errorf("cost table: cut or bad at byte %d", i)
		}
		c, m := binary.Uvarint(b[i+k:])
		if m <= 0 {
			return nil, fmt.Errorf("cost table: cut or bad at byte %d", i+k)
		}
		i += k + m
		h += d
		out[h] = c
	}
	if i != len(b) {
		return nil, fmt.Errorf("cost table: %d bytes after its %d entries", len(b)-i, n)
	}
	return out, nil
}

// balancer is a job's balance by series: the cost table in use, the one
// the tick chose for the next reshard, and the tick's own state. The tick
// runs in a goroutine of its own; the loop adopts and reads the table.
type balancer struct {
	job, pool string // the job, and the collectors' scrape job
	cfg       Balance
	ring      shard.Kind
	opts      shard.Options
	reader    CostReader
	store     BlobStore // nil: no published table
	m         *metrics
	log       *slog.Logger

	mu      sync.Mutex
	costs   *costTable        // in use; nil while placing by count
	costSum string            // checksum of the published table in costs, as read
	next    map[uint64]uint64 // costs the tick chose, for the next reshard
	partial bool              // costs holds only part of the last next: the tick goes on at once
	badCap  map[string]bool   // collector and max_series meta that is not a number, logged

	overSince time.Time // since when a collector is above its bound; tick only
	costTerm  uint64    // the leadership term whose table was read; tick only
}

// blobName is the name of a job's cost table in the BlobStore.
func (b *balancer) blobName() string { return "costs/" + b.job }

// table is the cost table in use; nil while the job places by count.
func (b *balancer) table() *costTable {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.costs
}

// inherit takes over the cost table prev places with. Nil-safe on both
// sides.
func (b *balancer) inherit(prev *balancer) {
	if b == nil || prev == nil {
		return
	}
	prev.mu.Lock()
	costs, sum := prev.costs, prev.costSum
	prev.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.costs == nil {
		b.costs, b.costSum = costs, sum
	}
}

// placement is the job's shard options with costs: the job's bound and
// the members' caps.
func (b *balancer) placement(members []watch.Member, costs *shard.Costs) shard.Options {
	bc, opts := b.cfg, b.opts
	opts.Costs, opts.Epsilon, opts.Overcommit, opts.IsolateAbove = costs, bc.Epsilon, bc.Capacity.Overcommit, bc.IsolateAbove
	opts.Capacity = map[string]uint64{}
	for _, m := range members {
		c := bc.Capacity.MaxSeries
		if v := m.Label(MaxSeriesMeta); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err == nil {
				c = n
			} else if b.firstBadCap(m.ID, v) {
				b.log.Error("collector meta max_series is not a number; using the job's", "job", b.job,
					"collector", m.ID, "max_series", v, "default", c)
			}
		}
		if c > 0 {
			opts.Capacity[m.ID] = c
		}
	}
	return opts
}

// firstBadCap reports whether a collector's max_series meta that is not a
// number is new, to log it once.
func (b *balancer) firstBadCap(id, v string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := id + "\x00" + v
	first := !b.badCap[k]
	b.badCap[k] = true
	return first
}

// adopt makes the table the tick chose the one in use, moving at most
// MaxMoveFraction of the targets for it (a part of the table otherwise),
// and publishes it when publish is set (an elected leader). It runs in the
// reshard of a copy that decides, before the assignment, with that
// reshard's members and targets.
func (b *balancer) adopt(ctx context.Context, publish bool, sms []shard.Member, members []watch.Member, groups []*tstore.Group) error {
	b.mu.Lock()
	next := b.next
	b.next = nil
	b.mu.Unlock()
	if next == nil {
		return nil
	}
	ring, err := shard.New(b.ring, sms)
	if err != nil {
		return err
	}
	var cur map[uint64]uint64
	opts := b.placement(members, nil)
	if tab := b.table(); tab != nil {
		cur, opts.Costs = tab.costs, tab.placed
	}
	table, moved, total, err := limitMoves(ring, groups, opts, cur, next, cmp.Or(b.cfg.MaxMoveFraction, defaultMaxMoveFraction))
	if err != nil {
		return err
	}
	enc := encodeCosts(table)
	tab := newCostTable(table, enc)
	if publish && b.store != nil {
		if err := b.store.PublishBlob(ctx, b.blobName(), enc); err != nil {
			return fmt.Errorf("publish the cost table: %w", err)
		}
	}
	b.mu.Lock()
	b.costs, b.partial = tab, len(table) != len(next) || !maps.Equal(table, next)
	b.mu.Unlock()
	b.m.costTables.WithLabelValues(b.job).Inc()
	b.log.Info("balance: new costs in use", "job", b.job, "moved", moved, "targets", total,
		"costs", len(table), "of_measured", len(next))
	return nil
}

// limitMoves returns the part of next whose assignment moves at most
// fraction of the targets away from the assignment with the table in use
// (cur, which opts.Costs holds; by count when nil), with its moves and the targets: the
// changed costs are taken largest change first, as many as the limit
// allows. The smallest step is taken even when it moves more: from count
// to costs with none changed (the bound alone), or one changed cost.
func limitMoves(ring shard.Ring, groups []*tstore.Group, opts shard.Options, cur, next map[uint64]uint64,
	fraction float64) (map[uint64]uint64, int, int, error) {
	base, err := shard.AssignCompact(ring, groups, opts)
	if err != nil {
		return nil, 0, 0, err
	}
	limit := int(fraction * float64(base.Targets))
	moves := func(t map[uint64]uint64) (int, error) {
		o := opts
		o.Costs = shard.NewCosts(t)
		a, err := shard.AssignCompact(ring, groups, o)
		if err != nil {
			return 0, err
		}
		return shard.Compare(base, a).Moved, nil
	}
	n, err := moves(next)
	if err != nil || n <= limit {
		return next, n, base.Targets, err
	}
	type change struct{ h, d uint64 }
	var changes []change
	for h, c := range next {
		if old, ok := cur[h]; !ok || old != c {
			changes = append(changes, change{h, max(c, old) - min(c, old)})
		}
	}
	slices.SortFunc(changes, func(a, b change) int {
		return cmp.Or(cmp.Compare(b.d, a.d), cmp.Compare(a.h, b.h))
	})
	part := func(k int) map[uint64]uint64 { // next, with the changes after the k-th undone
		t := maps.Clone(next)
		for _, c := range changes[k:] {
			if old, ok := cur[c.h]; ok {
				t[c.h] = old
			} else {
				delete(t, c.h)
			}
		}
		return t
	}
	best := 0 // the old costs, for the targets still in the pool
	if n, err = moves(part(0)); err != nil {
		return nil, 0, 0, err
	}
	n0 := n
	for lo, hi := 1, len(changes)-1; lo <= hi; { // the most changes within the limit (moves grow with them, if not strictly)
		mid := lo + (hi-lo)/2
		m, err := moves(part(mid))
		if err != nil {
			return nil, 0, 0, err
		}
		if m <= limit {
			lo, best, n = mid+1, mid, m
		} else {
			hi = mid - 1
		}
	}
	if best == 0 && n0 == 0 && cur != nil { // not even one change fits: take the smallest step, or none is ever taken
		best = 1
		if n, err = moves(part(1)); err != nil {
			return nil, 0, 0, err
		}
	}
	return part(best), n, base.Targets, nil
}

// tick is the job's periodic look at costs. A copy that does not decide
// reads the published table; the decider reads the collectors, and when a
// collector has stayed above its bound for Settle, hands the new costs to
// the next reshard. term is the leadership term (elected jobs), snap the
// job's state and collectors those to read. It returns the reason to
// reshard, if any.
func (b *balancer) tick(ctx context.Context, decides, elected bool, term uint64, snap Snapshot, collectors []audit.Collector) Reason {
	if !decides {
		return b.readPublished(ctx)
	}
	var r Reason
	if elected && b.costTerm != term {
		r = b.readPublished(ctx) // a new leader starts from the table in force
		b.costTerm = term
	}
	if snap.Assignment == nil {
		return r
	}
	got, err := b.reader.Series(ctx, collectors, b.pool, b.cfg.Window)
	if err != nil {
		if ctx.Err() != nil {
			return r
		}
		b.log.Warn("balance: reading series failed", "job", b.job, "err", err)
		if len(got) == 0 {
			return r
		}
	}
	var cur map[uint64]uint64
	if tab := b.table(); tab != nil {
		cur = tab.costs
	}
	next := measured(snap.Assignment, cur, got)
	over := shard.Overloaded(snap.Assignment, b.placement(snap.Members, shard.NewCosts(next)))
	b.m.overloaded.WithLabelValues(b.job).Set(float64(len(over)))
	now := time.Now()
	if len(over) == 0 {
		b.overSince = time.Time{}
		b.mu.Lock()
		b.partial = false
		b.mu.Unlock()
		return r
	}
	settle := cmp.Or(b.cfg.Settle, defaultSettle)
	if b.overSince.IsZero() {
		b.overSince = now
		b.log.Info("balance: collectors above their bound; targets move if they stay there", "job", b.job,
			"collectors", over, "settle", settle)
	}
	b.mu.Lock()
	partial := b.partial
	b.mu.Unlock()
	if (now.Sub(b.overSince) < settle && !partial) || (cur != nil && maps.Equal(cur, next)) {
		return r
	}
	b.mu.Lock()
	b.next = next
	b.mu.Unlock()
	b.overSince = time.Time{} // what is above the bound after this must settle again
	return r | reasonBalance
}

// measured is the cost table for a's targets: those read, else those in
// the table in use; the others stay unknown (the median).
func measured(a *shard.Assignment, cur map[uint64]uint64, got map[string]uint64) map[uint64]uint64 {
	out := map[uint64]uint64{}
	add := func(addr string) {
		h := shard.Hash(addr)
		if c, ok := got[addr]; ok {
			out[h] = c
		} else if c, ok := cur[h]; ok {
			out[h] = c
		}
	}
	for _, gs := range a.Groups {
		for _, g := range gs {
			for _, addr := range g.Targets {
				add(addr)
			}
		}
	}
	for _, addr := range a.Unplaced {
		add(addr)
	}
	return out
}

// readPublished takes the published cost table when there is a store and
// the table changed, and returns the reason to reshard then.
func (b *balancer) readPublished(ctx context.Context) Reason {
	if b.store == nil {
		return 0
	}
	data, sum, err := b.store.ReadBlob(ctx, b.blobName())
	if err != nil || sum == "" {
		if err != nil && ctx.Err() == nil {
			b.log.Warn("balance: reading the published cost table failed", "job", b.job, "err", err)
		}
		return 0
	}
	b.mu.Lock()
	same := sum == b.costSum
	b.mu.Unlock()
	if same {
		return 0
	}
	costs, err := decodeCosts(data)
	if err != nil {
		b.log.Error("balance: the published cost table is unreadable", "job", b.job, "sum", sum, "err", err)
		return 0
	}
	b.mu.Lock()
	b.costs, b.costSum = newCostTable(costs, data), sum
	b.mu.Unlock()
	b.log.Info("balance: the published cost table is in use", "job", b.job, "costs", len(costs))
	return reasonCosts
}

// collectorsNeeded is how many collectors the job's measured series need
// within the cap, R included, with headroom for the biggest loss
// (shard.CollectorsNeeded). Zero when the series or the cap are unknown.
// The assignment's costs count each replica, so R is in them.
func collectorsNeeded(asg *shard.Assignment, capacity uint64) int {
	if asg == nil || asg.Cost == nil {
		return 0
	}
	return shard.CollectorsNeeded(assignedLoad(asg), capacity, asg.Members)
}

// assignedLoad is the total cost of an assignment's members.
func assignedLoad(asg *shard.Assignment) uint64 {
	var load uint64
	for _, m := range asg.Members {
		load += asg.Cost[m.ID]
	}
	return load
}
