package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
	"github.com/promshard/promshard/shard"
	"github.com/promshard/promshard/web"
)

const okJob = `
jobs:
  - name: node
    collectors:
      static: [{id: a, address: 127.0.0.1, port: 9091}, {id: b, address: 127.0.0.1, port: 9092}]
    targets:
      static: [{targets: [h1:9100, h2:9100, h3:9100]}]
    output: {dir: OUT}
`

// Config mistakes stop the binary at start with exit code 2 and a message
// that names the field and the value.
func TestConfigErrorsExit2(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown field", okJob + "bogus: 1\n", "field bogus not found"},
		{"unknown job field", strings.Replace(okJob, "    output:", "    outptu: {}\n    output:", 1), "field outptu not found"},
		{"bad duration", okJob + "refresh_interval: 5x\n", `refresh_interval: "5x" is not a duration`},
		{"bad audit duration", okJob + "audit: {grace: 2x}\n", `audit.grace: "2x" is not a duration`},
		{"bad audit scheme", okJob + "audit: {scheme: ftp}\n", `audit.scheme: "ftp", want http or https`},
		{"bad audit client", okJob + "audit: {bearer_token: a, bearer_token_file: b}\n", "audit:"},
		{"missing provider", strings.Replace(okJob, "      static: [{targets: [h1:9100, h2:9100, h3:9100]}]\n", "      allow_empty: true\n", 1), "jobs[0] (node).targets: set exactly one provider"},
		{"two providers", strings.Replace(okJob, "static: [{targets:", "file_sd: [x.json]\n      static: [{targets:", 1), "found 2"},
		{"unknown ring", strings.Replace(okJob, "    targets:", "    ring: maglev\n    targets:", 1), `jobs[0] (node).ring: "maglev"`},
		{"replicas", strings.Replace(okJob, "    targets:", "    replicas: -1\n    targets:", 1), "jobs[0] (node).replicas: -1"},
		{"no collectors", strings.Replace(okJob, "      static: [{id: a, address: 127.0.0.1, port: 9091}, {id: b, address: 127.0.0.1, port: 9092}]\n", "      probe: http\n", 1), "set exactly one of consul_service"},
		{"bad port", strings.Replace(okJob, "port: 9092", "port: 0", 1), "port 1-65535"},
		{"bad reload", okJob[:len(okJob)-1] + "\n    reload: {method: ansible}\n", `reload.method: "ansible"`},
		{"bad template", strings.Replace(okJob, "{dir: OUT}", "{dir: OUT, file: all.json}", 1), "must depend on {{.ID}}"},
		{"no jobs", "listen: 127.0.0.1:1\n", "no job configured"},
		{"bad relabel_configs", strings.Replace(okJob, "    targets:", "    relabel_configs: [{source_labels: [a], target_label: b, action: hashmod}]\n    targets:", 1), "jobs[0] (node).relabel_configs[0]:"},
		{"bad pin_fallback", strings.Replace(okJob, "    targets:", "    pin_fallback: later\n    targets:", 1), `jobs[0] (node).pin_fallback: "later", want one of ring, none`},
		{"prefer_zone_label without spread_by", strings.Replace(okJob, "    targets:", "    prefer_zone_label: zone\n    targets:", 1), `jobs[0] (node).prefer_zone_label: "zone" needs spread_by`},
		{"an SD not compiled in", strings.Replace(okJob, "static: [{targets: [h1:9100, h2:9100, h3:9100]}]", "prometheus_sd: {ec2_sd_configs: [{region: eu-west-1}]}", 1), "ec2_sd_configs: not compiled into this program (its package is not imported, or the name is misspelt); this build has consul, dns, file, http and kubernetes; build with -tags promsd_all"},
		{"bad session_ttl", "leader_election: {key: k, session_ttl: 1s}\n" + okJob, "leader_election: elect: LockOptions.SessionTTL 1s: want 10s to 24h0m0s"},
		{"bad lock_delay", "leader_election: {key: k, lock_delay: 2x}\n" + okJob, `leader_election.lock_delay: "2x" is not a duration`},
		{"bad prometheus_sd", strings.Replace(okJob, "static: [{targets: [h1:9100, h2:9100, h3:9100]}]", "prometheus_sd: {foo_sd_configs: [{}]}", 1), "prometheus_sd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd("--config.file", writeConfig(t, tc.body), "--dry-run")
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 mentioning %q", code, stderr, tc.want)
			}
		})
	}
	if code, _, stderr := runCmd("--config.file", "/nonexistent.yaml"); code != 2 || !strings.Contains(stderr, "nonexistent") {
		t.Fatalf("missing file: %d %q", code, stderr)
	}
	if code, _, _ := runCmd(); code != 2 {
		t.Fatalf("no -config: exit %d", code)
	}
	if code, _, _ := runCmd("--config.file", "x", "--nope"); code != 2 {
		t.Fatalf("unknown flag: exit %d", code)
	}
}

func TestOnceWritesAndDryRunDoesNot(t *testing.T) {
	p := writeConfig(t, okJob)
	out := filepath.Join(filepath.Dir(p), "out")
	code, stdout, stderr := runCmd("--config.file", p, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "job node: 3 targets on 2 collectors") {
		t.Fatalf("dry run: %d %q %q", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatal("dry run created the output directory")
	}
	code, stdout, stderr = runCmd("--config.file", p, "--once")
	if code != 0 {
		t.Fatalf("once: %d %q %q", code, stdout, stderr)
	}
	total := 0
	for _, id := range []string{"a", "b"} {
		b, err := os.ReadFile(filepath.Join(out, id+".json"))
		if err != nil {
			t.Fatal(err)
		}
		total += strings.Count(string(b), ":9100")
	}
	if total != 3 {
		t.Fatalf("%d targets written, want 3", total)
	}
	code, stdout, _ = runCmd("--version")
	if code != 0 || !strings.HasPrefix(stdout, "prome-shard, version ") || !strings.Contains(stdout, "go version:") {
		t.Fatalf("version: %d %q", code, stdout)
	}
}

// The README's first command works as written.
func TestDemoConfig(t *testing.T) {
	cfg, err := filepath.Abs("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	code, stdout, stderr := runCmd("--config.file", cfg, "--once")
	if code != 0 || !strings.Contains(stdout, "job node: 12 targets on 3 collectors") {
		t.Fatalf("demo: %d\n%s\n%s", code, stdout, stderr)
	}
	for _, id := range []string{"collector-a", "collector-b", "collector-c"} {
		if _, err := os.Stat(filepath.Join("out", "demo", id+".json")); err != nil {
			t.Fatal(err)
		}
	}
}

// The documented config.yaml parses (it points at hosts that do not exist
// here, so it is only checked, not run).
func TestDocumentedConfigParses(t *testing.T) {
	c, err := LoadConfig("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Jobs) != 1 || len(c.Jobs[0].Targets.sd) != 1 || c.Jobs[0].Collectors.Check.Interval.String() != "5s" {
		t.Fatalf("parsed %+v", c.Jobs[0])
	}
}

// In self mode a copy whose collector is not healthy writes an empty list,
// so its old targets are not scraped twice; the healthy one takes them all.
func TestSelfModeUnhealthyWritesEmpty(t *testing.T) {
	healthy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer healthy.Close()
	dead := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	deadAddr := dead.Listener.Addr().(*net.TCPAddr)
	dead.Close()
	hAddr := healthy.Listener.Addr().(*net.TCPAddr)
	body := fmt.Sprintf(`
jobs:
  - name: node
    collectors:
      static: [{id: up, address: 127.0.0.1, port: %d}, {id: down, address: 127.0.0.1, port: %d}]
      probe: http
    targets:
      static: [{targets: [h1:9100, h2:9100, h3:9100]}]
    output: {dir: OUT}
`, hAddr.Port, deadAddr.Port)
	p := writeConfig(t, body)
	out := filepath.Join(filepath.Dir(p), "out")
	for _, id := range []string{"up", "down"} {
		if code, stdout, stderr := runCmd("--config.file", p, "--once", "--member", id); code != 0 {
			t.Fatalf("-member %s: %d %q %q", id, code, stdout, stderr)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(out, "down.json")); string(b) != "[]\n" {
		t.Fatalf("unhealthy collector's own file %q, want []", b)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "up.json")); strings.Count(string(b), ":9100") != 3 {
		t.Fatalf("healthy collector's file %q, want all 3 targets", b)
	}
}

// Each documented exit code is the real one: 0 after a signal, 1 when a
// part of the daemon fails (and the log names it) or a -once run cannot
// finish, 2 for flag and config mistakes found at start.
func TestExitCodes(t *testing.T) {
	p := writeConfig(t, okJob)
	t.Run("signal", func(t *testing.T) {
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		ctx, cancel := context.WithCancel(context.Background())
		code := make(chan int, 1)
		var out, errb bytes.Buffer
		go func() { code <- run(ctx, []string{"--config.file", p, "--web.listen-address", addr}, &out, &errb) }()
		err := testenv.WaitFor(10*time.Second, 20*time.Millisecond, func() error {
			st, _, err := testenv.HTTPGet(context.Background(), "http://"+addr+"/-/ready")
			if err == nil && st != http.StatusOK {
				err = fmt.Errorf("ready: %d", st)
			}
			return err
		})
		cancel()
		if c := <-code; err != nil || c != 0 {
			t.Fatalf("ready: %v; exit %d after the context ended, want 0\n%s", err, c, errb.String())
		}
	})
	t.Run("part fails", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		code, _, stderr := runCmd("--config.file", p, "--web.listen-address", l.Addr().String())
		if code != exitConfig || !strings.Contains(stderr, "http server: listen") || !strings.Contains(stderr, "address already in use") ||
			strings.Contains(stderr, "msg=reshard") {
			t.Fatalf("exit %d, stderr %q; want 2 naming the http server, before any reshard", code, stderr)
		}
	})
	t.Run("once fails", func(t *testing.T) {
		dead := fmt.Sprint(testenv.FreePort(t))
		body := strings.Replace(strings.Replace(okJob, "port: 9091}", "port: "+dead+"}", 1), "port: 9092}]", "port: "+dead+"}]\n      probe: tcp", 1)
		code, _, stderr := runCmd("--config.file", writeConfig(t, body), "--once")
		if code != 1 || !strings.Contains(stderr, "no healthy collectors") {
			t.Fatalf("exit %d, stderr %q; want 1: no healthy collectors", code, stderr)
		}
	})
	t.Run("consul refuses the token", func(t *testing.T) {
		consul := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "ACL not found", http.StatusForbidden)
		}))
		defer consul.Close()
		body := fmt.Sprintf("consul: {address: %q}\n", strings.TrimPrefix(consul.URL, "http://")) +
			strings.Replace(okJob, "static: [{id: a, address: 127.0.0.1, port: 9091}, {id: b, address: 127.0.0.1, port: 9092}]", "consul_service: prom", 1)
		start := time.Now()
		code, _, stderr := runCmd("--config.file", writeConfig(t, body), "--once")
		if code != 1 || !strings.Contains(stderr, "403") || time.Since(start) > 10*time.Second {
			t.Fatalf("exit %d after %v, stderr %q; want 1 at once naming the 403", code, time.Since(start), stderr)
		}
	})
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"bad --web.listen-address": {[]string{"--config.file", p, "--web.listen-address", "127.0.0.1:99999", "--once"}, `--web.listen-address: "127.0.0.1:99999"`},
		"bad --log.level":          {[]string{"--config.file", p, "--log.level", "loud"}, `log level loud`},
		"listen in file":           {[]string{"--config.file", writeConfig(t, okJob+"listen: 127.0.0.1:99999\n"), "--once"}, `listen: "127.0.0.1:99999"`},
		"shared out dir":           {[]string{"--config.file", writeConfig(t, okJob+strings.Replace(okJob[6:], "name: node", "name: node2", 1)), "--once"}, `jobs[1] (node2).output.dir`},
		"unusable ID":              {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "id: a,", "id: ../evil,", 1)), "--once"}, `"../evil"`},
		"bad static label":         {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "static: [{targets: [h1:9100, h2:9100, h3:9100]}]", "static: [{targets: [h1:9100], labels: {bad-name: x}}]", 1)), "--once"}, `targets.static[0]`},
		"balance too often":        {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "    targets:", "    balance: {by: series, interval: 1ms}\n    targets:", 1)), "--once"}, "Interval 1ms: want at least 1s"},
		"ID too long":              {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "id: a,", "id: "+strings.Repeat("a", 300)+",", 1)), "--once"}, "above 237"},
		"unknown --member":         {[]string{"--config.file", p, "--member", "zzz", "--once"}, `Job.Self "zzz" is none of the known collectors`},
		"ttl check":                {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "static: [{id: a", "consul_service: p\n      check: {type: ttl}\n      register: [{id: a", 1)), "--once"}, `check.type: "ttl"`},
		"glob matches nothing":     {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "static: [{targets: [h1:9100, h2:9100, h3:9100]}]", "file_sd: [/nonexistent/*.json]", 1)), "--once"}, `"/nonexistent/*.json"]: no file matches`},
		"bad shard_key":            {[]string{"--config.file", writeConfig(t, strings.Replace(okJob, "    targets:", "    shard_key: a-b\n    targets:", 1)), "--once"}, `KeyLabel "a-b": not a valid label name`},
		"refresh too low":          {[]string{"--config.file", writeConfig(t, okJob+"refresh_interval: 10ms\n"), "--once"}, `refresh_interval: "10ms", want at least 1s`},
	} {
		t.Run(name, func(t *testing.T) {
			if code, _, stderr := runCmd(tc.args...); code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, stderr, tc.want)
			}
		})
	}
}

// http_sd takes the auth and TLS settings of a Prometheus scrape config.
func TestHTTPSDWithAuthorization(t *testing.T) {
	sd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `[{"targets": ["h1:9100", "h2:9100"]}]`)
	}))
	defer sd.Close()
	source := func(auth string) string {
		return strings.Replace(okJob, "static: [{targets: [h1:9100, h2:9100, h3:9100]}]",
			fmt.Sprintf("http_sd: {url: %q, %s}", sd.URL, auth), 1)
	}
	code, stdout, stderr := runCmd("--config.file", writeConfig(t, source("authorization: {credentials: s3cret}")), "--once")
	if code != 0 || !strings.Contains(stdout, "job node: 2 targets on 2 collectors") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, _, stderr = runCmd("--config.file", writeConfig(t, source("bearer_token: a, authorization: {credentials: b}")), "--once")
	if code != 2 || !strings.Contains(stderr, "authorization") {
		t.Fatalf("two credentials: exit %d, %q; want 2", code, stderr)
	}
}

// simulate prints what a change would move, from the config or from a
// saved /api/v1/assignment, and the two agree; a bad change is a usage
// mistake (2), a collector that is not there a failure (1).
func TestSimulateCommand(t *testing.T) {
	code, table, stderr := runCmd("simulate", "--config.file", "demo.yaml", "--remove", "collector-a", "--add", "collector-d:2")
	if code != 0 || !strings.Contains(table, "job node: 12 targets") || !regexp.MustCompile(`collector-a\s+4\s+0\s+removed`).MatchString(table) {
		t.Fatalf("exit %d\n%s\n%s", code, table, stderr)
	}
	code, live, stderr := runCmd("simulate", "--config.file", "demo.yaml", "--remove", "collector-a", "-o", "json")
	var sims map[string]*shard.Simulation
	if code != 0 || json.Unmarshal([]byte(live), &sims) != nil || sims["node"].Moved == 0 {
		t.Fatalf("json: exit %d %q %q", code, live, stderr)
	}
	// The same from a saved assignment, without the providers.
	saved := filepath.Join(t.TempDir(), "assignment.json")
	a, err := load(Flags{Config: "demo.yaml", DryRun: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.sharder.Once(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	web.Handler(a.sharder, web.Options{}).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/assignment", nil))
	os.WriteFile(saved, rec.Body.Bytes(), 0o644)
	code, offline, stderr := runCmd("simulate", "--from", saved, "--remove", "collector-a", "-o", "json")
	if code != 0 || offline != live {
		t.Fatalf("from the saved assignment: exit %d %q %q; live %q", code, offline, stderr, live)
	}
	if code, _, stderr := runCmd("simulate", "--config.file", "demo.yaml", "--add", "x:0"); code != exitConfig || !strings.Contains(stderr, `weight "0"`) {
		t.Fatalf("a bad weight: exit %d %q", code, stderr)
	}
	if code, _, stderr := runCmd("simulate", "--config.file", "demo.yaml", "--remove", "nope"); code != exitFailed || !strings.Contains(stderr, `remove "nope": no such member`) {
		t.Fatalf("an unknown collector: exit %d %q", code, stderr)
	}
	if code, _, _ := runCmd("simulate", "--config.file", "demo.yaml", "--from", saved); code != exitConfig {
		t.Fatalf("-config and -from: exit %d, want 2", code)
	}
}

// -once takes no lock, so with leader_election it would write beside the
// leader: it is refused at start; -dry-run writes nothing and is allowed.
func TestOnceRefusedWithLeaderElection(t *testing.T) {
	cfg := writeConfig(t, "leader_election: {key: promshard/x}\n"+okJob)
	if code, _, stderr := runCmd("--config.file", cfg, "--once"); code != exitConfig || !strings.Contains(stderr, "-once takes no lock") {
		t.Fatalf("-once: exit %d %q", code, stderr)
	}
	if code, out, stderr := runCmd("--config.file", cfg, "--dry-run"); code != exitOK || !strings.Contains(out, "job node: 3 targets") {
		t.Fatalf("-dry-run: exit %d %q %q", code, out, stderr)
	}
}

// The simulate command prints the sizing of a job balanced by series.
func TestSimulationPrintsSizing(t *testing.T) {
	var b strings.Builder
	sim := &shard.Simulation{Targets: 30, CollectorsNeeded: 4, After: shard.Balance{Members: 2}}
	if err := writeSimulation(&b, "node", sim); err != nil {
		t.Fatal(err)
	}
	if want := "sizing: the measured series need 4 collectors with headroom for a loss; after: 2 (too few"; !strings.Contains(b.String(), want) {
		t.Fatalf("printed\n%s\nwant a line with %q", b.String(), want)
	}
}

// The SD list of a build names the tag that adds what it lacks.
func TestSDBuildNamesTheTags(t *testing.T) {
	defer func(b []string, e bool) { sdBuilt, sdEvery = b, e }(sdBuilt, sdEvery)
	sdBuilt = []string{"http", "consul", "dns", "file"}
	if got, want := sdBuild(), "this build has consul, dns, file and http; build with -tags promsd_kubernetes for Kubernetes, -tags promsd_all for every Prometheus SD"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	sdBuilt = append(sdBuilt, "kubernetes", "kubernetes")
	if got, want := sdBuild(), "this build has consul, dns, file, http and kubernetes; build with -tags promsd_all for every Prometheus SD"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	sdEvery = true
	if got := sdBuild(); got != "this build has every Prometheus SD" {
		t.Fatalf("got %q", got)
	}
}
