package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/promshard/promshard"
	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/shard"
)

// EpochHeader is the http_sd response header that carries the epoch of the
// assignment served.
const EpochHeader = "Promshard-Epoch"

// maxAddedWeight bounds the weight one simulation adds (collectors added,
// and new weights): a lookup's cost grows with the ring's total weight.
const maxAddedWeight = 1000

// addedWeight is the weight a change adds: each added collector's (1 when
// unset), and each new weight.
func addedWeight(c shard.Change) uint64 {
	var w uint64
	for _, m := range c.Add {
		w += uint64(max(m.Weight, 1))
	}
	for _, v := range c.Weight {
		w += uint64(v)
	}
	return w
}

// AuditPage is one job's audit as /api/v1/audit serves it: the report,
// with at most limit of its problems from offset on, and how many problems
// there are in all.
type AuditPage struct {
	audit.Report
	Total  int `json:"problems_total"`
	Offset int `json:"offset"`
}

// The problems one /api/v1/audit answer lists per job: DefaultAuditLimit
// unless ?limit= says otherwise, at most maxAuditLimit.
const (
	DefaultAuditLimit = 1000
	maxAuditLimit     = 10000
)

// Defaults of [Options].
const (
	// DefaultMaxChanges bounds the collectors one simulation may remove,
	// add or weigh.
	DefaultMaxChanges = 100
)

// Options configures a [Handler]. Zero values get the documented defaults.
type Options struct {
	// Gatherer, when set, is served as /metrics (a *prometheus.Registry is
	// one).
	Gatherer prometheus.Gatherer
	// Pprof adds Go's profiles under /debug/pprof/ (CPU, heap,
	// goroutines...): off by default, as they expose the process.
	Pprof bool
	// MaxHeavy bounds the expensive requests computed at once; default
	// half the processors Go may use (GOMAXPROCS), at least one, so that
	// the rest stay free for the loop and the cheap endpoints.
	// MaxChanges bounds the changes one simulation asks for; default
	// [DefaultMaxChanges].
	MaxHeavy, MaxChanges int
	// Logger receives the page's rendering failures; nil discards.
	Logger *slog.Logger
}

// Handler serves a Sharder's state over HTTP, for a daemon's mux. It is
// built on the Sharder's public API only.
//
//   - GET /: the status page, for a person, one screen per job: whether
//     everything is as assigned (green only when the last reshard
//     succeeded, the audit found nothing, and no hand-off and no reload is
//     pending); each collector with its state, weight, zone, targets (a
//     bar, with the mean marked), series and capacity when balanced by
//     series, its heaviest targets, its last reload and a link to its own
//     /targets (50 a page); the election and epoch; pending hand-offs and
//     their age; the audit's findings naming targets and collectors; the
//     events (joins, leaves and the targets that moved, hand-offs, audit
//     findings, leadership, failures); a search (address with or without
//     port, label, collector) and a simulation form. One HTML page with a
//     small script, nothing fetched from elsewhere, links relative (it
//     works behind a path prefix), reloaded every 5 s (?refresh=N, 0 for
//     off); it stays the same size at a million targets.
//   - GET /-/healthy: 200 while the process runs.
//   - GET /-/ready: 200 when every job's outputs hold an assignment and its
//     last reshard succeeded (on a standby: its assignment is computed);
//     503 naming the first job that is not. The body says "ready", and
//     with an Elector "leader" or "standby" and the leader's name.
//   - GET /api/v1/assignment: job → its epoch, role and leader (with an
//     Elector), and per collector its address, failure domain and target
//     addresses, as written ([JobAssignment]).
//   - GET /api/v1/explain?target=ADDR[&job=NAME]: who owns a target, and
//     why, and who scraped it at the last audit.
//   - GET /api/v1/audit[?job=NAME][&state=STATE][&limit=N][&offset=M]: the
//     last audit of each job, its problems filtered to one state if asked,
//     at most N of them (default [DefaultAuditLimit]) from M on, with their
//     total ([AuditPage]).
//   - GET /api/v1/search?q=QUERY[&job=NAME]: the targets whose address is
//     QUERY (with or without its port), that carry the label QUERY
//     (name=value), or that are written for the collector QUERY
//     ([SearchResult]; at most 100 listed).
//   - GET /api/v1/events[?job=NAME]: each job's events, newest first
//     ([promshard.Event]).
//   - GET /api/v1/simulate?remove=ID&add=ID[:W]&weight=ID=W[&capacity=N][&job=NAME]:
//     what the change would do to each job now ([promshard.Sharder.Simulate]);
//     the parameters repeat, at most MaxChanges of them.
//   - GET /metrics: Options.Gatherer.
//   - /debug/pprof/: Go's profiles, with Options.Pprof.
//   - /sd/JOB/...: every output of a job that is an [http.Handler] (such as
//     filesd.Handler), for Prometheus' http_sd_configs, with the epoch in
//     the [EpochHeader] header; 503 on a standby, whose outputs are not
//     written (Prometheus keeps its targets on an error).
//
// The expensive endpoints (simulate, explain, search, assignment, audit) compute at
// most Options.MaxHeavy answers at once and answer 429 past that, so that no client
// can starve the process.
func Handler(s *promshard.Sharder, opts Options) http.Handler {
	opts.MaxHeavy = cmp.Or(opts.MaxHeavy, max(1, runtime.GOMAXPROCS(0)/2))
	opts.MaxChanges = cmp.Or(opts.MaxChanges, DefaultMaxChanges)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{s: s, opts: opts, heavy: make(chan struct{}, opts.MaxHeavy)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "healthy") })
	if g := opts.Gatherer; g != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /{$}", h.serveStatus)
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /-/ready", h.serveReady)
	mux.HandleFunc("GET /api/v1/assignment", h.bounded(h.serveAssignment))
	mux.HandleFunc("GET /api/v1/explain", h.bounded(h.serveExplain))
	mux.HandleFunc("GET /api/v1/audit", h.bounded(h.serveAudit))
	mux.HandleFunc("GET /api/v1/simulate", h.bounded(h.serveSimulate))
	mux.HandleFunc("GET /api/v1/search", h.bounded(h.serveSearch))
	mux.HandleFunc("GET /api/v1/events", h.serveEvents)
	for _, name := range s.Jobs() {
		jc, _ := s.Job(name)
		for _, o := range jc.Outputs {
			if sd, ok := o.(http.Handler); ok {
				prefix := "/sd/" + name + "/"
				mux.Handle(prefix, http.StripPrefix(prefix, h.serveSD(name, sd)))
				break
			}
		}
	}
	return mux
}

type handler struct {
	s     *promshard.Sharder
	opts  Options
	heavy chan struct{} // one token per expensive request computed
}

// bounded serves an expensive endpoint when a slot is free, 429 otherwise.
func (h *handler) bounded(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case h.heavy <- struct{}{}:
			defer func() { <-h.heavy }()
			f(w, r)
		default:
			w.Header().Set("Retry-After", "1")
			http.Error(w, fmt.Sprintf("too many expensive requests at once (at most %d); try again", h.opts.MaxHeavy),
				http.StatusTooManyRequests)
		}
	}
}

func (h *handler) serveReady(w http.ResponseWriter, _ *http.Request) {
	var last promshard.Snapshot
	for _, name := range h.s.Jobs() {
		snap, _ := h.s.Snapshot(name)
		switch {
		case snap.Assignment == nil && snap.Last.Err == nil:
			http.Error(w, fmt.Sprintf("job %q has not resharded yet", name), http.StatusServiceUnavailable)
			return
		case !snap.Ready():
			http.Error(w, fmt.Sprintf("job %q: last reshard failed: %v", name, snap.Last.Err), http.StatusServiceUnavailable)
			return
		}
		if snap.Role != "" {
			last = snap
		}
	}
	if last.Role != "" {
		fmt.Fprintf(w, "ready: %s (leader: %s)\n", last.Role, cmp.Or(last.Leader, "unknown"))
		return
	}
	fmt.Fprintln(w, "ready")
}

// serveSD serves an http_sd output with its epoch; a standby's output is
// not written, so it answers 503.
func (h *handler) serveSD(job string, sd http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap, _ := h.s.Snapshot(job)
		if snap.Role == promshard.RoleStandby {
			http.Error(w, fmt.Sprintf("standby: ask the leader (%s)", snap.Leader), http.StatusServiceUnavailable)
			return
		}
		if ep := snap.Epoch.Epoch; ep > 0 {
			w.Header().Set(EpochHeader, strconv.FormatUint(ep, 10))
		}
		sd.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (h *handler) serveAssignment(w http.ResponseWriter, _ *http.Request) {
	out := map[string]JobAssignment{}
	for _, name := range h.s.Jobs() {
		if ja, ok := Assignment(h.s, name); ok {
			out[name] = ja
		}
	}
	writeJSON(w, out)
}

// jobExplanation is an explanation with its job, as /api/v1/explain
// answers, and who scraped the target at the last audit.
type jobExplanation struct {
	Job string `json:"job"`
	shard.Explanation
	ScrapedBy []audit.Scrape `json:"scraped_by,omitempty"`
	AuditedAt *time.Time     `json:"audited_at,omitempty"`
}

func (h *handler) serveExplain(w http.ResponseWriter, r *http.Request) {
	target, only := r.URL.Query().Get("target"), r.URL.Query().Get("job")
	if target == "" {
		http.Error(w, "missing ?target=ADDRESS", http.StatusBadRequest)
		return
	}
	if only != "" && !slices.Contains(h.s.Jobs(), only) {
		http.Error(w, fmt.Sprintf("no job %q", only), http.StatusNotFound)
		return
	}
	var out []jobExplanation
	for _, name := range h.s.Jobs() {
		if only != "" && name != only {
			continue
		}
		if e, err := h.s.Explain(name, target); err == nil {
			je := jobExplanation{Job: name, Explanation: e}
			if snap, _ := h.s.Snapshot(name); snap.Audit != nil {
				je.ScrapedBy, je.AuditedAt = snap.Audit.Scrapes(target), &snap.Audit.Time
			}
			out = append(out, je)
		}
	}
	if len(out) == 0 {
		http.Error(w, "no job has an assignment yet", http.StatusNotFound)
		return
	}
	writeJSON(w, out)
}

func (h *handler) serveAudit(w http.ResponseWriter, r *http.Request) {
	only, state := r.URL.Query().Get("job"), audit.State(r.URL.Query().Get("state"))
	if state != "" && !slices.Contains(audit.States(), state) {
		http.Error(w, fmt.Sprintf("state %q: want one of %v", state, audit.States()), http.StatusBadRequest)
		return
	}
	if only != "" && !slices.Contains(h.s.Jobs(), only) {
		http.Error(w, fmt.Sprintf("no job %q", only), http.StatusNotFound)
		return
	}
	limit, offset := DefaultAuditLimit, 0
	for name, v := range map[string]*int{"limit": &limit, "offset": &offset} {
		if q := r.URL.Query().Get(name); q != "" {
			n, err := strconv.Atoi(q)
			if err != nil || n < 0 || name == "limit" && (n == 0 || n > maxAuditLimit) {
				http.Error(w, fmt.Sprintf("%s %q: want a number (limit 1 to %d)", name, q, maxAuditLimit), http.StatusBadRequest)
				return
			}
			*v = n
		}
	}
	out := []AuditPage{}
	for _, name := range h.s.Jobs() {
		snap, _ := h.s.Snapshot(name)
		if snap.Audit == nil || only != "" && name != only {
			continue
		}
		rep := *snap.Audit
		if state != "" {
			rep.Problems = rep.Filter(state)
		}
		page := AuditPage{Report: rep, Total: len(rep.Problems), Offset: offset}
		lo := min(offset, len(rep.Problems))
		page.Report.Problems = rep.Problems[lo:min(lo+limit, len(rep.Problems))]
		out = append(out, page)
	}
	if len(out) == 0 {
		http.Error(w, "no audit yet (the audit runs after the first reshard, when it is on)", http.StatusNotFound)
		return
	}
	writeJSON(w, out)
}

func (h *handler) serveSimulate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if n := len(q["remove"]) + len(q["add"]) + len(q["weight"]); n > h.opts.MaxChanges {
		http.Error(w, fmt.Sprintf("%d changes: at most %d", n, h.opts.MaxChanges), http.StatusBadRequest)
		return
	}
	change, err := ParseChange(q["remove"], q["add"], q["weight"])
	if added := addedWeight(change); err == nil && added > maxAddedWeight {
		err = fmt.Errorf("the collectors added and reweighted weigh %d in all: at most %d", added, maxAddedWeight)
	}
	capacity := 0
	if c := q.Get("capacity"); err == nil && c != "" {
		if capacity, err = strconv.Atoi(c); err != nil || capacity < 0 {
			err = fmt.Errorf("capacity %q: want a number of targets, 0 or more", c)
		}
	}
	only := q.Get("job")
	if err == nil && only != "" && !slices.Contains(h.s.Jobs(), only) {
		err = fmt.Errorf("no job %q", only)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out := map[string]*shard.Simulation{}
	for _, name := range h.s.Jobs() {
		if only != "" && name != only {
			continue
		}
		sim, err := h.s.Simulate(r.Context(), name, change, capacity)
		if err != nil {
			http.Error(w, fmt.Sprintf("job %q: %v", name, err), http.StatusBadRequest)
			return
		}
		out[name] = sim
	}
	writeJSON(w, out)
}
