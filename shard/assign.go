package shard

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
)

// Group is a target group in the module's compact form: Source and Labels
// once, Targets the targets' addresses, Own a label set only for a target
// with labels besides __address__ (nil when there is none). It is the type
// of [Assignment.Groups]' entries, and of targets.Result.Groups and
// promshard.Snapshot.Groups, named here so that an embedder can name it.
// Its methods (Len, Target, Group, …) read it; treat it as read-only.
type Group = tstore.Group

// Options configures [Assign]. The zero value assigns every target to one
// member by its address.
type Options struct {
	// Replicas is the number of distinct members that scrape each target.
	// Zero means 1. When it exceeds the number of members every member gets
	// every target and [Assignment.Degraded] reports it.
	Replicas int
	// KeyLabel is the label whose value is hashed to place a target. Empty
	// means __address__. With another label (instance, say), targets that
	// share its value stay together. The value is looked up on the target,
	// then on its group; a target without it falls back to its address.
	KeyLabel model.LabelName
	// Costs, when set, balances by cost rather than by count: each
	// target's cost (its series, say), keyed by the hash of its address
	// (build it with [CostTable] or [NewCosts]); a target without one costs the median of
	// those known. Targets are taken in key-hash order,
	// and each goes to the first members of its preference order that stay
	// within (1+Epsilon) times their weight's share of the total cost (a
	// member is passed over only while another can take the target within
	// its own bound). When no member's natural share exceeds its bound the
	// result is exactly the count assignment's; a single target costlier
	// than the room left anywhere goes where there is room within capacity.
	Costs *Costs
	// Epsilon is the slack of the bound; zero means [DefaultEpsilon].
	Epsilon float64
	// Capacity bounds a member's total cost, by member ID (absent or 0:
	// none). It is never exceeded: a target that no member can take within
	// its capacity is left with fewer owners than Replicas, or none, and
	// listed in Assignment.Unplaced, unless Overcommit gives it its usual
	// owners anyway. Used with Costs.
	Capacity   map[string]uint64
	Overcommit bool
	// Placement, when set, is asked once for each target i of each input
	// group g before it is placed: it may drop the target (it is then
	// neither placed nor counted), place it by another key (its identity
	// after relabelling, say: targets with the same key share owners), or
	// name the failure domain its first replica prefers, or override its
	// owners ([Placement]). It must be a
	// function of g's labels and the target's alone, so that the result
	// still does not depend on the input's order. The written groups keep
	// the input's labels.
	Placement func(g *targetgroup.Group, i int) Placement
	// CompactPlacement is Placement over the groups in the module's
	// compact form (the Sharder's, which [AssignCompact] places); with it,
	// Placement is not asked.
	CompactPlacement func(g *tstore.Group, i int) Placement
	// IsolateAbove, with Costs, isolates every target whose known cost is
	// above it; zero means above the largest Capacity, when every member
	// has one (a target no member can hold). An isolated target (or one
	// whose Placement says Isolate) gets a member of its own: the first of
	// its preference order that no other isolated target holds, and no
	// other target is placed there (targets on it move away). At most all
	// members but one are given away; an isolated target that finds none
	// free shares the one that holds the fewest, where it hurts least.
	// Assignment.Isolated and Assignment.Crowded list them.
	IsolateAbove uint64
}

// Placement is how [Options.Placement] places one target. The zero value
// places it as without Placement.
type Placement struct {
	// Drop leaves the target out: not placed, not counted.
	Drop bool
	// Key, when not empty, is hashed to place the target instead of
	// KeyLabel's value (or its address).
	Key string
	// Zone, when not empty, is the failure domain ([Member.Domain]) whose
	// best-ranked member takes the target's first replica, when the ring
	// has a member there (and, balanced by cost, one with room); the other
	// replicas go to other domains as usual. Otherwise the ring decides.
	Zone string
	// Every places the target on every member (a singleton every shard
	// must scrape, say).
	Every bool
	// Pin, when not empty, is the ID of the member that is the target's
	// only owner. While no member has that ID the ring places the target as
	// any other (with Replicas and Zone), or, with PinStrict, nowhere (it is
	// then listed in Assignment.Unplaced).
	Pin       string
	PinStrict bool
	// Replicas, when above 0, is the target's own replica count instead
	// of Options.Replicas (at most the number of members).
	Replicas int
	// Isolate gives the target a member of its own (a heavy exporter):
	// see Options.IsolateAbove.
	Isolate bool
}

// override reports whether p changes how many owners the target has, or
// which: such targets are placed on their own, outside the balancer.
func (p Placement) override() bool { return p.Every || p.Pin != "" || p.Replicas > 0 || p.Isolate }

// Validate checks the options and names the bad field.
func (o Options) Validate() error {
	if o.Replicas < 0 {
		return fmt.Errorf("shard: Options.Replicas %d: must be at least 1", o.Replicas)
	}
	if o.KeyLabel != "" && !labels.ValidName(string(o.KeyLabel)) {
		return fmt.Errorf("shard: Options.KeyLabel %q: not a valid label name", o.KeyLabel)
	}
	return o.validateBalance()
}

// Assignment is the result of [Assign].
type Assignment struct {
	// Ring is the kind of ring that made the assignment.
	Ring Kind
	// Members are the ring's members, sorted by ID.
	Members []Member
	// RequestedReplicas is Options.Replicas (at least 1).
	RequestedReplicas int
	// Replicas is the replication actually achieved:
	// min(RequestedReplicas, len(Members)).
	Replicas int
	// Domains is the number of distinct failure domains among Members
	// (see [Member.Domain]); the replicas of a target share a domain only
	// when Domains < Replicas.
	Domains int
	// Targets is the number of input targets assigned.
	Targets int
	// Groups holds each member's target groups, keyed by member ID, in
	// the module's compact form (each target its address, a label set only
	// for one with labels of its own): [Assignment.GroupsOf] gives them as
	// [targetgroup.Group] values. Every member has an entry, empty (not
	// nil) when it has no targets, so that a writer can write an empty file
	// for it. Groups are sorted by source and labels, targets by key hash
	// and address; the order is stable. Groups share their Labels maps,
	// addresses and target label sets with the input: treat them as
	// read-only.
	Groups map[string][]*tstore.Group
	// Cost is each member's total cost, and Unplaced the addresses of the
	// targets placed on fewer than Replicas members because no member had
	// the capacity (both only with Options.Costs).
	Cost     map[string]uint64
	Unplaced []string
	// Isolated are the isolated targets (see Options.IsolateAbove), each
	// alone on its member; Crowded those that had to share one, as no
	// member was free. Both by address, sorted.
	Isolated []string
	Crowded  []string

	table ownerTable // every target's identity and owners, for Compare
}

// Degraded reports whether fewer replicas were placed than requested
// because there are fewer members.
func (a *Assignment) Degraded() bool { return a.Replicas < a.RequestedReplicas }

// Count returns the number of targets assigned to member id.
func (a *Assignment) Count(id string) int { return tstore.Count(a.Groups[id]) }

// GroupsOf returns member id's groups as [targetgroup.Group] values (a
// label set made for each target that is its address alone); nil for an
// ID that is not a member.
func (a *Assignment) GroupsOf(id string) []*targetgroup.Group {
	return tstore.Of(a.Groups, id)
}

// Key returns the value [Assign] hashes to place target t of a group with
// labels groupLabels, under the given key label ("" means __address__).
func Key(t, groupLabels model.LabelSet, keyLabel model.LabelName) string {
	return keyOf(t, string(t[model.AddressLabel]), groupLabels, keyLabel)
}

// keyOf is Key of a target by its own label set (nil when it has none)
// and its address.
func keyOf(own model.LabelSet, addr string, groupLabels model.LabelSet, keyLabel model.LabelName) string {
	if keyLabel != "" && keyLabel != model.AddressLabel {
		if v, ok := own[keyLabel]; ok && v != "" {
			return string(v)
		}
		if v, ok := groupLabels[keyLabel]; ok && v != "" {
			return string(v)
		}
	}
	return addr
}

// item is a target with its key hash, for sorting, and the failure domain
// its first replica prefers (an index into the spread's domains; -1: none).
type item struct {
	hash   uint64
	addr   string
	own    model.LabelSet // its label set when it has labels besides __address__
	prefer int32
	ov     int32 // index into the Assign's overrides, or -1
}

// labels is the item's whole label set.
func (it item) labels() model.LabelSet {
	if it.own != nil {
		return it.own
	}
	return model.LabelSet{model.AddressLabel: model.LabelValue(it.addr)}
}

// Assign places every target of groups on opts.Replicas distinct members of
// r, in distinct failure domains where it can (see [Member.Domain]). Each target is placed on its own (a big group is spread over all
// members) and keeps its group's labels and source, so the result written as
// file_sd gives Prometheus the labels it would have had.
//
// The result depends only on the ring's members and the set of targets, not
// on the order of groups or targets in the input. Groups with the same
// source and labels are merged. A target without __address__ is an error
// ([ErrNoAddress]), as is a ring without members ([ErrNoMembers]).
func Assign(r Ring, groups []*targetgroup.Group, opts Options) (*Assignment, error) {
	return AssignCompact(r, tstore.FromAll(groups), opts)
}

// AssignCompact is [Assign] over groups in the module's compact form, as
// the Sharder holds them: no label set is made for a target that is its
// address alone.
func AssignCompact(r Ring, groups []*tstore.Group, opts Options) (*Assignment, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if r == nil || len(r.Members()) == 0 {
		return nil, ErrNoMembers
	}
	members := r.Members()
	req := max(opts.Replicas, 1)
	reps := min(req, len(members))
	sp := newSpread(members)
	a := &Assignment{
		Ring:              r.Kind(),
		Members:           members,
		RequestedReplicas: req,
		Replicas:          reps,
		Domains:           sp.domains(),
		Groups:            make(map[string][]*tstore.Group, len(members)),
	}
	for _, m := range members {
		a.Groups[m.ID] = []*tstore.Group{}
	}
	total := tstore.Count(groups)
	a.table.ids, a.table.owners = make([]uint64, 0, total), make([]int32, 0, total*reps)

	byLabel := opts.keyed()
	var (
		items    []item
		scratch  []item
		counts32 = make([]int32, 0, 1<<16+1)
		owners   []int32
		dst      = make([]int, 0, reps)
		buf      []int
		counts   = make([]int, len(members))
		outs     = make([]*tstore.Group, len(members))
		err      error
		ovs      []Placement // the targets with overrides (Placement.override)
		nown     []int32     // owners per target of the group, once any has an override
	)
	merged := mergeGroups(groups)
	iso, err := isolate(r, merged, opts)
	if err != nil {
		return nil, err
	}
	ring, rsp := r, sp // where targets without an override go
	if iso != nil {
		ring, rsp = iso.rest.r, iso.rest.sp
		a.Isolated, a.Crowded = iso.alone, iso.crowded
	}
	var bal *balancer
	var sorted [][]item    // with Costs: every group's items, sorted, kept for the second pass
	if opts.Costs != nil { // every target's owners first: the order is global
		sorted = make([][]item, len(merged))
		all := make([]item, 0, total) // one backing for every group's items
		for k, in := range merged {
			start := len(all)
			if all, err = groupItems(in, opts, sp, iso, &ovs, all); err != nil {
				return nil, err
			}
			seg := all[start:len(all):len(all)]
			if out, _ := sortItems(seg, scratch, counts32[:0]); len(seg) > 0 && &out[0] != &seg[0] {
				copy(seg, out) // sorted into the scratch: back into place, and the scratch kept
				scratch = out[:0]
			}
			sorted[k] = seg
		}
		bal = newBalancer(ring, rsp, sorted, reps, opts)
		a.Cost = map[string]uint64{}
		for _, m := range members {
			a.Cost[m.ID] = 0
		}
		for m, l := range bal.load {
			a.Cost[ring.Members()[m].ID] = l
		}
	}
	for k, in := range merged {
		if sorted != nil {
			items = sorted[k]
		} else if items, err = groupItems(in, opts, sp, iso, &ovs, items[:0]); err != nil {
			return nil, err
		} else {
			items, scratch = sortItems(items, scratch, counts32[:0])
		}
		if len(items) == 0 {
			continue
		}
		a.Targets += len(items)

		owners, nown = owners[:0], nown[:0]
		clear(counts)
		for i, it := range items {
			if it.ov >= 0 {
				dst, buf = placeOverride(r, sp, iso.restOf(), ovs[it.ov], it.hash, reps, it.prefer, dst[:0], buf)
				if len(dst) == 0 {
					a.Unplaced = append(a.Unplaced, it.addr)
				}
				for _, m := range dst {
					owners = append(owners, int32(m))
					if bal != nil {
						a.Cost[members[m].ID] += bal.costOf(Hash(it.addr))
					}
				}
				nown = append(nown, int32(len(dst)))
				continue
			}
			start := len(owners)
			switch {
			case bal != nil:
				placed := bal.owners[k][i*reps : (i+1)*reps]
				if slices.Contains(placed, -1) {
					a.Unplaced = append(a.Unplaced, it.addr)
				}
				for _, m := range placed {
					owners = append(owners, iso.full(m))
				}
			case iso != nil:
				dst, buf = iso.rest.owners(sp, it.hash, reps, it.prefer, dst[:0], buf)
				for _, m := range dst {
					owners = append(owners, int32(m))
				}
			default:
				dst, buf = sp.preferring(r, it.hash, reps, it.prefer, dst[:0], buf)
				for _, m := range dst {
					owners = append(owners, int32(m))
				}
			}
			if len(ovs) > 0 || iso != nil {
				nown = append(nown, int32(len(owners)-start))
			}
		}
		for _, m := range owners {
			if m >= 0 {
				counts[m]++
			}
		}
		// One allocation for the group headers and one for the targets of
		// this input group, carved per member. Each member's Targets has
		// its own capacity, so appending to it never reaches another's.
		nonzero := 0
		for _, c := range counts {
			if c > 0 {
				nonzero++
			}
		}
		slab := make([]tstore.Group, nonzero)
		backing := make([]string, len(owners))
		var ownBacking []model.LabelSet // only when a target has labels of its own
		if in.own {
			ownBacking = make([]model.LabelSet, len(owners))
		}
		off := 0
		for m, c := range counts {
			outs[m] = nil
			if c == 0 {
				continue
			}
			g := &slab[0]
			slab = slab[1:]
			*g = tstore.Group{Source: in.source, Labels: in.labels, Targets: backing[off : off : off+c]}
			if ownBacking != nil {
				g.Own = ownBacking[off : off : off+c]
			}
			off += c
			outs[m] = g
			a.Groups[members[m].ID] = append(a.Groups[members[m].ID], g)
		}
		add := func(g *tstore.Group, it *item) {
			g.Targets = append(g.Targets, it.addr)
			if g.Own != nil {
				g.Own = append(g.Own, it.own)
			}
		}
		if nown == nil {
			for i, m := range owners {
				if m >= 0 {
					add(outs[m], &items[i/reps])
				}
			}
		} else {
			x := 0
			for i, n := range nown {
				for _, m := range owners[x : x+int(n)] {
					if m >= 0 {
						add(outs[m], &items[i])
					}
				}
				x += int(n)
			}
		}
		a.table.add(in, items, owners, nown, reps, byLabel)
	}
	return a, nil
}

// keyed reports whether targets may be placed by something other than
// their address's hash (a key label, or Placement), so that their
// identity must be hashed apart.
func (o Options) keyed() bool {
	return o.KeyLabel != "" && o.KeyLabel != model.AddressLabel || o.placing()
}

// placing reports whether a Placement is set.
func (o Options) placing() bool { return o.Placement != nil || o.CompactPlacement != nil }

// placerOf is the placement of g's targets, by index; nil without one. A
// Placement over [targetgroup.Group] values is asked about g made into
// one, once.
func (o Options) placerOf(g *tstore.Group) func(i int) Placement {
	switch {
	case o.CompactPlacement != nil:
		return func(i int) Placement { return o.CompactPlacement(g, i) }
	case o.Placement != nil:
		tg := g.Group()
		return func(i int) Placement { return o.Placement(tg, i) }
	}
	return nil
}

// groupItems appends to items every target of a merged group with the hash
// that places it, leaving out those Placement drops.
func groupItems(in merged, opts Options, sp *spread, iso *isolation, ovs *[]Placement, items []item) ([]item, error) {
	byLabel := opts.KeyLabel != "" && opts.KeyLabel != model.AddressLabel
	for _, g := range in.parts {
		place := opts.placerOf(g)
		for i, addr := range g.Targets {
			h, err := placeHash(g, i, opts.KeyLabel, byLabel)
			if err != nil {
				return nil, err
			}
			prefer, ov := int32(-1), int32(-1)
			var p Placement
			if place != nil {
				if p = place(i); p.Drop {
					continue
				}
				if p.Key != "" {
					h = Hash(p.Key)
				}
				if p.Zone != "" {
					prefer = sp.domainOf(p.Zone)
				}
			}
			if iso != nil { // an isolated target: pinned to the member it owns
				if m, ok := iso.own[isoKey{h, addr}]; ok {
					p.Pin, p.PinStrict, p.Every, p.Replicas = iso.memberID(m), false, false, 0
				}
			}
			if p.override() {
				ov = int32(len(*ovs))
				*ovs = append(*ovs, p)
			}
			items = append(items, item{h, addr, g.OwnOf(i), prefer, ov})
		}
	}
	return items, nil
}

// placeHash is the hash that places target i of g: of its address, or of
// the key label's value when byLabel.
func placeHash(g *tstore.Group, i int, keyLabel model.LabelName, byLabel bool) (uint64, error) {
	addr := g.Targets[i]
	if addr == "" {
		return 0, fmt.Errorf("group %q target %d (%v): %w", g.Source, i, g.OwnOf(i), ErrNoAddress)
	}
	if byLabel {
		return Hash(keyOf(g.OwnOf(i), addr, g.Labels, keyLabel)), nil
	}
	return Hash(addr), nil
}

// compareItems orders targets by key hash, then address, then all labels, so
// the order never depends on the input's.
func compareItems(a, b item) int {
	if a.hash != b.hash {
		return cmp.Compare(a.hash, b.hash)
	}
	return tieBreak(a, b)
}

// tieBreak orders targets whose keys hash alike: the same key (targets
// grouped by a label) or a 64-bit collision.
func tieBreak(a, b item) int {
	if c := strings.Compare(a.addr, b.addr); c != 0 {
		return c
	}
	if a.own == nil && b.own == nil || a.labels().Equal(b.labels()) { // the same target twice: no need to render both
		return 0
	}
	return strings.Compare(a.labels().String(), b.labels().String())
}

// sortItems sorts items by compareItems (see radixSort). It returns the
// sorted slice and the spare buffer for reuse.
func sortItems(items, scratch []item, counts []int32) (sorted, spare []item) {
	return radixSort(items, scratch, counts, func(it item) uint64 { return it.hash }, compareItems)
}

// radixSort sorts xs by cmp, whose first key is hash. Hashes are uniform,
// so a counting pass on their top bits leaves about one element per
// bucket and an insertion pass finishes in linear time. It returns the
// sorted slice and the spare buffer for reuse.
func radixSort[T any](xs, scratch []T, counts []int32, hash func(T) uint64, cmp func(a, b T) int) (sorted, spare []T) {
	n := len(xs)
	if n < 256 {
		slices.SortFunc(xs, cmp)
		return xs, scratch
	}
	bits := uint(8)
	for 1<<bits < n && bits < 16 {
		bits++
	}
	shift := 64 - bits
	counts = slices.Grow(counts[:0], 1<<bits+1)[:1<<bits+1]
	clear(counts)
	for _, x := range xs {
		counts[hash(x)>>shift+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	scratch = slices.Grow(scratch[:0], n)[:n]
	for _, x := range xs {
		b := hash(x) >> shift
		scratch[counts[b]] = x
		counts[b]++
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && cmp(scratch[j-1], scratch[j]) > 0; j-- {
			scratch[j-1], scratch[j] = scratch[j], scratch[j-1]
		}
	}
	return scratch, xs
}

// merged is one output group: input groups with the same source and labels.
type merged struct {
	source string
	labels model.LabelSet
	key    string // labels as text, for ordering
	parts  []*tstore.Group
	own    bool // a target of a part has labels of its own
}

// mergeGroups sorts groups by source and labels and merges equal ones.
func mergeGroups(groups []*tstore.Group) []merged {
	out := make([]merged, 0, len(groups))
	for _, g := range groups {
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		out = append(out, merged{source: g.Source, labels: g.Labels, parts: []*tstore.Group{g}, own: g.Own != nil})
	}
	// Labels are only compared as text when sources tie.
	slices.SortFunc(out, func(a, b merged) int { return strings.Compare(a.source, b.source) })
	for i := range out {
		if (i > 0 && out[i-1].source == out[i].source) || (i+1 < len(out) && out[i+1].source == out[i].source) {
			out[i].key = out[i].labels.String()
		}
	}
	slices.SortStableFunc(out, func(a, b merged) int {
		if c := strings.Compare(a.source, b.source); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	w := 0
	for i := range out {
		if w > 0 && out[w-1].source == out[i].source && out[w-1].key == out[i].key {
			out[w-1].parts = append(out[w-1].parts, out[i].parts...)
			out[w-1].own = out[w-1].own || out[i].own
			continue
		}
		out[w] = out[i]
		w++
	}
	return out[:w]
}

// placeOverride appends to dst the owners of a target whose placement p
// overrides the usual (see [Placement]): every member; the pinned member;
// or its own replica count. reps is the
// job's replica count; prefer the domain its first replica prefers.
func placeOverride(r Ring, sp *spread, rest *restRing, p Placement, hash uint64, reps int, prefer int32, dst, buf []int) (owners, scratch []int) {
	ms := r.Members()
	if p.Every {
		for m := range ms {
			dst = append(dst, m)
		}
		return dst, buf
	}
	if p.Replicas > 0 {
		reps = min(p.Replicas, len(ms))
	}
	byRing := func() ([]int, []int) {
		if rest != nil { // the members of isolated targets take no other
			return rest.owners(sp, hash, reps, prefer, dst, buf)
		}
		return sp.preferring(r, hash, reps, prefer, dst, buf)
	}
	if p.Pin == "" {
		return byRing()
	}
	pin, found := slices.BinarySearchFunc(ms, p.Pin, func(m Member, id string) int { return strings.Compare(m.ID, id) })
	switch {
	case !found && p.PinStrict:
		return dst, buf
	case !found:
		return byRing()
	}
	return append(dst, pin), buf
}
