package web

import (
	_ "embed"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/watch"
)

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"pct": func(f float64) float64 { return f * 100 },
}).Parse(statusHTML))

// statusPerPage bounds the collectors listed per job on one page.
const statusPerPage = 50

type statusPage struct {
	Now     time.Time
	Jobs    []statusJob
	Page    int
	Refresh int // seconds between reloads of the page; 0: off
}

type statusJob struct {
	Name, Ring, Role, Leader, Err string
	Replicas, Targets, Collectors int
	Epoch                         uint64
	Agrees, Ready, BySeries       bool
	// Good is set only when everything is as assigned: the last reshard
	// succeeded, the last audit found nothing, no hand-off and no reload
	// is pending.
	Good        bool
	Bars        []statusBar
	Out         []statusBar // out of the ring, holding nothing
	MeanPercent float64     // the mean target count, on the bars' scale
	Mean        float64
	Pages       []int
	Audit       *statusAudit
	Handoffs    int
	HandoffsAge time.Duration
	Reloads     []string // collectors whose reload has not succeeded yet
	Excluded    []string // healthy collectors out of the ring: an output cannot name them
	Held        []string // collectors that left while the partition guard holds the assignment
	Needed      int      // collectors the measured series need, with headroom; 0: unknown
	Events      []promshard.Event
	MoreEvents  int
	// Placement counts the targets dropped by relabel_configs and those
	// with an override; Crowded are the isolated targets that share a
	// collector, as none was free.
	Placement promshard.PlacementCounts
	Crowded   []string
}

type statusBar struct {
	ID, Address, Domain, State, Link string
	Targets                          int
	Weight                           uint32
	Series, Capacity                 uint64
	Percent                          float64
	Reload                           *reloadResult
	Heaviest                         []shard.TargetLoad
	// Isolated is the isolated target the collector holds alone (every
	// collector's and pinned targets aside); Pinned the number of targets
	// pinned to it.
	Isolated string
	Pinned   int
}

type reloadResult struct {
	At  time.Time
	Err string
}

type statusAudit struct {
	Unscraped, Doubled float64 // target-seconds since the start
	Time               time.Time
	OK                 bool
	States             []statusState
	Unreachable        []string
	Problems           []audit.Target
	More               int
}

type statusState struct {
	State audit.State
	N     int
	Link  string
}

// statusEvents and statusProblems bound the events and the audit's
// problems listed per job on the page (the API has them all).
const (
	statusEvents   = 50
	statusProblems = 20
)

// serveStatus renders the status page: per job whether all is as assigned,
// its collectors as bars (at most statusPerPage a page, whatever the
// fleet) with their weight, zone, series and last reload, the election,
// pending hand-offs, the audit's findings, and the events; a search and a
// simulation form that ask the API.
func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	refresh := 5
	if v, err := strconv.Atoi(q.Get("refresh")); err == nil && v >= 0 {
		refresh = v
	}
	data := statusPage{Now: time.Now(), Page: page, Refresh: refresh}
	for _, name := range h.s.Jobs() {
		snap, _ := h.s.Snapshot(name)
		jc, _ := h.s.Job(name)
		sj := statusJob{Name: name, Role: string(snap.Role), Leader: snap.Leader, Epoch: snap.Epoch.Epoch, Agrees: snap.Agrees,
			Ready: snap.Ready(), Handoffs: snap.Handoffs, Reloads: snap.PendingReloads, Excluded: snap.Last.Excluded, Held: snap.Last.Held, Needed: snap.CollectorsNeeded,
			BySeries: jc.Balance.By == promshard.BalanceBySeries, Placement: snap.Placement}
		if !snap.HandoffsSince.IsZero() {
			sj.HandoffsAge = time.Since(snap.HandoffsSince).Round(time.Second)
		}
		sj.Events = snap.Events[:min(len(snap.Events), statusEvents)]
		sj.MoreEvents = len(snap.Events) - len(sj.Events)
		if snap.Last.Err != nil {
			sj.Err = snap.Last.Err.Error()
		}
		if asg := snap.Assignment; asg != nil {
			sj.Ring, sj.Replicas, sj.Targets, sj.Collectors = string(asg.Ring), asg.RequestedReplicas, asg.Targets, len(asg.Members)
			sj.Bars, sj.Out, sj.Mean, sj.MeanPercent = statusBars(snap, jc.Balance.Capacity.MaxSeries)
			sj.Crowded = asg.Crowded
		}
		for i := range (len(sj.Bars) + statusPerPage - 1) / statusPerPage {
			sj.Pages = append(sj.Pages, i+1)
		}
		lo := min((page-1)*statusPerPage, len(sj.Bars))
		sj.Bars = sj.Bars[lo:min(lo+statusPerPage, len(sj.Bars))]
		if a := snap.Audit; a != nil {
			sa := &statusAudit{Unscraped: snap.UnscrapedSeconds, Doubled: snap.DoubleScrapedSeconds, Time: a.Time, OK: a.OK() && len(a.Unreachable) == 0, Unreachable: slices.Sorted(maps.Keys(a.Unreachable)),
				Problems: a.Problems[:min(len(a.Problems), statusProblems)], More: max(0, len(a.Problems)-statusProblems)}
			for _, st := range audit.States() {
				link := ""
				if st != audit.OK {
					link = "api/v1/audit?" + url.Values{"job": {name}, "state": {string(st)}}.Encode()
				}
				sa.States = append(sa.States, statusState{State: st, N: a.Counts[st], Link: link})
			}
			sj.Audit = sa
		}
		sj.Good = sj.Ready && sj.Err == "" && sj.Handoffs == 0 && len(sj.Reloads) == 0 && len(sj.Excluded) == 0 && len(sj.Held) == 0 &&
			(sj.Audit == nil || sj.Audit.OK && len(sj.Audit.Unreachable) == 0)
		data.Jobs = append(data.Jobs, sj)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := statusTmpl.Execute(w, data); err != nil {
		h.opts.Logger.Warn("status page", "err", err)
	}
}

// statusBars is a bar per collector of the assignment and per collector
// out of it that still holds targets (a drain waiting for its hand-offs),
// by ID, scaled to the fullest; out lists the collectors still registered
// that hold nothing. mean is the mean targets per collector of the ring,
// and meanPercent where it falls on the bars' scale.
func statusBars(snap promshard.Snapshot, maxSeries uint64) (bars, out []statusBar, mean, meanPercent float64) {
	member := map[string]watch.Member{}
	for _, m := range snap.Members {
		member[m.ID] = m
	}
	reloadOf := func(id string) *reloadResult {
		r, ok := snap.Reloads[id]
		if !ok {
			return nil
		}
		rr := &reloadResult{At: r.At}
		if r.Err != nil {
			rr.Err = r.Err.Error()
		}
		return rr
	}
	link := func(hostPort string) string {
		if hostPort == "" || strings.HasPrefix(hostPort, ":") {
			return ""
		}
		return "http://" + hostPort + "/targets"
	}
	top, total := 1, 0
	for _, m := range snap.Assignment.Members {
		n := snap.Assignment.Count(m.ID)
		top, total = max(top, n), total+n
		wm := member[m.ID]
		capacity := maxSeries
		if v, err := strconv.ParseUint(wm.Meta["max_series"], 10, 64); err == nil && v > 0 {
			capacity = v
		}
		bars = append(bars, statusBar{ID: m.ID, Address: wm.HostPort(), Link: link(wm.HostPort()), Domain: m.Domain, Targets: n,
			Weight: max(m.Weight, 1), Series: snap.Assignment.Cost[m.ID], Capacity: capacity, Reload: reloadOf(m.ID),
			Heaviest: snap.Heaviest[m.ID], Isolated: isolatedOn(snap, m.ID, n), Pinned: snap.Placement.Pinned[m.ID]})
	}
	for _, m := range snap.Leavers {
		state := "leaving"
		if m.State == watch.StateMaintenance {
			state = "draining"
		}
		n := 0
		for _, g := range snap.Groups[m.ID] {
			n += len(g.Targets)
		}
		b := statusBar{ID: m.ID, Address: m.HostPort(), Link: link(m.HostPort()), State: state, Targets: n, Weight: max(m.Weight, 1),
			Reload: reloadOf(m.ID)}
		if n == 0 {
			out = append(out, b)
		} else {
			bars = append(bars, b)
		}
	}
	slices.SortFunc(bars, func(a, b statusBar) int { return strings.Compare(a.ID, b.ID) })
	for _, b := range bars {
		top = max(top, b.Targets)
	}
	for i := range bars {
		bars[i].Percent = float64(bars[i].Targets) * 100 / float64(top)
	}
	if n := len(snap.Assignment.Members); n > 0 {
		mean = float64(total) / float64(n)
		meanPercent = mean * 100 / float64(top)
	}
	return bars, out, mean, meanPercent
}

// isolatedOn is the isolated target that collector id holds alone, "" for
// none. Besides it, such a collector holds only the targets on every
// collector and those pinned to it, so only a collector with at most that
// many targets is looked into.
func isolatedOn(snap promshard.Snapshot, id string, n int) string {
	asg := snap.Assignment
	if len(asg.Isolated) == 0 || n > 1+snap.Placement.Every+snap.Placement.Pinned[id] {
		return ""
	}
	for _, g := range asg.Groups[id] {
		for _, a := range g.Targets {
			if slices.Contains(asg.Isolated, a) {
				return a
			}
		}
	}
	return ""
}
