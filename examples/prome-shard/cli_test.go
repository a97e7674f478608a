package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/internal/testenv"
)

// check config works offline (Consul unreachable), says what would run,
// and exits 2 naming the field for each kind of mistake it looks for.
func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "consul: {address: 127.0.0.1:1}\n"+strings.Replace(okJob, "static: [{id: a", "consul_service: p\n      register: [{id: a", 1))
	start := time.Now()
	code, stdout, stderr := runCmd("--config.file", good, "check", "config")
	t.Logf("check config with Consul unreachable: %v", time.Since(start).Round(time.Millisecond))
	if code != exitOK || !strings.Contains(stdout, "SUCCESS") || !strings.Contains(stdout, `job node: 1 replica(s); collectors: Consul service "p", registering 2 (a, b)`) {
		t.Fatalf("a good config: exit %d\n%s\n%s", code, stdout, stderr)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	for name, tc := range map[string]struct{ body, want string }{
		"unknown field":   {okJob + "bogus: 1\n", "field bogus not found"},
		"shared dir":      {okJob + strings.Replace(okJob[6:], "name: node", "name: node2", 1), "jobs[1] (node2).output.dir"},
		"not a directory": {strings.Replace(okJob, "{dir: OUT}", fmt.Sprintf("{dir: %q}", filepath.Join(notDir, "out")), 1), "not a directory"},
		"bad file name":   {strings.Replace(okJob, "{dir: OUT}", `{dir: OUT, file: "{{.ID}}.txt"}`, 1), `output.file: filesd: DirOptions.Template "{{.ID}}.txt"`},
	} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := runCmd("--config.file", writeConfig(t, tc.body), "check", "config")
			if code != exitConfig || !strings.Contains(stderr, tc.want) || !strings.Contains(stdout, "FAILED") {
				t.Fatalf("exit %d\n%s\n%s; want 2 mentioning %q", code, stdout, stderr, tc.want)
			}
		})
	}
	// It writes nothing: the output directory is not even made.
	if _, err := os.Stat(filepath.Join(filepath.Dir(good), "out")); !os.IsNotExist(err) {
		t.Fatalf("check config made the output directory: %v", err)
	}
}

// --dry-run and --once with Consul unreachable say so at once (exit 1),
// instead of waiting for the run's bound.
func TestDryRunFailsFastWithoutConsul(t *testing.T) {
	cfg := writeConfig(t, "consul: {address: 127.0.0.1:1}\njobs:\n  - name: node\n    collectors: {consul_service: p}\n"+
		"    targets: {static: [{targets: [h1:9100]}]}\n    output: {dir: OUT}\n")
	for _, mode := range []string{"--dry-run", "--once"} {
		start := time.Now()
		code, _, stderr := runCmd("--config.file", cfg, mode)
		if code != exitFailed || !strings.Contains(stderr, "consul at 127.0.0.1:1 cannot be reached") {
			t.Fatalf("%s: exit %d\n%s", mode, code, stderr)
		}
		t.Logf("%s with Consul unreachable answered in %v", mode, time.Since(start).Round(time.Millisecond))
	}
}

// --once against a Consul that answers no instance names the likely cause
// when no token is set: ACLs that deny by default.
func TestOnceWithNoInstanceNamesACLs(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	cfg := writeConfig(t, fmt.Sprintf("consul: {address: %q}\njobs:\n  - name: node\n    collectors: {consul_service: nobody}\n"+
		"    targets: {static: [{targets: [h1:9100]}]}\n    output: {dir: OUT}\n", agent.Addr))
	code, _, stderr := runCmd("--config.file", cfg, "--once")
	if code != exitFailed || !strings.Contains(stderr, "default_policy deny") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}

// The flags of earlier releases still work for one release, with a warning
// that names the new flag.
func TestOldFlagsStillWork(t *testing.T) {
	code, stdout, stderr := runCmd("-config", writeConfig(t, okJob), "-once")
	if code != exitOK || !strings.Contains(stdout, "job node: 3 targets on 2 collectors") ||
		!strings.Contains(stderr, "-config is deprecated and goes in the next release; use --config.file") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, stdout, _ := runCmd("--help"); code != exitOK || !strings.Contains(stdout, "check config") || !strings.Contains(stdout, "deregister") {
		t.Fatalf("--help: exit %d, no subcommands listed:\n%s", code, stdout)
	}
}

// The daemon behind a route prefix: the endpoints move under it, / leads
// there, POST /-/reload reloads the config only with
// --web.enable-lifecycle, and /metrics has promshard_build_info, passes
// promtool check metrics and has no job or instance label.
func TestHTTPSurface(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	promtool := promtoolPath(t)
	cfg := writeConfig(t, okJob)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen, "--web.enable-lifecycle",
		"--web.external-url", "https://example.org/shard/")
	base := "http://" + listen + "/shard"
	waitReady(t, base)
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer noRedirect.CloseIdleConnections()
	resp, err := noRedirect.Get("http://" + listen + "/")
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/shard/" {
		t.Fatalf("GET /: %v %v, want a redirect to /shard/", resp, err)
	}
	resp.Body.Close()
	post := func() (int, string) {
		code, b, err := testenv.HTTPPost(context.Background(), base+"/-/reload")
		if err != nil {
			t.Fatal(err)
		}
		return code, string(b)
	}
	if code, _, _ := testenv.HTTPGet(context.Background(), base+"/-/reload"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /-/reload: %d, want 405", code)
	}
	os.WriteFile(cfg, []byte(strings.ReplaceAll(okJob, "OUT", filepath.Join(filepath.Dir(cfg), "out"))+"bogus: 1\n"), 0o644)
	if code, _ := post(); code != http.StatusInternalServerError {
		t.Fatalf("POST /-/reload with a broken config: %d, want 500", code)
	}
	os.WriteFile(cfg, []byte(strings.ReplaceAll(okJob, "OUT", filepath.Join(filepath.Dir(cfg), "out"))), 0o644)
	if code, body := post(); code != http.StatusOK {
		t.Fatalf("POST /-/reload with a good config: %d %q", code, body)
	}
	var metrics []byte
	if err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		code, b, err := testenv.HTTPGet(context.Background(), base+"/metrics")
		if err != nil || code != 200 || !strings.Contains(string(b), "promshard_build_info{") ||
			!strings.Contains(string(b), "promshard_config_last_reload_successful 1") {
			return fmt.Errorf("/metrics after the reload: %d %v", code, err)
		}
		metrics = b
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(string(metrics))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(metrics)))
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range families {
		if !strings.HasPrefix(name, "promshard_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if n := model.LabelName(l.GetName()); n == model.JobLabel || n == model.InstanceLabel {
					t.Errorf("%s has a %s label: a collector that scrapes it would rename it exported_%s", name, n, n)
				}
			}
		}
	}
}

// POST /-/reload is refused without --web.enable-lifecycle.
func TestReloadNeedsLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, okJob), "--web.listen-address", listen)
	err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		code, _, err := testenv.HTTPPost(context.Background(), "http://"+listen+"/-/reload")
		if err != nil {
			return err
		}
		if code != http.StatusForbidden {
			return fmt.Errorf("POST /-/reload: %d, want 403", code)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// 100 clients asking for simulations without pause on a 100,000-target
// pool leave /-/ready answering at once: the expensive endpoints compute a
// few answers at a time and refuse the rest.
func TestReadyUnderSimulationLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`[{"labels": {"env": "load"}, "targets": [`)
	for i := range 100_000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"10.%d.%d.%d:9100"`, i/65536, i/256%256, i%256)
	}
	b.WriteString("]}]")
	os.WriteFile(filepath.Join(dir, "targets.json"), []byte(b.String()), 0o644)
	var members []string
	for i := range 20 {
		members = append(members, fmt.Sprintf("{id: c%d, address: 127.0.0.1, port: %d}", i, 9000+i))
	}
	cfg := writeConfig(t, fmt.Sprintf("jobs:\n  - name: node\n    collectors: {static: [%s]}\n    targets: {file_sd: [%q]}\n    output: {dir: OUT}\n",
		strings.Join(members, ", "), filepath.Join(dir, "targets.json")))
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	ready := func() (time.Duration, error) {
		start := time.Now()
		code, body, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/-/ready")
		if err == nil && code != 200 {
			err = fmt.Errorf("/-/ready: %d %q", code, body)
		}
		return time.Since(start), err
	}
	if err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error { _, err := ready(); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered, refused atomic.Int64
	for range 100 {
		wg.Go(func() {
			for ctx.Err() == nil {
				code, _, _ := testenv.HTTPGet(ctx, "http://"+listen+"/api/v1/simulate?remove=c3&add=c99:2")
				switch code {
				case http.StatusOK:
					answered.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				}
			}
		})
	}
	var worst time.Duration
	for range 50 {
		time.Sleep(20 * time.Millisecond) // spacing of the probes, not an assertion
		d, err := ready()
		if err != nil {
			t.Error(err)
		}
		worst = max(worst, d)
	}
	stop()
	wg.Wait()
	t.Logf("100 simulating clients on 100,000 targets: slowest of 50 /-/ready %v; %d simulations answered, %d refused (429)",
		worst.Round(time.Millisecond), answered.Load(), refused.Load())
	if answered.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("%d answered, %d refused: the load did not reach the bound", answered.Load(), refused.Load())
	}
}

// promtoolPath finds promtool; in CI a missing one fails the test.
func promtoolPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (.ci/run installs Debian's prometheus); CI does not skip it")
		}
		t.Skip("no promtool on PATH")
	}
	return p
}

// Two jobs cannot share a directory however it is spelled: relative with
// a trailing slash, or through a symbolic link.
func TestSharedDirSpelledDifferently(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	os.MkdirAll(real, 0o755)
	if err := os.Symlink(real, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	job := func(name, dir string) string {
		return strings.Replace(strings.Replace(okJob[6:], "name: node", "name: "+name, 1), "{dir: OUT}", fmt.Sprintf("{dir: %q}", dir), 1)
	}
	for _, pair := range [][2]string{
		{filepath.Join(base, "out", "x"), filepath.Join(base, "out", ".", "x") + "/"},
		{real, filepath.Join(base, "link")},
		{filepath.Join(real, "sub"), filepath.Join(base, "link", "sub")},
	} {
		cfg := writeConfig(t, "jobs:"+job("one", pair[0])+job("two", pair[1]))
		if code, _, stderr := runCmd("--config.file", cfg, "check", "config"); code != exitConfig || !strings.Contains(stderr, "jobs[1] (two).output.dir") {
			t.Fatalf("%q and %q: exit %d\n%s", pair[0], pair[1], code, stderr)
		}
	}
}

// Static collectors without an ID are named address:port, as documented;
// the config is not refused.
func TestStaticCollectorsWithoutID(t *testing.T) {
	cfg := writeConfig(t, strings.Replace(okJob, "{id: a, address: 127.0.0.1, port: 9091}, {id: b, address: 127.0.0.1, port: 9092}",
		"{address: 127.0.0.1, port: 9091}, {address: 127.0.0.1, port: 9092}", 1))
	code, stdout, stderr := runCmd("--config.file", cfg, "--once")
	if code != exitOK || !strings.Contains(stdout, "127.0.0.1:9091") || !strings.Contains(stdout, "3 targets on 2 collectors") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// The HTTP clients start from Prometheus' defaults: an http_sd source that
// redirects is followed, as a Prometheus scrape config would.
func TestHTTPClientsFollowRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusMovedPermanently)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"targets": ["h1:9100", "h2:9100"]}]`)
	}))
	defer srv.Close()
	cfg := writeConfig(t, strings.Replace(okJob, "static: [{targets: [h1:9100, h2:9100, h3:9100]}]",
		fmt.Sprintf("http_sd: {url: %q}", srv.URL+"/old"), 1))
	if code, stdout, stderr := runCmd("--config.file", cfg, "--once"); code != exitOK || !strings.Contains(stdout, "2 targets on 2 collectors") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	c, err := LoadConfig(cfg)
	if err != nil || !c.Audit.Client.FollowRedirects || !c.Jobs[0].Reload.HTTP.Client.FollowRedirects || !c.Jobs[0].Targets.HTTPSD.Client.FollowRedirects {
		t.Fatalf("defaults: %v %+v", err, c)
	}
}
