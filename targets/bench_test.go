package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkFetchValidate100k fetches 100k targets from an http_sd endpoint
// on loopback and validates them through the registry.
func BenchmarkFetchValidate100k(b *testing.B) {
	type entry struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	var es []entry
	for g := range 100 {
		e := entry{Labels: map[string]string{"job": "node", "dc": fmt.Sprint("dc", g%4)}}
		for i := range 1000 {
			e.Targets = append(e.Targets, fmt.Sprintf("10.%d.%d.%d:9100", g, i/250, i%250))
		}
		es = append(es, e)
	}
	body, _ := json.Marshal(es)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	defer srv.Close()
	h, _ := NewHTTP(HTTPOptions{URL: srv.URL})
	r, _ := NewRegistry(RegistryOptions{})
	r.Register("node", h, JobOptions{})
	b.ReportAllocs()
	for b.Loop() {
		res, err := r.Targets(context.Background(), "node")
		if err != nil || res.Targets() != 100_000 {
			b.Fatal(res.Targets(), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100_000, "ns/target")
}
