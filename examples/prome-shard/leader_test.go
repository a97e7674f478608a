package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// copyOf is one copy of central mode with its listen address.
type copyOf struct {
	name   string
	p      *proc
	listen string
}

// role reads the copy's /-/ready: "leader", "standby", or "" when it does
// not answer.
func (c *copyOf) role() string {
	_, b, err := testenv.HTTPGet(context.Background(), "http://"+c.listen+"/-/ready")
	if err != nil {
		return ""
	}
	switch s := string(b); {
	case strings.HasPrefix(s, "ready: leader"):
		return "leader"
	case strings.HasPrefix(s, "ready: standby"):
		return "standby"
	}
	return ""
}

// logTime is the time of a log line of the binary.
var logTime = regexp.MustCompile(`^time=(\S+) `)

// writes lists the epochs under which a copy wrote outputs (reshard lines
// that changed an output), and when it first published each epoch.
func writes(t *testing.T, c *copyOf) (wrote map[uint64]bool, published map[uint64]time.Time) {
	t.Helper()
	f, err := os.Open(c.p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wrote, published = map[uint64]bool{}, map[uint64]time.Time{}
	field := func(line, k string) string {
		_, v, _ := strings.Cut(line, " "+k+"=")
		v, _, _ = strings.Cut(v, " ")
		return v
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		epoch, _ := strconv.ParseUint(field(line, "epoch"), 10, 64)
		switch {
		case strings.Contains(line, "msg=reshard ") && field(line, "outputs_changed") != "0":
			wrote[epoch] = true
		case strings.Contains(line, `msg="published epoch"`):
			if m := logTime.FindStringSubmatch(line); m != nil {
				ts, _ := time.Parse(time.RFC3339Nano, m[1])
				published[epoch] = ts
			}
		}
	}
	return wrote, published
}

// targetInFile matches a target address in a file_sd file.
var targetInFile = regexp.MustCompile(`"[^"]+:[0-9]+"`)

// TestLeaderElection runs three copies of central mode with a Consul lock
// (the defaults: a 5 s heartbeat check, no lock delay) over three real
// collectors: exactly one writes; the leader is killed with -9 and a
// collector dies before anyone took over, and a standby takes over and
// reshards so that every target is scraped again exactly once; the new
// leader is then paused (SIGSTOP) while the collector returns, the last
// copy takes over, and the paused one, resumed, writes nothing. No epoch is
// written by two copies.
func TestLeaderElection(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	out := t.TempDir()
	cs := startCollectors(t, client, "central", 3, func(id string) string { return filepath.Join(out, id+".json") },
		func(string) watch.Check { return watch.Check{Interval: time.Second, Timeout: time.Second} })
	targets := testenv.ScrapeTargets(t, 30)
	cfg := writeConfig(t, fmt.Sprintf(`consul: {address: %q}
leader_election: {key: promshard/central}
audit: {disabled: true}
jobs:
  - name: node
    collectors: {consul_service: central}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
`, agent.Addr, strings.Join(targets, ", "), out))
	bin := buildBinary(t)
	var copies []*copyOf
	for i := range 3 {
		c := &copyOf{name: fmt.Sprintf("copy-%d", i), listen: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
		c.p = startBinary(t, bin, "--config.file", cfg, "--web.listen-address", c.listen)
		copies = append(copies, c)
	}
	// leaderOf waits until exactly one of the copies leads and the others
	// say standby, and returns it.
	leaderOf := func(cands []*copyOf, timeout time.Duration) *copyOf {
		t.Helper()
		var lead *copyOf
		err := testenv.WaitFor(timeout, 50*time.Millisecond, func() error {
			lead = nil
			var roles []string
			for _, c := range cands {
				switch r := c.role(); {
				case r == "leader" && lead == nil:
					lead = c
				case r != "standby":
					return fmt.Errorf("roles %v, then %s says %q", roles, c.name, r)
				}
				roles = append(roles, c.name+":"+c.role())
			}
			if lead == nil {
				return fmt.Errorf("no leader: %v", roles)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("no single leader: %v", err)
		}
		return lead
	}
	first := leaderOf(copies, 60*time.Second)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	for _, c := range copies {
		if wrote, _ := writes(t, c); c != first && len(wrote) > 0 {
			t.Fatalf("standby %s wrote outputs (epochs %v)", c.name, wrote)
		}
	}

	// kill -9 the leader, then a collector while nobody leads.
	if err := first.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	_ = first.p.cmd.Wait()
	cs[0].prom.Kill()
	cs[0].up.Store(false)
	rest := []*copyOf{}
	for _, c := range copies {
		if c != first {
			rest = append(rest, c)
		}
	}
	second := leaderOf(rest, 60*time.Second)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	scraped := time.Since(killed)
	_, pub := writes(t, second)
	var took time.Duration
	for _, ts := range pub {
		if d := ts.Sub(killed); took == 0 || d < took {
			took = d
		}
	}
	t.Logf("takeover with the defaults (check TTL 5s, no lock delay): leader and a collector killed -> the standby's first write after %v, every target scraped again after %v",
		took.Round(100*time.Millisecond), scraped.Round(100*time.Millisecond))
	if took <= 0 || took > 10*time.Second {
		t.Errorf("takeover took %v, want at most the check TTL + a few seconds (10 s)", took)
	}

	// Pause the new leader; the collector comes back meanwhile. The last
	// copy takes over and gives it targets; the paused one, resumed,
	// writes nothing.
	if err := second.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	wroteBefore, _ := writes(t, second)
	cs[0].prom.Start()
	cs[0].up.Store(true)
	var third *copyOf
	for _, c := range rest {
		if c != second {
			third = c
		}
	}
	if err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		if _, pub := writes(t, third); len(pub) == 0 {
			return fmt.Errorf("%s has not published", third.name)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("takeover from a paused leader after %v", time.Since(paused).Round(100*time.Millisecond))
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	// The files settle once the returning collector is in the ring and its
	// hand-offs are over.
	if err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		a, err := assignment(third.listen)
		if err != nil {
			return err
		}
		if n, h := len(a["node"]), metric(t, third.listen, "promshard_handoffs_pending", ""); n != 3 || h != 0 {
			return fmt.Errorf("%d collectors in the ring, %v hand-offs pending", n, h)
		}
		for _, c := range cs { // and the files hold the assignment alone: no kept target left
			b, err := os.ReadFile(filepath.Join(out, c.id+".json"))
			if err != nil {
				return err
			}
			if got, want := len(targetInFile.FindAll(b, -1)), len(a["node"][c.id].Targets); got != want {
				return fmt.Errorf("%s's file holds %d targets, its assignment %d", c.id, got, want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, c := range cs {
		files[c.id], _ = os.ReadFile(filepath.Join(out, c.id+".json"))
	}
	if err := second.p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		if r := second.role(); r != "standby" {
			return fmt.Errorf("resumed copy says %q", r)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // anything the resumed copy had in flight has run by now
	if wrote, _ := writes(t, second); len(wrote) != len(wroteBefore) {
		t.Fatalf("the resumed old leader wrote: epochs %v, before the pause %v", wrote, wroteBefore)
	}
	for _, c := range cs {
		if b, _ := os.ReadFile(filepath.Join(out, c.id+".json")); string(b) != string(files[c.id]) {
			t.Fatalf("%s's file changed after the old leader resumed:\n%s\nwas\n%s", c.id, b, files[c.id])
		}
	}
	waitScraped(t, cs, "node", targets, 1, 30*time.Second, nil)
	by := map[uint64]string{}
	for _, c := range copies {
		wrote, _ := writes(t, c)
		for e := range wrote {
			if other := by[e]; other != "" {
				t.Fatalf("epoch %d written by %s and %s", e, other, c.name)
			}
			by[e] = c.name
		}
	}
	t.Logf("epochs written: %v", by)
}

// TestHandoffSurvivesATakeover: three copies, three real collectors, the
// hand-off on. A collector dies and its targets move; as it comes back,
// the leader is killed. The new leader reads from the files what the
// collectors hold and hands the returning collector its targets like any
// other move: no target goes unscraped while the collector returns. (The
// leader dies once its hand-offs are under way and before they end.)
func TestHandoffSurvivesATakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	out := t.TempDir()
	cs := startCollectors(t, client, "takeover", 3, func(id string) string { return filepath.Join(out, id+".json") },
		func(string) watch.Check { return watch.Check{Interval: time.Second, Timeout: time.Second} })
	targets := testenv.ScrapeTargets(t, 30)
	cfg := writeConfig(t, fmt.Sprintf(`consul: {address: %q}
leader_election: {key: promshard/takeover}
audit: {disabled: true}
handoff: {mode: overlap, timeout: 2m}
jobs:
  - name: node
    collectors: {consul_service: takeover}
    quorum: {min_members: 3, wait: 1m}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
`, agent.Addr, strings.Join(targets, ", "), out))
	bin := buildBinary(t)
	var copies []*copyOf
	for i := range 3 {
		c := &copyOf{name: fmt.Sprintf("copy-%d", i), listen: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))}
		c.p = startBinary(t, bin, "--config.file", cfg, "--web.listen-address", c.listen)
		copies = append(copies, c)
	}
	leader := func(cands []*copyOf) *copyOf {
		t.Helper()
		var lead *copyOf
		if err := testenv.WaitFor(60*time.Second, 50*time.Millisecond, func() error {
			for _, c := range cands {
				if c.role() == "leader" {
					lead = c
					return nil
				}
			}
			return errors.New("no leader")
		}); err != nil {
			t.Fatal(err)
		}
		return lead
	}
	first := leader(copies)
	before := waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)

	cs[0].prom.Kill() // a collector dies; its targets move
	cs[0].up.Store(false)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)

	stop := countUnscraped(cs, "node", targets)
	cs[0].prom.Start() // it comes back; once the leader has begun handing it its targets, the leader dies
	cs[0].up.Store(true)
	if err := testenv.WaitFor(60*time.Second, 20*time.Millisecond, func() error {
		if h := metric(t, first.listen, "promshard_handoffs_pending", ""); h == 0 {
			return errors.New("no hand-off under way")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := first.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.p.cmd.Wait()
	var rest []*copyOf
	for _, c := range copies {
		if c != first {
			rest = append(rest, c)
		}
	}
	second := leader(rest)
	waitScraped(t, cs, "node", targets, 1, 90*time.Second, before) // the first assignment returns
	if err := testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		if h := metric(t, second.listen, "promshard_handoffs_pending", ""); h != 0 {
			return fmt.Errorf("%v hand-offs pending", h)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	unscraped := float64(stop()) / 4 // samples every 250 ms
	t.Logf("a collector returned while the leader died: %.2f unscraped target-seconds", unscraped)
	if unscraped != 0 {
		t.Fatalf("%.2f target-seconds went unscraped while the collector returned under a new leader", unscraped)
	}
}
