package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"go.uber.org/goleak"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// asMain makes the test binary run main instead of the tests, so the
// end-to-end tests run the program without building it again.
const asMain = "PROME_SHARD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run()) // the fuzzing engine's own goroutines are no leak
	}
	goleak.VerifyTestMain(m)
}

// TestEndToEndFailover runs the whole loop for real: a Consul agent, three
// Prometheus collectors registered with HTTP health checks, 60 targets, the
// binary in central mode; then kills collectors, restarts them, and runs
// the binary in self mode.
func TestEndToEndFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	bin := buildBinary(t)
	agent := testenv.StartConsul(t)
	targets := testenv.ScrapeTargets(t, 60)
	out := t.TempDir()
	for _, j := range []string{"r1", "r2"} {
		os.MkdirAll(filepath.Join(out, j), 0o755)
	}
	var cs []*collector
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("collector-%d", i)
		cs = append(cs, newCollector(id, testenv.StartPrometheus(t, t.TempDir(), promConfig(out, id))))
	}
	cfgPath := filepath.Join(t.TempDir(), "central.yaml")
	os.WriteFile(cfgPath, []byte(binaryConfig(agent.Addr, out, cs, targets, true)), 0o644)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	central := startBinary(t, bin, "--config.file", cfgPath, "--web.listen-address", listen)

	// Every target on exactly one collector (R=1), and on exactly two (R=2).
	before := waitScraped(t, cs, "r1", targets, 1, 60*time.Second, nil)
	waitScraped(t, cs, "r2", targets, 2, 30*time.Second, nil)
	counts := map[string]int{}
	for _, id := range before {
		counts[id]++
	}
	t.Logf("R=1 spread over 3 collectors: %v", counts)
	if _, b, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/-/ready"); err != nil || !strings.HasPrefix(string(b), "ready: leader") {
		t.Fatalf("the only copy of central mode with leader_election: ready says %q (%v), want leader", b, err)
	}
	if len(counts) != 3 {
		t.Fatalf("targets on %d collectors, want 3: %v", len(counts), counts)
	}

	type timing struct{ reshard, scraped time.Duration }
	var runs []timing
	for round, victim := range []int{1, 0, 2} {
		v := cs[victim]
		v.prom.Kill()
		v.up.Store(false)
		killed := time.Now()
		// Until the binary's assignment drops the victim: check + watch + reshard + write.
		var reshard time.Duration
		err := testenv.WaitFor(30*time.Second, 20*time.Millisecond, func() error {
			a, err := assignment(listen)
			if err != nil {
				return err
			}
			if _, ok := a["r1"][v.id]; ok {
				return fmt.Errorf("%s still assigned", v.id)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		reshard = time.Since(killed)
		after := waitScraped(t, cs, "r1", targets, 1, 30*time.Second, nil)
		scraped := time.Since(killed)
		runs = append(runs, timing{reshard, scraped})
		for a, was := range before {
			if was != v.id && after[a] != was {
				t.Errorf("round %d: target %s moved from %s to %s, though %s stayed", round, a, was, after[a], was)
			}
		}
		// R=2 with two collectors left: every target on both.
		waitScraped(t, cs, "r2", targets, 2, 30*time.Second, nil)

		// It comes back: exactly the first assignment returns, so only
		// targets moving onto it moved.
		v.prom.Start()
		v.up.Store(true)
		waitScraped(t, cs, "r1", targets, 1, 60*time.Second, before)
		t.Logf("round %d: killed %s: reshard after %v, every target scraped again after %v",
			round, v.id, reshard.Round(10*time.Millisecond), scraped.Round(10*time.Millisecond))
	}
	slices.SortFunc(runs, func(a, b timing) int { return int(a.scraped - b.scraped) })
	med := runs[len(runs)/2]
	t.Logf("failover with 1s Consul checks and 1s scrapes, %d runs: kill -> every target scraped again: median %v (min %v, max %v); kill -> reshard written (check + watch + reshard): median-run %v",
		len(runs), med.scraped.Round(10*time.Millisecond), runs[0].scraped.Round(10*time.Millisecond),
		runs[len(runs)-1].scraped.Round(10*time.Millisecond), med.reshard.Round(10*time.Millisecond))

	// Self mode: the collectors are registered by someone else, and three
	// copies, one per collector, each write only their own file.
	client, err := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	if err != nil {
		t.Fatal(err)
	}
	centralFiles := map[string][]byte{}
	for _, c := range cs {
		centralFiles[c.id], _ = os.ReadFile(filepath.Join(out, "r1", c.id+".json"))
	}
	_, metrics, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	checkDashboard(t, metrics)
	central.stop(t)
	if svcs, err := client.Agent().Services(); err != nil || len(svcs) != len(cs) {
		t.Fatalf("after SIGTERM the agent has %d services (%v), want the %d registered: registrations outlive a stop", len(svcs), err, len(cs))
	}
	for _, c := range cs {
		h, p := hostPort(t, c.prom.Addr)
		err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: "collectors", ID: c.id,
			Address: h, Port: p, Check: watch.Check{Interval: time.Second, Timeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(out, "r1", c.id+".json"))
	}
	selfCfg := filepath.Join(t.TempDir(), "self.yaml")
	os.WriteFile(selfCfg, []byte(binaryConfig(agent.Addr, out, cs, targets, false)), 0o644)
	for _, c := range cs {
		startBinary(t, bin, "--config.file", selfCfg, "--member", c.id)
	}
	// Each copy writes its own file once its collector's check passes; all
	// three agree with central mode byte for byte.
	err = testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		for _, c := range cs {
			b, err := os.ReadFile(filepath.Join(out, "r1", c.id+".json"))
			if err != nil {
				return err
			}
			if string(b) != string(centralFiles[c.id]) {
				return fmt.Errorf("%s: self mode wrote\n%s\ncentral mode wrote\n%s", c.id, b, centralFiles[c.id])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitScraped(t, cs, "r1", targets, 1, 60*time.Second, before)
}

// -once with register: on a fresh agent the checks start critical; the run
// waits for them and shards over every collector instead of failing or
// giving everything to the first one that passed.
func TestOnceWithRegisterOnAFreshAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	p := writeConfig(t, registerJob(agent.Addr, "once-collectors", okMembers(t, "c1", "c2", "c3"),
		strings.Split("h1:9100 h2:9100 h3:9100 h4:9100 h5:9100 h6:9100 h7:9100 h8:9100 h9:9100", " "), "OUT", ""))
	code, stdout, stderr := runCmd("--config.file", p, "--once")
	if code != 0 || !strings.Contains(stdout, "job node: 9 targets on 3 collectors") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A decision: -once is the daemon's work done once, registration
	// included, so the collectors stay registered after it.
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	if svcs, err := client.Agent().Services(); err != nil || len(svcs) != 3 {
		t.Fatalf("after -once the agent has %d services (%v), want the 3 registered", len(svcs), err)
	}
}

// SIGHUP reloads the config: a broken one is refused (the running config
// stays, promshard_config_last_reload_successful 0), a good one is applied
// without deregistering anything; SIGTERM still stops it cleanly.
func TestSIGHUPReloadsConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	members := okMembers(t, "c1")
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	config := func(targets string) string {
		return registerJob(agent.Addr, "reload", members, strings.Split(targets, ", "), "OUT", "")
	}
	p := writeConfig(t, config("h1:9100, h2:9100"))
	rewrite := func(body string) {
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "OUT", filepath.Join(filepath.Dir(p), "out"))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := startBinary(t, buildBinary(t), "--config.file", p, "--web.listen-address", listen)
	waitTargets := func(n int) {
		t.Helper()
		err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
			got, err := assignedCount(listen, "node")
			if err == nil && got != n {
				err = fmt.Errorf("%d targets assigned, want %d", got, n)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitTargets(2)
	rewrite(config("h1:9100, h2:9100") + "bogus: 1\n")
	if err := bin.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	err := testenv.WaitFor(10*time.Second, 50*time.Millisecond, func() error {
		if v := metric(t, listen, "promshard_config_last_reload_successful", ""); v != 0 {
			return fmt.Errorf("promshard_config_last_reload_successful %v after a broken config", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitTargets(2) // the running config stays
	rewrite(config("h1:9100, h2:9100, h3:9100"))
	_ = bin.cmd.Process.Signal(syscall.SIGHUP)
	deregistered := false
	for start := time.Now(); time.Since(start) < 3*time.Second; time.Sleep(20 * time.Millisecond) {
		if svcs, err := client.Agent().Services(); err == nil && len(svcs) == 0 {
			deregistered = true
		}
	}
	waitTargets(3)
	if v := metric(t, listen, "promshard_config_last_reload_successful", ""); v != 1 || deregistered {
		t.Fatalf("after a good config: metric %v, collector deregistered meanwhile: %v", v, deregistered)
	}
	bin.stop(t) // exit 0 after SIGTERM, or the test fails
	if svcs, _ := client.Agent().Services(); len(svcs) != 1 {
		t.Fatalf("%d services left after SIGTERM, want the 1 registered: registrations outlive a stop", len(svcs))
	}
}

// A Consul service ID that cannot name a file (Consul accepts "../evil") is
// left out of the ring; the other collectors are sharded as usual.
func TestUnusableConsulIDIsLeftOut(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	for _, id := range []string{"c1", "c2", "../evil"} {
		h, p := okServer(t)
		port := 0
		fmt.Sscan(p, &port)
		err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: "odd", ID: id, Address: h, Port: port,
			Check: watch.Check{Interval: time.Second, Timeout: time.Second}})
		if err != nil {
			t.Fatal(err)
		}
	}
	body := fmt.Sprintf("consul: {address: %q}\n", agent.Addr) +
		strings.Replace(okJob, "static: [{id: a, address: 127.0.0.1, port: 9091}, {id: b, address: 127.0.0.1, port: 9092}]", "consul_service: odd", 1)
	p := writeConfig(t, body)
	var stdout, stderr string
	err := testenv.WaitFor(20*time.Second, 200*time.Millisecond, func() error {
		var code int
		code, stdout, stderr = runCmd("--config.file", p, "--once")
		// Until all three checks pass, a run may see c1 and c2 only.
		if code != 0 || !strings.Contains(stdout, "job node: 3 targets on 2 collectors") ||
			!strings.Contains(stderr, "excluding a collector from the ring") || !strings.Contains(stderr, "../evil") {
			return fmt.Errorf("exit %d", code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p), "out", "c1.json")); err != nil {
		t.Fatal(err)
	}
}

// Two copies that register the same collectors with deregister_on_stop:
// stopping one leaves them registered for the other; stopping the last
// deregisters them.
func TestTwoCopiesShareRegistrations(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	members := okMembers(t, "c1", "c2")
	var copies []*proc
	for range 2 {
		cfg := writeConfig(t, "deregister_on_stop: true\n"+registerJob(agent.Addr, "shared", members, []string{"h1:9100", "h2:9100"}, "OUT", ""))
		copies = append(copies, startBinary(t, buildBinary(t), "--config.file", cfg))
	}
	services := func() int {
		svcs, err := client.Agent().Services()
		if err != nil {
			t.Fatal(err)
		}
		return len(svcs)
	}
	err := testenv.WaitFor(20*time.Second, 100*time.Millisecond, func() error {
		pairs, _, err := client.KV().List(watch.DefaultOwnersPrefix, nil)
		if err != nil || services() != 2 || len(pairs) != 4 {
			return fmt.Errorf("%d services, %d owner keys (%v)", services(), len(pairs), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	copies[0].stop(t)
	if n := services(); n != 2 {
		t.Fatalf("after the first copy stopped the agent has %d services, want 2: it deregistered the other's", n)
	}
	copies[1].stop(t)
	if n := services(); n != 0 {
		t.Fatalf("after the last copy stopped the agent has %d services, want 0", n)
	}
}

// TestSpreadOverZones: three real collectors registered in zones a, a and
// b (service meta), R=2 spread by zone: every target has its replica in
// zone b; when the zone-b collector dies, every target is still scraped by
// exactly two collectors.
func TestSpreadOverZones(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	targets := testenv.ScrapeTargets(t, 30)
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "r2"), 0o755)
	var cs []*collector
	var b strings.Builder
	fmt.Fprintf(&b, "consul: {address: %q}\njobs:\n  - name: r2\n    replicas: 2\n    spread_by: zone\n", agent.Addr)
	b.WriteString("    collectors:\n      consul_service: zoned\n      check: {interval: 1s, timeout: 1s}\n      register:\n")
	for i, zone := range []string{"a", "a", "b"} {
		id := fmt.Sprintf("collector-%d", i+1)
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), promConfig(out, id)))
		cs = append(cs, c)
		h, p := hostPortString(c.prom.Addr)
		fmt.Fprintf(&b, "        - {id: %s, address: %s, port: %s, meta: {zone: %s}}\n", id, h, p, zone)
	}
	fmt.Fprintf(&b, "    targets: {static: [{targets: [%s]}]}\n    output: {dir: %q}\n", strings.Join(targets, ", "), filepath.Join(out, "r2"))
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, b.String()), "--web.listen-address", listen)

	got := waitScraped(t, cs, "r2", targets, 2, 60*time.Second, nil)
	for a, ids := range got {
		if !strings.HasSuffix(ids, ",collector-3") {
			t.Errorf("target %s scraped by %s: no replica in zone b", a, ids)
		}
	}
	asg, err := assignment(listen)
	if err != nil || asg["r2"]["collector-3"].Domain != "b" || len(asg["r2"]["collector-3"].Targets) != len(targets) {
		t.Fatalf("assignment: %+v %v", asg["r2"]["collector-3"], err)
	}
	cs[2].prom.Kill()
	cs[2].up.Store(false)
	got = waitScraped(t, cs, "r2", targets, 2, 60*time.Second, nil)
	t.Logf("zone b gone: %d targets, each on %s", len(got), got[targets[0]])
}

// TestFailoverWithAHungProvider: one binary shards the same collectors for
// two jobs, one whose targets come from a healthy static list and one whose
// http_sd source answered once and now hangs every request; 20 clients ask
// for simulations all along. A collector killed has its targets of both
// jobs scraped again by survivors at the same time (within 1 s): failover
// reads the targets in hand and waits neither for a provider nor for the
// simulations.
func TestFailoverWithAHungProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	targets := testenv.ScrapeTargets(t, 30)
	out := t.TempDir()
	pools := []string{"healthy", "hung"}
	for _, p := range pools {
		os.MkdirAll(filepath.Join(out, p), 0o755)
	}
	var served atomic.Int32
	release := make(chan struct{})
	sd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) > 1 {
			select { // hang until the test ends or the client gives up
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode([]map[string][]string{{"targets": targets}})
	}))
	t.Cleanup(sd.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks the hung requests

	var cs []*collector
	var b strings.Builder
	fmt.Fprintf(&b, "refresh_interval: 1s\nconsul: {address: %q}\njobs:\n", agent.Addr)
	b.WriteString("  - name: healthy\n    collectors:\n      consul_service: hung-test\n      check: {interval: 1s, timeout: 1s}\n      register:\n")
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("collector-%d", i)
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), promConfigFor(out, id, pools...)))
		cs = append(cs, c)
		h, p := hostPortString(c.prom.Addr)
		fmt.Fprintf(&b, "        - {id: %s, address: %s, port: %s}\n", id, h, p)
	}
	fmt.Fprintf(&b, "    targets: {static: [{targets: [%s]}]}\n    output: {dir: %q}\n    reload: {method: none}\n",
		strings.Join(targets, ", "), filepath.Join(out, "healthy"))
	fmt.Fprintf(&b, "  - name: hung\n    collectors: {consul_service: hung-test}\n    targets: {http_sd: {url: %q, timeout: 5m}}\n"+
		"    output: {dir: %q}\n    reload: {method: none}\n", sd.URL, filepath.Join(out, "hung"))
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, b.String()), "--web.listen-address", listen)
	for _, p := range pools {
		waitScraped(t, cs, p, targets, 1, 60*time.Second, nil)
	}
	// The next refresh of the http_sd source is the one that hangs.
	if err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		if n := served.Load(); n < 2 {
			return fmt.Errorf("the http_sd source was asked %d times", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// 20 clients ask for simulations without pause until the test ends.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var answered, refused atomic.Int64
	for range 20 {
		wg.Go(func() {
			for ctx.Err() == nil {
				code, _, _ := testenv.HTTPGet(ctx, "http://"+listen+"/api/v1/simulate?job=hung&remove=collector-2&add=spare:2")
				switch code {
				case http.StatusOK:
					answered.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	victim := cs[0]
	victim.prom.Kill()
	victim.up.Store(false)
	killed := time.Now()
	took := map[string]time.Duration{}
	err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		for _, p := range pools {
			if _, done := took[p]; !done && scrapedBy(cs, p, targets, 1) {
				took[p] = time.Since(killed)
			}
		}
		if len(took) < len(pools) {
			return fmt.Errorf("after the kill, scraped again: %v", took)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	wg.Wait()
	t.Logf("killed %s: every target scraped again after %v (healthy source), %v (hung source); %d simulations answered, %d refused (429) meanwhile; the source was asked %d times",
		victim.id, took["healthy"].Round(10*time.Millisecond), took["hung"].Round(10*time.Millisecond),
		answered.Load(), refused.Load(), served.Load())
	if d := took["hung"] - took["healthy"]; d > time.Second {
		t.Fatalf("the job whose provider hangs failed over %v after the healthy one", d)
	}
	if answered.Load() == 0 {
		t.Fatal("no simulation was answered during the failover: the test did not load the server")
	}
}

// A stop and a start of the binary leave every collector registered
// throughout (by default a registration outlives the process); the
// deregister command takes them out.
func TestRegistrationsOutliveARestart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	cfg := writeConfig(t, registerJob(agent.Addr, "kept", okMembers(t, "c1", "c2", "c3"), []string{"h1:9100", "h2:9100"}, "OUT", ""))
	passing := func() (int, error) {
		es, _, err := client.Health().Service("kept", "", true, nil)
		return len(es), err
	}
	bin := buildBinary(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := startBinary(t, bin, "--config.file", cfg, "--web.listen-address", listen)
	if err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		if n, err := passing(); err != nil || n != 3 {
			return fmt.Errorf("%d collectors passing (%v)", n, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Watch the registrations while the binary stops and starts again.
	ctx, stop := context.WithCancel(context.Background())
	fewest := make(chan int, 1)
	go func() {
		least := 3
		for ctx.Err() == nil {
			if svcs, err := client.Agent().Services(); err == nil {
				least = min(least, len(svcs))
			}
			time.Sleep(20 * time.Millisecond)
		}
		fewest <- least
	}()
	p.stop(t)
	startBinary(t, bin, "--config.file", cfg, "--web.listen-address", listen)
	if err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		code, b, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/-/ready")
		if err != nil || code != 200 {
			return fmt.Errorf("ready: %d %q %v", code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stop()
	if n := <-fewest; n != 3 {
		t.Fatalf("while the binary stopped and started again, the agent had as few as %d of the 3 collectors registered", n)
	}
	// Decommissioning is explicit.
	code, stdout, stderr := runCmd("--config.file", cfg, "deregister")
	if code != 0 || !strings.Contains(stdout, "deregistered 3 collector(s)") {
		t.Fatalf("deregister: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if svcs, err := client.Agent().Services(); err != nil || len(svcs) != 0 {
		t.Fatalf("after deregister the agent has %d services (%v)", len(svcs), err)
	}
}

// TestReloadKeepsWhatItCan: a config reload while the http_sd source is
// down keeps the job's last good targets (a collector removed by the
// reload still has its targets moved); a collector removed from
// collectors.register is deregistered; a job dropped has its files
// removed; a reload to a port that cannot be bound is refused whole and
// the running server keeps serving.
func TestReloadKeepsWhatItCan(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	var down atomic.Bool
	sd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			http.Error(w, "cmdb down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"targets": ["h1:9100", "h2:9100", "h3:9100", "h4:9100", "h5:9100", "h6:9100"]}]`)
	}))
	t.Cleanup(sd.Close)
	all := okMembers(t, "c1", "c2", "c3")
	two := all[:strings.Index(all, "{id: c3")]
	config := func(register string, extra bool, listen string) string {
		s := fmt.Sprintf("listen: %s\nrefresh_interval: 1s\nconsul: {address: %q}\njobs:\n", listen, agent.Addr) +
			"  - name: node\n    collectors:\n      consul_service: reload\n      check: {interval: 1s, timeout: 1s}\n" +
			fmt.Sprintf("      register: [%s]\n    targets: {http_sd: {url: %q}}\n    output: {dir: OUT/node}\n", strings.TrimSuffix(register, ", "), sd.URL)
		if extra {
			s += "  - name: extra\n    collectors: {static: [{id: e1, address: 127.0.0.1, port: 9}]}\n" +
				"    targets: {static: [{targets: [x1:9100]}]}\n    output: {dir: OUT/extra}\n"
		}
		return s
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	p := writeConfig(t, config(all, true, listen))
	out := filepath.Join(filepath.Dir(p), "out")
	rewrite := func(body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "OUT", out)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := startBinary(t, buildBinary(t), "--config.file", p)
	holders := func() (map[string]int, error) {
		a, err := assignment(listen)
		if err != nil {
			return nil, err
		}
		n := map[string]int{}
		for id, m := range a["node"] {
			n[id] = len(m.Targets)
		}
		return n, nil
	}
	wait := func(what string, cond func() error) {
		t.Helper()
		if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, cond); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	wait("three collectors hold the six targets", func() error {
		n, err := holders()
		if err == nil && (len(n) != 3 || n["c1"]+n["c2"]+n["c3"] != 6) {
			err = fmt.Errorf("%v", n)
		}
		return err
	})
	if _, err := os.Stat(filepath.Join(out, "extra", "e1.json")); err != nil {
		t.Fatal(err)
	}

	down.Store(true) // the source fails from now on
	rewrite(config(two, false, listen))
	if err := bin.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wait("after the reload, c1 and c2 hold the six targets, though the source is down", func() error {
		n, err := holders()
		if err == nil && (len(n) != 2 || n["c1"]+n["c2"] != 6) {
			err = fmt.Errorf("%v", n)
		}
		return err
	})
	wait("c3, no longer in collectors.register, is deregistered", func() error {
		svcs, err := client.Agent().Services()
		if _, ok := svcs["c3"]; err == nil && (ok || len(svcs) != 2) {
			err = fmt.Errorf("%d services, c3 among them: %v", len(svcs), ok)
		}
		return err
	})
	if _, err := os.Stat(filepath.Join(out, "extra", "e1.json")); !os.IsNotExist(err) {
		t.Fatalf("the dropped job's file is still there: %v", err)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	rewrite(config(two, false, busy.Addr().String()))
	_ = bin.cmd.Process.Signal(syscall.SIGHUP)
	wait("a reload to a busy port is refused", func() error {
		if v := metric(t, listen, "promshard_config_last_reload_successful", ""); v != 0 {
			return fmt.Errorf("promshard_config_last_reload_successful %v", v)
		}
		return nil
	})
	if code, _, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/-/ready"); err != nil || code != 200 {
		t.Fatalf("the running server after a refused reload: %d %v", code, err)
	}
	bin.stop(t) // still running: exit 0 after SIGTERM
}

// Self mode against a real Consul where the same service ID "a" is
// registered on two nodes with different addresses (instances registered
// by name only): the watcher names them a@node, and a copy run with
// --member a beside the local agent writes the share of a@<its node>, not
// an empty list. A --member that is no collector fails (exit 1) with a
// message, rather than writing [] quietly.
func TestSelfModeFindsItsInstanceInConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	local, err := client.Agent().NodeName()
	if err != nil {
		t.Fatal(err)
	}
	// "a" on this agent's node, and "a" on another node (through the
	// catalog: an agent keeps only its own services on its node).
	for _, id := range []string{"a", "b"} {
		h, p := okServer(t)
		port, _ := strconv.Atoi(p)
		if err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: "named", ID: id, Address: h, Port: port,
			Check: watch.Check{Interval: time.Second, Timeout: time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	oh, op := okServer(t)
	oport, _ := strconv.Atoi(op)
	if _, err := client.Catalog().Register(&api.CatalogRegistration{Node: "other-node", Address: oh,
		Service: &api.AgentService{ID: "a", Service: "named", Address: oh, Port: oport},
		Check:   &api.AgentCheck{Node: "other-node", CheckID: "a-other", Name: "a", Status: api.HealthPassing, ServiceID: "a"}}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("consul: {address: %q}\njobs:\n  - name: node\n    collectors: {consul_service: named}\n"+
		"    targets: {static: [{targets: [%s]}]}\n    output: {dir: OUT}\n", agent.Addr, strings.Join(testTargets(30), ", ")))
	out := filepath.Join(filepath.Dir(cfg), "out")
	var stdout, stderr string
	err = testenv.WaitFor(30*time.Second, 200*time.Millisecond, func() error { // until b's check passes
		// Each try starts from no files: a run that follows one made
		// before b passed would read the files it left and hand b's
		// share over, keeping it in a's file meanwhile.
		os.RemoveAll(out)
		var code int
		code, stdout, stderr = runCmd("--config.file", cfg, "--once")
		if code != 0 || !strings.Contains(stdout, "30 targets on 3 collectors") {
			return fmt.Errorf("central: exit %d", code)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s\n%s", err, stdout, stderr)
	}
	central, _ := os.ReadFile(filepath.Join(out, "a@"+local+".json"))
	os.RemoveAll(out)
	code, stdout, stderr := runCmd("--config.file", cfg, "--once", "--member", "a")
	if code != 0 {
		t.Fatalf("self mode a: exit %d\n%s\n%s", code, stdout, stderr)
	}
	mine, _ := os.ReadFile(filepath.Join(out, "a.json"))
	if len(central) == 0 || string(mine) != string(central) {
		t.Fatalf("self mode a wrote\n%s\ncentral mode gives a@%s\n%s", mine, local, central)
	}
	code, _, stderr = runCmd("--config.file", cfg, "--once", "--member", "zzz")
	if code != exitFailed || !strings.Contains(stderr, `"zzz" is neither a member nor a registered collector`) {
		t.Fatalf("self mode zzz: exit %d\n%s", code, stderr)
	}
}

// A collector deregistered while its Prometheus runs on, reading its
// targets over http_sd: prome-shard answers it [] (not 404, which
// Prometheus would answer by keeping its old list), so it stops scraping
// targets that moved to the others: none is scraped twice.
func TestHTTPSDCollectorThatLeftScrapesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	targets := testenv.ScrapeTargets(t, 12)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var cs []*collector
	for i := 1; i <= 2; i++ {
		id := fmt.Sprintf("c%d", i)
		cfg := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 500ms}\nscrape_configs:\n  - job_name: node\n"+
			"    http_sd_configs: [{url: %q, refresh_interval: 1s}]\n", "http://"+listen+"/sd/node/"+id)
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), cfg))
		cs = append(cs, c)
		h, p := hostPort(t, c.prom.Addr)
		if err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: "sd", ID: id, Address: h, Port: p,
			Check: watch.Check{Interval: time.Second, Timeout: time.Second}}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, fmt.Sprintf("consul: {address: %q}\njobs:\n  - name: node\n    collectors: {consul_service: sd}\n"+
		"    targets: {static: [{targets: [%s]}]}\n    output: {http_sd: true}\n", agent.Addr, strings.Join(targets, ", ")))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)

	// c2 is deregistered; its Prometheus keeps running and polling.
	if err := watch.Deregister(context.Background(), client.Agent(), "c2"); err != nil {
		t.Fatal(err)
	}
	err := testenv.WaitFor(60*time.Second, 200*time.Millisecond, func() error {
		ts, err := cs[1].prom.Targets(context.Background())
		if err != nil {
			return err
		}
		n := 0
		for _, tt := range ts {
			if tt.ScrapePool == "node" {
				n++
			}
		}
		if n > 0 {
			return fmt.Errorf("the deregistered collector still scrapes %d targets", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitScraped(t, cs[:1], "node", targets, 1, 30*time.Second, nil)
}

// quorum.min_members: 3 with two collectors passing writes nothing (and
// /-/ready says why); the third passes and the files are written at once.
func TestQuorumAtColdStart(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	for _, id := range []string{"c1", "c2", "c3"} {
		h, p := okServer(t)
		port, _ := strconv.Atoi(p)
		check := watch.Check{Interval: time.Second, Timeout: time.Second}
		if id == "c3" {
			check = watch.Check{Type: watch.CheckTTL, TTL: time.Hour} // critical until passed by hand
		}
		if err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: "quorum", ID: id, Address: h, Port: port,
			Check: check}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeConfig(t, fmt.Sprintf("consul: {address: %q}\njobs:\n  - name: node\n    collectors: {consul_service: quorum}\n"+
		"    quorum: {min_members: 3}\n    targets: {static: [{targets: [%s]}]}\n    output: {dir: OUT}\n", agent.Addr,
		strings.Join(testTargets(12), ", ")))
	out := filepath.Join(filepath.Dir(cfg), "out")
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		code, b, err := testenv.HTTPGet(context.Background(), "http://"+listen+"/-/ready")
		if err != nil || code != 503 || !strings.Contains(string(b), "waiting for quorum: 2 of 3") {
			return fmt.Errorf("ready: %d %q %v", code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(out, "*.json")); len(files) != 0 {
		t.Fatalf("written before quorum: %v", files)
	}
	if err := client.Agent().UpdateTTLOpts("service:c3", "", api.HealthPassing, nil); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		files, _ := filepath.Glob(filepath.Join(out, "*.json"))
		if len(files) != 3 {
			return fmt.Errorf("%d files", len(files))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Five collectors in a real Consul, four marked critical together (as a
// partition or a fault of the checks would): nothing is written and the
// guard's metric is 1; the checks pass again and nothing has moved. The
// operator then releases a second hold through the lifecycle endpoint and
// the move happens at once.
func TestPartitionGuardInConsul(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a Consul agent")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	ids := []string{"c1", "c2", "c3", "c4", "c5"}
	servers := map[string]*httptest.Server{}
	for _, id := range ids {
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		servers[id] = srv
		h, p := hostPortString(srv.Listener.Addr().String())
		port, _ := strconv.Atoi(p)
		if err := watch.Register(context.Background(), client.Agent(), watch.Registration{Service: "guarded", ID: id, Address: h, Port: port,
			Check: watch.Check{Type: watch.CheckTTL, TTL: time.Hour}}); err != nil {
			t.Fatal(err)
		}
	}
	setAll := func(status string, which ...string) {
		t.Helper()
		for _, id := range which {
			if err := client.Agent().UpdateTTLOpts("service:"+id, "", status, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	setAll(api.HealthPassing, ids...)
	// The checks are marked critical one API call at a time, so the watcher
	// may see the first leave alone: it is failed over at once, and given
	// back when the rest follow within the window. The hand-off is off, so
	// that the share given back is in the files at once (these collectors
	// are stand-ins that scrape nothing).
	cfg := writeConfig(t, fmt.Sprintf("consul: {address: %q}\nsettle: 1ms\nhandoff: {mode: off}\njobs:\n  - name: node\n    collectors: {consul_service: guarded}\n"+
		"    partition_guard: {settle: 10m, step: 1s, probe_interval: 300ms, max_move_fraction: 0.1}\n    targets: {static: [{targets: [%s]}]}\n    output: {dir: OUT}\n", agent.Addr,
		strings.Join(testTargets(50), ", ")))
	out := filepath.Join(filepath.Dir(cfg), "out")
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	bin := startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen, "--web.enable-lifecycle")
	read := func() map[string]string {
		files := map[string]string{}
		for _, id := range ids {
			b, _ := os.ReadFile(filepath.Join(out, id+".json"))
			files[id] = string(b)
		}
		return files
	}
	if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		if n, err := assignedCount(listen, "node"); err != nil || n != 50 {
			return fmt.Errorf("%d assigned (%v)", n, err)
		}
		if a, _ := assignment(listen); len(a["node"]) != 5 {
			return fmt.Errorf("%d collectors", len(a["node"]))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := read()
	waitGuard := func(want float64) {
		t.Helper()
		if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
			if v := metric(t, listen, "promshard_partition_guard_active", ""); v != want {
				return fmt.Errorf("promshard_partition_guard_active %v, want %v", v, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	asBefore := func(when string) {
		t.Helper()
		if err := testenv.WaitFor(10*time.Second, 50*time.Millisecond, func() error {
			if now := read(); !maps.Equal(now, before) {
				return errors.New("the files differ from those before")
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	setAll(api.HealthCritical, "c2", "c3", "c4", "c5")
	waitGuard(1)
	asBefore("four of five collectors marked critical")
	setAll(api.HealthPassing, "c2", "c3", "c4", "c5")
	waitGuard(0)
	if now := read(); !maps.Equal(now, before) {
		t.Fatal("the files changed after the checks passed again")
	}

	// Again, and while the guard holds, c3 really dies: its probe fails,
	// and its targets move in steps of at most 5 (a tenth of 50), while
	// the living keep theirs.
	setAll(api.HealthCritical, "c2", "c3", "c4", "c5")
	waitGuard(1)
	asBefore("four of five marked critical again")
	held := map[string]int{}
	for _, id := range ids {
		held[id] = fileTargets(t, filepath.Join(out, id+".json"))
	}
	logFrom := bin.logSize(t)
	servers["c3"].CloseClientConnections()
	servers["c3"].Close()
	if err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		if n := fileTargets(t, filepath.Join(out, "c3.json")); n != 0 {
			return fmt.Errorf("c3, dead, still holds %d targets", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, id := range []string{"c1", "c2", "c4", "c5"} {
		n := fileTargets(t, filepath.Join(out, id+".json"))
		if n < held[id] {
			t.Fatalf("%s, alive, lost targets while c3's moved: %d, had %d", id, n, held[id])
		}
		total += n
	}
	if total != 50 {
		t.Fatalf("the living hold %d targets, want 50", total)
	}
	steps := bin.reshardMoves(t, logFrom)
	if len(steps) < 2 || slices.Max(steps) > 5 {
		t.Fatalf("c3's %d targets moved in reshards of %v targets, want steps of at most 5", held["c3"], steps)
	}
	t.Logf("c3's %d targets moved in steps of %v while the guard held", held["c3"], steps)
	waitGuard(1)

	// The operator releases the hold: the rest is dead.
	if code, body, err := testenv.HTTPPost(context.Background(), "http://"+listen+"/-/guard/release?job=node"); err != nil || code != 200 {
		t.Fatalf("release: %d %s %v", code, body, err)
	}
	if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		if a, err := assignment(listen); err != nil || len(a["node"]) != 1 || len(a["node"]["c1"].Targets) != 50 {
			return fmt.Errorf("assignment %v %v", a["node"], err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
