package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

	mu  sync.Mutex
	cmd *exec.Cmd
}

// StartPrometheus starts Prometheus with the given configuration (YAML) on
// a free loopback port, with the lifecycle API enabled, waits until it is
// ready, and stops it when the test ends. dir holds its config and data.
func StartPrometheus(t testing.TB, dir, config string) *Prometheus {
	t.Helper()
	bin := RequireBinary(t, "prometheus", "PROMSHARD_PROMETHEUS")
	p := &Prometheus{t: t, bin: bin, dir: dir, Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), Config: filepath.Join(dir, "prometheus.yml")}
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
	cmd := exec.Command(p.bin,
		"--config.file="+p.Config,
		"--web.listen-address="+p.Addr,
		"--web.enable-lifecycle",
		"--storage.tsdb.path="+filepath.Join(p.dir, "data"),
		"--log.level=warn",
	)
	cmd.Stdout = logWriter{p.t, "prometheus " + p.Addr}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start prometheus: %v", err)
	}
	p.cmd = cmd
	err := WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		resp, err := httpGet(context.Background(), "http://"+p.Addr+"/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
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
	resp, err := httpGet(ctx, "http://"+p.Addr+"/api/v1/targets?state=active")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Active []Target `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
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
