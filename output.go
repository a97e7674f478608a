package promshard

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	ilabels "github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
)

// Output is where a job's assignment goes after each reshard: a directory
// of file_sd files ([filesd.Dir]), an http_sd endpoint ([filesd.Handler]),
// one collector's own file in self mode ([filesd.MemberFile]), or anything
// of a user's (a Consul KV writer, an upload).
//
// Update receives every member's groups, keyed by member ID, with an entry
// (possibly empty) for each member that must have output, and returns the
// IDs whose output changed, so that only those collectors are reloaded. An
// error may come with IDs that did change (some files written, one failed):
// they are reloaded all the same. Update is never called concurrently for
// one job. In self mode (Job.Self) every output receives only the Self
// collector's entry.
//
// The optional abilities below are declared next to it; the Sharder asserts
// them once, when the job is built.
//
// [filesd.Dir]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Dir
// [filesd.Handler]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Handler
// [filesd.MemberFile]: https://pkg.go.dev/github.com/promshard/promshard/filesd#MemberFile
type Output interface {
	Update(ctx context.Context, groups map[string][]*targetgroup.Group) (changed []string, err error)
}

// MemberChecker is an output that cannot serve every member ID (a file name
// cannot hold "../x"): a member it rejects is excluded from the ring.
type MemberChecker interface {
	CheckMember(id string) error
}

// FileOutput is an output that writes a file per collector: PathOf names
// it, for reports and for reloaders that copy the file. As its files are
// written one by one, a write can fail part way: when targets move between
// collectors, the Sharder then writes in two steps, so that no target is in
// no file at any moment.
type FileOutput interface {
	PathOf(id string) (string, error)
}

// Keeper is an output that can tell, cheaply, which collectors' outputs no
// longer hold what it last wrote (a file deleted or changed by someone
// else): the Sharder checks it on every refresh and writes those again.
type Keeper interface {
	Drifted() []string
}

// Holder is an output that can read back what its collectors hold (files
// on disk): a process that starts, or a copy that takes over as leader,
// starts from it, so that targets moving at that moment are handed over
// (with Options.Handoff) rather than dropped by their old owners at once.
type Holder interface {
	Held() (map[string][]*targetgroup.Group, error)
}

// HeldComparer is a Holder that compares what its collectors hold with
// what the Sharder is about to give them (next): a collector whose output
// holds exactly that gets next's very groups back, and only the others are
// read back. A start over outputs that are already right ([filesd.Dir]
// after a restart) then makes no label set per target, and the hand-off
// finds nothing to move without comparing a target.
//
// [filesd.Dir]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Dir.HeldAgainst
type HeldComparer interface {
	Holder
	HeldAgainst(next map[string][]*targetgroup.Group) (map[string][]*targetgroup.Group, error)
}

// compactHeldComparer is a HeldComparer of the module's over groups in
// their compact form: [filesd.Dir].
//
// [filesd.Dir]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Dir.HeldAgainstCompact
type compactHeldComparer interface {
	HeldAgainstCompact(next map[string][]*tstore.Group) (map[string][]*tstore.Group, error)
}

// held reads what the first Holder holds, its groups given the Source of
// the same target in next (file_sd keeps no source) so that it compares
// with what the Sharder places; nil without a Holder or on an error.
func (o outputs) held(next map[string][]*tstore.Group) map[string][]*tstore.Group {
	if len(o.holders) == 0 {
		return nil
	}
	var held map[string][]*tstore.Group
	var err error
	switch h := o.holders[0].(type) {
	case compactHeldComparer:
		held, err = h.HeldAgainstCompact(next)
	case HeldComparer:
		var tg map[string][]*targetgroup.Group
		tg, err = h.HeldAgainst(tstore.AllOf(next))
		held = tstore.FromAllOf(tg)
	default:
		var tg map[string][]*targetgroup.Group
		tg, err = h.Held()
		held = tstore.FromAllOf(tg)
	}
	if err != nil || len(held) == 0 {
		return nil
	}
	// A target read back is given the source, the labels map and the
	// address string it has in next: first in its collector's own next
	// groups, then, for those not found there (targets it keeps, or lost),
	// in any.
	type heldKey struct{ labels, addr string }
	type heldAt struct {
		source string
		labels model.LabelSet
		addr   string
		own    bool // the target has labels of its own in next
	}
	index := func(into map[heldKey]heldAt, gs []*tstore.Group, only map[string]bool) {
		for _, g := range gs {
			ls, rendered := "", false // rendered once, when a target is indexed
			for i, addr := range g.Targets {
				if only != nil && !only[addr] {
					continue
				}
				if !rendered {
					ls, rendered = g.Labels.String(), true
				}
				if _, ok := into[heldKey{ls, addr}]; !ok {
					into[heldKey{ls, addr}] = heldAt{g.Source, g.Labels, addr, g.OwnOf(i) != nil}
				}
			}
		}
	}
	out := make(map[string][]*tstore.Group, len(held))
	type pass struct {
		id   string
		own  map[heldKey]heldAt              // the collector's next targets; nil when every group was found whole
		same map[*tstore.Group]*tstore.Group // a group read back that is one of next's, by its targets
	}
	var passes []pass
	missing := map[string]bool{} // addresses not in their collector's next groups
	for _, id := range slices.Sorted(maps.Keys(held)) {
		gs := held[id]
		if n, ok := next[id]; ok && slices.Equal(gs, n) { // the very groups of next: their sources are next's
			out[id] = gs
			continue
		}
		// A group read back with the targets of one of next's groups (a
		// reader that shares their strings: filesd.Dir), in order, and its
		// labels, is that group: no target of it is looked up one by one.
		type firstKey struct {
			first uintptr
			n     int
		}
		p := pass{id: id, same: map[*tstore.Group]*tstore.Group{}}
		found := pairBy(next[id], gs, func(g *tstore.Group) firstKey {
			return firstKey{tstore.Identity(g.Targets[0]), len(g.Targets)}
		}, func(n, g *tstore.Group) bool {
			return tstore.SameTargets(n, g) && n.Labels.Equal(g.Labels)
		})
		var rest []*tstore.Group // the groups read back that are none of next's
		want := map[string]bool{}
		for j, g := range gs {
			if len(g.Targets) == 0 {
				continue
			}
			if i := found[j]; i >= 0 {
				p.same[g] = next[id][i]
				continue
			}
			rest = append(rest, g)
			for _, addr := range g.Targets {
				want[addr] = true
			}
		}
		if len(rest) > 0 { // only their addresses are indexed: a file with a few kept targets indexes a few
			p.own = map[heldKey]heldAt{}
			index(p.own, next[id], want)
		}
		for _, g := range rest {
			ls := g.Labels.String()
			for _, addr := range g.Targets {
				if _, ok := p.own[heldKey{ls, addr}]; !ok {
					missing[addr] = true
				}
			}
		}
		passes = append(passes, p)
	}
	anywhere := map[heldKey]heldAt{}
	if len(missing) > 0 {
		for _, id := range slices.Sorted(maps.Keys(next)) {
			index(anywhere, next[id], missing)
		}
	}
	for _, p := range passes {
		for _, g := range held[p.id] {
			if ng, ok := p.same[g]; ok {
				out[p.id] = append(out[p.id], ng)
				continue
			}
			ls := g.Labels.String()
			bySource := map[string]*tstore.Group{}
			var order []string
			for i, addr := range g.Targets {
				k := heldKey{ls, addr}
				at, ok := p.own[k]
				if !ok {
					at, ok = anywhere[k]
				}
				ng := bySource[at.source]
				if ng == nil {
					ng = &tstore.Group{Source: at.source, Labels: g.Labels}
					if ok {
						ng.Labels = at.labels
					}
					bySource[at.source] = ng
					order = append(order, at.source)
				}
				ng.Append(g, i)
				if ok && !at.own && g.OwnOf(i) == nil {
					ng.Targets[len(ng.Targets)-1] = at.addr // the very string of next: the hand-off pairs what did not change
				}
			}
			for _, src := range order {
				out[p.id] = append(out[p.id], bySource[src])
			}
		}
		if out[p.id] == nil {
			out[p.id] = []*tstore.Group{}
		}
	}
	return out
}

// outputs are a job's outputs with their abilities, asserted once.
type outputs struct {
	all      []Output
	checkers []MemberChecker
	files    []FileOutput
	keepers  []Keeper
	holders  []Holder
}

func newOutputs(os []Output) outputs {
	o := outputs{all: os}
	for _, out := range os {
		if c, ok := out.(MemberChecker); ok {
			o.checkers = append(o.checkers, c)
		}
		if f, ok := out.(FileOutput); ok {
			o.files = append(o.files, f)
		}
		if k, ok := out.(Keeper); ok {
			o.keepers = append(o.keepers, k)
		}
		if h, ok := out.(Holder); ok {
			o.holders = append(o.holders, h)
		}
	}
	return o
}

// check returns the first output's refusal of a member ID.
func (o outputs) check(id string) error {
	for _, c := range o.checkers {
		if err := c.CheckMember(id); err != nil {
			return err
		}
	}
	return nil
}

// file is the member's file in the first output that has files, if any.
func (o outputs) file(id string) string {
	for _, f := range o.files {
		if p, err := f.PathOf(id); err == nil {
			return p
		}
	}
	return ""
}

// drifted lists the collectors whose output no longer holds what was
// written, sorted.
func (o outputs) drifted() []string {
	var ids []string
	for _, k := range o.keepers {
		ids = append(ids, k.Drifted()...)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// Inheritor is an ability of a provider (Job.Targets) or an output that
// can take over what the one it replaces, in the same place of a job of the
// same name, learnt: [targets.File] the files it parsed, [filesd.Dir] the
// files it wrote. [Sharder.Adopt] calls Inherit with the value the
// replaced Sharder's job had there; Inherit takes over only from a value of
// its own type and configuration, and reports whether it did.
type Inheritor interface {
	Inherit(prev any) bool
}

// compactOutput is an output of the module's that takes the groups in
// their compact form: [filesd.Dir], [filesd.Handler], [filesd.MemberFile].
// Any other output gets them as [targetgroup.Group] values.
//
// [filesd.Dir]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Dir.UpdateCompact
// [filesd.Handler]: https://pkg.go.dev/github.com/promshard/promshard/filesd#Handler.UpdateCompact
// [filesd.MemberFile]: https://pkg.go.dev/github.com/promshard/promshard/filesd#MemberFile.UpdateCompact
type compactOutput interface {
	UpdateCompact(ctx context.Context, groups map[string][]*tstore.Group) ([]string, error)
}

// update hands groups to every output and returns the members whose output
// changed. An output that takes no compact groups gets them made into
// [targetgroup.Group] values, once for all such outputs.
func (o outputs) update(ctx context.Context, groups map[string][]*tstore.Group) ([]string, error) {
	var changed []string
	var errs []error
	var made map[string][]*targetgroup.Group
	for _, out := range o.all {
		var ids []string
		var err error
		if c, ok := out.(compactOutput); ok {
			ids, err = c.UpdateCompact(ctx, groups)
		} else {
			if made == nil {
				made = tstore.AllOf(groups)
			}
			ids, err = out.Update(ctx, made)
		}
		changed = append(changed, ids...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(changed)
	return slices.Compact(changed), errors.Join(errs...)
}

// write moves the outputs from old to next so that no target is in no
// output at any moment, even when a write fails. When targets move between
// collectors and an output writes file by file (twoSteps), it writes twice: first every output gets what it
// gains while keeping what it loses (a collector that leaves keeps its old
// list), then, once all of that is written, next. A failure in the first
// write stops there: every target is still where it was. held is what the
// outputs hold after the call: next on success, else what they may hold
// (the union), so that the next pass writes every member again. loses
// reports whether a member of both may hold in old a target that next
// lacks (nil: any may); for the others next alone is the first step.
func (o outputs) write(ctx context.Context, old, next map[string][]*tstore.Group, twoSteps bool, loses func(id string) bool) (held map[string][]*tstore.Group, changed []string, err error) {
	var first map[string][]*tstore.Group
	if twoSteps && old != nil {
		first = withLosses(old, next, loses)
		if changed, err = o.update(ctx, first); err != nil {
			return mergeHeld(old, first), changed, err
		}
	}
	more, err := o.update(ctx, next)
	changed = append(changed, more...)
	slices.Sort(changed)
	changed = slices.Compact(changed)
	if err != nil {
		if first != nil {
			return first, changed, err
		}
		return mergeHeld(old, next), changed, err
	}
	return next, changed, nil
}

// mergeHeld is what the outputs may hold after a write of next over old
// failed part way: for each member the union of both.
func mergeHeld(old, next map[string][]*tstore.Group) map[string][]*tstore.Group {
	out := maps.Clone(old)
	if out == nil {
		out = map[string][]*tstore.Group{}
	}
	for id, gs := range next {
		out[id] = union(gs, out[id])
	}
	return out
}

// withLosses is next with, for each collector, the targets it held in old
// and loses, and the old list of each collector that leaves.
func withLosses(old, next map[string][]*tstore.Group, loses func(id string) bool) map[string][]*tstore.Group {
	out := maps.Clone(next)
	for id, gs := range old {
		switch _, ok := next[id]; {
		case !ok:
			out[id] = gs
		case loses == nil || loses(id):
			out[id] = union(next[id], gs)
		}
	}
	return out
}

// targetKey identifies a target in a member's list: its group's source
// (hashed once per group: src) and its address.
func targetKey(src uint64, addr string) uint64 {
	return ilabels.Mix(src ^ xxhash.Sum64String(addr))
}

// pairs matches each group of b with a group of a that is identical: the
// same source, the same labels map and the very targets (address strings
// and label sets), in order, as the assignment shares them from one
// reshard to the next. It
// reports, for each group of a and of b, whether it found its pair; an
// empty group pairs with nothing. Groups are compared by identity, never
// read, so that a collector's thousand groups cost a thousand lookups.
func pairs(a, b []*tstore.Group) (inA, inB []bool) {
	type groupKey struct {
		source        string
		labels, first uintptr
		n             int
	}
	inA, inB = make([]bool, len(a)), make([]bool, len(b))
	for j, i := range pairBy(a, b, func(g *tstore.Group) groupKey {
		return groupKey{source: g.Source, labels: ilabels.Identity(g.Labels), first: tstore.Identity(g.Targets[0]), n: len(g.Targets)}
	}, tstore.SameTargets) {
		if i >= 0 {
			inA[i], inB[j] = true, true
		}
	}
	return inA, inB
}

// pairBy gives, for each group of b, the index of the group of a it pairs
// with, or -1: groups of a are looked up by key and taken by same, each
// once. Nil and empty groups pair with nothing.
func pairBy[K comparable](a, b []*tstore.Group, key func(*tstore.Group) K, same func(x, y *tstore.Group) bool) []int {
	byKey := make(map[K][]int, len(a))
	for i, g := range a {
		if g != nil && len(g.Targets) > 0 {
			k := key(g)
			byKey[k] = append(byKey[k], i)
		}
	}
	out := make([]int, len(b))
	for j, g := range b {
		out[j] = -1
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		k := key(g)
		at := slices.IndexFunc(byKey[k], func(i int) bool { return same(a[i], g) })
		if at < 0 {
			continue
		}
		out[j] = byKey[k][at]
		byKey[k] = slices.Delete(byKey[k], at, at+1)
	}
	return out
}

// union is a's groups, then those targets of b that a does not have, in
// groups of their own source and labels. It is a itself when b adds
// nothing. A group of b identical to one of a adds nothing, and only a's
// groups of the sources that b's others have are looked at.
func union(a, b []*tstore.Group) []*tstore.Group {
	if len(b) == 0 || (len(a) == len(b) && &a[0] == &b[0]) {
		return a
	}
	_, inB := pairs(a, b)
	sources := map[string]bool{}
	for j, g := range b {
		if !inB[j] && g != nil && len(g.Targets) > 0 {
			sources[g.Source] = true
		}
	}
	if len(sources) == 0 {
		if a == nil {
			return []*tstore.Group{}
		}
		return a
	}
	have := map[uint64]struct{}{}
	for _, g := range a {
		if g == nil || !sources[g.Source] {
			continue
		}
		src := xxhash.Sum64String(g.Source)
		for _, addr := range g.Targets {
			have[targetKey(src, addr)] = struct{}{}
		}
	}
	out := a
	for j, g := range b {
		if inB[j] || g == nil {
			continue
		}
		var extra []int
		src := xxhash.Sum64String(g.Source)
		for i, addr := range g.Targets {
			if _, ok := have[targetKey(src, addr)]; !ok {
				extra = append(extra, i)
			}
		}
		if len(extra) > 0 {
			if len(out) == len(a) {
				out = slices.Clip(slices.Clone(a))
			}
			out = append(out, g.With(extra))
		}
	}
	if out == nil {
		out = []*tstore.Group{}
	}
	return out
}
