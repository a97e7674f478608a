package promshard

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/watch"
)

// DefaultHandoffTimeout bounds how long an old owner keeps a target that
// its new owner has not been seen scraping.
const DefaultHandoffTimeout = 2 * time.Minute

// handoffPoll is how often pending hand-offs ask the new owners what they
// scrape.
const handoffPoll = time.Second

// scrapeReader reads what a collector scrapes: an [audit.Auditor].
type scrapeReader interface {
	Read(ctx context.Context, c audit.Collector, pool string) (map[string]audit.Scrape, error)
}

// handoff is a target on its way from live collectors to new ones: the old
// owners keep it in their outputs until every new owner scrapes it.
type handoff struct {
	group  *targetgroup.Group // its group in the new assignment (source, labels)
	target model.LabelSet
	keep   []string // old owners, alive, that still hold it
	wait   []string // new owners not yet seen scraping it
	since  time.Time
}

func (h *handoff) addr() string { return string(h.target[model.AddressLabel]) }

// placement is where a target is written.
type placement struct {
	owners []string
	group  *targetgroup.Group
	target model.LabelSet
}

// placements indexes groups by target (its group's source and its address).
func placements(groups map[string][]*targetgroup.Group) map[string]*placement {
	out := map[string]*placement{}
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		for _, g := range groups[id] {
			for _, t := range g.Targets {
				key := g.Source + "\x00" + string(t[model.AddressLabel])
				p := out[key]
				if p == nil {
					p = &placement{group: g, target: t}
					out[key] = p
				}
				if !slices.Contains(p.owners, id) {
					p.owners = append(p.owners, id)
				}
			}
		}
	}
	return out
}

// planHandoffs updates the pending hand-offs for the next assignment and
// returns what the outputs get: next, plus each pending target in the
// outputs of the old owners that keep it. A move away from a collector that
// left is no hand-off: its new owner gets it at once, as always. Targets
// move between live collectors only when the member set changes, so the
// targets are compared only then, or while hand-offs are pending.
//
// ring are the members the assignment was made for, alive those that still
// scrape: the ring and drained collectors.
//
// kept is the number of pending hand-offs the returned groups hold: the
// confirmer may end some meanwhile, but those groups still keep them.
func (j *job) planHandoffs(next map[string][]*targetgroup.Group, ring, alive []watch.Member, now time.Time) (groups map[string][]*targetgroup.Group, kept int) {
	j.hmu.Lock()
	defer j.hmu.Unlock()
	key := j.memberKey(ring)
	changed := key != j.lastMembers
	j.lastMembers = key
	if j.written == nil || (!changed && len(j.pending) == 0) {
		return next, 0
	}
	isAlive := map[string]bool{}
	for _, m := range alive {
		isAlive[m.ID] = true
	}
	old := placements(j.written)
	pending := map[string]*handoff{}
	for k, np := range placements(next) {
		op := old[k]
		if op == nil {
			continue // a new target: nobody to hand it over
		}
		var keep, wait []string
		for _, id := range op.owners {
			if !slices.Contains(np.owners, id) && isAlive[id] && (j.cfg.Self == "" || id == j.cfg.Self) {
				keep = append(keep, id)
			}
		}
		p := j.pending[k]
		for _, id := range np.owners {
			if !slices.Contains(op.owners, id) || (p != nil && slices.Contains(p.wait, id)) {
				wait = append(wait, id)
			}
		}
		if len(keep) == 0 || len(wait) == 0 {
			continue
		}
		h := &handoff{group: np.group, target: np.target, keep: keep, wait: wait, since: now}
		if p != nil {
			h.since = p.since
		}
		pending[k] = h
	}
	cancelled := 0
	for k := range j.pending {
		if pending[k] == nil {
			cancelled++
		}
	}
	j.m.handoffs.WithLabelValues(j.cfg.Name, "cancelled").Add(float64(cancelled))
	started := len(pending) - (len(j.pending) - cancelled)
	if started > 0 {
		j.s.opts.Logger.Info("handing targets over: old owners keep them until the new owners scrape them",
			"job", j.cfg.Name, "targets", len(pending))
	}
	j.pending = pending
	j.m.handoffsPending.WithLabelValues(j.cfg.Name).Set(float64(len(pending)))
	return withKept(next, pending), len(pending)
}

// withKept returns groups with each pending target added back to the
// outputs of the old owners that keep it, in groups of its own source and
// labels after the member's others, in a fixed order.
func withKept(groups map[string][]*targetgroup.Group, pending map[string]*handoff) map[string][]*targetgroup.Group {
	if len(pending) == 0 {
		return groups
	}
	kept := map[string][]*handoff{}
	for _, h := range pending {
		for _, id := range h.keep {
			kept[id] = append(kept[id], h)
		}
	}
	out := maps.Clone(groups)
	for id, hs := range kept {
		slices.SortFunc(hs, func(a, b *handoff) int {
			return cmp.Or(strings.Compare(a.group.Source, b.group.Source),
				strings.Compare(a.group.Labels.String(), b.group.Labels.String()), strings.Compare(a.addr(), b.addr()))
		})
		gs := slices.Clone(out[id])
		var last *handoff
		for _, h := range hs {
			if last == nil || last.group != h.group {
				gs = append(gs, &targetgroup.Group{Source: h.group.Source, Labels: h.group.Labels})
			}
			g := gs[len(gs)-1]
			g.Targets = append(g.Targets, h.target)
			last = h
		}
		out[id] = gs
	}
	return out
}

// handoffLoop confirms pending hand-offs every handoffPoll until ctx ends.
func (j *job) handoffLoop(ctx context.Context) {
	every(ctx, handoffPoll, nil, func() { j.confirmHandoffs(ctx) })
}

// confirmHandoffs reads what the awaited new owners scrape, ends the
// hand-offs they confirm (health up, scraped after the hand-off began) and
// those past the timeout, and asks for a reshard to drop those targets
// from their old owners.
func (j *job) confirmHandoffs(ctx context.Context) {
	j.hmu.Lock()
	waited := map[string]bool{}
	for _, h := range j.pending {
		for _, id := range h.wait {
			waited[id] = true
		}
	}
	j.hmu.Unlock()
	if len(waited) == 0 {
		return
	}
	j.mu.Lock()
	members := j.members
	j.mu.Unlock()
	seen := map[string]map[string]audit.Scrape{}
	for _, id := range slices.Sorted(maps.Keys(waited)) {
		i := slices.IndexFunc(members, func(m watch.Member) bool { return m.ID == id })
		if i < 0 {
			continue // it left: the next reshard cancels its hand-offs
		}
		got, err := j.s.reader.Read(ctx, audit.Collector{ID: id, URL: j.s.opts.CollectorURL(members[i])},
			cmp.Or(j.cfg.ScrapePool, j.cfg.Name))
		if err != nil {
			j.s.opts.Logger.Debug("hand-off: a new owner did not answer", "job", j.cfg.Name, "collector", id, "err", err)
			continue
		}
		seen[id] = got
	}
	now := time.Now()
	j.hmu.Lock()
	done := 0
	for k, h := range j.pending {
		h.wait = slices.DeleteFunc(h.wait, func(id string) bool {
			s, ok := seen[id][h.addr()]
			return ok && s.Health == "up" && s.LastScrape.After(h.since)
		})
		switch {
		case len(h.wait) == 0:
			j.m.handoffs.WithLabelValues(j.cfg.Name, "confirmed").Inc()
			j.m.handoffTime.WithLabelValues(j.cfg.Name).Observe(now.Sub(h.since).Seconds())
		case now.Sub(h.since) >= j.s.opts.HandoffTimeout:
			j.m.handoffs.WithLabelValues(j.cfg.Name, "timeout").Inc()
			j.s.opts.Logger.Warn("hand-off timed out: the old owners drop a target the new ones were not seen scraping",
				"job", j.cfg.Name, "target", h.addr(), "old", h.keep, "new", h.wait, "after", j.s.opts.HandoffTimeout)
		default:
			continue
		}
		delete(j.pending, k)
		done++
	}
	j.m.handoffsPending.WithLabelValues(j.cfg.Name).Set(float64(len(j.pending)))
	j.hmu.Unlock()
	if done > 0 {
		j.poke("handoff")
	}
}
