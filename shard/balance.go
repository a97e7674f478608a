package shard

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// DefaultEpsilon is how far above its share of the total cost a member may
// go when Options.Costs places targets: 10 %.
const DefaultEpsilon = 0.1

// balancer places targets by cost with bounded loads (consistent hashing
// with bounded loads, after Mirrokni, Thorup and Zadimoorghaddam, over
// costs instead of counts): targets are taken in key-hash order, and each
// goes to the first members of its own preference order
// that stay within (1+ε) times their weight's share of the total cost, and
// within their capacity. Every quantity is an integer, so every machine
// computes the same result.
type balancer struct {
	r      Ring
	sp     *spread
	reps   int
	bound  []uint64 // per member: (1+ε) × its share of the total cost
	limit  []uint64 // per member: its capacity (MaxUint64 when none)
	load   []uint64
	owners [][]int32 // per merged group: reps owners per item, -1 when unplaced
	over   bool
	costs  *Costs
	def    uint64 // the cost of a target whose cost is not known
}

// costOf is the cost of the target whose address hashes to h.
func (b *balancer) costOf(h uint64) uint64 {
	if c, ok := b.costs.Lookup(h); ok {
		return c
	}
	return b.def
}

// Costs is a cost table for Options.Costs: each target's cost (its series,
// say), keyed by the hash of its address, sorted by hash. It is built once
// per cost update ([NewCosts], [CostTable]) and read on every assignment
// in one walk, in key-hash order, where look-ups in a map of the same size
// would miss the cache.
type Costs struct {
	e []costEntry
}

type costEntry struct{ hash, cost uint64 }

// NewCosts makes a cost table of costs keyed by address hash ([Hash]).
func NewCosts(byHash map[uint64]uint64) *Costs {
	c := &Costs{e: make([]costEntry, 0, len(byHash))}
	for h, v := range byHash {
		c.e = append(c.e, costEntry{h, v})
	}
	c.e, _ = radixSort(c.e, nil, nil, func(e costEntry) uint64 { return e.hash },
		func(a, b costEntry) int { return cmp.Compare(a.hash, b.hash) })
	return c
}

// CostTable makes a cost table of costs keyed by address.
func CostTable(byAddress map[string]uint64) *Costs {
	byHash := make(map[uint64]uint64, len(byAddress))
	for a, c := range byAddress {
		byHash[Hash(a)] = c
	}
	return NewCosts(byHash)
}

// Len is the number of costs in the table (0 for nil).
func (c *Costs) Len() int {
	if c == nil {
		return 0
	}
	return len(c.e)
}

// Lookup returns the cost of the target whose address hashes to h.
func (c *Costs) Lookup(h uint64) (uint64, bool) {
	if c == nil {
		return 0, false
	}
	i, ok := slices.BinarySearchFunc(c.e, h, func(e costEntry, h uint64) int { return cmp.Compare(e.hash, h) })
	if !ok {
		return 0, false
	}
	return c.e[i].cost, true
}

// unknownCost marks a target without a cost until the median is known.
const unknownCost = math.MaxUint64

// newBalancer chooses every target's owners; groups[k] are the sorted items
// of merged group k.
func newBalancer(r Ring, sp *spread, groups [][]item, reps int, opts Options) *balancer {
	byLabel := opts.keyed()
	members := r.Members()
	b := &balancer{r: r, sp: sp, reps: reps, load: make([]uint64, len(members)), owners: make([][]int32, len(groups)),
		over: opts.Overcommit}
	n := 0
	for _, items := range groups {
		n += len(items)
	}
	type ref struct {
		cost, hash uint64 // hash: the key hash, which places the target
		k, i       int32
		prefer     int32 // the domain its first replica prefers, or -1
	}
	order := make([]ref, 0, n)
	for k, items := range groups {
		b.owners[k] = make([]int32, len(items)*reps)
		for i, it := range items {
			if it.ov >= 0 { // placed on its own (an override), outside the balance
				continue
			}
			h := it.hash // the address's hash, unless a key label placed it
			if byLabel {
				h = Hash(it.addr)
			}
			order = append(order, ref{cost: h, hash: it.hash, k: int32(k), i: int32(i), prefer: it.prefer}) // cost: its key, for now
		}
	}
	// Arrival order is key-hash order, as in consistent hashing with
	// bounded loads: heaviest-first packs tighter but cascades when a
	// member leaves (moved/optimum 1.78 against 1.30 in BenchmarkBalance).
	// In that order the costs are read in one walk of the sorted table, not
	// looked up at random (when a key label placed the targets, in the
	// order of their addresses' hashes first).
	byHash := func(a, b ref) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.k, b.k), cmp.Compare(a.i, b.i))
	}
	if byLabel {
		order, _ = radixSort(order, nil, nil, func(r ref) uint64 { return r.cost }, func(a, b ref) int {
			return cmp.Or(cmp.Compare(a.cost, b.cost), byHash(a, b))
		})
	} else {
		order, _ = radixSort(order, nil, nil, func(r ref) uint64 { return r.hash }, byHash)
	}
	known := make([]uint64, 0, n)
	var table []costEntry
	if opts.Costs != nil {
		table = opts.Costs.e
	}
	for j := range order {
		h := order[j].cost
		for len(table) > 0 && table[0].hash < h {
			table = table[1:]
		}
		if len(table) > 0 && table[0].hash == h {
			order[j].cost = table[0].cost
			known = append(known, table[0].cost)
		} else {
			order[j].cost = unknownCost
		}
	}
	if byLabel {
		slices.SortFunc(order, byHash)
	}
	// Unknown costs are the median of the known ones in the pool.
	def := uint64(1)
	if len(known) > 0 {
		def = max(nth(known, len(known)/2), 1)
	}
	b.costs, b.def = opts.Costs, def
	// Every target's usual owners first, and the members' loads if they
	// keep them all: when none is above its bound that is the result
	// (nobody is ever passed over), and no target is placed twice.
	var total uint64
	var dst, buf, pref []int
	for j, o := range order {
		if o.cost == unknownCost {
			order[j].cost, o.cost = def, def
		}
		total += o.cost * uint64(reps)
		dst, buf = sp.preferring(r, o.hash, reps, o.prefer, dst[:0], buf)
		b.give(b.owners[o.k][int(o.i)*reps:int(o.i+1)*reps], dst, o.cost)
	}
	b.bound, b.limit = bounds(members, total, opts)
	usual := true
	for m := range members {
		usual = usual && b.load[m] <= b.bound[m] && b.load[m] <= b.limit[m]
	}
	if usual {
		return b
	}
	clear(b.load)
	for _, o := range order {
		out := b.owners[o.k][int(o.i)*reps : int(o.i+1)*reps]
		dst = dst[:0] // its usual owners, from the first pass
		for _, m := range out {
			if m >= 0 {
				dst = append(dst, int(m))
			}
		}
		dst, pref = b.place(o.hash, o.cost, o.prefer, dst, pref)
		b.give(out, dst, o.cost)
	}
	return b
}

// give records owners as a target's (out: its Replicas slots, -1 where
// none) and adds its cost to their loads.
func (b *balancer) give(out []int32, owners []int, cost uint64) {
	for x := range out {
		out[x] = -1
		if x < len(owners) {
			out[x] = int32(owners[x])
			b.load[owners[x]] += cost
		}
	}
}

// bounds are the members' bounds on their load, out of a total cost: (1+ε)
// times their weight's share, and their capacity (MaxUint64 when none).
func bounds(members []Member, total uint64, opts Options) (bound, limit []uint64) {
	var weights uint64
	for _, m := range members {
		weights += uint64(m.weight())
	}
	eps := opts.Epsilon
	if eps == 0 {
		eps = DefaultEpsilon
	}
	milli := uint64(math.Round(eps * 1000))
	bound, limit = make([]uint64, len(members)), make([]uint64, len(members))
	for i, m := range members {
		bound[i] = mulDiv(total, uint64(m.weight())*(1000+milli), weights*1000)
		limit[i] = math.MaxUint64
		if c, ok := opts.Capacity[m.ID]; ok && c > 0 {
			limit[i] = c
		}
	}
	return bound, limit
}

// Overloaded returns the IDs of a's members (sorted) that opts.Costs put
// above the bound [Assign] keeps (see Options.Costs): more than
// (1+Epsilon) times their weight's share of the total cost, or more than
// their Capacity. It judges a's placement under costs measured since, and
// changes nothing: a caller asks it whether new costs call for a new
// assignment. A target without a cost counts the median of those known,
// as in Assign; so do unplaced targets, once per missing replica.
func Overloaded(a *Assignment, opts Options) []string {
	var known []uint64
	cost := func(addr string) uint64 {
		c, ok := opts.Costs.Lookup(Hash(addr))
		if !ok {
			return unknownCost
		}
		known = append(known, c)
		return c
	}
	costs := make([][]uint64, len(a.Members)) // per member; unknown costs as unknownCost
	held := make(map[string]int, len(a.Unplaced))
	for _, addr := range a.Unplaced {
		held[addr] = 0
	}
	for i, m := range a.Members {
		for _, g := range a.Groups[m.ID] {
			for _, addr := range g.Targets {
				costs[i] = append(costs[i], cost(addr))
				if n, ok := held[addr]; ok {
					held[addr] = n + 1
				}
			}
		}
	}
	unplaced := make([]uint64, len(a.Unplaced))
	for k, addr := range a.Unplaced {
		unplaced[k] = cost(addr)
	}
	def := uint64(1)
	if len(known) > 0 {
		def = max(nth(known, len(known)/2), 1)
	}
	or := func(c uint64) uint64 {
		if c == unknownCost {
			return def
		}
		return c
	}
	load := make([]uint64, len(a.Members))
	var total uint64
	for i := range costs {
		for _, c := range costs[i] {
			load[i] += or(c)
		}
		total += load[i]
	}
	for k, c := range unplaced { // the replicas they lack count in the total
		total += or(c) * uint64(max(0, a.Replicas-held[a.Unplaced[k]]))
	}
	bound, limit := bounds(a.Members, total, opts)
	var out []string
	for i, m := range a.Members {
		if load[i] > bound[i] || load[i] > limit[i] {
			out = append(out, m.ID)
		}
	}
	return out
}

// fits reports whether member m can take cost: within its bound (unless
// loose) and its capacity.
func (b *balancer) fits(m int, cost uint64, loose bool) bool {
	l := b.load[m] + cost
	return l <= b.limit[m] && (loose || l <= b.bound[m])
}

// place picks the owners of a target whose usual owners are dst: those
// when they all fit,
// else the first members of its preference order that fit, in distinct
// domains where it can; a member whose bound is reached is passed over
// only while another can take the target within its own, and a capacity
// is never exceeded (unless Overcommit, for what nobody can take).
func (b *balancer) place(hash, cost uint64, prefer int32, dst, pref []int) (owners, full []int) {
	if !slices.ContainsFunc(dst, func(m int) bool { return !b.fits(m, cost, false) }) {
		return dst, pref
	}
	n := len(b.r.Members())
	want := min(b.reps, b.sp.domains())
	if prefer >= 0 { // every member, those of the preferred domain first
		pref = b.r.Owners(hash, n, pref[:0])
		slices.SortStableFunc(pref, func(x, y int) int { return cmp.Compare(b2i(b.sp.dom[y] == prefer), b2i(b.sp.dom[x] == prefer)) })
		dst, _ = b.pick(pref, cost, want, false, dst[:0])
	}
	for k := min(n, 2*b.reps+6); prefer < 0; k = n { // the best few members first; all of them unless those do
		pref = b.r.Owners(hash, k, pref[:0])
		var spread int
		if dst, spread = b.pick(pref, cost, want, false, dst[:0]); len(dst) == b.reps && spread == want || k == n {
			break
		}
	}
	if len(dst) < b.reps {
		dst, _ = b.pick(pref, cost, want, true, dst[:0])
	}
	if len(dst) < b.reps && b.over { // nobody can take it within capacity: its usual owners do
		for _, m := range pref {
			if len(dst) < b.reps && !slices.Contains(dst, m) {
				dst = append(dst, m)
			}
		}
	}
	return dst, pref
}

// pick appends to dst, from pref, members that fit cost (within their
// bound unless loose): first up to want in distinct domains (spread says
// how many), then any.
func (b *balancer) pick(pref []int, cost uint64, want int, loose bool, dst []int) (picked []int, spread int) {
	for pass := range 2 {
		if pass == 1 {
			spread = len(dst)
		}
		for _, m := range pref {
			if len(dst) == b.reps || pass == 0 && len(dst) == want {
				break
			}
			if !slices.Contains(dst, m) && (pass == 1 || !b.sp.held(dst, m)) && b.fits(m, cost, loose) {
				dst = append(dst, m)
			}
		}
	}
	return dst, spread
}

// nth returns the k-th smallest of xs (reordering xs): quickselect with a
// median-of-three pivot, linear on average.
func nth(xs []uint64, k int) uint64 {
	lo, hi := 0, len(xs)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		p := max(min(xs[lo], xs[mid]), min(max(xs[lo], xs[mid]), xs[hi])) // median of three
		i, j := lo, hi
		for i <= j {
			for xs[i] < p {
				i++
			}
			for xs[j] > p {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return xs[k]
		}
	}
	return xs[k]
}

// mulDiv is a*b/c without overflow (MaxUint64 when the quotient does not
// fit).
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if c == 0 || hi >= c {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}

// validateBalance checks the balancing options.
func (o Options) validateBalance() error {
	if o.Epsilon < 0 || math.IsNaN(o.Epsilon) || o.Epsilon > 10 {
		return fmt.Errorf("shard: Options.Epsilon %v: want 0 (the default, %v) to 10", o.Epsilon, DefaultEpsilon)
	}
	return nil
}

// TargetLoad is one target's share of its member's load: its cost (measured
// series), and that cost as a fraction of the member's total.
type TargetLoad struct {
	Target string  `json:"target"`
	Cost   uint64  `json:"series"`
	Share  float64 `json:"share"`
}

// Heaviest lists, for each member of a, its n costliest targets under
// costs (keyed by address hash, as [Options.Costs]), costliest first, each
// with its share of the member's total. Targets without a cost are left
// out; a nil costs gives nil.
func Heaviest(a *Assignment, costs *Costs, n int) map[string][]TargetLoad {
	if a == nil || costs.Len() == 0 || n <= 0 {
		return nil
	}
	out := make(map[string][]TargetLoad, len(a.Groups))
	for id, gs := range a.Groups {
		var top []TargetLoad // the n costliest so far, costliest first
		var total uint64
		for _, g := range gs {
			for _, addr := range g.Targets {
				c, ok := costs.Lookup(Hash(addr))
				if !ok {
					continue
				}
				total += c
				if len(top) == n && c <= top[n-1].Cost {
					continue
				}
				i, _ := slices.BinarySearchFunc(top, c, func(l TargetLoad, c uint64) int { return cmp.Compare(c, l.Cost) })
				top = slices.Insert(top, i, TargetLoad{Target: addr, Cost: c})
				top = top[:min(len(top), n)]
			}
		}
		for i := range top {
			top[i].Share = float64(top[i].Cost) / float64(max(total, 1))
		}
		out[id] = top
	}
	return out
}

// b2i is 1 for true.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
