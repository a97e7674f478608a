package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/watch"
)

// A collector whose check flaps every 0.5 s for a minute while its
// Prometheus keeps running: it leaves once and never rejoins while it flaps
// (the default 5 s settle), then rejoins once. Three real collectors are
// sampled every 250 ms for targets that nobody scrapes.
func TestChaosFlappingCollector(t *testing.T) {
	chaos(t)
	agent := testenv.StartConsul(t)
	client, _ := watch.NewConsulClient(&api.Config{Address: agent.Addr}, 0)
	out := t.TempDir()
	cs := startCollectors(t, client, "flap", 3, func(id string) string { return filepath.Join(out, id+".json") },
		func(id string) watch.Check {
			if id == "c3" {
				return watch.Check{Type: watch.CheckTTL, TTL: time.Hour}
			}
			return watch.Check{Interval: time.Second, Timeout: time.Second}
		})
	pass := func(ok bool) {
		st := api.HealthCritical
		if ok {
			st = api.HealthPassing
		}
		_ = client.Agent().UpdateTTLOpts("service:c3", "", st, nil)
	}
	pass(true)
	targets := testenv.ScrapeTargets(t, 30)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, fmt.Sprintf(`consul: {address: %q}
jobs:
  - name: node
    collectors: {consul_service: flap}
    targets: {static: [{targets: [%s]}]}
    output: {dir: %q}
`, agent.Addr, strings.Join(targets, ", "), out))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	reshards0, writes0 := metric(t, listen, "promshard_reshards_total", ""), metric(t, listen, "promshard_filesd_writes_total", "")
	stopSampling := countUnscraped(cs, "node", targets)
	for start := time.Now(); time.Since(start) < time.Minute; {
		pass(false)
		time.Sleep(250 * time.Millisecond)
		pass(true)
		time.Sleep(250 * time.Millisecond)
	}
	reshards := metric(t, listen, "promshard_reshards_total", "") - reshards0
	writes := metric(t, listen, "promshard_filesd_writes_total", "") - writes0
	back := time.Now()
	waitCollectors(t, listen, 3)
	rejoined := time.Since(back)
	time.Sleep(3 * time.Second) // keep sampling through the rejoin
	unscraped := stopSampling()
	t.Logf("chaos: a collector flapping every 0.5 s for 60 s: %v reshards and %v file writes while it flapped; unscraped target-seconds %.2f (its one departure moves its targets); it rejoined %v after it stopped flapping",
		reshards, writes, float64(unscraped)/4, rejoined.Round(100*time.Millisecond))
	if reshards > 4 || writes > 2 {
		t.Fatalf("%v reshards, %v writes: flapping is not damped", reshards, writes)
	}
}

// A file_sd source rewritten in place (truncated, then written in pieces)
// for 20 s, and a provider outage: no file is ever emptied or shrunk.
func TestChaosTruncatedSourceAndOutage(t *testing.T) {
	chaos(t)
	dir, out := t.TempDir(), t.TempDir()
	src := filepath.Join(dir, "targets.yml")
	var whole strings.Builder
	whole.WriteString("- targets:\n")
	for _, a := range testTargets(40) {
		fmt.Fprintf(&whole, "  - %s\n", a)
	}
	os.WriteFile(src, []byte(whole.String()), 0o644)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, fmt.Sprintf(`refresh_interval: 1s
jobs:
  - name: node
    collectors: {static: [{id: c1, address: 127.0.0.1, port: 1}, {id: c2, address: 127.0.0.1, port: 2}]}
    targets: {file_sd: [%q]}
    output: {dir: %q}
`, src, out))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	waitCollectors(t, listen, 2)
	var minSeen, samples atomic.Int64
	minSeen.Store(40)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			total := 0
			for _, id := range []string{"c1", "c2"} {
				b, _ := os.ReadFile(filepath.Join(out, id+".json"))
				total += strings.Count(string(b), ":9100")
			}
			samples.Add(1)
			if int64(total) < minSeen.Load() {
				minSeen.Store(int64(total))
			}
		}
	}()
	b := []byte(whole.String())
	start := time.Now()
	rewrites := 0
	for time.Since(start) < 20*time.Second {
		f, _ := os.OpenFile(src, os.O_WRONLY|os.O_TRUNC, 0o644)
		for i := 0; i < len(b); i += 97 {
			f.Write(b[i:min(i+97, len(b))])
			time.Sleep(3 * time.Millisecond)
		}
		f.Close()
		rewrites++
		time.Sleep(30 * time.Millisecond)
	}
	// The source disappears for 5 s.
	os.Remove(src)
	time.Sleep(5 * time.Second)
	close(stop)
	<-done
	t.Logf("chaos: a file_sd source rewritten in place %d times in 20 s, then gone for 5 s: fewest targets in the collectors' files %d of 40 (%d samples every 20 ms); files emptied: %d",
		rewrites, minSeen.Load(), samples.Load(), map[bool]int{true: 1}[minSeen.Load() == 0])
	if minSeen.Load() <= 20 {
		t.Fatalf("the collectors' files held %d of 40 targets at some point: a drop of half or more got through", minSeen.Load())
	}
}

// The Consul agent is killed and restarted empty under a running binary
// that registers its collectors: the files never lose a target.
func TestChaosConsulRestart(t *testing.T) {
	chaos(t)
	address := regexp.MustCompile(`"[^"]+:9100"`)
	agent := testenv.StartConsul(t)
	out := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, "refresh_interval: 2s\n"+registerJob(agent.Addr, "restart", okMembers(t, "c1", "c2", "c3"), testTargets(60), out, ""))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	waitCollectors(t, listen, 3)
	files := func() map[string]string {
		m := map[string]string{}
		for _, id := range []string{"c1", "c2", "c3"} {
			b, _ := os.ReadFile(filepath.Join(out, id+".json"))
			m[id] = string(b)
		}
		return m
	}
	before := files()
	changed, lost, samples := 0, 0, 0
	sample := func() {
		now := files()
		samples++
		if fmt.Sprint(now) != fmt.Sprint(before) {
			changed++
		}
		held := map[string]bool{} // a target two files hold during a hand-off is not lost
		for _, b := range now {
			for _, m := range address.FindAllString(b, -1) {
				held[m] = true
			}
		}
		if len(held) != 60 {
			lost++
		}
	}
	agent.Stop()
	for down := time.Now(); time.Since(down) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		sample()
	}
	agent.Start()
	for up := time.Now(); time.Since(up) < 20*time.Second; time.Sleep(50 * time.Millisecond) {
		sample()
	}
	n, err := assignedCount(listen, "node")
	t.Logf("chaos: Consul killed for 10 s under the binary, restarted empty, 30 s sampled every 50 ms (%d samples): samples with a target in no file %d; samples with a file changed %d; targets assigned after %d of 60 (%v)",
		samples, lost, changed, n, err)
	if lost != 0 || n != 60 {
		t.Fatalf("%d samples lost targets, %d targets assigned after the restart", lost, n)
	}
}

// Four collectors whose files are copied by a command; collector-3's copy
// hangs. collector-2 dies (its reload to collector-3 hangs), then
// collector-1 dies: collector-4 must scrape its new share within the usual
// failover time, as if nothing hung.
func TestChaosHungReloadBesideDyingCollector(t *testing.T) {
	chaos(t)
	agent := testenv.StartConsul(t)
	root := t.TempDir()
	coll, out, hang := filepath.Join(root, "coll"), filepath.Join(root, "out"), filepath.Join(root, "HANG")
	var cs []*collector
	var reg strings.Builder
	for i := 1; i <= 4; i++ {
		id := fmt.Sprintf("collector-%d", i)
		os.MkdirAll(filepath.Join(coll, id), 0o755) // file_sd watches the directory: it must exist
		cfg := fmt.Sprintf("global: {scrape_interval: 1s, scrape_timeout: 500ms}\nscrape_configs:\n  - job_name: node\n    file_sd_configs: [{files: [%q]}]\n",
			filepath.Join(coll, id, "t.json"))
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), cfg))
		cs = append(cs, c)
		h, p := hostPortString(c.prom.Addr)
		fmt.Fprintf(&reg, "{id: %s, address: %s, port: %s}, ", id, h, p)
	}
	script := fmt.Sprintf(`id=$1; f=$2; d=%s/$id
if [ -e %s ] && [ "$id" = collector-3 ]; then sleep 600; fi
mkdir -p $d && if [ -e "$f" ]; then cp "$f" $d/.t.tmp; else echo '[]' > $d/.t.tmp; fi && mv $d/.t.tmp $d/t.json`, coll, hang)
	targets := testenv.ScrapeTargets(t, 40)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, registerJob(agent.Addr, "hung", reg.String(), targets, out,
		fmt.Sprintf("    reload:\n      method: command\n      command: {args: [sh, -c, %q, sh, \"{{.ID}}\", \"{{.File}}\"], timeout: 5m}\n", script)))
	os.MkdirAll(out, 0o755)
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	os.WriteFile(hang, nil, 0o644)
	cs[1].prom.Kill()
	cs[1].up.Store(false)
	time.Sleep(3 * time.Second) // collector-2 leaves; the copy to collector-3 now hangs
	cs[0].prom.Kill()
	cs[0].up.Store(false)
	killed := time.Now()
	var share []string
	err := testenv.WaitFor(30*time.Second, 50*time.Millisecond, func() error {
		a, err := assignment(listen)
		if err != nil || len(a["node"]) != 2 {
			return fmt.Errorf("assignment %v %v", a, err)
		}
		share = a["node"]["collector-4"].Targets
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = testenv.WaitFor(60*time.Second, 100*time.Millisecond, func() error {
		got, err := scrapers(cs[3:], "node")
		if err != nil {
			return err
		}
		for _, a := range share {
			if len(got[a]) != 1 {
				return fmt.Errorf("%s not scraped by collector-4", a)
			}
		}
		return nil
	})
	took := time.Since(killed)
	t.Logf("chaos: collector-1 killed while the copy to collector-3 hangs: collector-4 scrapes its new share of %d targets %v after the kill",
		len(share), took.Round(10*time.Millisecond))
	if err != nil || took > 10*time.Second {
		t.Fatalf("after %v: %v", took, err)
	}
	os.Remove(hang)
}

// The output directory's disk fills up while the targets change: the old
// files stay whole, the binary is not ready, and once space is back the new
// files are written at the next refresh.
func TestChaosOutputDiskFull(t *testing.T) {
	chaos(t)
	out := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", out).Run(); err != nil {
		t.Skipf("cannot mount a small tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { _ = exec.Command("umount", out).Run() })
	src := filepath.Join(t.TempDir(), "targets.json")
	write := func(n int) {
		os.WriteFile(src, []byte(`[{"targets": ["`+strings.Join(testTargets(n), `", "`)+`"]}]`), 0o644)
	}
	write(40)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := writeConfig(t, fmt.Sprintf(`refresh_interval: 1s
jobs:
  - name: node
    collectors: {static: [{id: c1, address: 127.0.0.1, port: 1}, {id: c2, address: 127.0.0.1, port: 2}, {id: c3, address: 127.0.0.1, port: 3}]}
    targets: {file_sd: [%q]}
    output: {dir: %q}
`, src, out))
	startBinary(t, buildBinary(t), "--config.file", cfg, "--web.listen-address", listen)
	waitTargets := func(n int) error {
		return testenv.WaitFor(20*time.Second, 20*time.Millisecond, func() error {
			total := 0
			for _, id := range []string{"c1", "c2", "c3"} {
				b, _ := os.ReadFile(filepath.Join(out, id+".json"))
				total += strings.Count(string(b), ":9100")
			}
			if total != n {
				return fmt.Errorf("%d targets in the files, want %d", total, n)
			}
			return nil
		})
	}
	if err := waitTargets(40); err != nil {
		t.Fatal(err)
	}
	before := map[string]string{}
	for _, id := range []string{"c1", "c2", "c3"} {
		b, _ := os.ReadFile(filepath.Join(out, id+".json"))
		before[id] = string(b)
	}
	fill := filepath.Join(out, "fill")
	exec.Command("dd", "if=/dev/zero", "of="+fill, "bs=1k", "count=1024").Run() // until ENOSPC
	write(400)
	time.Sleep(3 * time.Second) // three refreshes that cannot write
	intact := true
	for id, want := range before {
		if b, _ := os.ReadFile(filepath.Join(out, id+".json")); string(b) != want {
			intact = false
		}
	}
	code, _, _ := testenv.HTTPGet(context.Background(), "http://"+listen+"/-/ready")
	os.Remove(fill)
	freed := time.Now()
	err := waitTargets(400)
	t.Logf("chaos: output disk full while the targets grew from 40 to 400: old files intact %v, /-/ready %d; the new files were written %v after space came back",
		intact, code, time.Since(freed).Round(10*time.Millisecond))
	if err != nil || !intact || code != http.StatusServiceUnavailable {
		t.Fatalf("intact %v, ready %d, recovery: %v", intact, code, err)
	}
}
