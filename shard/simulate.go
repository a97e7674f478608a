package shard

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// Change is a what-if on a ring's members: some leave, some join, some get
// another weight.
type Change struct {
	// Remove lists the IDs of members that leave.
	Remove []string
	// Add lists members that join.
	Add []Member
	// Weight gives members (present or added) a new weight.
	Weight map[string]uint32
}

// Apply returns the members after the change, or an error naming the first
// ID that cannot take it (one removed or reweighted that is not there, one
// added that is).
func (c Change) Apply(members []Member) ([]Member, error) {
	out := slices.Clone(members)
	has := func(id string) int { return slices.IndexFunc(out, func(m Member) bool { return m.ID == id }) }
	for _, id := range c.Remove {
		i := has(id)
		if i < 0 {
			return nil, fmt.Errorf("shard: remove %q: no such member", id)
		}
		out = slices.Delete(out, i, i+1)
	}
	for _, m := range c.Add {
		if m.ID == "" || has(m.ID) >= 0 {
			return nil, fmt.Errorf("shard: add %q: empty or already a member", m.ID)
		}
		out = append(out, m)
	}
	for _, id := range slices.Sorted(maps.Keys(c.Weight)) {
		i := has(id)
		if i < 0 {
			return nil, fmt.Errorf("shard: weight %q: no such member", id)
		}
		out[i].Weight = c.Weight[id]
	}
	return out, nil
}

// Move counts the targets that a change takes from one member to another.
// A target that loses several members and gains several pairs them in ID
// order.
// From is "" for a replica that is new (more members than before, and
// fewer than the replicas asked); To is "" for a replica that is dropped.
type Move struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Targets int    `json:"targets"`
}

// Load is one member's targets before and after a change ("" state for
// one that is in both rings; "added" or "removed" otherwise).
type Load struct {
	ID     string `json:"id"`
	Before int    `json:"before"`
	After  int    `json:"after"`
	State  string `json:"state,omitempty"`
}

// Balance is how even an assignment is: the most targets on one member
// and the mean over the members.
type Balance struct {
	Members int     `json:"members"`
	Max     int     `json:"max"`
	Mean    float64 `json:"mean"`
}

// MaxOverMean is Max/Mean, 1 for a perfectly even assignment (0 when
// empty).
func (b Balance) MaxOverMean() float64 {
	if b.Mean == 0 {
		return 0
	}
	return float64(b.Max) / b.Mean
}

// Simulation is what a [Change] would do to an assignment.
type Simulation struct {
	// Targets is the number of targets placed; Replicas per target before
	// and after.
	Targets        int `json:"targets"`
	ReplicasBefore int `json:"replicas_before"`
	ReplicasAfter  int `json:"replicas_after"`
	// Moved counts the targets whose members would change.
	Moved int `json:"moved"`
	// Moves are the targets moving per pair of members, most first.
	Moves []Move `json:"moves"`
	// Loads are every member's targets before and after, by ID.
	Loads []Load `json:"loads"`
	// Before and After summarise the balance.
	Before Balance `json:"before"`
	After  Balance `json:"after"`
	// Capacity, when positive, is the most targets a member may hold;
	// Unplaced the targets above it after the change, summed over members.
	Capacity int `json:"capacity,omitempty"`
	Unplaced int `json:"unplaced,omitempty"`
	// CollectorsNeeded is how many members the measured load needs after
	// the change, with headroom for a loss ([CollectorsNeeded]). Simulate
	// counts targets and leaves it zero; a caller that knows the series
	// and the cap (promshard's Sharder.Simulate) sets it.
	CollectorsNeeded int `json:"collectors_needed,omitempty"`
	// Isolated and Crowded are, after the change, the isolated targets
	// alone on a member and those that would share one (see
	// Options.IsolateAbove), by address.
	Isolated []string `json:"isolated,omitempty"`
	Crowded  []string `json:"crowded,omitempty"`
}

// Simulate computes, without changing anything, what change would do to
// the assignment of groups over members on a ring of kind: which targets
// move between which members, the counts before and after, and how many
// would be above capacity (targets per member; 0 means no cap). It places
// each target exactly as [Assign] does, so the moves are those a real
// reshard with the changed members makes.
func Simulate(ctx context.Context, kind Kind, members []Member, groups []*targetgroup.Group, opts Options, change Change, capacity int) (*Simulation, error) {
	return SimulateCompact(ctx, kind, members, tstore.FromAll(groups), opts, change, capacity)
}

// SimulateCompact is [Simulate] over groups in the module's compact form.
func SimulateCompact(ctx context.Context, kind Kind, members []Member, groups []*tstore.Group, opts Options, change Change, capacity int) (*Simulation, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if capacity < 0 {
		return nil, fmt.Errorf("shard: capacity %d: must not be negative", capacity)
	}
	after, err := change.Apply(members)
	if err != nil {
		return nil, err
	}
	rb, err := New(kind, members)
	if err != nil {
		return nil, err
	}
	ra, err := New(kind, after)
	if err != nil {
		return nil, err
	}
	req := max(opts.Replicas, 1)
	mb, ma := rb.Members(), ra.Members()
	sim := &Simulation{ReplicasBefore: min(req, len(mb)), ReplicasAfter: min(req, len(ma)), Capacity: capacity}
	sb, sa := newSpread(mb), newSpread(ma)
	cb, ca := make([]int, len(mb)), make([]int, len(ma))
	moves := map[[2]string]int{}
	var db, da, buf []int
	var lost, gained []string
	byLabel := opts.KeyLabel != "" && opts.KeyLabel != model.AddressLabel
	all := mergeGroups(groups)
	isoB, err := isolate(rb, all, opts)
	if err != nil {
		return nil, err
	}
	isoA, err := isolate(ra, all, opts)
	if err != nil {
		return nil, err
	}
	if isoA != nil {
		sim.Isolated, sim.Crowded = isoA.alone, isoA.crowded
	}
	for _, g := range groups {
		if g == nil {
			continue
		}
		if err := ctx.Err(); err != nil { // a caller that gave up stops the work, group by group
			return nil, err
		}
		place := opts.placerOf(g)
		for i := range g.Targets {
			if i%4096 == 4095 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			h, err := placeHash(g, i, opts.KeyLabel, byLabel)
			if err != nil {
				return nil, err
			}
			pb, pa := int32(-1), int32(-1)
			var p Placement
			if place != nil {
				p = place(i)
				if p.Drop {
					continue
				}
				if p.Key != "" {
					h = Hash(p.Key)
				}
				if p.Zone != "" {
					pb, pa = sb.domainOf(p.Zone), sa.domainOf(p.Zone)
				}
			}
			sim.Targets++
			db, buf = simOwners(rb, sb, isoB, p, h, g.Targets[i], sim.ReplicasBefore, pb, db[:0], buf)
			da, buf = simOwners(ra, sa, isoA, p, h, g.Targets[i], sim.ReplicasAfter, pa, da[:0], buf)
			lost, gained = lost[:0], gained[:0]
			for _, m := range db {
				cb[m]++
				if !slices.ContainsFunc(da, func(n int) bool { return ma[n].ID == mb[m].ID }) {
					lost = append(lost, mb[m].ID)
				}
			}
			for _, m := range da {
				ca[m]++
				if !slices.ContainsFunc(db, func(n int) bool { return mb[n].ID == ma[m].ID }) {
					gained = append(gained, ma[m].ID)
				}
			}
			if len(lost)+len(gained) == 0 {
				continue
			}
			sim.Moved++
			slices.Sort(lost) // a target that loses and gains several members pairs them in ID order
			slices.Sort(gained)
			for i := range max(len(lost), len(gained)) {
				var from, to string
				if i < len(lost) {
					from = lost[i]
				}
				if i < len(gained) {
					to = gained[i]
				}
				moves[[2]string{from, to}]++
			}
		}
	}
	for k, n := range moves {
		sim.Moves = append(sim.Moves, Move{From: k[0], To: k[1], Targets: n})
	}
	slices.SortFunc(sim.Moves, func(a, b Move) int {
		return cmp.Or(b.Targets-a.Targets, cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	loads := map[string]*Load{}
	for i, m := range mb {
		loads[m.ID] = &Load{ID: m.ID, Before: cb[i], State: "removed"}
	}
	for i, m := range ma {
		l := loads[m.ID]
		if l == nil {
			l = &Load{ID: m.ID, State: "added"}
			loads[m.ID] = l
		} else {
			l.State = ""
		}
		l.After = ca[i]
		if capacity > 0 {
			sim.Unplaced += max(0, ca[i]-capacity)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(loads)) {
		sim.Loads = append(sim.Loads, *loads[id])
	}
	sim.Before, sim.After = balance(cb), balance(ca)
	return sim, nil
}

func balance(counts []int) Balance {
	b := Balance{Members: len(counts)}
	sum := 0
	for _, c := range counts {
		b.Max = max(b.Max, c)
		sum += c
	}
	if len(counts) > 0 {
		b.Mean = float64(sum) / float64(len(counts))
	}
	return b
}

// simOwners places one target as Assign does: isolated, by an override, or
// on the ring (the ring of the members no isolated target holds).
func simOwners(r Ring, sp *spread, iso *isolation, p Placement, hash uint64, addr string, reps int, prefer int32, dst, buf []int) (owners, scratch []int) {
	if iso != nil {
		if m, ok := iso.own[isoKey{hash, addr}]; ok {
			return append(dst, m), buf
		}
	}
	switch {
	case p.override():
		return placeOverride(r, sp, iso.restOf(), p, hash, reps, prefer, dst, buf)
	case iso != nil:
		return iso.rest.owners(sp, hash, reps, prefer, dst, buf)
	}
	return sp.preferring(r, hash, reps, prefer, dst, buf)
}
