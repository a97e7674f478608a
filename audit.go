package promshard

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/watch"
)

// departedFor is how long a collector that left is still audited: one that
// left but runs on is caught scraping its old targets.
const departedFor = 10 * time.Minute

// departed is a member that left the member set, and when.
type departed struct {
	m  watch.Member
	at time.Time
}

// noteDeparted records the members that left and forgets those back.
func (j *job) noteDeparted(now, prev []watch.Member) {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := time.Now()
	for _, m := range prev {
		if !slices.ContainsFunc(now, func(n watch.Member) bool { return n.ID == m.ID }) {
			j.departed[m.ID] = departed{m, t}
		}
	}
	for _, m := range now {
		delete(j.departed, m.ID)
	}
}

// auditLoop audits the job after each reshard and every AuditInterval.
func (j *job) auditLoop(ctx context.Context) {
	every(ctx, j.s.opts.AuditInterval, j.auditKick, func() { j.runAudit(ctx) })
}

// every calls fn every d, and whenever kick fires (nil: never), until ctx
// ends.
func every(ctx context.Context, d time.Duration, kick <-chan struct{}, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		fn()
	}
}

// auditJob is what an audit of the job reads: in central mode the whole
// assignment and every collector that might scrape it; in self mode only
// this collector and its share.
func (j *job) auditJob(snap Snapshot) audit.Job {
	now := time.Now()
	ms := map[string]watch.Member{}
	for _, m := range snap.Members {
		ms[m.ID] = m
	}
	for _, m := range j.cfg.Known {
		if _, ok := ms[m.ID]; !ok && m.ID != "" {
			ms[m.ID] = m
		}
	}
	j.mu.Lock()
	for id, d := range j.departed {
		if now.Sub(d.at) > departedFor {
			delete(j.departed, id)
		} else if _, ok := ms[id]; !ok {
			ms[id] = d.m
		}
	}
	j.mu.Unlock()
	aj := audit.Job{Name: j.cfg.Name, ScrapePool: j.cfg.ScrapePool, Assignment: snap.Groups,
		Generation: snap.Generation}
	if snap.Assignment != nil {
		aj.Unplaced = snap.Assignment.Unplaced
	}
	if self := j.cfg.Self; self != "" {
		aj.Assignment, aj.Unplaced = map[string][]*targetgroup.Group{self: snap.Groups[self]}, nil
		ms = map[string]watch.Member{self: ms[self]}
	}
	for _, id := range slices.Sorted(maps.Keys(ms)) {
		if ms[id].Address != "" {
			aj.Collectors = append(aj.Collectors, audit.Collector{ID: id, URL: j.s.opts.CollectorURL(ms[id])})
		}
	}
	return aj
}

// runAudit audits the job once, keeps the report and repairs collectors
// that disagree for longer than AuditRepairAfter.
func (j *job) runAudit(ctx context.Context) {
	j.stateMu.RLock()
	snap := j.snap
	j.stateMu.RUnlock()
	if snap.Assignment == nil {
		return
	}
	rep, err := j.s.audit.Audit(ctx, j.auditJob(snap))
	if err != nil {
		return // ctx ended
	}
	j.stateMu.Lock()
	j.snap.Audit = rep
	j.stateMu.Unlock()
	log := j.s.opts.Logger
	if !rep.OK() {
		log.Warn("audit: collectors do not scrape what they are assigned", "job", j.cfg.Name,
			"missing", rep.Counts[audit.Missing], "orphan", rep.Counts[audit.Orphan], "extra", rep.Counts[audit.Extra],
			"down", rep.Counts[audit.Down], "unknown", rep.Counts[audit.Unknown], "unreachable", len(rep.Unreachable))
	}
	if j.s.opts.AuditRepairAfter > 0 {
		j.repair(rep, snap)
	}
}

// wrongCollectors names the collectors that a report finds wrong: one that
// does not scrape a target it should, or scrapes one it should not.
func wrongCollectors(rep *audit.Report) map[string]bool {
	bad := map[string]bool{}
	for _, t := range rep.Problems {
		scrapes := func(id string) bool {
			return slices.ContainsFunc(t.Scrapes, func(s audit.Scrape) bool { return s.Collector == id })
		}
		if slices.Contains(t.States, audit.Missing) {
			for _, id := range t.Intended {
				if !scrapes(id) {
					bad[id] = true
				}
			}
		}
		if slices.Contains(t.States, audit.Extra) {
			for _, s := range t.Scrapes {
				if !slices.Contains(t.Intended, s.Collector) {
					bad[s.Collector] = true
				}
			}
		}
	}
	return bad
}

// repair reshards the job (which rewrites a file changed by hand) and
// reloads the collectors that have been wrong for AuditRepairAfter.
func (j *job) repair(rep *audit.Report, snap Snapshot) {
	bad := wrongCollectors(rep)
	var due []string
	j.mu.Lock()
	for id := range j.disagree {
		if !bad[id] {
			delete(j.disagree, id)
		}
	}
	for id := range bad {
		if since, ok := j.disagree[id]; !ok {
			j.disagree[id] = rep.Time
		} else if rep.Time.Sub(since) >= j.s.opts.AuditRepairAfter {
			due = append(due, id)
			delete(j.disagree, id)
		}
	}
	j.mu.Unlock()
	if len(due) == 0 {
		return
	}
	slices.Sort(due)
	j.s.opts.Logger.Warn("audit: repairing collectors that disagree with their assignment", "job", j.cfg.Name,
		"collectors", due, "after", j.s.opts.AuditRepairAfter)
	for _, id := range due {
		j.m.repairs.WithLabelValues(j.cfg.Name, id).Inc()
	}
	j.poke("audit repair")
	j.reloads.add(j.collectors(due, snap.Members, nil))
}
