package promshard

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/internal/tstore"
	"github.com/promshard/promshard/watch"
)

// defaultAuditInterval is how often a job is audited besides after each
// reshard.
const defaultAuditInterval = 30 * time.Second

// auditSchedule is a job's audit (Options.Audit): the last report, and the
// collectors found wrong, since when, for repairs. It runs in a goroutine
// of its own, after each reshard and every interval.
type auditSchedule struct {
	job, pool   string
	auditor     *audit.Auditor
	repairAfter time.Duration
	m           *metrics
	log         *slog.Logger
	kick        chan struct{} // size 1: an audit after a reshard

	mu        sync.Mutex
	last      *audit.Report
	unscraped float64              // target-seconds scraped by fewer collectors than assigned
	doubled   float64              // and by more, beyond planned hand-offs
	disagree  map[string]time.Time // collectors the audit found wrong, since when
}

// after asks for an audit after a reshard.
func (a *auditSchedule) after() {
	if a == nil {
		return
	}
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// report is the last audit's report; nil before the first.
func (a *auditSchedule) report() *audit.Report {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// collectorsOf are the collectors that may scrape a job's targets: in
// central mode the assignment's, the known ones and those that left lately
// (one that left but still runs is caught scraping); in self mode only the
// Self collector. url gives each one's Prometheus API.
func collectorsOf(snap Snapshot, known, left []watch.Member, url func(watch.Member) string) []audit.Collector {
	ms := map[string]watch.Member{}
	for _, set := range [][]watch.Member{snap.Members, known, left} {
		for _, m := range set {
			if _, ok := ms[m.ID]; !ok && m.ID != "" {
				ms[m.ID] = m
			}
		}
	}
	if snap.Self != "" {
		ms = map[string]watch.Member{snap.Self: ms[snap.Self]}
	}
	var out []audit.Collector
	for _, id := range slices.Sorted(maps.Keys(ms)) {
		if ms[id].Address != "" {
			out = append(out, audit.Collector{ID: id, URL: url(ms[id])})
		}
	}
	return out
}

// auditJob is what an audit of the job reads: in central mode the whole
// assignment; in self mode only this collector's share.
func auditJob(name, pool string, snap Snapshot, collectors []audit.Collector) audit.Job {
	aj := audit.Job{Name: name, ScrapePool: pool, Compact: snap.Groups, Generation: snap.Generation,
		Collectors: collectors}
	if snap.Assignment != nil {
		aj.Unplaced = snap.Assignment.Unplaced
	}
	if self := snap.Self; self != "" {
		aj.Compact, aj.Unplaced = map[string][]*tstore.Group{self: snap.Groups[self]}, nil
	}
	return aj
}

// run audits the job once and keeps the report. It returns the collectors
// that have disagreed with their assignment for longer than repairAfter
// (none when repairs are off), sorted.
func (a *auditSchedule) run(ctx context.Context, snap Snapshot, collectors []audit.Collector, handing map[string]bool) []string {
	if snap.Assignment == nil {
		return nil
	}
	rep, err := a.auditor.Audit(ctx, auditJob(a.job, a.pool, snap, collectors))
	if err != nil {
		return nil // ctx ended
	}
	a.mu.Lock()
	prev := a.last
	a.last = rep
	a.mu.Unlock()
	if prev != nil && rep.Time.After(prev.Time) {
		// What this audit saw is taken to have lasted since the last one.
		since := rep.Time.Sub(prev.Time).Seconds()
		fewer, more := scrapeGaps(rep, handing)
		a.m.unscraped.WithLabelValues(a.job).Add(float64(fewer) * since)
		a.m.doubled.WithLabelValues(a.job).Add(float64(more) * since)
		a.mu.Lock()
		a.unscraped += float64(fewer) * since
		a.doubled += float64(more) * since
		a.mu.Unlock()
	}
	if !rep.OK() {
		a.log.Warn("audit: collectors do not scrape what they are assigned", "job", a.job,
			"missing", rep.Counts[audit.Missing], "orphan", rep.Counts[audit.Orphan], "extra", rep.Counts[audit.Extra],
			"down", rep.Counts[audit.Down], "unknown", rep.Counts[audit.Unknown], "unreachable", len(rep.Unreachable))
	}
	if a.repairAfter <= 0 {
		return nil
	}
	return a.due(rep)
}

// gaps returns the target-seconds scraped by fewer, and by more,
// collectors than assigned since the job started. Nil-safe.
func (a *auditSchedule) gaps() (unscraped, doubled float64) {
	if a == nil {
		return 0, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.unscraped, a.doubled
}

// scrapeGaps counts the targets an audit found scraped by fewer collectors
// than assigned (fewer) and by more (more). A target whose hand-off is
// pending is written for its old and its new owners, as planned: it counts
// as fewer only when neither scrapes it, and never as more. A
// collector scrapes a target once it has scraped it (health up or down,
// not unknown); one that did not answer scrapes nothing that can be seen,
// so the targets only it was assigned count as fewer: a dead collector's
// targets are unscraped from the moment it stops answering.
func scrapeGaps(rep *audit.Report, handing map[string]bool) (fewer, more int) {
	for _, p := range rep.Problems {
		scrapers := map[string]bool{}
		for _, sc := range p.Scrapes {
			if sc.Health == "up" || sc.Health == "down" {
				scrapers[sc.Collector] = true
			}
		}
		switch {
		case handing[p.Address]: // assigned to its old and new owners at once, as planned: one of them is enough
			if len(scrapers) == 0 {
				fewer++
			}
		case len(scrapers) < len(p.Intended):
			fewer++
		case len(scrapers) > len(p.Intended):
			more++
		}
	}
	return fewer, more
}

// due records who the report finds wrong and returns those wrong for
// repairAfter.
func (a *auditSchedule) due(rep *audit.Report) []string {
	bad := wrongCollectors(rep)
	var due []string
	a.mu.Lock()
	for id := range a.disagree {
		if !bad[id] {
			delete(a.disagree, id)
		}
	}
	for id := range bad {
		if since, ok := a.disagree[id]; !ok {
			a.disagree[id] = rep.Time
		} else if rep.Time.Sub(since) >= a.repairAfter {
			due = append(due, id)
			delete(a.disagree, id)
		}
	}
	a.mu.Unlock()
	if len(due) == 0 {
		return nil
	}
	slices.Sort(due)
	a.log.Warn("audit: repairing collectors that disagree with their assignment", "job", a.job,
		"collectors", due, "after", a.repairAfter)
	for _, id := range due {
		a.m.repairs.WithLabelValues(a.job, id).Inc()
	}
	return due
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
