package filesd_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/filesd"
	"github.com/promshard/promshard/internal/testenv"
)

func groups(labels model.LabelSet, addrs ...string) []*targetgroup.Group {
	g := &targetgroup.Group{Source: "test", Labels: labels}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return []*targetgroup.Group{g}
}

func fileSDConfig(file string) string {
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 500ms
scrape_configs:
  - job_name: sharded
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, file)
}

// Real Prometheus servers read the files a Dir writes, pick up rewrites,
// and see per-target labels.
func TestRealPrometheusReadsFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ts := testenv.ScrapeTargets(t, 4)
	sd := t.TempDir()
	d, err := filesd.NewDir(filesd.DirOptions{Dir: sd, Template: "{{.ID}}.yml"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Sync(map[string][]*targetgroup.Group{"p1": groups(nil, ts[0], ts[1]), "p2": nil}); err != nil {
		t.Fatal(err)
	}
	p1 := testenv.StartPrometheus(t, t.TempDir(), fileSDConfig(filepath.Join(sd, "p1.yml")))
	p2 := testenv.StartPrometheus(t, t.TempDir(), fileSDConfig(filepath.Join(sd, "p2.yml")))
	p1.WaitInstances(20*time.Second, ts[:2])
	p2.WaitInstances(20*time.Second, nil)

	// A rewrite moves ts[1] to p2 and gives p2 targets with labels.
	own := groups(model.LabelSet{"team": "infra"}, ts[1], ts[2])
	own[0].Targets = append(own[0].Targets, model.LabelSet{model.AddressLabel: model.LabelValue(ts[3]), "rack": "r7"})
	res, err := d.Sync(map[string][]*targetgroup.Group{"p1": groups(nil, ts[0]), "p2": own})
	if err != nil || len(res.Written) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	p1.WaitInstances(20*time.Second, ts[:1])
	p2.WaitInstances(20*time.Second, ts[1:])
	got, err := p2.Targets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range got {
		if tt.Labels["team"] != "infra" {
			t.Errorf("target %s lost its group label: %v", tt.Discovered["__address__"], tt.Labels)
		}
		if tt.Discovered["__address__"] == ts[3] && tt.Labels["rack"] != "r7" {
			t.Errorf("target %s lost its own label: %v", ts[3], tt.Labels)
		}
	}
	// p2 leaves: its file goes, and its Prometheus stops scraping.
	if _, err := d.Sync(map[string][]*targetgroup.Group{"p1": groups(nil, ts...)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sd, "p2.yml")); !os.IsNotExist(err) {
		t.Fatal("p2.yml still there")
	}
	p1.WaitInstances(20*time.Second, ts)
	p2.WaitInstances(20*time.Second, nil)
}

// A real Prometheus with http_sd_configs against the Handler scrapes its
// own share.
func TestRealPrometheusHTTPSD(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test")
	}
	ts := testenv.ScrapeTargets(t, 3)
	var h filesd.Handler
	if err := h.Set(map[string][]*targetgroup.Group{"p1": groups(nil, ts[0], ts[2]), "p2": groups(nil, ts[1])}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sd/", http.StripPrefix("/sd/", &h))
	port := testenv.FreePort(t)
	srv := &http.Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.ListenAndServe()
	t.Cleanup(func() { srv.Close() })
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 500ms
scrape_configs:
  - job_name: sharded
    http_sd_configs:
      - url: http://127.0.0.1:%d/sd/p1
        refresh_interval: 1s
`, port)
	p := testenv.StartPrometheus(t, t.TempDir(), cfg)
	p.WaitInstances(20*time.Second, []string{ts[0], ts[2]})
	h.Set(map[string][]*targetgroup.Group{"p1": groups(nil, ts[1]), "p2": groups(nil, ts[0], ts[2])})
	p.WaitInstances(20*time.Second, []string{ts[1]})
}
