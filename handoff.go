package promshard

import (
	"cmp"
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

// defaultHandoffTimeout bounds how long an old owner keeps a target that
// its new owner has not been seen scraping.
const defaultHandoffTimeout = 2 * time.Minute

// handoffPoll is how often pending hand-offs ask the new owners what they
// scrape.
const handoffPoll = time.Second

// scrapeReader reads what a collector scrapes: an [audit.Auditor].
type scrapeReader interface {
	Read(ctx context.Context, c audit.Collector, pool string) (map[string]audit.Scrape, error)
}

// handoffs are a job's pending hand-offs (Options.Handoff). The loop plans
// them in each reshard; the confirmer ends them from its own goroutine.
type handoffs struct {
	job     string
	self    string // self mode: only this collector keeps targets
	timeout time.Duration
	m       *metrics
	log     *slog.Logger

	// compareAll compares every target, not only those of unmatched
	// groups: the reference the tests hold the plan to.
	compareAll bool

	mu          sync.Mutex
	pending     map[targetAt]*handoff
	lastMembers string // memberKey of the ring at the last plan
	// ver counts the changes to pending made outside a plan (hand-offs
	// that end, a reset, an adoption): a pass over the same inputs at the
	// same version would plan the same.
	ver uint64
}

// version is the count of changes to the pending hand-offs made outside
// a plan. Nil-safe: 0.
func (hs *handoffs) version() uint64 {
	if hs == nil {
		return 0
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.ver
}

func newHandoffs(job, self string, timeout time.Duration, m *metrics, log *slog.Logger) *handoffs {
	return &handoffs{job: job, self: self, timeout: timeout, m: m, log: log, pending: map[targetAt]*handoff{}}
}

// setSelf names the Self collector's member ID in self mode. Nil-safe.
func (hs *handoffs) setSelf(id string) {
	if hs != nil {
		hs.mu.Lock()
		hs.self = id
		hs.mu.Unlock()
	}
}

// adopt takes over prev's pending hand-offs; it reports whether there
// were any. Nil-safe on both sides.
func (hs *handoffs) adopt(prev *handoffs) bool {
	if hs == nil || prev == nil {
		return false
	}
	prev.mu.Lock()
	pending, ring := maps.Clone(prev.pending), prev.lastMembers
	prev.mu.Unlock()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.pending, hs.lastMembers = pending, ring
	hs.ver++
	return len(pending) > 0
}

// oldest is when the oldest pending hand-off began; zero without one.
func (hs *handoffs) oldest() time.Time {
	if hs == nil {
		return time.Time{}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	var t time.Time
	for _, h := range hs.pending {
		if t.IsZero() || h.since.Before(t) {
			t = h.since
		}
	}
	return t
}

// count is the number of pending hand-offs.
func (hs *handoffs) count() int {
	if hs == nil {
		return 0
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return len(hs.pending)
}

// reset drops every pending hand-off: a copy that stops leading, whose
// successor starts from its own plan.
func (hs *handoffs) reset() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	clear(hs.pending)
	hs.lastMembers = ""
	hs.ver++
	hs.m.handoffsPending.WithLabelValues(hs.job).Set(0)
}

// handoff is a target on its way from live collectors to new ones: the old
// owners keep it in their outputs until every new owner scrapes it.
type handoff struct {
	group *tstore.Group // its group in the new assignment (source, labels)
	at    int           // and its index there
	keep  []string      // old owners, alive, that still hold it
	wait  []string      // new owners not yet seen scraping it
	since time.Time
}

func (h *handoff) addr() string { return h.group.Targets[h.at] }

// placement is where a target is written.
type placement struct {
	owners []string
	group  *tstore.Group
	at     int
}

// targetAt names a target for the hand-off: its group's source and its
// address, both shared with the groups (no string is built per target).
type targetAt struct{ source, addr string }

// placements indexes groups by target (its group's source and its
// address), only the targets named in only, and not those of the groups in
// skip.
func placements(groups map[string][]*tstore.Group, only map[targetAt]struct{}, skip map[*tstore.Group]bool) map[targetAt]*placement {
	out := make(map[targetAt]*placement, len(only))
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		for _, g := range groups[id] {
			if skip[g] {
				continue
			}
			for i, addr := range g.Targets {
				key := targetAt{g.Source, addr}
				if _, ok := only[key]; !ok {
					continue
				}
				p := out[key]
				if p == nil {
					p = &placement{group: g, at: i}
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
// written is what the outputs hold, ringKey names the members the
// assignment was made for, and alive are those that still scrape: the ring
// and the drained collectors.
//
// kept is the number of pending hand-offs the returned groups hold: the
// confirmer may end some meanwhile, but those groups still keep them.
//
// exact says that written is, exactly, the assignment diff compares next
// with: then, with no hand-off pending, a diff in which no live collector
// loses a target plans nothing, without a look at the targets (a collector
// that left moves only its own).
func (hs *handoffs) plan(written, next map[string][]*tstore.Group, ringKey string, alive []watch.Member, now time.Time, exact bool, diff shard.Diff) (groups map[string][]*tstore.Group, kept int) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	changed := ringKey != hs.lastMembers
	hs.lastMembers = ringKey
	if written == nil || (!changed && len(hs.pending) == 0) {
		return next, 0
	}
	if exact && len(hs.pending) == 0 && !slices.ContainsFunc(alive, func(m watch.Member) bool {
		return diff.Members[m.ID].Lost > 0 && (hs.self == "" || m.ID == hs.self)
	}) {
		return next, 0
	}
	isAlive := map[string]bool{}
	for _, m := range alive {
		isAlive[m.ID] = true
	}
	olds, news := written, next
	if len(hs.pending) == 0 {
		// A collector whose output holds the very groups it gets neither
		// keeps nor waits for a target: only the others are compared (at a
		// start over outputs that are right, none).
		if olds, news = differing(written, next); len(olds) == 0 && len(news) == 0 {
			return next, 0
		}
	}
	// Only targets that a collector loses can be handed over, and those
	// pending: the others are left out before the look at every owner.
	// With none pending, a collector that holds a target on both sides
	// neither keeps nor waits for it, so the groups paired on both sides
	// are not looked at.
	only, same := unmatched(olds, news, hs.compareAll)
	if len(hs.pending) > 0 {
		same = nil
	}
	for k := range hs.pending {
		only[k] = struct{}{}
	}
	old := placements(olds, only, same)
	pending := map[targetAt]*handoff{}
	for k, np := range placements(news, only, same) {
		op := old[k]
		if op == nil {
			continue // a new target: nobody to hand it over
		}
		var keep, wait []string
		for _, id := range op.owners {
			if !slices.Contains(np.owners, id) && isAlive[id] && (hs.self == "" || id == hs.self) {
				keep = append(keep, id)
			}
		}
		p := hs.pending[k]
		for _, id := range np.owners {
			if !slices.Contains(op.owners, id) || (p != nil && slices.Contains(p.wait, id)) {
				wait = append(wait, id)
			}
		}
		if len(keep) == 0 || len(wait) == 0 {
			continue
		}
		h := &handoff{group: np.group, at: np.at, keep: keep, wait: wait, since: now}
		if p != nil {
			h.since = p.since
		}
		pending[k] = h
	}
	cancelled := 0
	for k := range hs.pending {
		if pending[k] == nil {
			cancelled++
		}
	}
	hs.m.handoffs.WithLabelValues(hs.job, "cancelled").Add(float64(cancelled))
	started := len(pending) - (len(hs.pending) - cancelled)
	if started > 0 {
		hs.log.Info("handing targets over: old owners keep them until the new owners scrape them",
			"job", hs.job, "targets", len(pending))
	}
	hs.pending = pending
	hs.m.handoffsPending.WithLabelValues(hs.job).Set(float64(len(pending)))
	return withKept(next, pending), len(pending)
}

// differing is written and next without the collectors that have the
// very same groups (the same pointers, in order) in both.
func differing(written, next map[string][]*tstore.Group) (olds, news map[string][]*tstore.Group) {
	olds, news = map[string][]*tstore.Group{}, map[string][]*tstore.Group{}
	for id, gs := range written {
		if n, ok := next[id]; !ok || !slices.Equal(gs, n) {
			olds[id] = gs
		}
	}
	for id, gs := range next {
		if w, ok := written[id]; !ok || !slices.Equal(gs, w) {
			news[id] = gs
		}
	}
	return olds, news
}

// unmatched names the targets that a collector can have lost: those of
// its old groups that [pairs] finds no identical new group for (a target
// that no collector lost is handed over to nobody, whatever it gains). It
// returns the paired groups of both sides as same: each holds targets its
// collector has on both sides. With all, it names every target and pairs
// nothing.
func unmatched(olds, news map[string][]*tstore.Group, all bool) (only map[targetAt]struct{}, same map[*tstore.Group]bool) {
	only, same = map[targetAt]struct{}{}, map[*tstore.Group]bool{}
	for id, gs := range olds {
		var inOld, inNew []bool
		if !all {
			inOld, inNew = pairs(gs, news[id])
		}
		for i, g := range gs {
			switch {
			case g == nil:
			case inOld != nil && inOld[i]:
				same[g] = true
			default:
				for _, addr := range g.Targets {
					only[targetAt{g.Source, addr}] = struct{}{}
				}
			}
		}
		for i, g := range news[id] {
			if inNew != nil && inNew[i] {
				same[g] = true
			}
		}
	}
	return only, same
}

// withKept returns groups with each pending target added back to the
// outputs of the old owners that keep it, in groups of its own source and
// labels after the member's others, in a fixed order.
func withKept(groups map[string][]*tstore.Group, pending map[targetAt]*handoff) map[string][]*tstore.Group {
	if len(pending) == 0 {
		return groups
	}
	kept := map[string][]*handoff{}
	for _, h := range pending {
		for _, id := range h.keep {
			kept[id] = append(kept[id], h)
		}
	}
	text := map[uintptr]string{} // each labels map as text, rendered once
	labelsOf := func(h *handoff) string {
		k := labels.Identity(h.group.Labels)
		s, ok := text[k]
		if !ok {
			s = h.group.Labels.String()
			text[k] = s
		}
		return s
	}
	out := maps.Clone(groups)
	for id, hs := range kept {
		slices.SortFunc(hs, func(a, b *handoff) int {
			return cmp.Or(strings.Compare(a.group.Source, b.group.Source),
				strings.Compare(labelsOf(a), labelsOf(b)), strings.Compare(a.addr(), b.addr()))
		})
		gs := slices.Clone(out[id])
		var last *handoff
		for _, h := range hs {
			if last == nil || last.group.Source != h.group.Source || labelsOf(last) != labelsOf(h) {
				gs = append(gs, &tstore.Group{Source: h.group.Source, Labels: h.group.Labels})
			}
			gs[len(gs)-1].Append(h.group, h.at)
			last = h
		}
		out[id] = gs
	}
	return out
}

// addresses are the addresses of the targets with a pending hand-off:
// their old and new owners both scrape them, as planned. Nil-safe.
func (hs *handoffs) addresses() map[string]bool {
	if hs == nil {
		return nil
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	out := make(map[string]bool, len(hs.pending))
	for _, h := range hs.pending {
		out[h.addr()] = true
	}
	return out
}

// awaited lists the new owners that pending hand-offs wait for, sorted.
func (hs *handoffs) awaited() []string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	waited := map[string]bool{}
	for _, h := range hs.pending {
		for _, id := range h.wait {
			waited[id] = true
		}
	}
	return slices.Sorted(maps.Keys(waited))
}

// confirm ends the hand-offs that what the new owners scrape (seen, by
// collector and address) confirms (health up, scraped after the hand-off
// began), and those past the timeout. It returns how many ended.
func (hs *handoffs) confirm(seen map[string]map[string]audit.Scrape, now time.Time) int {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	done := 0
	for k, h := range hs.pending {
		h.wait = slices.DeleteFunc(h.wait, func(id string) bool {
			s, ok := seen[id][h.addr()]
			return ok && s.Health == "up" && s.LastScrape.After(h.since)
		})
		switch {
		case len(h.wait) == 0:
			hs.m.handoffs.WithLabelValues(hs.job, "confirmed").Inc()
			hs.m.handoffTime.WithLabelValues(hs.job).Observe(now.Sub(h.since).Seconds())
		case now.Sub(h.since) >= hs.timeout:
			hs.m.handoffs.WithLabelValues(hs.job, "timeout").Inc()
			hs.log.Warn("hand-off timed out: the old owners drop a target the new ones were not seen scraping",
				"job", hs.job, "target", h.addr(), "old", h.keep, "new", h.wait, "after", hs.timeout)
		default:
			continue
		}
		delete(hs.pending, k)
		done++
	}
	if done > 0 {
		hs.ver++
	}
	hs.m.handoffsPending.WithLabelValues(hs.job).Set(float64(len(hs.pending)))
	return done
}
