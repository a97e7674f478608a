package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server on loopback.
type Prometheus struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string // host:port of the web API
	// Config is the path of its configuration file.
	Config string

	extra []string
	mu    sync.Mutex
	cmd   *exec.Cmd
}

// StartPrometheus starts Prometheus with the given configuration (YAML) on
// a free loopback port, with the lifecycle API enabled, waits until it is
// ready, and stops it when the test ends. dir holds its config and data.
// extra flags go after the defaults (--no-web.enable-lifecycle turns the
// lifecycle API off again).
func StartPrometheus(t testing.TB, dir, config string, extra ...string) *Prometheus {
	t.Helper()
	bin := RequireBinary(t, "prometheus", "PROMSHARD_PROMETHEUS")
	p := &Prometheus{t: t, bin: bin, dir: dir, Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), Config: filepath.Join(dir, "prometheus.yml"), extra: extra}
	if err := os.WriteFile(p.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p.Start()
	t.Cleanup(p.Kill)
	return p
}

// Start starts the server if it is not running and waits until it is ready.
func (p *Prometheus) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return
	}
	args := []string{
		"--config.file=" + p.Config,
		"--web.listen-address=" + p.Addr,
		"--storage.tsdb.path=" + filepath.Join(p.dir, "data"),
		"--log.level=warn",
	}
	if !slices.Contains(p.extra, "--no-web.enable-lifecycle") {
		args = append(args, "--web.enable-lifecycle")
	}
	args = append(args, p.extra...)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout = logWriter{p.t, "prometheus " + p.Addr}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start prometheus: %v", err)
	}
	p.cmd = cmd
	err := WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		code, _, err := HTTPGet(context.Background(), "http://"+p.Addr+"/-/ready")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("prometheus on %s not ready: %v", p.Addr, err)
	}
}

// Kill stops the server at once, as a crash would.
func (p *Prometheus) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Reset restarts the server with its storage emptied: a fresh head that
// holds only what it scrapes from now on.
func (p *Prometheus) Reset() {
	p.t.Helper()
	p.Kill()
	if err := os.RemoveAll(filepath.Join(p.dir, "data")); err != nil {
		p.t.Fatal(err)
	}
	p.Start()
}

// Target is one active target as /api/v1/targets reports it.
type Target struct {
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	Labels     map[string]string `json:"labels"`
	Discovered map[string]string `json:"discoveredLabels"`
}

// Targets returns the active targets.
func (p *Prometheus) Targets(ctx context.Context) ([]Target, error) {
	_, b, err := HTTPGet(ctx, "http://"+p.Addr+"/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	var body struct {
		Data struct {
			Active []Target `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("decode /api/v1/targets: %w", err)
	}
	return body.Data.Active, nil
}

// Instances returns the sorted addresses of the active targets whose health
// is "up" (or any health, when up is false).
func (p *Prometheus) Instances(ctx context.Context, up bool) ([]string, error) {
	ts, err := p.Targets(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range ts {
		if up && t.Health != "up" {
			continue
		}
		out = append(out, t.Discovered["__address__"])
	}
	sort.Strings(out)
	return out, nil
}

// Metric reads one sample of a metric without labels from the text
// exposition at http://addr/metrics (a Prometheus server's own metrics).
func Metric(ctx context.Context, addr, name string) (float64, error) {
	_, b, err := HTTPGet(ctx, "http://"+addr+"/metrics")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return strconv.ParseFloat(f[1], 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found at %s", name, addr)
}

// ScrapeTargets starts n HTTP servers on loopback that serve a small
// /metrics page, and returns their host:port addresses, sorted. They stop
// when the test ends.
func ScrapeTargets(t testing.TB, n int) []string {
	t.Helper()
	series := make([]int, n)
	for i := range series {
		series[i] = 1
	}
	out := SeriesTargets(t, series...)
	sort.Strings(out)
	return out
}

// SeriesTargets starts an HTTP server on loopback per entry of series,
// whose /metrics page has that many series, and returns their host:port
// addresses in the same order. They stop when the test ends.
func SeriesTargets(t testing.TB, series ...int) []string {
	t.Helper()
	var out []string
	for _, n := range series {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var page strings.Builder
		page.WriteString("# TYPE promshard_test_up gauge\npromshard_test_up 1\n")
		if n > 1 {
			page.WriteString("# TYPE promshard_test_series gauge\n")
			for i := 1; i < n; i++ {
				fmt.Fprintf(&page, "promshard_test_series{i=\"%d\"} %d\n", i, i)
			}
		}
		body := page.String()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = io.WriteString(w, body)
		}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		out = append(out, l.Addr().String())
	}
	return out
}

// WaitInstances waits until the server's healthy targets are exactly want
// (sorted addresses), and fails the test with what it saw otherwise.
func (p *Prometheus) WaitInstances(timeout time.Duration, want []string) {
	p.t.Helper()
	var got []string
	err := WaitFor(timeout, 100*time.Millisecond, func() error {
		var err error
		got, err = p.Instances(context.Background(), true)
		if err != nil {
			return err
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("scraping %v", got)
		}
		return nil
	})
	if err != nil {
		p.t.Fatalf("prometheus %s: want %v up within %v: %v", p.Addr, want, timeout, err)
	}
}
