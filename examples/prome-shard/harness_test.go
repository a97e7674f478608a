// The end-to-end harness: everything the binary's tests share to start real
// Consul agents, real Prometheus collectors, a browser and the binary
// itself, and to read what the collectors actually scrape. Tests of one
// feature keep only what that feature alone needs.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/hashicorp/consul/api"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// auditReport reads the binary's last audit of a job.
func auditReport(listen, job string) (*audit.Report, error) {
	code, b, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/api/v1/audit?job="+job)
	if err != nil || code != 200 {
		return nil, fmt.Errorf("GET /api/v1/audit: %d %v", code, err)
	}
	var rs []*audit.Report
	if err := json.Unmarshal(b, &rs); err != nil || len(rs) != 1 {
		return nil, fmt.Errorf("%d reports (%v)", len(rs), err)
	}
	return rs[0], nil
}

// editFile rewrites a collector's file_sd file by hand (atomically, as an
// operator's editor would leave it), through edit.
func editFile(t *testing.T, path string, edit func([]*targetgroup.Group) []*targetgroup.Group) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var gs []*targetgroup.Group
	if err := json.Unmarshal(b, &gs); err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(edit(gs)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "edit.json")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func addresses(gs []*targetgroup.Group) []string {
	var out []string
	for _, g := range gs {
		for _, t := range g.Targets {
			out = append(out, string(t[model.AddressLabel]))
		}
	}
	return out
}

// instant runs an instant query on a collector and returns each series'
// value by its instance label ("" for a series without one).
func instant(addr, q string) (map[string]float64, error) {
	_, b, err := testenv.HTTPGet(context.Background(), "http://"+addr+"/api/v1/query?query="+url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	var ans struct {
		Data struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		return nil, fmt.Errorf("%s: %w", b, err)
	}
	out := map[string]float64{}
	for _, r := range ans.Data.Result {
		s, _ := r.Value[1].(string)
		out[r.Metric["instance"]], _ = strconv.ParseFloat(s, 64)
	}
	return out, nil
}

// perCollector is the value of a query without labels on each running
// collector.
func perCollector(cs []*collector, q string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, c := range cs {
		if c.up.Load() {
			v, err := instant(c.prom.Addr, q)
			if err != nil {
				return nil, err
			}
			out[c.id] = v[""]
		}
	}
	return out, nil
}

func maxOverMin(v map[string]float64) float64 {
	lo, hi := 1e18, 0.0
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return hi / max(lo, 1)
}

// The chaos suite runs the binary against real Consul (and real Prometheus
// collectors where scraping is the point) while something goes wrong, and
// prints figures (t.Log lines starting "chaos:") that the README quotes. It
// runs with make chaos (PROMSHARD_CHAOS=1), not in make test: it takes
// minutes.
func chaos(t *testing.T) {
	t.Helper()
	if os.Getenv("PROMSHARD_CHAOS") != "1" {
		t.Skip("chaos suite: run make chaos")
	}
}

// metric reads one sample of the binary's /metrics (summed over series
// whose labels contain match).
func metric(t *testing.T, listen, name, match string) float64 {
	t.Helper()
	_, b, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name) && strings.Contains(line, match) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			sum += v
		}
	}
	return sum
}

// assignedCount counts the targets in the binary's /api/v1/assignment of a
// job.
func assignedCount(listen, job string) (int, error) {
	a, err := assignment(listen)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range a[job] {
		n += len(m.Targets)
	}
	return n, nil
}

// okServer is a collector stand-in whose health endpoint always answers.
func okServer(t *testing.T) (string, string) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	return hostPortString(srv.Listener.Addr().String())
}

// registerJob is a config of one job, node, whose collectors the binary
// registers in Consul (service, 1 s HTTP checks); members is the YAML list
// of {id, address, port}; extra is appended to the job (indented by four).
func registerJob(consulAddr, service, members string, targets []string, out, extra string) string {
	return fmt.Sprintf(`consul: {address: %q}
jobs:
  - name: node
    collectors:
      consul_service: %s
      check: {interval: 1s, timeout: 1s}
      register: [%s]
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
%s`, consulAddr, service, strings.TrimSuffix(members, ", "), strings.Join(targets, ", "), out, extra)
}

// okMembers starts a stand-in collector per ID and returns them as the
// YAML list registerJob takes.
func okMembers(t *testing.T, ids ...string) string {
	var b strings.Builder
	for _, id := range ids {
		h, p := okServer(t)
		fmt.Fprintf(&b, "{id: %s, address: %s, port: %s}, ", id, h, p)
	}
	return b.String()
}

// waitCollectors waits until the binary's assignment of job node has n
// collectors.
func waitCollectors(t *testing.T, listen string, n int) {
	t.Helper()
	err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		a, err := assignment(listen)
		if err != nil || len(a["node"]) != n {
			return fmt.Errorf("collectors %d (%v), want %d", len(a["node"]), err, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testTargets(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.7.%d.%d:9100", i/250, i%250)
	}
	return out
}

// activeTargets counts a collector's active targets in a scrape pool.
func activeTargets(c *collector, pool string) (int, error) {
	ts, err := c.prom.Targets(context.Background())
	n := 0
	for _, t := range ts {
		if t.ScrapePool == pool {
			n++
		}
	}
	return n, err
}

// buildBinary returns the program to run: this test binary, with asMain set
// by startBinary.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proc is a running prome-shard.
type proc struct {
	cmd *exec.Cmd
	log string
}

func startBinary(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	return startBinaryIn(t, nil, bin, args...)
}

// startBinaryIn is startBinary behind a command prefix (unshare, say).
func startBinaryIn(t *testing.T, prefix []string, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "prome-shard.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	argv := slices.Concat(prefix, []string{bin}, args)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), asMain+"=1")
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		p.stop(t)
		lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prome-shard %v log:\n%s", args, b)
		}
	})
	return p
}

// logSize is how much the binary has logged so far.
func (p *proc) logSize(t *testing.T) int64 {
	t.Helper()
	fi, err := os.Stat(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// reshardMoves are the targets each reshard logged after offset from moved.
func (p *proc) reshardMoves(t *testing.T, from int64) []int {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	var moves []int
	for _, line := range strings.Split(string(b[min(from, int64(len(b))):]), "\n") {
		if !strings.Contains(line, "msg=reshard ") {
			continue
		}
		if m := movedRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			moves = append(moves, n)
		}
	}
	return moves
}

var movedRE = regexp.MustCompile(` moved=(\d+)`)

// fileTargets counts the targets of a file_sd file (0 when it is missing).
func fileTargets(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	var gs []*targetgroup.Group
	if err == nil {
		err = json.Unmarshal(b, &gs)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return len(addresses(gs))
}

// stop sends SIGTERM and wants a clean exit.
func (p *proc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("prome-shard exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		t.Error("prome-shard did not stop within 15s of SIGTERM")
	}
}

// newCollector is a collector that runs.
func newCollector(id string, prom *testenv.Prometheus) *collector {
	c := &collector{id: id, prom: prom}
	c.up.Store(true)
	return c
}

type collector struct {
	id   string
	prom *testenv.Prometheus
	up   atomic.Bool // read by samplers while a test kills and starts the collector
}

func hostPort(t *testing.T, addr string) (string, int) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// scrapers maps each target to the collectors that scrape it (health up)
// in a scrape pool, asking every running collector.
func scrapers(cs []*collector, pool string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, c := range cs {
		if !c.up.Load() {
			continue
		}
		ts, err := c.prom.Targets(context.Background())
		if err != nil {
			return nil, err
		}
		for _, tt := range ts {
			if tt.ScrapePool == pool && tt.Health == "up" {
				addr := tt.Discovered["__address__"]
				out[addr] = append(out[addr], c.id)
			}
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out, nil
}

// scrapedBy reports whether every target is scraped by exactly n running
// collectors.
func scrapedBy(cs []*collector, pool string, targets []string, n int) bool {
	got, err := scrapers(cs, pool)
	if err != nil {
		return false
	}
	for _, a := range targets {
		if len(got[a]) != n {
			return false
		}
	}
	return true
}

// waitScraped waits until every target is scraped by exactly n running
// collectors (and, when want is given, by exactly the collectors in want)
// and returns who scrapes what.
func waitScraped(t *testing.T, cs []*collector, pool string, targets []string, n int, timeout time.Duration, want map[string]string) map[string]string {
	t.Helper()
	var flat map[string]string
	err := testenv.WaitFor(timeout, 100*time.Millisecond, func() error {
		got, err := scrapers(cs, pool)
		if err != nil {
			return err
		}
		flat = map[string]string{}
		for a, ids := range got {
			flat[a] = strings.Join(ids, ",")
		}
		for _, a := range targets {
			if len(got[a]) != n {
				return fmt.Errorf("target %s scraped by %v (want %d collectors); %d of %d targets seen", a, got[a], n, len(got), len(targets))
			}
		}
		for a, w := range want {
			if flat[a] != w {
				return fmt.Errorf("target %s scraped by %s, want %s", a, flat[a], w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("pool %s: %v", pool, err)
	}
	return flat
}

// promConfig is a collector's Prometheus config for the pools r1 and r2,
// each read from that collector's file in dir/POOL.
func promConfig(dir string, id string) string { return promConfigFor(dir, id, "r1", "r2") }

// promConfigFor is a collector's Prometheus config scraping every second
// one job per pool, each from that collector's file_sd file in dir/POOL.
func promConfigFor(dir, id string, pools ...string) string {
	var b strings.Builder
	b.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n")
	for _, p := range pools {
		fmt.Fprintf(&b, "  - job_name: %s\n    file_sd_configs: [{files: [%q]}]\n", p, filepath.Join(dir, p, id+".json"))
	}
	return b.String()
}

func binaryConfig(consulAddr, out string, cs []*collector, targets []string, register bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "refresh_interval: 1m\nconsul: {address: %q}\nleader_election: {key: promshard/e2e}\njobs:\n", consulAddr)
	for _, job := range []struct {
		name     string
		replicas int
	}{{"r1", 1}, {"r2", 2}} {
		fmt.Fprintf(&b, "  - name: %s\n    replicas: %d\n    collectors:\n      consul_service: collectors\n", job.name, job.replicas)
		if register && job.name == "r1" {
			b.WriteString("      check: {interval: 1s, timeout: 1s}\n      register:\n")
			for _, c := range cs {
				h, p := hostPortString(c.prom.Addr)
				fmt.Fprintf(&b, "        - {id: %s, address: %s, port: %s}\n", c.id, h, p)
			}
		}
		fmt.Fprintf(&b, "    targets:\n      static: [{targets: [%s], labels: {team: e2e}}]\n", strings.Join(targets, ", "))
		reload := "none" // file_sd reads a rewritten file by itself
		if job.name == "r2" {
			reload = "http" // the collectors' /-/reload, so that reloads are exercised (and counted) too
		}
		fmt.Fprintf(&b, "    output: {dir: %q}\n    reload: {method: %s}\n", filepath.Join(out, job.name), reload)
	}
	return b.String()
}

func hostPortString(addr string) (string, string) {
	h, p, _ := net.SplitHostPort(addr)
	return h, p
}

// assigned is one collector in /api/v1/assignment.
type assigned struct {
	Domain   string
	Targets  []string
	State    string // draining or leaving: out of the ring
	Heaviest []struct {
		Target string
		Series uint64
		Share  float64
	}
}

// assignment reads /api/v1/assignment of a running binary: the collectors
// in each job's ring (those leaving it are left out).
func assignment(addr string) (map[string]map[string]assigned, error) {
	_, b, err := testenv.HTTPGet(context.Background(), "http://"+addr+"/api/v1/assignment")
	if err != nil {
		return nil, err
	}
	var jobs map[string]struct{ Collectors map[string]assigned }
	err = json.Unmarshal(b, &jobs)
	out := map[string]map[string]assigned{}
	for name, j := range jobs {
		ms := map[string]assigned{}
		for id, m := range j.Collectors {
			if m.State == "" {
				ms[id] = m
			}
		}
		out[name] = ms
	}
	return out, err
}

// sample asks every running collector who scrapes what in pool every
// 250 ms and hands each answer to see, until the returned stop is called
// (stop waits for the last one).
func sample(cs []*collector, pool string, see func(got map[string][]string)) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if got, err := scrapers(cs, pool); err == nil {
				see(got)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// countUnscraped samples cs and counts target-samples with no up scraper;
// stop returns the count.
func countUnscraped(cs []*collector, pool string, targets []string) (stop func() int64) {
	var n atomic.Int64
	halt := sample(cs, pool, func(got map[string][]string) {
		for _, a := range targets {
			if len(got[a]) == 0 {
				n.Add(1)
			}
		}
	})
	return func() int64 { halt(); return n.Load() }
}

// startCollectors starts real Prometheus collectors c1..cn, each scraping
// job node every second from the file file(id), and registers each in
// Consul as service with the check check(id).
func startCollectors(t *testing.T, client *api.Client, service string, n int, file func(id string) string,
	check func(id string) watch.Check) []*collector {
	t.Helper()
	var cs []*collector
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("c%d", i)
		cfg := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 500ms}\nscrape_configs:\n  - job_name: node\n    file_sd_configs: [{files: [%q]}]\n",
			file(id))
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), cfg))
		cs = append(cs, c)
		h, port := hostPort(t, c.prom.Addr)
		if err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: service, ID: id,
			Address: h, Port: port, Check: check(id)}); err != nil {
			t.Fatal(err)
		}
	}
	return cs
}

// waitReady waits until the binary serving base (its URL, route prefix
// included) answers /-/ready with 200.
func waitReady(t *testing.T, base string) {
	t.Helper()
	if err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		code, b, err := testenv.HTTPGet(context.Background(), base+"/-/ready")
		if err != nil || code != 200 {
			return fmt.Errorf("%s/-/ready: %d %q %v", base, code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	body = strings.ReplaceAll(body, "OUT", filepath.Join(dir, "out"))
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// browser starts a headless Debian chromium for the test and collects
// what its pages report as errors (console errors, uncaught exceptions,
// failed loads). In CI a missing chromium fails the test.
func browser(t *testing.T) (ctx context.Context, errs func() []string) {
	t.Helper()
	path := os.Getenv("PROMSHARD_CHROMIUM")
	if path == "" {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				path = p
				break
			}
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (.ci/run installs Debian's chromium); CI does not skip browser tests")
		}
		t.Skip("no chromium on PATH (set PROMSHARD_CHROMIUM)")
	}
	var mu sync.Mutex
	var seen []string
	record := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				seen = append(seen, "console.error: "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			if d.Exception != nil {
				seen = append(seen, fmt.Sprintf("exception: %s %s", d.Text, d.Exception.Description))
			} else {
				seen = append(seen, "exception: "+d.Text)
			}
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				seen = append(seen, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}
	// Chromium in a container now and then exits before it listens (about
	// one start in fifteen here): a start is tried three times.
	var err error
	for range 3 {
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
			chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-dev-shm-usage", true))
		bounded, stop := context.WithTimeout(context.Background(), 3*time.Minute) // a hung browser fails the test, never CI
		actx, cancelAlloc := chromedp.NewExecAllocator(bounded, opts...)
		c, cancel := chromedp.NewContext(actx)
		ctx = c
		t.Cleanup(func() { cancel(); cancelAlloc(); stop() })
		if err = chromedp.Listen(ctx, record); err == nil {
			err = chromedp.Do(ctx) // starts chromium; chromedp enables the runtime and log domains
		}
		if err == nil || !strings.Contains(err.Error(), "chrome failed to start") {
			break
		}
		t.Logf("chromium did not start; trying again: %v", err)
	}
	if err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string{}, seen...)
	}
}

// checkDashboard checks that every query of deploy/dashboard.json names a
// metric family that metrics (a /metrics page) holds, and that each label
// a query selects or groups by is on that family (job and instance come
// from the scrape).
func checkDashboard(t *testing.T, metrics []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("deploy", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct{ Definition string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/dashboard.json: %v", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(metrics))
	if err != nil {
		t.Fatal(err)
	}
	labels := func(family string) map[string]bool {
		out := map[string]bool{"job": true, "instance": true, "le": true}
		for _, m := range families[family].GetMetric() {
			for _, l := range m.GetLabel() {
				out[l.GetName()] = true
			}
		}
		return out
	}
	var exprs []string
	for _, pn := range d.Panels {
		for _, q := range pn.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	metric := regexp.MustCompile(`(promshard_[a-z_]+)(\{[^}]*\})?`)
	grouping := regexp.MustCompile(`by \(([^)]*)\) \(\w*\(?(promshard_[a-z_]+)`)
	for _, e := range exprs {
		for _, m := range metric.FindAllStringSubmatch(e, -1) {
			name := m[1]
			if _, ok := families[name]; !ok {
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base := strings.TrimSuffix(name, suffix); base != name && families[base] != nil {
						name = base
					}
				}
			}
			if _, ok := families[name]; !ok {
				t.Errorf("dashboard query %q: /metrics has no %s", e, m[1])
				continue
			}
			have := labels(name)
			for _, sel := range strings.Split(strings.Trim(m[2], "{}"), ",") {
				if i := strings.IndexAny(sel, "=!"); i > 0 && !have[strings.TrimSpace(sel[:i])] {
					t.Errorf("dashboard query %q: %s has no label %s", e, name, strings.TrimSpace(sel[:i]))
				}
			}
		}
		for _, g := range grouping.FindAllStringSubmatch(e, -1) {
			have := labels(strings.TrimSuffix(g[2], "_bucket"))
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); !have[l] {
					t.Errorf("dashboard query %q groups by %s, which %s does not have", e, l, g[2])
				}
			}
		}
	}
}

// staticCollectors starts n real Prometheus collectors c1…cn, each reading
// its own file_sd file in out for scrape job pool, and returns them with
// their entries for a static collector list.
func staticCollectors(t *testing.T, out, pool string, n int) ([]*collector, string) {
	t.Helper()
	var cs []*collector
	var static strings.Builder
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("c%d", i)
		cfg := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 500ms}\nscrape_configs:\n  - job_name: %s\n    file_sd_configs: [{files: [%q]}]\n",
			pool, filepath.Join(out, id+".json"))
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), cfg))
		cs = append(cs, c)
		h, p := hostPortString(c.prom.Addr)
		fmt.Fprintf(&static, "{id: %s, address: %s, port: %s}, ", id, h, p)
	}
	return cs, static.String()
}
