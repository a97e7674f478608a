package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
)

// TestScale (make scale) runs the binary a user runs on a million targets
// in one file_sd file (1,000 groups of 1,000, three group labels) and 100
// static collectors: the first reshard, three unchanged refreshes, a
// changed reshard (a collector removed through SIGHUP), a change of one
// group, and the collector back (a scale-out with hand-offs), with RSS and peak
// RSS from /proc. It prints the figures; it asserts only that they were
// measured. PROMSHARD_SCALE=1 runs it.
func TestScale(t *testing.T) {
	if os.Getenv("PROMSHARD_SCALE") == "" {
		t.Skip("PROMSHARD_SCALE=1 runs it (make scale)")
	}
	dir := t.TempDir()
	const groups, perGroup, collectors = 1000, 1000, 100
	pool := filepath.Join(dir, "targets.json")
	writePool(t, pool, groups, perGroup, 0)
	old := time.Now().Add(-time.Hour) // written long before the run, as a real source is
	os.Chtimes(pool, old, old)
	members := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "{id: c%03d, address: 127.0.0.1, port: %d}, ", i, 20000+i)
		}
		return strings.TrimSuffix(b.String(), ", ")
	}
	config := func(n int) string {
		return fmt.Sprintf("refresh_interval: 2s\npprof: true\naudit: {disabled: true}\njobs:\n  - name: node\n    collectors: {static: [%s]}\n"+
			"    partition_guard: {share: 1}\n    targets: {file_sd: [%q]}\n    output: {dir: %q}\n",
			members(n), filepath.Join(dir, "targets.json"), filepath.Join(dir, "out"))
	}
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(config(collectors)), 0o644)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	bin := buildBinary(t)
	startup := startProfile(t, listen, "start")
	p := startBinary(t, bin, "--config.file", cfg, "--web.listen-address", listen, "--log.level", "debug")
	took := regexp.MustCompile(`msg=(reshard|"reshard skipped[^"]*") .*took=(\S+)`)
	// lines returns the reshard log lines: "changed" or "skipped", with
	// how long each took.
	lines := func() (out [][2]string) {
		b, _ := os.ReadFile(p.log)
		for _, l := range strings.Split(string(b), "\n") {
			if m := took.FindStringSubmatch(l); m != nil {
				kind := "changed"
				if strings.Contains(m[1], "skipped") {
					kind = "skipped"
				}
				out = append(out, [2]string{kind, m[2]})
			}
		}
		return out
	}
	waitFor := func(what string, cond func([][2]string) bool) [][2]string {
		t.Helper()
		var got [][2]string
		if err := testenv.WaitFor(5*time.Minute, 200*time.Millisecond, func() error {
			if got = lines(); !cond(got) {
				return fmt.Errorf("%s: %v", what, got)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	rss := func() (now, peak float64) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		for _, l := range strings.Split(string(b), "\n") {
			fields := strings.Fields(l)
			if len(fields) < 2 {
				continue
			}
			kb, _ := strconv.ParseFloat(fields[1], 64)
			switch fields[0] {
			case "VmRSS:":
				now = kb * 1024
			case "VmHWM:":
				peak = kb * 1024
			}
		}
		return now, peak
	}
	fetch := func() (sum, count float64) {
		return metric(t, listen, "promshard_targets_fetch_duration_seconds_sum", ""),
			metric(t, listen, "promshard_targets_fetch_duration_seconds_count", "")
	}
	// nextChanged waits for the first changed reshard after the before-th
	// line, and returns how long it took and the lines so far.
	nextChanged := func(what string, before int) (string, [][2]string) {
		t.Helper()
		got := waitFor(what, func(l [][2]string) bool {
			return slices.ContainsFunc(l[before:], func(x [2]string) bool { return x[0] == "changed" })
		})
		i := slices.IndexFunc(got[before:], func(x [2]string) bool { return x[0] == "changed" })
		return got[before+i][1], got
	}
	first := waitFor("the first reshard", func(l [][2]string) bool { return len(l) >= 1 })[0]
	s0, c0 := fetch()
	cpu0 := cpuSeconds(t, p.cmd.Process.Pid)
	got := waitFor("three unchanged refreshes", func(l [][2]string) bool {
		n := 0
		for _, x := range l {
			if x[0] == "skipped" {
				n++
			}
		}
		return n >= 3
	})
	var skipped []string
	for _, x := range got {
		if x[0] == "skipped" {
			skipped = append(skipped, x[1])
		}
	}
	s1, c1 := fetch()
	cpu1 := cpuSeconds(t, p.cmd.Process.Pid)
	steady, _ := rss()
	heapProfile(t, listen, "heap")
	os.WriteFile(cfg, []byte(config(collectors-1)), 0o644)
	before := len(got)
	startup() // one CPU profile at a time
	profile := startProfile(t, listen, "reload")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	changed, got := nextChanged("the changed reshard", before)
	profile()
	// The targets change in one group of the thousand: a target is added.
	before = len(got)
	cpuT := cpuSeconds(t, p.cmd.Process.Pid)
	writePool(t, pool, groups, perGroup, 1)
	retarget, got := nextChanged("the reshard of the changed targets", before)
	cpuRetarget := cpuSeconds(t, p.cmd.Process.Pid) - cpuT
	// The collector removed comes back (SIGHUP): every other hands it
	// about 1% of its targets, kept until the hand-offs end.
	os.WriteFile(cfg, []byte(config(collectors)), 0o644)
	before = len(got)
	profile = startProfile(t, listen, "join")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	joined, _ := nextChanged("the reshard of the collector that came back", before)
	profile()
	heapProfile(t, listen, "joined") // against heap.pprof: what the reload, the change and the return allocated
	_, peak := rss()
	if b, err := os.ReadFile(p.log); err == nil { // what the reload did, step by step
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "msg=reshard ") || strings.Contains(l, "running") || strings.Contains(l, "stopped") {
				t.Log(l)
			}
		}
	}
	// The same config run once (--once): its peak RSS, after the daemon
	// stopped, from the kernel's account of the child.
	p.stop(t)
	once := exec.Command(bin, "--config.file", cfg, "--web.listen-address", listen, "--once")
	once.Env = append(os.Environ(), asMain+"=1")
	var onceOut bytes.Buffer
	once.Stdout, once.Stderr = &onceOut, &onceOut
	onceStart := time.Now()
	if err := once.Run(); err != nil {
		t.Fatalf("--once: %v\n%s", err, onceOut.Bytes())
	}
	onceTook := time.Since(onceStart)
	if dir := os.Getenv("PROMSHARD_SCALE_PROFILE"); dir != "" { // with GODEBUG=gctrace=1, the heap at each collection
		os.WriteFile(filepath.Join(dir, "once.log"), onceOut.Bytes(), 0o644)
	}
	oncePeak := float64(once.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) * 1024
	perFetch, perRefresh := 0.0, 0.0
	if c1 > c0 {
		perFetch = (s1 - s0) / (c1 - c0)
		perRefresh = (cpu1 - cpu0) / (c1 - c0)
	}
	n := float64(groups * perGroup)
	t.Logf("scale: 1,000,000 targets in one file_sd file, 100 collectors: first reshard %s; unchanged refreshes %s (the provider's fetch %.3f s each, in the background; the process's CPU %.3f s per refresh); changed reshard (a collector removed through SIGHUP) %s; one group of the file changed: reshard %s, the process's CPU %.2f s from the write to the reshard's end; the collector back (SIGHUP, hand-offs on): reshard %s; RSS after the refreshes %.0f MB (%.0f B/target), peak %.0f MB (%.2f× steady); --once: %s, peak RSS %.0f MB (%.2f× steady)",
		first[1], strings.Join(skipped[:3], ", "), perFetch, perRefresh, changed, retarget, cpuRetarget, joined, steady/1e6, steady/n, peak/1e6, peak/steady, onceTook.Round(time.Millisecond), oncePeak/1e6, oncePeak/steady)
}

// writePool writes the pool's file_sd file (groups of perGroup targets,
// three group labels; group 0 has extra more targets) atomically, as a
// generator would.
func writePool(t *testing.T, path string, groups, perGroup, extra int) {
	t.Helper()
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	w.WriteString("[")
	for g := range groups {
		if g > 0 {
			w.WriteString(",")
		}
		fmt.Fprintf(w, `{"labels": {"env": "prod", "team": "t%d", "dc": "dc%d"}, "targets": [`, g%50, g%3)
		n := perGroup
		if g == 0 {
			n += extra
		}
		for i := range n {
			if i > 0 {
				w.WriteString(",")
			}
			n := g*perGroup + i
			if i >= perGroup {
				n = groups*perGroup + i
			}
			fmt.Fprintf(w, `"10.%d.%d.%d:9100"`, n>>16, n>>8&255, n&255)
		}
		w.WriteString("]}")
	}
	w.WriteString("]")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// cpuSeconds is the user and system CPU time process pid has used.
func cpuSeconds(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command (which may hold spaces) in parentheses.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100 // USER_HZ: 100 on Linux
}

// heapProfile, when PROMSHARD_SCALE_PROFILE names a directory, writes the
// binary's heap profile (after a collection) there as name.pprof, with
// the runtime's memory statistics as name.txt.
func heapProfile(t *testing.T, listen, name string) {
	dir := os.Getenv("PROMSHARD_SCALE_PROFILE")
	if dir == "" {
		return
	}
	resp, err := http.Get("http://" + listen + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Log(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	os.WriteFile(filepath.Join(dir, name+".pprof"), b, 0o644)
	if resp, err := http.Get("http://" + listen + "/debug/pprof/heap?debug=1"); err == nil { // with the runtime's memory statistics
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		os.WriteFile(filepath.Join(dir, name+".txt"), b, 0o644)
	}
}

// startProfile, when PROMSHARD_SCALE_PROFILE names a directory, starts a
// 15 s CPU profile of the binary (as soon as it listens) and returns a function that waits for it
// and writes it there as name.pprof; otherwise it does nothing.
func startProfile(t *testing.T, listen, name string) func() {
	dir := os.Getenv("PROMSHARD_SCALE_PROFILE")
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var resp *http.Response
		err := testenv.WaitFor(10*time.Second, 20*time.Millisecond, func() (err error) { // at the start, until the binary listens
			resp, err = http.Get("http://" + listen + "/debug/pprof/profile?seconds=15")
			return err
		})
		if err != nil {
			t.Log(err)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		os.WriteFile(filepath.Join(dir, name+".pprof"), b, 0o644)
	}()
	time.Sleep(100 * time.Millisecond) // the profile has begun before what it measures
	return func() { <-done }
}
