package reload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promcfg "github.com/prometheus/common/config"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv("PROMSHARD_TEST_AWAIT_SIGHUP") != "" {
		awaitSIGHUP()
	}
	goleak.VerifyTestMain(m)
}

// awaitSIGHUP is the process TestSignal signals: the test binary itself,
// which takes SIGHUP back even when it started with it ignored (as under
// nohup, which a plain "sleep" would inherit), and exits 42 on it, or 0
// after 30 s.
func awaitSIGHUP() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	os.Stdout.WriteString("ready\n")
	select {
	case <-c:
		os.Exit(42)
	case <-time.After(30 * time.Second):
		os.Exit(0)
	}
}

func server(t *testing.T, h http.HandlerFunc) Collector {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return Collector{ID: "c1", Address: strings.TrimPrefix(srv.URL, "http://")}
}

// authClient is a client with the authentication of a Prometheus-style
// HTTP client config, as HTTPOptions.Client documents.
func authClient(t *testing.T, c promcfg.HTTPClientConfig) *http.Client {
	client, err := promcfg.NewClientFromConfig(c, "test")
	if err != nil {
		t.Fatal(err)
	}
	return client
}

func fastHTTP(t *testing.T, o HTTPOptions) *HTTP {
	o.Backoff = time.Millisecond
	h, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHTTPReload(t *testing.T) {
	var calls atomic.Int32
	c := server(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Method != http.MethodPost || r.URL.Path != "/-/reload" {
			http.Error(w, "wrong", 400)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			http.Error(w, "auth", http.StatusUnauthorized)
		}
	})
	if err := fastHTTP(t, HTTPOptions{Client: authClient(t, promcfg.HTTPClientConfig{BasicAuth: &promcfg.BasicAuth{Username: "u", Password: "p"}})}).Reload(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	err := fastHTTP(t, HTTPOptions{}).Reload(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without auth: %v", err)
	}
	if calls.Load() != 2 {
		t.Fatalf("a 401 was retried: %d calls", calls.Load())
	}
}

func TestHTTPReloadErrors(t *testing.T) {
	var calls atomic.Int32
	lifecycle := server(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "Lifecycle API is not enabled.", http.StatusForbidden)
	})
	err := fastHTTP(t, HTTPOptions{}).Reload(context.Background(), lifecycle)
	if !errors.Is(err, ErrLifecycleDisabled) || calls.Load() != 1 {
		t.Fatalf("403: %v after %d calls", err, calls.Load())
	}
	bad := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "failed to reload config: couldn't load configuration (--config.file=\"p.yml\"): parsing YAML", 500)
	})
	err = fastHTTP(t, HTTPOptions{}).Reload(context.Background(), bad)
	if !errors.Is(err, ErrReloadFailed) || !strings.Contains(err.Error(), "parsing YAML") {
		t.Fatalf("500: %v", err)
	}
	calls.Store(0)
	flaky := server(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	})
	if err := fastHTTP(t, HTTPOptions{}).Reload(context.Background(), flaky); err != nil || calls.Load() != 3 {
		t.Fatalf("503 twice then 200: %v after %d calls", err, calls.Load())
	}
	calls.Store(0)
	err = fastHTTP(t, HTTPOptions{Retries: -1}).Reload(context.Background(), flaky)
	if err == nil || calls.Load() != 1 {
		t.Fatalf("Retries -1: %v after %d calls", err, calls.Load())
	}
	slow := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	start := time.Now()
	err = fastHTTP(t, HTTPOptions{Timeout: 50 * time.Millisecond, Retries: 1}).Reload(context.Background(), slow)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("timeout: %v after %v", err, time.Since(start))
	}
	token := server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "no", http.StatusUnauthorized)
		}
	})
	if err := fastHTTP(t, HTTPOptions{Client: authClient(t, promcfg.HTTPClientConfig{Authorization: &promcfg.Authorization{Type: "Bearer", Credentials: "s3cret"}})}).Reload(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	if err := fastHTTP(t, HTTPOptions{}).Reload(context.Background(), Collector{ID: "x"}); err == nil {
		t.Fatal("collector without address")
	}
}

func TestNewHTTPValidates(t *testing.T) {
	for _, tc := range []struct {
		o    HTTPOptions
		want string
	}{
		{HTTPOptions{Scheme: "ftp"}, `Scheme "ftp"`},
		{HTTPOptions{Path: "reload"}, `Path "reload"`},
		{HTTPOptions{Timeout: -1}, "Timeout -1ns"},
	} {
		if _, err := NewHTTP(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestSignal(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PROMSHARD_TEST_AWAIT_SIGHUP=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := stdout.Read(make([]byte, 1)); err != nil { // it prints once it listens for SIGHUP
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "prometheus.pid")
	os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", cmd.Process.Pid)), 0o644)
	s, err := NewSignal(SignalOptions{PIDFile: pidFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(context.Background(), Collector{ID: "local"}); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 42 {
		t.Fatalf("process ended with %v, want the exit on SIGHUP (42)", err)
	}
	if err := s.Reload(context.Background(), Collector{ID: "local"}); err == nil {
		t.Fatal("signal to an exited process succeeded")
	}
	os.WriteFile(pidFile, []byte("garbage"), 0o644)
	if err := s.Reload(context.Background(), Collector{ID: "local"}); err == nil || !strings.Contains(err.Error(), `"garbage"`) {
		t.Fatalf("bad pid file: %v", err)
	}
	if _, err := NewSignal(SignalOptions{}); err == nil {
		t.Fatal("no pid accepted")
	}
	if _, err := NewSignal(SignalOptions{PID: 1, PIDFile: "x"}); err == nil {
		t.Fatal("pid and pid file accepted")
	}
}

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	c, err := NewCommand(CommandOptions{Args: []string{"sh", "-c", `echo "$1 $2 $3 $EXTRA" > ` + out, "sh", "{{.ID}}", "{{.Address}}", "{{.File}}"},
		Env: []string{"EXTRA=yes"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(context.Background(), Collector{ID: "c1", Address: "10.0.0.1:9090", File: "/sd/c1.json"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "c1 10.0.0.1:9090 /sd/c1.json yes\n" {
		t.Fatalf("command saw %q", b)
	}
	fail, _ := NewCommand(CommandOptions{Args: []string{"sh", "-c", "echo rsync: connection refused >&2; exit 12"}})
	err = fail.Reload(context.Background(), Collector{ID: "c2"})
	if err == nil || !strings.Contains(err.Error(), "rsync: connection refused") || !strings.Contains(err.Error(), "exit status 12") {
		t.Fatalf("failing command: %v", err)
	}
	slow, _ := NewCommand(CommandOptions{Args: []string{"sleep", "10"}, Timeout: 100 * time.Millisecond})
	start := time.Now()
	if err := slow.Reload(context.Background(), Collector{ID: "c3"}); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow command: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("timeout not enforced")
	}
	// A timeout kills the command's children too, not only the shell.
	pidFile := filepath.Join(dir, "child.pid")
	shell, _ := NewCommand(CommandOptions{Args: []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"},
		Timeout: 300 * time.Millisecond})
	if err := shell.Reload(context.Background(), Collector{ID: "c4"}); err == nil {
		t.Fatal("a command that outlived its timeout succeeded")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	err = testWaitGone(pid, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []CommandOptions{{}, {Args: []string{"x", "{{.Nope}}"}}, {Args: []string{"x", "{{"}}} {
		if _, err := NewCommand(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

type fakeReloader struct {
	running, peak atomic.Int32
}

func (f *fakeReloader) Reload(ctx context.Context, c Collector) error {
	n := f.running.Add(1)
	defer f.running.Add(-1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	switch c.ID {
	case "dead":
		return errors.New("connection refused")
	case "slow":
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	default:
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// TestPool runs under synctest: the reloads' durations are fake time.
func TestPool(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeReloader{}
		reg := prometheus.NewPedanticRegistry()
		p, err := NewPool(f, PoolOptions{Concurrency: 3, Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		var cs []Collector
		for i := range 10 {
			cs = append(cs, Collector{ID: fmt.Sprintf("c%d", i)})
		}
		cs = append(cs, Collector{ID: "dead"}, Collector{ID: "slow"})
		start := time.Now()
		res := p.Reload(context.Background(), cs)
		if len(res) != 12 || res[10].Err == nil || res[11].Err != nil || res[0].Collector.ID != "c0" {
			t.Fatalf("results %+v", res)
		}
		if got := res.Failed(); len(got) != 1 || got[0] != "dead" {
			t.Fatalf("failed %v", got)
		}
		if err := res.Err(); err == nil || !strings.Contains(err.Error(), `collector "dead": connection refused`) {
			t.Fatalf("joined error %v", err)
		}
		if f.peak.Load() > 3 {
			t.Fatalf("%d reloads at once, limit 3", f.peak.Load())
		}
		// Fake time: reloads of 10 ms three at a time; the slow one (300 ms)
		// gets a slot at 30 ms and the rest run beside it: 330 ms, where one
		// at a time would take 400 ms.
		if el := time.Since(start); el != 330*time.Millisecond {
			t.Fatalf("the fan-out took %v, want 330ms", el)
		}
		if got := testutil.ToFloat64(p.total.WithLabelValues("dead", "error")); got != 1 {
			t.Fatalf("error count %v", got)
		}
		p.Forget("dead")
		if n := testutil.CollectAndCount(p.total); n != 11 {
			t.Fatalf("%d series after Forget, want 11", n)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if res := p.Reload(ctx, cs); res.Err() == nil {
			t.Fatal("cancelled fan-out reported success")
		}
	})
}

// testWaitGone waits until no process has pid (a zombie counts as gone).
func testWaitGone(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("child process %d still runs after the command's timeout", pid)
}

// A command that exits 0 but leaves a child holding its output open (an
// "sh -c 'sleep &'", ssh's ControlPersist) succeeded: the exit status
// decides, and the output is read no longer than a second after it ends.
// One that exits non-zero still fails, with its output bounded.
func TestCommandThatLeavesAChild(t *testing.T) {
	c, err := NewCommand(CommandOptions{Args: []string{"sh", "-c", "sleep 3 & echo started"}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(context.Background(), Collector{ID: "a"}); err != nil {
		t.Fatalf("a command that exited 0 with a child left behind: %v", err)
	}
	c, _ = NewCommand(CommandOptions{Args: []string{"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x; exit 3"}, Timeout: 10 * time.Second})
	err = c.Reload(context.Background(), Collector{ID: "a"})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || len(err.Error()) > 4096 {
		t.Fatalf("a failing command with a large output: %d bytes: %.200v", len(err.Error()), err)
	}
}
