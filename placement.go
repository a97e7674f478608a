package promshard

import (
	"cmp"
	"fmt"
	"strings"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"

	ilabels "github.com/promshard/promshard/internal/labels"
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

	mu      sync.Mutex
	byGroup map[*targetgroup.Group][]shard.Placement
	dropped int // in the pool last prepared
}

// newPlacer is nil when the job has no placement rules.
func newPlacer(jc Job) *placer {
	if len(jc.Relabel) == 0 && jc.PreferZoneLabel == "" {
		return nil
	}
	key := string(jc.Shard.KeyLabel)
	if key == "" {
		key = model.AddressLabel
	}
	return &placer{rules: jc.Relabel, zoneLabel: jc.PreferZoneLabel, keyLabel: key, byGroup: map[*targetgroup.Group][]shard.Placement{}}
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

// options returns opts with the placement of the targets of groups: each
// group not seen before is relabelled now, and groups no longer in the
// pool are forgotten.
func (p *placer) options(opts shard.Options, groups []*targetgroup.Group) shard.Options {
	if p == nil {
		return opts
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[*targetgroup.Group][]shard.Placement, len(groups))
	lb := labels.NewBuilder(labels.EmptyLabels())
	dropped := 0
	for _, g := range groups {
		if g == nil {
			continue
		}
		ps, ok := p.byGroup[g]
		if !ok {
			ps = make([]shard.Placement, len(g.Targets))
			for i, t := range g.Targets {
				ps[i] = p.place(lb, g.Labels, t)
			}
		}
		for _, pl := range ps {
			if pl.Drop {
				dropped++
			}
		}
		next[g] = ps
	}
	p.byGroup, p.dropped = next, dropped
	opts.Placement = placementOf(next)
	return opts
}

// placementOf answers shard.Options.Placement from a table, remembering
// the last group's answers (Assign asks group by group).
func placementOf(t map[*targetgroup.Group][]shard.Placement) func(*targetgroup.Group, int) shard.Placement {
	var last *targetgroup.Group
	var ps []shard.Placement
	return func(g *targetgroup.Group, i int) shard.Placement {
		if g != last {
			last, ps = g, t[g]
		}
		if i >= len(ps) {
			return shard.Placement{}
		}
		return ps[i]
	}
}

// place relabels one target. Its key is kept only when the relabelling
// changed it, and the zone is read after the relabelling.
func (p *placer) place(lb *labels.Builder, group, t model.LabelSet) shard.Placement {
	if len(p.rules) == 0 {
		return shard.Placement{Zone: string(lookup(t, group, p.zoneLabel))}
	}
	reset(lb, group, t)
	before := lb.Get(p.keyLabel)
	if before == "" {
		before = lb.Get(model.AddressLabel)
	}
	if !relabel.ProcessBuilder(lb, p.rules...) {
		return shard.Placement{Drop: true}
	}
	var pl shard.Placement
	if after := cmp.Or(lb.Get(p.keyLabel), lb.Get(model.AddressLabel)); after != before {
		pl.Key = strings.Clone(after)
	}
	if p.zoneLabel != "" {
		pl.Zone = strings.Clone(lb.Get(p.zoneLabel))
	}
	return pl
}

// explain says what the rules did to target t of a group: its placement,
// and a sentence naming the rule that dropped it or rewrote its key.
func (p *placer) explain(group, t model.LabelSet) (shard.Placement, string) {
	if p == nil {
		return shard.Placement{}, ""
	}
	lb := labels.NewBuilder(labels.EmptyLabels())
	pl := p.place(lb, group, t)
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
	return pl, strings.Join(notes, "; ")
}

// droppedTargets is how many targets the rules left out of the pool last
// prepared.
func (p *placer) droppedTargets() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
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
