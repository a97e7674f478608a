package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
)

// BenchmarkAudit audits 100 collectors × 10k targets, each collector served
// by one httptest server (its answer rendered once, in Prometheus' shape):
// ns/target and allocs/target for the whole audit, reads included.
func BenchmarkAudit(b *testing.B) {
	const collectors, per = 100, 10_000
	answers := make([][]byte, collectors)
	asg := map[string][]*targetgroup.Group{}
	for c := range collectors {
		var sb strings.Builder
		sb.WriteString(`{"status":"success","data":{"droppedTargets":[],"activeTargets":[`)
		g := &targetgroup.Group{Source: fmt.Sprint(c), Labels: model.LabelSet{"team": "bench"}}
		for i := range per {
			addr := fmt.Sprintf("10.%d.%d.%d:9100", c, i/250, i%250)
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `{"discoveredLabels":{"__address__":%q,"__metrics_path__":"/metrics","__scheme__":"http",`+
				`"__scrape_interval__":"15s","__scrape_timeout__":"10s","job":"node","team":"bench"},"labels":{"instance":%q,`+
				`"job":"node","team":"bench"},"scrapePool":"node","scrapeUrl":"http://%s/metrics","globalUrl":"http://%s/metrics",`+
				`"lastError":"","lastScrape":"2026-11-25T12:00:00.123456789Z","lastScrapeDuration":0.0021,"health":"up",`+
				`"scrapeInterval":"15s","scrapeTimeout":"10s"}`, addr, addr, addr, addr)
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(addr)})
		}
		sb.WriteString(`]}}`)
		answers[c] = []byte(sb.String())
		asg[fmt.Sprintf("c%03d", c)] = []*targetgroup.Group{g}
	}
	serve := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var c int
		fmt.Sscanf(r.URL.Path, "/c%03d/", &c)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answers[c])
	})
	b.Run("httptest", func(b *testing.B) {
		srv := httptest.NewServer(serve)
		defer srv.Close()
		benchAudit(b, srv.URL, nil, asg, collectors, per)
	})
	// The same answers from memory: the audit's own cost, without the
	// server's (which on one core shares the CPU with the audit).
	b.Run("in-memory", func(b *testing.B) {
		benchAudit(b, "http://collectors", &http.Client{Transport: memTransport(answers)}, asg, collectors, per)
	})
}

// memTransport answers collector c's request with answer c, from memory.
type memTransport [][]byte

func (m memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var c int
	fmt.Sscanf(r.URL.Path, "/c%03d/", &c)
	return &http.Response{StatusCode: 200, Status: "200 OK", Body: io.NopCloser(bytes.NewReader(m[c])),
		ContentLength: int64(len(m[c])), Header: http.Header{"Content-Type": {"application/json"}}, Request: r}, nil
}

func benchAudit(b *testing.B, base string, client *http.Client, asg map[string][]*targetgroup.Group, collectors, per int) {
	job := audit.Job{Name: "node", Assignment: asg, Generation: 1}
	for c := range collectors {
		job.Collectors = append(job.Collectors, audit.Collector{ID: fmt.Sprintf("c%03d", c), URL: fmt.Sprintf("%s/c%03d", base, c)})
	}
	a, _ := audit.New(audit.Options{Grace: 1, Client: client})
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	var r *audit.Report
	for b.Loop() {
		r, _ = a.Audit(context.Background(), job)
	}
	runtime.ReadMemStats(&ms1)
	if r.Targets != collectors*per || r.Counts[audit.OK] != collectors*per {
		b.Fatalf("%d targets, %d ok", r.Targets, r.Counts[audit.OK])
	}
	n := float64(b.N) * float64(collectors*per)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/target")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/n, "allocs/target")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/n, "B/target")
}
