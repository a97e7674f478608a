package targets

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/promshard/promshard/internal/tstore"
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
	h, _ := NewHTTPSD(HTTPSDOptions{URL: srv.URL})
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

// BenchmarkHTTPAnswer decodes a 100k-target http_sd answer in which every
// target appears twice; B/op over the answer's size is the memory a fetch
// costs per byte of answer (reported as bytes/answer_byte and B/target).
func BenchmarkHTTPAnswer(b *testing.B) {
	var body strings.Builder
	body.WriteString("[")
	for g := range 100 {
		if g > 0 {
			body.WriteString(",")
		}
		body.WriteString(`{"labels": {"env": "prod", "dc": "dc1"}, "targets": [`)
		for i := range 2000 {
			if i > 0 {
				body.WriteString(",")
			}
			fmt.Fprintf(&body, `"10.%d.%d.%d:9100"`, g, (i%1000)/250, i%250)
		}
		body.WriteString("]}")
	}
	body.WriteString("]")
	answer := []byte(body.String())
	h, _ := NewHTTPSD(HTTPSDOptions{URL: "http://sd.example/", Client: &http.Client{Transport: roundTrip{answer, "application/json"}}})
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	for b.Loop() {
		gs, err := h.Targets(context.Background())
		if err != nil || (Result{Groups: tstore.FromAll(gs)}).Targets() != 100_000 {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&ms)
	perOp := float64(ms.TotalAlloc-before) / float64(b.N)
	b.ReportMetric(perOp/float64(len(answer)), "bytes/answer_byte")
	b.ReportMetric(perOp/100_000, "B/target")
}
