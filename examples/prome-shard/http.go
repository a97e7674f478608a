package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/shard"
)

// startHTTP serves /metrics, /-/healthy, /-/ready, /api/v1/assignment,
// /api/v1/explain and /sd/<job>/<collector> (http_sd) on addr.
func (a *app) startHTTP(addr string) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "prome-shard is healthy.")
	})
	mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		for _, j := range a.jobs {
			if asg, _ := j.snapshot(); asg == nil {
				http.Error(w, fmt.Sprintf("job %q has not resharded yet", j.cfg.Name), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "prome-shard is ready.")
	})
	mux.HandleFunc("GET /api/v1/assignment", a.serveAssignment)
	mux.HandleFunc("GET /api/v1/explain", a.serveExplain)
	for _, j := range a.jobs {
		if j.handler != nil {
			prefix := "/sd/" + j.cfg.Name + "/"
			mux.Handle(prefix, http.StripPrefix(prefix, j.handler))
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
			a.log.Error("HTTP server stopped", "err", err)
		}
	}()
	return srv, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// serveAssignment answers job → collector → target addresses.
func (a *app) serveAssignment(w http.ResponseWriter, r *http.Request) {
	out := map[string]map[string][]string{}
	for _, j := range a.jobs {
		asg, _ := j.snapshot()
		if asg == nil {
			continue
		}
		byMember := map[string][]string{}
		for _, m := range asg.Members {
			addrs := []string{}
			for _, g := range asg.Groups[m.ID] {
				for _, t := range g.Targets {
					addrs = append(addrs, string(t[model.AddressLabel]))
				}
			}
			byMember[m.ID] = addrs
		}
		out[j.cfg.Name] = byMember
	}
	writeJSON(w, out)
}

// explanation says which collectors scrape a target in one job, and why.
type explanation struct {
	Job        string   `json:"job"`
	InPool     bool     `json:"in_pool"`
	Collectors []string `json:"collectors"`
	KeyLabel   string   `json:"key_label"`
	Key        string   `json:"key"`
	KeyHash    string   `json:"key_hash"`
	Ring       string   `json:"ring"`
	Replicas   int      `json:"replicas"`
	Preference []string `json:"preference"`
	Why        string   `json:"why"`
}

// serveExplain answers /api/v1/explain?target=ADDR[&job=NAME].
func (a *app) serveExplain(w http.ResponseWriter, r *http.Request) {
	target := r.URL.Query().Get("target")
	if target == "" {
		http.Error(w, "missing ?target=ADDRESS", http.StatusBadRequest)
		return
	}
	only := r.URL.Query().Get("job")
	var out []explanation
	for _, j := range a.jobs {
		if only != "" && j.cfg.Name != only {
			continue
		}
		asg, ring := j.snapshot()
		if asg == nil {
			continue
		}
		keyLabel := model.LabelName(j.cfg.ShardKey)
		e := explanation{Job: j.cfg.Name, Ring: string(asg.Ring), Replicas: asg.Replicas, KeyLabel: string(model.AddressLabel),
			Key: target, Collectors: []string{}}
		if keyLabel != "" {
			e.KeyLabel = string(keyLabel)
		}
		for _, m := range asg.Members {
			for _, g := range asg.Groups[m.ID] {
				for _, t := range g.Targets {
					if string(t[model.AddressLabel]) == target {
						e.InPool = true
						e.Key = shard.Key(t, g.Labels, keyLabel)
						if len(e.Collectors) == 0 || e.Collectors[len(e.Collectors)-1] != m.ID {
							e.Collectors = append(e.Collectors, m.ID)
						}
					}
				}
			}
		}
		if e.Key == target && keyLabel != "" && !e.InPool {
			e.KeyLabel = string(model.AddressLabel)
		}
		for _, m := range shard.Lookup(ring, e.Key, len(asg.Members)) {
			e.Preference = append(e.Preference, m.ID)
		}
		e.KeyHash = fmt.Sprintf("%016x", shard.Hash(e.Key))
		if e.InPool {
			e.Why = fmt.Sprintf("the %s ring ranks the %d healthy collectors for key %q (%s) as %s; the first %d scrape it",
				asg.Ring, len(asg.Members), e.Key, e.KeyLabel, strings.Join(e.Preference, ", "), asg.Replicas)
		} else {
			e.Why = fmt.Sprintf("not in job %q's target pool; if it were, key %q would go to %s",
				j.cfg.Name, e.Key, strings.Join(e.Preference[:min(asg.Replicas, len(e.Preference))], ", "))
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		http.Error(w, "no job has an assignment yet (or no such job)", http.StatusNotFound)
		return
	}
	writeJSON(w, out)
}
