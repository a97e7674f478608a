package promshard

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/shard"
)

// Handler serves the Sharder's state over HTTP, for a daemon's mux:
//
//   - GET /: the status page, for a person: per job its collectors as bars
//     with their target counts (50 a page), the ring, the replicas, the
//     election and epoch, the audit's counts (linking to their lists), the
//     last reshards, and a search box that explains who owns a target and
//     who scraped it. One HTML page with a small script, nothing fetched
//     from elsewhere; it stays the same size at a million targets.
//   - GET /-/ready: 200 when every job's outputs hold an assignment and its
//     last reshard succeeded (on a standby: its assignment is computed);
//     503 naming the first job that is not. The body says "ready", and
//     with Options.Elector "leader" or "standby" and the leader's name.
//   - GET /api/v1/assignment: job → its epoch, role and leader (with
//     Options.Elector), and per collector its address, failure domain
//     (with [Job.SpreadBy]) and target addresses, as written.
//   - GET /api/v1/explain?target=ADDR[&job=NAME]: who owns a target, and why,
//     and who scraped it at the last audit.
//   - GET /api/v1/audit[?job=NAME][&state=STATE]: the last audit of each job
//     (with Options.Audit), its problems filtered to one state if asked.
//   - GET /api/v1/simulate?remove=ID&add=ID[:W]&weight=ID=W[&capacity=N][&job=NAME]:
//     what the change would do to each job now ([Sharder.Simulate]); the
//     parameters repeat.
//   - /debug/pprof/: Go's profiles, with Options.Pprof.
//   - /sd/JOB/...: every output of a job that is an [http.Handler] (such as
//     filesd.Handler), for Prometheus' http_sd_configs, with the epoch in
//     the Promshard-Epoch header; 503 on a standby, whose outputs are
//     not written (Prometheus keeps its targets on an error).
//
// It also answers GET /-/healthy (200 while the process runs) and, when
// Options.Registerer is also a prometheus.Gatherer (a *prometheus.Registry),
// GET /metrics with everything registered there.
func (s *Sharder) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "healthy") })
	if g, ok := s.opts.Registerer.(prometheus.Gatherer); ok {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{Registry: s.opts.Registerer}))
	}
	mux.HandleFunc("GET /{$}", s.serveStatus)
	if s.opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /-/ready", s.serveReady)
	mux.HandleFunc("GET /api/v1/assignment", s.serveAssignment)
	mux.HandleFunc("GET /api/v1/explain", s.serveExplain)
	mux.HandleFunc("GET /api/v1/audit", s.serveAudit)
	mux.HandleFunc("GET /api/v1/simulate", s.serveSimulate)
	for _, j := range s.jobs {
		for _, o := range j.cfg.Outputs {
			if h, ok := o.(http.Handler); ok {
				prefix := "/sd/" + j.cfg.Name + "/"
				mux.Handle(prefix, http.StripPrefix(prefix, j.serveSD(h)))
				break
			}
		}
	}
	return mux
}

func (s *Sharder) serveReady(w http.ResponseWriter, _ *http.Request) {
	for _, name := range s.Jobs() {
		snap, _ := s.Snapshot(name)
		switch {
		case snap.Assignment == nil && snap.Last.Err == nil:
			http.Error(w, fmt.Sprintf("job %q has not resharded yet", name), http.StatusServiceUnavailable)
			return
		case !snap.Ready():
			http.Error(w, fmt.Sprintf("job %q: last reshard failed: %v", name, snap.Last.Err), http.StatusServiceUnavailable)
			return
		}
	}
	if el := s.opts.Elector; el != nil {
		role := RoleStandby
		if el.Leading() {
			role = RoleLeader
		}
		fmt.Fprintf(w, "ready: %s (leader: %s)\n", role, cmp.Or(el.Leader(), "none"))
		return
	}
	fmt.Fprintln(w, "ready")
}

// serveSD serves an http_sd output with its epoch; a standby's output is
// not written, so it answers 503.
func (j *job) serveSD(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if j.role() == RoleStandby {
			http.Error(w, fmt.Sprintf("standby: ask the leader (%s)", j.s.opts.Elector.Leader()), http.StatusServiceUnavailable)
			return
		}
		j.stateMu.RLock()
		ep := j.snap.Epoch.Epoch
		j.stateMu.RUnlock()
		if ep > 0 {
			w.Header().Set(epochHeader, strconv.FormatUint(ep, 10))
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Sharder) serveAssignment(w http.ResponseWriter, _ *http.Request) {
	out := map[string]JobAssignment{}
	for _, name := range s.Jobs() {
		if ja, ok := s.assignment(name); ok {
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

func (s *Sharder) serveExplain(w http.ResponseWriter, r *http.Request) {
	target, only := r.URL.Query().Get("target"), r.URL.Query().Get("job")
	if target == "" {
		http.Error(w, "missing ?target=ADDRESS", http.StatusBadRequest)
		return
	}
	if only != "" && !slices.Contains(s.Jobs(), only) {
		http.Error(w, fmt.Sprintf("no job %q", only), http.StatusNotFound)
		return
	}
	var out []jobExplanation
	for _, name := range s.Jobs() {
		if only != "" && name != only {
			continue
		}
		if e, err := s.Explain(name, target); err == nil {
			je := jobExplanation{Job: name, Explanation: e}
			if snap, _ := s.Snapshot(name); snap.Audit != nil {
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

func (s *Sharder) serveAudit(w http.ResponseWriter, r *http.Request) {
	only, state := r.URL.Query().Get("job"), audit.State(r.URL.Query().Get("state"))
	if state != "" && !slices.Contains(audit.States(), state) {
		http.Error(w, fmt.Sprintf("state %q: want one of %v", state, audit.States()), http.StatusBadRequest)
		return
	}
	if only != "" && !slices.Contains(s.Jobs(), only) {
		http.Error(w, fmt.Sprintf("no job %q", only), http.StatusNotFound)
		return
	}
	out := []audit.Report{}
	for _, name := range s.Jobs() {
		snap, _ := s.Snapshot(name)
		if snap.Audit == nil || only != "" && name != only {
			continue
		}
		rep := *snap.Audit
		if state != "" {
			rep.Problems = rep.Filter(state)
		}
		out = append(out, rep)
	}
	if len(out) == 0 {
		http.Error(w, "no audit yet (the audit runs after the first reshard, with Options.Audit)", http.StatusNotFound)
		return
	}
	writeJSON(w, out)
}

func (s *Sharder) serveSimulate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	change, err := ParseChange(q["remove"], q["add"], q["weight"])
	capacity := 0
	if c := q.Get("capacity"); err == nil && c != "" {
		if capacity, err = strconv.Atoi(c); err != nil || capacity < 0 {
			err = fmt.Errorf("capacity %q: want a number of targets, 0 or more", c)
		}
	}
	if only := q.Get("job"); err == nil && only != "" && !slices.Contains(s.Jobs(), only) {
		err = fmt.Errorf("no job %q", only)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := s.SimulateAll(r.Context(), change, capacity)
	if only := q.Get("job"); only != "" && err == nil {
		out = map[string]*shard.Simulation{only: out[only]}
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	writeJSON(w, out)
}

// Serve serves h on addr until ctx ends, then shuts the server down,
// giving requests in flight up to 5 seconds. It returns nil after ctx ends
// and the listen or serve error otherwise. A daemon serves the Sharder's
// Handler with it, beside its own /metrics.
func Serve(ctx context.Context, addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc // http.ErrServerClosed
		return nil
	}
}
