package shard

import (
	"cmp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
)

// ownerTable records, as Assign places them, every target's identity and
// owners, in Assign's own order: groups by source and labels, targets by
// identity within a group. Compare joins two tables in one linear pass
// instead of building a map of every target, which at a million targets
// costs far more than the assignment itself.
//
// A target's identity is its group (source and labels) and its address:
// Assign already hashed the address to place it, unless a key label places
// it (then the address is hashed here, and the group's entries sorted).
type ownerTable struct {
	groups []tableGroup
	ids    []uint64 // per target, sorted within each group
	owners []int32  // per target, reps indexes into Members
	reps   int
	// off, once a target has a count of owners of its own (an override),
	// says where each target's owners are: owners[off[i]:off[i+1]].
	off []int32
}

// of is target i's owners.
func (t *ownerTable) of(i int) []int32 {
	if t.off != nil {
		return t.owners[t.off[i]:t.off[i+1]]
	}
	return t.owners[i*t.reps : (i+1)*t.reps]
}

// tableGroup is one merged group's stretch of the table.
type tableGroup struct {
	source     string
	labels     model.LabelSet
	start, end int // into ids
}

// add records one merged group: items sorted by key hash, and reps owners
// per item.
func (t *ownerTable) add(in merged, items []item, owners, nown []int32, reps int, byLabel bool) {
	t.reps = reps
	start := len(t.ids)
	if nown != nil || t.off != nil {
		t.addIrregular(in, items, owners, nown, byLabel)
		return
	}
	for _, it := range items {
		id := it.hash
		if byLabel {
			id = Hash(it.addr)
		}
		t.ids = append(t.ids, id)
	}
	t.owners = append(t.owners, owners...)
	if byLabel { // sort the group's entries by address hash, owners with them
		type ref struct {
			id uint64
			i  int32
		}
		refs := make([]ref, len(items))
		for k, id := range t.ids[start:] {
			refs[k] = ref{id, int32(k)}
		}
		refs, _ = radixSort(refs, nil, nil, func(r ref) uint64 { return r.id }, func(a, b ref) int {
			return cmp.Or(cmp.Compare(a.id, b.id), cmp.Compare(a.i, b.i))
		})
		own := slices.Clone(t.owners[start*t.reps:])
		for k, r := range refs {
			t.ids[start+k] = r.id
			copy(t.owners[(start+k)*t.reps:(start+k+1)*t.reps], own[int(r.i)*t.reps:(int(r.i)+1)*t.reps])
		}
	}
	t.groups = append(t.groups, tableGroup{source: in.source, labels: in.labels, start: start, end: len(t.ids)})
}

// addIrregular is add once owner counts differ between targets: nown
// holds each item's count (nil: reps each).
func (t *ownerTable) addIrregular(in merged, items []item, owners, nown []int32, byLabel bool) {
	if t.off == nil { // the targets before had reps owners each
		t.off = make([]int32, len(t.ids)+1, cap(t.ids)+1)
		for i := range t.off {
			t.off[i] = int32(i * t.reps)
		}
	}
	start := len(t.ids)
	type entry struct {
		id     uint64
		owners []int32
	}
	es := make([]entry, len(items))
	x := 0
	for i, it := range items {
		n := t.reps
		if nown != nil {
			n = int(nown[i])
		}
		id := it.hash
		if byLabel {
			id = Hash(it.addr)
		}
		es[i] = entry{id, owners[x : x+n]}
		x += n
	}
	if byLabel {
		slices.SortStableFunc(es, func(a, b entry) int { return cmp.Compare(a.id, b.id) })
	}
	for _, e := range es {
		t.ids = append(t.ids, e.id)
		t.owners = append(t.owners, e.owners...)
		t.off = append(t.off, int32(len(t.owners)))
	}
	t.groups = append(t.groups, tableGroup{source: in.source, labels: in.labels, start: start, end: len(t.ids)})
}

// compareGroups orders two table groups as mergeGroups does: by source,
// then by labels.
func compareGroups(a, b tableGroup) int {
	if c := strings.Compare(a.source, b.source); c != 0 {
		return c
	}
	if a.labels.Equal(b.labels) {
		return 0
	}
	return strings.Compare(a.labels.String(), b.labels.String())
}

// compareTables is Compare over two owner tables; prev may be nil.
func compareTables(prev, next *Assignment) Diff {
	var pt ownerTable
	var pm []Member
	if prev != nil {
		pt, pm = prev.table, prev.Members
	}
	nt, nm := next.table, next.Members
	// Member indexes of prev in next, and per-member counts.
	toNext := make([]int32, len(pm))
	byID := make(map[string]int32, len(nm))
	for i, m := range nm {
		byID[m.ID] = int32(i)
	}
	for i, m := range pm {
		j, ok := byID[m.ID]
		if !ok {
			j = -1
		}
		toNext[i] = j
	}
	lost, gained := make([]int, len(pm)), make([]int, len(nm))
	var d Diff
	// Owners of a target; -1 (unplaced: no capacity left) is dropped.
	placed := func(t ownerTable, i int) []int32 {
		os := t.of(i)
		if !slices.Contains(os, -1) {
			return os
		}
		return slices.DeleteFunc(slices.Clone(os), func(o int32) bool { return o < 0 })
	}
	was := func(i int) []int32 { return placed(pt, i) }
	now := func(i int) []int32 { return placed(nt, i) }
	removed := func(i int) {
		d.Removed++
		for _, o := range was(i) {
			lost[o]++
		}
	}
	added := func(i int) {
		d.Added++
		for _, o := range now(i) {
			gained[o]++
		}
	}
	both := func(i, j int) {
		w, n, same := was(i), now(j), true
		for _, o := range w {
			if t := toNext[o]; t < 0 || !slices.Contains(n, t) {
				lost[o]++
				same = false
			}
		}
		for _, o := range n {
			if !slices.ContainsFunc(w, func(p int32) bool { return toNext[p] == o }) {
				gained[o]++
				same = false
			}
		}
		if same {
			d.Unchanged++
		} else {
			d.Moved++
		}
	}
	// each walks a group's distinct identities.
	each := func(t ownerTable, g tableGroup, fn func(int)) {
		for i := g.start; i < g.end; i++ {
			if i == g.start || t.ids[i] != t.ids[i-1] {
				fn(i)
			}
		}
	}
	gi, gj := 0, 0
	for gi < len(pt.groups) || gj < len(nt.groups) {
		c := 1
		switch {
		case gi == len(pt.groups):
			c = 1
		case gj == len(nt.groups):
			c = -1
		default:
			c = compareGroups(pt.groups[gi], nt.groups[gj])
		}
		switch {
		case c < 0:
			each(pt, pt.groups[gi], removed)
			gi++
		case c > 0:
			each(nt, nt.groups[gj], added)
			gj++
		default:
			g, h := pt.groups[gi], nt.groups[gj]
			i, j := g.start, h.start
			for i < g.end || j < h.end {
				switch {
				case j == h.end || i < g.end && pt.ids[i] < nt.ids[j]:
					removed(i)
					i = skipSame(pt.ids, i, g.end)
				case i == g.end || nt.ids[j] < pt.ids[i]:
					added(j)
					j = skipSame(nt.ids, j, h.end)
				default:
					both(i, j)
					i, j = skipSame(pt.ids, i, g.end), skipSame(nt.ids, j, h.end)
				}
			}
			gi++
			gj++
		}
	}
	d.Members = map[string]MemberDiff{}
	for i, n := range lost {
		if n > 0 {
			md := d.Members[pm[i].ID]
			md.Lost += n
			d.Members[pm[i].ID] = md
		}
	}
	for i, n := range gained {
		if n > 0 {
			md := d.Members[nm[i].ID]
			md.Gained += n
			d.Members[nm[i].ID] = md
		}
	}
	return d
}

// skipSame returns the index after the run of ids equal to ids[i].
func skipSame(ids []uint64, i, end int) int {
	for j := i + 1; ; j++ {
		if j == end || ids[j] != ids[i] {
			return j
		}
	}
}
