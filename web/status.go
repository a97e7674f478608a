package web

import (
	_ "embed"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/watch"
)

//go:embed status.html
var statusHTML string

var statusTmpl = template.Must(template.New("status").Parse(statusHTML))

// statusPerPage bounds the collectors listed per job on one page.
const statusPerPage = 50

type statusPage struct {
	Now  time.Time
	Jobs []statusJob
	Page int
}

type statusJob struct {
	Name, Ring, Role, Leader, Err string
	Replicas, Targets, Collectors int
	Epoch                         uint64
	Agrees, Ready                 bool
	Bars                          []statusBar
	Out                           []statusBar // out of the ring, holding nothing
	Pages                         []int
	Audit                         *statusAudit
	Recent                        []promshard.Report
}

type statusBar struct {
	ID, Address, Domain, State string
	Targets                    int
	Percent                    float64
}

type statusAudit struct {
	Time        time.Time
	OK          bool
	States      []statusState
	Unreachable int
}

type statusState struct {
	State audit.State
	N     int
	Link  string
}

// serveStatus renders the status page: per job its collectors as bars (at
// most statusPerPage a page, whatever the fleet), the election, the
// audit's counts, the last reshards, and a search that asks explain.
func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	data := statusPage{Now: time.Now(), Page: page}
	for _, name := range h.s.Jobs() {
		snap, _ := h.s.Snapshot(name)
		sj := statusJob{Name: name, Role: string(snap.Role), Leader: snap.Leader, Epoch: snap.Epoch.Epoch, Agrees: snap.Agrees,
			Ready: snap.Ready(), Recent: snap.Recent}
		if snap.Last.Err != nil {
			sj.Err = snap.Last.Err.Error()
		}
		if asg := snap.Assignment; asg != nil {
			sj.Ring, sj.Replicas, sj.Targets, sj.Collectors = string(asg.Ring), asg.RequestedReplicas, asg.Targets, len(asg.Members)
			sj.Bars, sj.Out = statusBars(snap)
		}
		for i := range (len(sj.Bars) + statusPerPage - 1) / statusPerPage {
			sj.Pages = append(sj.Pages, i+1)
		}
		lo := min((page-1)*statusPerPage, len(sj.Bars))
		sj.Bars = sj.Bars[lo:min(lo+statusPerPage, len(sj.Bars))]
		if a := snap.Audit; a != nil {
			sa := &statusAudit{Time: a.Time, OK: a.OK(), Unreachable: len(a.Unreachable)}
			for _, st := range audit.States() {
				link := ""
				if st != audit.OK {
					link = "api/v1/audit?" + url.Values{"job": {name}, "state": {string(st)}}.Encode()
				}
				sa.States = append(sa.States, statusState{State: st, N: a.Counts[st], Link: link})
			}
			sj.Audit = sa
		}
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
// that hold nothing.
func statusBars(snap promshard.Snapshot) (bars, out []statusBar) {
	addr := map[string]string{}
	for _, m := range snap.Members {
		addr[m.ID] = m.HostPort()
	}
	top := 1
	for _, m := range snap.Assignment.Members {
		n := snap.Assignment.Count(m.ID)
		top = max(top, n)
		bars = append(bars, statusBar{ID: m.ID, Address: addr[m.ID], Domain: m.Domain, Targets: n})
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
		b := statusBar{ID: m.ID, Address: m.HostPort(), State: state, Targets: n}
		if n == 0 {
			out = append(out, b)
		} else {
			bars = append(bars, b)
		}
	}
	slices.SortFunc(bars, func(a, b statusBar) int { return strings.Compare(a.ID, b.ID) })
	for i := range bars {
		bars[i].Percent = float64(bars[i].Targets) * 100 / float64(max(top, bars[i].Targets))
	}
	return bars, out
}
