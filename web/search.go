package web

import (
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/internal/labels"
)

// maxFound bounds the targets one search lists.
const maxFound = 100

// Found is one target a search matched: its job, address, labels (its
// group's and its own) and the collectors it is written for.
type Found struct {
	Job        string            `json:"job"`
	Target     string            `json:"target"`
	Labels     map[string]string `json:"labels,omitempty"`
	Collectors []string          `json:"collectors"`
}

// SearchResult is what /api/v1/search answers: the targets found (at most
// 100) and how many matched in all.
type SearchResult struct {
	Query   string  `json:"query"`
	Matched int     `json:"matched"`
	Targets []Found `json:"targets"`
}

// matcher is a search query: an address with or without its port, a
// label (name=value), or a collector ID.
type matcher struct {
	q, name, value, host string
	byLabel              bool
}

func newMatcher(q string) matcher {
	m := matcher{q: q}
	if n, v, ok := strings.Cut(q, "="); ok && labels.ValidName(n) {
		m.name, m.value, m.byLabel = n, v, true
	} else if _, _, err := net.SplitHostPort(q); err != nil {
		m.host = q // no port: any port of this host
	}
	return m
}

// match reports whether the target at addr with labels ls, written for
// collectors, matches.
func (m matcher) match(addr string, ls func(model.LabelName) (model.LabelValue, bool), collectors []string) bool {
	switch {
	case m.byLabel:
		v, ok := ls(model.LabelName(m.name))
		return ok && string(v) == m.value
	case addr == m.q, slices.Contains(collectors, m.q):
		return true
	case m.host != "":
		h, _, err := net.SplitHostPort(addr)
		return err == nil && h == m.host
	}
	return false
}

// serveSearch answers GET /api/v1/search?q=QUERY[&job=NAME]: the targets
// whose address is QUERY (with or without its port), that have the label
// QUERY (name=value), or that are written for the collector QUERY.
func (h *handler) serveSearch(w http.ResponseWriter, r *http.Request) {
	q, only := strings.TrimSpace(r.URL.Query().Get("q")), r.URL.Query().Get("job")
	if q == "" {
		http.Error(w, "missing ?q=ADDRESS, HOST, NAME=VALUE or COLLECTOR", http.StatusBadRequest)
		return
	}
	m := newMatcher(q)
	res := SearchResult{Query: q, Targets: []Found{}}
	for _, name := range h.s.Jobs() {
		if only != "" && name != only {
			continue
		}
		snap, _ := h.s.Snapshot(name)
		byTarget := map[string]int{} // address → index in res.Targets, to gather a target's collectors
		for _, id := range slices.Sorted(maps.Keys(snap.Groups)) {
			for _, g := range snap.Groups[id] {
				for i, addr := range g.Targets {
					ls := func(n model.LabelName) (model.LabelValue, bool) { // no set is made for a target that is its address alone
						if v, ok := g.Label(i, n); ok {
							return v, true
						}
						v, ok := g.Labels[n]
						return v, ok
					}
					if !m.match(addr, ls, []string{id}) {
						continue
					}
					if i, ok := byTarget[addr]; ok {
						res.Targets[i].Collectors = append(res.Targets[i].Collectors, id)
						continue
					}
					res.Matched++
					if len(res.Targets) >= maxFound {
						continue
					}
					f := Found{Job: name, Target: addr, Collectors: []string{id}, Labels: map[string]string{}}
					for n, v := range g.Labels {
						f.Labels[string(n)] = string(v)
					}
					for n, v := range g.Target(i) {
						f.Labels[string(n)] = string(v)
					}
					byTarget[addr] = len(res.Targets)
					res.Targets = append(res.Targets, f)
				}
			}
		}
	}
	writeJSON(w, res)
}

// serveEvents answers GET /api/v1/events[?job=NAME]: each job's events,
// newest first.
func (h *handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	only := r.URL.Query().Get("job")
	out := map[string]any{}
	for _, name := range h.s.Jobs() {
		if only != "" && name != only {
			continue
		}
		snap, _ := h.s.Snapshot(name)
		out[name] = snap.Events
	}
	writeJSON(w, out)
}
