package shard

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
)

// isolation is the part of an assignment that gives heavy targets members
// of their own: which member each isolated target owns, and the ring of
// the other members, on which every other target is placed.
type isolation struct {
	own      map[isoKey]int // isolated target → the index of its member
	reserved []bool         // by member index
	alone    []string       // isolated targets, each alone on its member
	crowded  []string       // isolated targets that share a member: none was free
	ids      []string       // member IDs by index
	rest     restRing
}

// isoKey names a target: the hash that places it, and its address.
type isoKey struct {
	hash uint64
	addr string
}

// restRing is a ring over some of an assignment's members, with the index
// of each of its members among all of them.
type restRing struct {
	r      Ring
	sp     *spread
	toFull []int32
}

// owners is spread.preferring on the rest ring, as indexes among all
// members; prefer is a domain index of full.
func (rr restRing) owners(full *spread, hash uint64, reps int, prefer int32, dst, buf []int) (owners, scratch []int) {
	if prefer >= 0 {
		prefer = rr.sp.domainOf(full.names[prefer])
	}
	start := len(dst)
	dst, buf = rr.sp.preferring(rr.r, hash, min(reps, len(rr.toFull)), prefer, dst, buf)
	for i := start; i < len(dst); i++ {
		dst[i] = int(rr.toFull[dst[i]])
	}
	return dst, buf
}

// isolated reports whether a target is isolated: by its Placement, or, with
// Costs, by a cost above the threshold (Options.IsolateAbove; zero means
// above every member's capacity, when all have one).
func (o Options) isolated(p Placement, addrHash uint64, threshold uint64) bool {
	if p.Isolate || threshold == 0 || o.Costs == nil {
		return p.Isolate
	}
	cost, _ := o.Costs.Lookup(addrHash)
	return cost > threshold
}

// isolateThreshold is the cost above which a target is isolated, or 0.
func (o Options) isolateThreshold(members []Member) uint64 {
	if o.Costs == nil {
		return 0
	}
	if o.IsolateAbove > 0 {
		return o.IsolateAbove
	}
	var most uint64
	for _, m := range members {
		c := o.Capacity[m.ID]
		if c == 0 {
			return 0 // a member without a cap can take anything
		}
		most = max(most, c)
	}
	return most
}

// isolate decides which targets of groups are isolated and on which
// members; nil when none is. Isolated targets are taken in key-hash order,
// each by the first member of its preference order that no other holds;
// at most all members but one are given away, so that the rest of the
// targets have a member. One that finds no free member shares the one
// that holds the fewest, and is reported.
func isolate(r Ring, groups []merged, opts Options) (*isolation, error) {
	members := r.Members()
	threshold := opts.isolateThreshold(members)
	if !opts.placing() && threshold == 0 || len(members) < 2 {
		return nil, nil
	}
	byLabel := opts.KeyLabel != "" && opts.KeyLabel != model.AddressLabel
	var cands []isoKey
	for _, in := range groups {
		for _, g := range in.parts {
			place := opts.placerOf(g)
			for i, addr := range g.Targets {
				var p Placement
				if place != nil {
					if p = place(i); p.Drop {
						continue
					}
				}
				if !p.Isolate && threshold == 0 {
					continue
				}
				h, err := placeHash(g, i, opts.KeyLabel, byLabel)
				if err != nil {
					return nil, err
				}
				if p.Key != "" {
					h = Hash(p.Key)
				}
				if opts.isolated(p, Hash(addr), threshold) {
					cands = append(cands, isoKey{h, addr})
				}
			}
		}
	}
	if len(cands) == 0 {
		return nil, nil
	}
	slices.SortFunc(cands, func(a, b isoKey) int { return cmp.Or(cmp.Compare(a.hash, b.hash), strings.Compare(a.addr, b.addr)) })
	cands = slices.Compact(cands)
	iso := &isolation{own: map[isoKey]int{}, reserved: make([]bool, len(members))}
	for _, m := range members {
		iso.ids = append(iso.ids, m.ID)
	}
	held := make([]int, len(members)) // isolated targets per member
	free := len(members) - 1
	var pref []int
	for _, c := range cands {
		pref = r.Owners(c.hash, len(members), pref[:0])
		m := -1
		if free > 0 {
			if i := slices.IndexFunc(pref, func(x int) bool { return !iso.reserved[x] }); i >= 0 {
				m = pref[i]
				iso.reserved[m] = true
				free--
			}
		}
		if m < 0 { // none free: the reserved member holding the fewest, in preference order
			for _, x := range pref {
				if iso.reserved[x] && (m < 0 || held[x] < held[m]) {
					m = x
				}
			}
		}
		held[m]++
		iso.own[c] = m
	}
	for _, c := range cands {
		if held[iso.own[c]] > 1 {
			iso.crowded = append(iso.crowded, c.addr)
		} else {
			iso.alone = append(iso.alone, c.addr)
		}
	}
	slices.Sort(iso.alone)
	slices.Sort(iso.crowded)
	var rest []Member
	for i, m := range members {
		if !iso.reserved[i] {
			rest = append(rest, m)
			iso.rest.toFull = append(iso.rest.toFull, int32(i))
		}
	}
	rr, err := New(r.Kind(), rest)
	if err != nil {
		return nil, err
	}
	iso.rest.r, iso.rest.sp = rr, newSpread(rr.Members())
	return iso, nil
}

// restOf is the rest ring, or nil without isolation.
func (iso *isolation) restOf() *restRing {
	if iso == nil {
		return nil
	}
	return &iso.rest
}

// full is the index among all members of member m of the ring targets
// without an override are placed on (-1 stays -1).
func (iso *isolation) full(m int32) int32 {
	if iso == nil || m < 0 {
		return m
	}
	return iso.rest.toFull[m]
}

// memberID is the ID of member m.
func (iso *isolation) memberID(m int) string { return iso.ids[m] }
