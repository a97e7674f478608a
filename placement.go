package promshard

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	ilabels "github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/sdfile"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
)

// placer is a job's placement rules: its relabelling, applied to each
// target before it is placed, and the label that names the zone a target
// prefers. Each target is relabelled once, when its group first appears:
// the answers are kept by group, for as long as the group is in the pool.
type placer struct {
	rules     []*relabel.Config
	zoneLabel string
	keyLabel  string // the label that places a target: __address__, or Job.Shard.KeyLabel
	pinStrict bool   // Job.PinFallback "none"

	mu      sync.Mutex
	byGroup map[*tstore.Group][]shard.Placement
	counts  PlacementCounts // of the pool last prepared
}

// PlacementCounts counts the targets of a job's last reshard that
// Job.Relabel and the override labels placed apart from the rest. Targets
// with an override are placed outside the balancer: max_series does not
// bound them, though their series count in their collectors' totals.
type PlacementCounts struct {
	// Dropped are the targets Job.Relabel left out of the pool.
	Dropped int `json:"dropped,omitempty"`
	// Every, Replicas and Isolate count the targets whose LabelEvery,
	// LabelReplicas or LabelIsolate is set (the targets isolated by
	// measured series are in shard.Assignment.Isolated).
	Every    int `json:"every,omitempty"`
	Replicas int `json:"replicas,omitempty"`
	Isolate  int `json:"isolate,omitempty"`
	// Pinned counts the targets whose LabelPin is set, by the collector
	// it names.
	Pinned map[string]int `json:"pinned,omitempty"`
}

// Overrides is the number of targets with an override label.
func (c PlacementCounts) Overrides() int {
	n := c.Every + c.Replicas + c.Isolate
	for _, v := range c.Pinned {
		n += v
	}
	return n
}

// add counts one target's placement.
func (c *PlacementCounts) add(pl shard.Placement) {
	switch {
	case pl.Drop:
		c.Dropped++
	case pl.Every:
		c.Every++
	case pl.Pin != "":
		if c.Pinned == nil {
			c.Pinned = map[string]int{}
		}
		c.Pinned[pl.Pin]++
	case pl.Replicas > 0:
		c.Replicas++
	case pl.Isolate:
		c.Isolate++
	}
}

// newPlacer is a job's placer.
func newPlacer(jc Job) *placer {
	key := string(jc.Shard.KeyLabel)
	if key == "" {
		key = model.AddressLabel
	}
	return &placer{rules: jc.Relabel, zoneLabel: jc.PreferZoneLabel, keyLabel: key, pinStrict: jc.PinFallback == PinFallbackNone,
		byGroup: map[*tstore.Group][]shard.Placement{}}
}

// validatePlacement checks the job's placement rules.
func (jc Job) validatePlacement() error {
	for i, rc := range jc.Relabel {
		if rc == nil {
			return fmt.Errorf("Job.Relabel[%d]: nil", i)
		}
		if err := rc.Validate(model.UTF8Validation); err != nil {
			return fmt.Errorf("Job.Relabel[%d]: %w", i, err)
		}
	}
	if jc.PinFallback != "" && jc.PinFallback != PinFallbackRing && jc.PinFallback != PinFallbackNone {
		return fmt.Errorf("Job.PinFallback %q: want %q (the default) or %q", jc.PinFallback, PinFallbackRing, PinFallbackNone)
	}
	if jc.PreferZoneLabel != "" {
		if !ilabels.ValidName(jc.PreferZoneLabel) {
			return fmt.Errorf("Job.PreferZoneLabel %q: not a valid label name", jc.PreferZoneLabel)
		}
		if jc.SpreadBy == "" {
			return fmt.Errorf("Job.PreferZoneLabel %q needs Job.SpreadBy: the collectors' zones come from it", jc.PreferZoneLabel)
		}
	}
	return nil
}

// Reserved target labels that override how one target is placed. They
// are read from the target, else its group, after Job.Relabel (so that a
// rule can set them), and never written to a file: the file_sd writer
// leaves out every label that starts with __promshard_.
const (
	// LabelEvery "true" places the target on every collector (a
	// kube-state-metrics-like singleton that every shard must scrape).
	LabelEvery = "__promshard_every__"
	// LabelPin names the collector (its member ID) that alone scrapes the
	// target. While that collector is not in the ring, the ring places the
	// target as any other, or, with Job.PinFallback "none", nowhere.
	LabelPin = "__promshard_pin__"
	// LabelReplicas is the target's own replica count (an integer from 1,
	// at most the number of collectors), instead of Shard.Replicas.
	LabelReplicas = "__promshard_replicas__"
	// LabelIsolate "true" gives the target a collector of its own (a heavy
	// exporter): no other target is placed there (see
	// shard.Options.IsolateAbove, which isolates by measured series too).
	LabelIsolate = "__promshard_isolate__"
)

// options returns opts with the placement of the targets of groups: each
// group not seen before is placed now (relabelled, its overrides read),
// and groups no longer in the pool are forgotten. When no target has a
// placement of its own, opts is left as it is: the plain path.
func (p *placer) options(opts shard.Options, groups []*tstore.Group) shard.Options {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[*tstore.Group][]shard.Placement, len(groups))
	lb := labels.NewBuilder(labels.EmptyLabels())
	var counts PlacementCounts
	some := false
	for _, g := range groups {
		if g == nil {
			continue
		}
		ps, ok := p.byGroup[g]
		if !ok {
			ps = p.placeGroup(lb, g)
		}
		for _, pl := range ps {
			counts.add(pl)
		}
		next[g] = ps
		some = some || ps != nil
	}
	p.byGroup, p.counts = next, counts
	if some {
		opts.CompactPlacement = placementOf(next)
	}
	return opts
}

// placeGroup places each target of g; nil when none has a placement of
// its own.
func (p *placer) placeGroup(lb *labels.Builder, g *tstore.Group) []shard.Placement {
	if !p.active() && !hasReserved(g.Labels) && !slices.ContainsFunc(g.Own, hasReserved) {
		return nil
	}
	var ps []shard.Placement
	for i := range g.Targets {
		if pl, _ := p.place(lb, g.Labels, g.Target(i)); pl != (shard.Placement{}) {
			if ps == nil {
				ps = make([]shard.Placement, len(g.Targets))
			}
			ps[i] = pl
		}
	}
	return ps
}

// active reports whether the job has rules that apply to every target.
func (p *placer) active() bool { return len(p.rules) > 0 || p.zoneLabel != "" }

// hasReserved reports whether ls holds one of the reserved labels.
func hasReserved(ls model.LabelSet) bool {
	if len(ls) == 1 && ls[model.AddressLabel] != "" {
		return false
	}
	for k := range ls {
		if strings.HasPrefix(string(k), sdfile.ReservedPrefix) {
			return true
		}
	}
	return false
}

// placementOf answers shard.Options.Placement from a table, remembering
// the last group's answers (Assign asks group by group).
func placementOf(t map[*tstore.Group][]shard.Placement) func(*tstore.Group, int) shard.Placement {
	var last *tstore.Group
	var ps []shard.Placement
	return func(g *tstore.Group, i int) shard.Placement {
		if g != last {
			last, ps = g, t[g]
		}
		if i >= len(ps) {
			return shard.Placement{}
		}
		return ps[i]
	}
}

// place relabels one target and reads its overrides. Its key is kept only
// when the relabelling changed it; the zone and the overrides are read
// after the relabelling. bad names an override it ignored.
func (p *placer) place(lb *labels.Builder, group, t model.LabelSet) (pl shard.Placement, bad string) {
	get := func(name string) string { return string(lookup(t, group, name)) }
	if len(p.rules) > 0 {
		reset(lb, group, t)
		before := cmp.Or(lb.Get(p.keyLabel), lb.Get(model.AddressLabel))
		if !relabel.ProcessBuilder(lb, p.rules...) {
			return shard.Placement{Drop: true}, ""
		}
		if after := cmp.Or(lb.Get(p.keyLabel), lb.Get(model.AddressLabel)); after != before {
			pl.Key = strings.Clone(after)
		}
		get = func(name string) string { return strings.Clone(lb.Get(name)) }
	}
	if p.zoneLabel != "" {
		pl.Zone = get(p.zoneLabel)
	}
	if len(p.rules) == 0 && !hasReserved(t) && !hasReserved(group) {
		return pl, ""
	}
	pl.Every, pl.Isolate = get(LabelEvery) == "true", get(LabelIsolate) == "true"
	if pl.Pin = get(LabelPin); pl.Pin != "" {
		pl.PinStrict = p.pinStrict
	}
	if v := get(LabelReplicas); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return pl, fmt.Sprintf("%s %q is not a count from 1: ignored", LabelReplicas, v)
		}
		pl.Replicas = n
	}
	return pl, ""
}

// explain says what the rules did to target t of a group: its placement,
// and a sentence naming the rule that dropped it or rewrote its key.
func (p *placer) explain(group, t model.LabelSet) (shard.Placement, string) {
	lb := labels.NewBuilder(labels.EmptyLabels())
	pl, bad := p.place(lb, group, t)
	reset(lb, group, t)
	key := cmp.Or(lb.Get(p.keyLabel), lb.Get(model.AddressLabel))
	var notes []string
	for i, rc := range p.rules {
		if !relabel.ProcessBuilder(lb, rc) {
			notes = append(notes, fmt.Sprintf("relabel_configs[%d] (action %s) dropped it", i, rc.Action))
			break
		}
		if now := cmp.Or(lb.Get(p.keyLabel), lb.Get(model.AddressLabel)); now != key {
			notes = append(notes, fmt.Sprintf("relabel_configs[%d] (action %s) rewrote its %s from %q to %q", i, rc.Action, p.keyLabel, key, now))
			key = now
		}
	}
	if pl.Zone != "" {
		notes = append(notes, fmt.Sprintf("%s is %q", p.zoneLabel, pl.Zone))
	}
	switch {
	case pl.Every:
		notes = append(notes, LabelEvery+" is true")
	case pl.Pin != "":
		notes = append(notes, fmt.Sprintf("%s is %q", LabelPin, pl.Pin))
	case pl.Replicas > 0:
		notes = append(notes, fmt.Sprintf("%s is %d", LabelReplicas, pl.Replicas))
	case pl.Isolate:
		notes = append(notes, LabelIsolate+" is true")
	}
	if bad != "" {
		notes = append(notes, bad)
	}
	return pl, strings.Join(notes, "; ")
}

// placed counts the placements of the pool last prepared.
func (p *placer) placed() PlacementCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts
}

// reset sets lb to a target's labels: its group's, then its own.
func reset(lb *labels.Builder, group, t model.LabelSet) {
	lb.Reset(labels.EmptyLabels())
	for k, v := range group {
		lb.Set(string(k), string(v))
	}
	for k, v := range t {
		lb.Set(string(k), string(v))
	}
}

// lookup is a label's value on the target, else on its group.
func lookup(t, group model.LabelSet, name string) model.LabelValue {
	if name == "" {
		return ""
	}
	if v, ok := t[model.LabelName(name)]; ok {
		return v
	}
	return group[model.LabelName(name)]
}
