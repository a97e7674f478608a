package targets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	promcfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.uber.org/goleak"

	"github.com/promshard/promshard/internal/tstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func group(source string, addrs ...string) *targetgroup.Group {
	g := &targetgroup.Group{Source: source, Labels: model.LabelSet{"job": "x"}}
	for _, a := range addrs {
		g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return g
}

func newReg(t *testing.T, o RegistryOptions) (*Registry, *prometheus.Registry) {
	reg := prometheus.NewPedanticRegistry()
	o.Registerer = reg
	r, err := NewRegistry(o)
	if err != nil {
		t.Fatal(err)
	}
	return r, reg
}

func TestRegistryUnknownJobNamesTheOthers(t *testing.T) {
	r, _ := newReg(t, RegistryOptions{})
	r.Register("node", Static{group("a", "h:1")}, JobOptions{})
	r.Register("mysql", Static{group("a", "h:1")}, JobOptions{})
	_, err := r.Targets(context.Background(), "nginx")
	if !errors.Is(err, ErrUnknownJob) || !strings.Contains(err.Error(), `"nginx" (registered: mysql, node)`) {
		t.Fatalf("error %v", err)
	}
	if err := r.Register("node", Static{}, JobOptions{}); err == nil {
		t.Fatal("a job registered twice")
	}
	if err := r.Register("", Static{}, JobOptions{}); err == nil {
		t.Fatal("empty job name accepted")
	}
	if err := r.Register("x", nil, JobOptions{}); err == nil {
		t.Fatal("nil provider accepted")
	}
}

func TestRegistryKeepsLastGoodTargets(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	p := Func(func(ctx context.Context) ([]*targetgroup.Group, error) {
		switch mode.Load() {
		case "error":
			return nil, errors.New("cmdb: 502 bad gateway")
		case "empty":
			return nil, nil
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		case "invalid":
			return []*targetgroup.Group{{Source: "bad", Targets: []model.LabelSet{{"instance": "x"}}}}, nil
		}
		return []*targetgroup.Group{group("a", "h1:1", "h2:1"), group("b", "h3:1")}, nil
	})
	r, reg := newReg(t, RegistryOptions{Timeout: 50 * time.Millisecond})
	r.Register("node", p, JobOptions{})
	ctx := context.Background()
	res, err := r.Targets(ctx, "node")
	if err != nil || res.Targets() != 3 || res.Stale || res.Fetched.IsZero() {
		t.Fatalf("%+v %v", res, err)
	}
	good := res.Fetched
	for _, m := range []string{"error", "empty", "slow", "invalid"} {
		mode.Store(m)
		res, err := r.Targets(ctx, "node")
		if err == nil {
			t.Fatalf("%s: no error", m)
		}
		if res.Targets() != 3 || !res.Stale || !res.Fetched.Equal(good) {
			t.Fatalf("%s: last good targets lost: %+v", m, res)
		}
		if !strings.Contains(err.Error(), `job "node"`) {
			t.Fatalf("%s: error does not name the job: %v", m, err)
		}
		if m == "empty" && !errors.Is(err, ErrEmpty) {
			t.Fatalf("empty: %v", err)
		}
		if m == "slow" && !strings.Contains(err.Error(), "deadline") && !strings.Contains(err.Error(), "timed out") {
			t.Fatalf("slow: %v", err)
		}
	}
	if got := testutil.ToFloat64(r.m.errors.WithLabelValues("node")); got != 4 {
		t.Fatalf("errors_total %v", got)
	}
	if got := testutil.ToFloat64(r.m.stale.WithLabelValues("node")); got != 1 {
		t.Fatalf("stale %v", got)
	}
	mode.Store("ok")
	if res, err := r.Targets(ctx, "node"); err != nil || res.Stale {
		t.Fatalf("recovery: %+v %v", res, err)
	}
	if n, err := testutil.GatherAndCount(reg, "promshard_targets_targets", "promshard_targets_stale"); err != nil || n != 2 {
		t.Fatalf("gathered %d (%v)", n, err)
	}
	if r2, _ := r.Last("node"); r2.Targets() != 3 {
		t.Fatalf("Last %+v", r2)
	}
}

// A drop to zero waits ConfirmDelay before it is believed: synctest makes
// that wait exact and instant.
func TestRegistryAllowEmptyAndFirstEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var empty atomic.Bool
		p := Func(func(context.Context) ([]*targetgroup.Group, error) {
			if empty.Load() {
				return nil, nil
			}
			return []*targetgroup.Group{group("a", "h:1")}, nil
		})
		r, _ := newReg(t, RegistryOptions{})
		r.Register("scaled-to-zero", p, JobOptions{AllowEmpty: true})
		r.Register("strict", p, JobOptions{})
		r.Register("new", Static{}, JobOptions{})
		ctx := context.Background()
		r.Targets(ctx, "scaled-to-zero")
		r.Targets(ctx, "strict")
		empty.Store(true)
		if res, err := r.Targets(ctx, "scaled-to-zero"); err != nil || res.Targets() != 0 {
			t.Fatalf("AllowEmpty: %+v %v", res, err)
		}
		if _, err := r.Targets(ctx, "strict"); !errors.Is(err, ErrEmpty) {
			t.Fatalf("strict: %v", err)
		}
		// An empty first answer is an error too: there is nothing good to
		// keep, and writing nothing beats emptying every collector's file.
		if res, err := r.Targets(ctx, "new"); !errors.Is(err, ErrEmpty) || !res.Fetched.IsZero() {
			t.Fatalf("first empty: %+v %v", res, err)
		}
	})
}

func TestValidate(t *testing.T) {
	gs := []*targetgroup.Group{
		group("ok", "h:1"),
		nil,
		{Source: "no-address", Targets: []model.LabelSet{{"instance": "x"}}},
		{Source: "bad-name", Labels: model.LabelSet{"a-b": "x"}, Targets: []model.LabelSet{{model.AddressLabel: "h:2"}}},
		{Source: "bad-target-label", Targets: []model.LabelSet{{model.AddressLabel: "h:3", "1x": "y"}}},
		{Source: "bad-value", Labels: model.LabelSet{"a": "\xff"}, Targets: []model.LabelSet{{model.AddressLabel: "h:4"}}},
		{Source: "empty"},
		{Source: "one-bad-target", Targets: []model.LabelSet{{model.AddressLabel: "h:5"}, {model.AddressLabel: "h:\xff"}, {model.AddressLabel: "h:6"}}},
	}
	valid, invalid := Validate("node", gs)
	if len(valid) != 2 || valid[0].Source != "ok" || valid[1].Source != "one-bad-target" || len(valid[1].Targets) != 2 ||
		valid[1].Targets[1][model.AddressLabel] != "h:6" || len(gs[7].Targets) != 3 {
		t.Fatalf("valid %v (one bad target must drop only itself, and leave the input alone)", valid)
	}
	want := []string{
		`job "node" group "no-address": target 0`,
		`job "node" group "bad-name": group label name "a-b" is not valid`,
		`job "node" group "bad-target-label": target "h:3" label name "1x" is not valid`,
		`job "node" group "bad-value": group label "a" value is not valid UTF-8`,
		`job "node" group "one-bad-target": target "h:\xff" label "__address__" value is not valid UTF-8`,
	}
	if len(invalid) != len(want) {
		t.Fatalf("invalid %v", invalid)
	}
	for i, w := range want {
		if !strings.HasPrefix(invalid[i].Error(), w) {
			t.Errorf("invalid[%d] = %q, want prefix %q", i, invalid[i], w)
		}
	}
	r, _ := newReg(t, RegistryOptions{})
	r.Register("node", Static(gs), JobOptions{})
	res, err := r.Targets(context.Background(), "node")
	if err != nil || res.Targets() != 3 || len(res.Invalid) != 5 {
		t.Fatalf("%+v %v", res, err)
	}
	if got := testutil.ToFloat64(r.m.invalid.WithLabelValues("node")); got != 5 {
		t.Fatalf("invalid_groups %v", got)
	}
}

// runner reports a change once per kick; kick returns after the report was
// taken.
type runner struct {
	Static
	kicks chan chan struct{}
}

func (r runner) Run(ctx context.Context, changed chan<- struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case done := <-r.kicks:
			changed <- struct{}{}
			close(done)
		}
	}
}

func (r runner) kick() {
	done := make(chan struct{})
	r.kicks <- done
	<-done
}

// Many changes of one job while nobody reads are coalesced (synctest: no
// timing to guess).
func TestRegistryRunCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := newReg(t, RegistryOptions{})
		a, b := runner{kicks: make(chan chan struct{})}, runner{kicks: make(chan chan struct{})}
		r.Register("a", a, JobOptions{})
		r.Register("b", b, JobOptions{})
		r.Register("static", Static{}, JobOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		changed := make(chan string)
		done := make(chan error)
		go func() { done <- r.Run(ctx, changed) }()
		a.kick()
		if got := <-changed; got != "a" {
			t.Fatalf("changed %q", got)
		}
		for range 5 {
			b.kick()
		}
		a.kick()
		synctest.Wait() // every kick has landed; the registry waits for a reader
		got := map[string]int{}
		for reading := true; reading; {
			select {
			case j := <-changed:
				got[j]++
				synctest.Wait()
			default:
				reading = false
			}
		}
		// One report in flight and one pending per job at most: five kicks
		// of b give one or two reports, never five.
		if got["a"] != 1 || got["b"] < 1 || got["b"] > 2 {
			t.Errorf("reports %v: not coalesced", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestFileProviderFollowsRewrites(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("a.json", `[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod"}}]`)
	write("b.yml", "- targets: [h3:9100]\n  labels: {env: dev}\n")
	write("ignored.txt", "not a target file")
	f, err := NewFile(FileOptions{Files: []string{filepath.Join(dir, "*.json"), filepath.Join(dir, "*.yml")}, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	notified := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(ctx, notified)
	}()
	defer func() { cancel(); <-done }()
	gs, err := f.Targets(ctx)
	if err != nil || len(gs) != 2 || gs[0].Source != filepath.Join(dir, "a.json")+":0" || gs[1].Labels["env"] != "dev" {
		t.Fatalf("%v %v", gs, err)
	}
	write("b.yml", "- targets: [h3:9100, h4:9100]\n")
	select {
	case <-notified:
	case <-time.After(2 * time.Second):
		t.Fatal("rewrite not noticed")
	}
	gs, _ = f.Targets(ctx)
	if len(gs) != 2 || len(gs[1].Targets) != 2 {
		t.Fatalf("after rewrite %v", gs)
	}
	write("b.yml", "- targets: [h3:9100\n")
	if _, err := f.Targets(ctx); err == nil || !strings.Contains(err.Error(), "b.yml") {
		t.Fatalf("broken file: %v", err)
	}
	write("b.yml", "- targets: [h3:9100]\n  lables: {}\n")
	if _, err := f.Targets(ctx); err == nil {
		t.Fatal("unknown field accepted")
	}
	for _, o := range []FileOptions{{}, {Files: []string{"[x.json"}}, {Files: []string{"x.txt"}}} {
		if _, err := NewFile(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestHTTPProvider(t *testing.T) {
	var body, ctype atomic.Value
	var status atomic.Int32
	body.Store(`[{"targets": ["h1:9100"], "labels": {"dc": "a"}}, {"targets": ["h2:9100"]}]`)
	ctype.Store("application/json; charset=utf-8")
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0k" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("slow") != "" {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Content-Type", ctype.Load().(string))
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, body.Load())
	}))
	defer srv.Close()
	h, err := NewHTTPSD(HTTPSDOptions{URL: srv.URL + "/sd", Client: bearer("t0k")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	gs, err := h.Targets(ctx)
	if err != nil || len(gs) != 2 || gs[0].Labels["dc"] != "a" || gs[1].Source != srv.URL+"/sd:1" {
		t.Fatalf("%v %v", gs, err)
	}
	for _, tc := range []struct {
		status int
		ctype  string
		body   string
		want   string
	}{
		{500, "application/json", "boom", "status 500 Internal Server Error: boom"},
		{200, "text/plain", "[]", `content type "text/plain"`},
		{200, "application/json", `[{"targets": [`, "malformed JSON"},
		{200, "application/json", `{"targets": []}`, "want a list of target groups"},
	} {
		status.Store(int32(tc.status))
		ctype.Store(tc.ctype)
		body.Store(tc.body)
		if _, err := h.Targets(ctx); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d %s %q: %v, want %q", tc.status, tc.ctype, tc.body, err, tc.want)
		}
	}
	noAuth, _ := NewHTTPSD(HTTPSDOptions{URL: srv.URL})
	if _, err := noAuth.Targets(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without auth: %v", err)
	}
	slow, _ := NewHTTPSD(HTTPSDOptions{URL: srv.URL + "?slow=1", Timeout: 50 * time.Millisecond, Client: bearer("t0k")})
	if _, err := slow.Targets(ctx); err == nil {
		t.Fatal("timeout not enforced")
	}
	for _, u := range []string{"", "ftp://x", "http://"} {
		if _, err := NewHTTPSD(HTTPSDOptions{URL: u}); err == nil || !strings.Contains(err.Error(), "URL") {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}

// An http_sd server that tags its answers is asked whether anything
// changed: an ETag server answers 304, a Last-Modified one too, and the
// provider then returns the very groups it parsed last, without reading a
// body; the registry keeps the groups it holds. A new answer is parsed
// again; a server that tags nothing is always read.
func TestHTTPSDNotModified(t *testing.T) {
	for _, tag := range []string{"etag", "last-modified", "none"} {
		t.Run(tag, func(t *testing.T) {
			var mu sync.Mutex
			body, version := `[{"targets": ["h1:9100", "h2:9100"]}]`, 1
			var full, notModified int
			stamp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				modified := time.Time{}
				switch tag {
				case "etag":
					w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, version))
				case "last-modified":
					modified = stamp.Add(time.Duration(version) * time.Second)
				}
				cw := &codeWriter{ResponseWriter: w}
				http.ServeContent(cw, r, "", modified, strings.NewReader(body))
				if cw.code == http.StatusNotModified {
					notModified++
				} else {
					full++
				}
			}))
			defer srv.Close()
			h, err := NewHTTPSD(HTTPSDOptions{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := newReg(t, RegistryOptions{})
			if err := r.Register("node", h, JobOptions{}); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			first, err := r.Targets(ctx, "node")
			if err != nil || first.Targets() != 2 {
				t.Fatalf("%+v %v", first, err)
			}
			for range 3 {
				again, err := r.Targets(ctx, "node")
				if err != nil || len(again.Groups) != 1 || again.Groups[0] != first.Groups[0] {
					t.Fatalf("unchanged: %+v %v, want the groups held", again, err)
				}
			}
			mu.Lock()
			wantFull, wantNot := 1, 3
			if tag == "none" {
				wantFull, wantNot = 4, 0
			}
			if full != wantFull || notModified != wantNot {
				t.Errorf("answers: %d full, %d not modified; want %d, %d", full, notModified, wantFull, wantNot)
			}
			mu.Unlock()
			// A provider that replaces this one (a config reload) asks too.
			next, _ := NewHTTPSD(HTTPSDOptions{URL: srv.URL})
			if other, _ := NewHTTPSD(HTTPSDOptions{URL: srv.URL + "/other"}); other.Inherit(h) || !next.Inherit(h) {
				t.Fatal("Inherit: want it from the same URL only")
			}
			if gs, err := next.Targets(ctx); err != nil || len(gs) != 1 || (tstore.From(gs[0]).Targets[0] != first.Groups[0].Targets[0] || tstore.Identity(tstore.From(gs[0]).Targets[0]) != tstore.Identity(first.Groups[0].Targets[0])) != (tag == "none") {
				t.Fatalf("after a reload: %v %v, want the groups held", gs, err)
			}
			mu.Lock()
			if tag != "none" && notModified != 4 {
				t.Errorf("after a reload: %d not modified answers, want 4", notModified)
			}
			full = 0
			body, version = `[{"targets": ["h1:9100", "h2:9100", "h3:9100"]}]`, 2
			mu.Unlock()
			changed, err := r.Targets(ctx, "node")
			if err != nil || changed.Targets() != 3 {
				t.Fatalf("changed: %+v %v", changed, err)
			}
		})
	}
}

// codeWriter remembers the status code written through it.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

// A sudden large drop is read again: a truncated source that recovers
// loses nothing, a drop that stays is believed, and a source that keeps
// changing keeps the last good targets.
func TestRegistrySuddenDrop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var answers []int
		p := Func(func(context.Context) ([]*targetgroup.Group, error) {
			mu.Lock()
			defer mu.Unlock()
			n := answers[0]
			if len(answers) > 1 {
				answers = answers[1:]
			}
			g, first := &targetgroup.Group{Source: "f"}, 0
			if n >= 1000 { // n-1000 other targets: a file caught cut at another place
				n, first = n-1000, 100
			}
			for i := range n {
				g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:1", first+i))})
			}
			return []*targetgroup.Group{g}, nil
		})
		ctx := context.Background()
		for _, tc := range []struct {
			answers []int
			want    int
			err     error
			took    time.Duration
		}{
			{[]int{20, 5, 20}, 20, nil, DefaultConfirmDelay}, // truncated mid-write, then whole again
			{[]int{20, 5, 5}, 5, nil, DefaultConfirmDelay},   // a real drop, confirmed
			{[]int{20, 5, 3}, 20, ErrSuddenDrop, DefaultConfirmDelay},
			{[]int{20, 5, 1005}, 20, ErrSuddenDrop, DefaultConfirmDelay}, // as many, but others: still changing
			{[]int{20, 12}, 12, nil, 0},                                  // within MaxDrop: no second read
		} {
			r, _ := newReg(t, RegistryOptions{})
			_ = r.Register("j", p, JobOptions{})
			mu.Lock()
			answers = tc.answers
			mu.Unlock()
			if res, err := r.Targets(ctx, "j"); err != nil || res.Targets() != 20 {
				t.Fatalf("%v: first fetch %d %v", tc.answers, res.Targets(), err)
			}
			start := time.Now()
			res, err := r.Targets(ctx, "j")
			if res.Targets() != tc.want || !errors.Is(err, tc.err) || time.Since(start) != tc.took {
				t.Fatalf("%v: got %d targets, %v after %v; want %d, %v after %v", tc.answers, res.Targets(), err,
					time.Since(start), tc.want, tc.err, tc.took)
			}
		}
		r, _ := newReg(t, RegistryOptions{})
		if err := r.Register("j", p, JobOptions{MaxDrop: 1.5}); err == nil {
			t.Fatal("MaxDrop 1.5 accepted")
		}
	})
}

// slowProvider answers after a delay and has a timeout of its own.
type slowProvider struct{ delay, timeout time.Duration }

func (p slowProvider) Timeout() time.Duration { return p.timeout }

func (p slowProvider) Targets(ctx context.Context) ([]*targetgroup.Group, error) {
	select {
	case <-time.After(p.delay):
		return []*targetgroup.Group{group("s", "h:1")}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A provider's own longer timeout is honoured, not cut to the registry's.
func TestRegistryHonoursProviderTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, _ := newReg(t, RegistryOptions{Timeout: 30 * time.Second})
		_ = r.Register("slow-but-allowed", slowProvider{45 * time.Second, time.Minute}, JobOptions{})
		_ = r.Register("too-slow", slowProvider{45 * time.Second, 0}, JobOptions{})
		if res, err := r.Targets(context.Background(), "slow-but-allowed"); err != nil || res.Targets() != 1 {
			t.Fatalf("a 45s fetch under a 1m provider timeout: %v", err)
		}
		if _, err := r.Targets(context.Background(), "too-slow"); err == nil || !strings.Contains(err.Error(), "30s") {
			t.Fatalf("a 45s fetch under the registry's 30s: %v", err)
		}
	})
}

// An http_sd answer full of repeats costs what its distinct targets cost,
// and one with more distinct targets than MaxTargets is refused.
func TestHTTPDedupesAndCaps(t *testing.T) {
	var body strings.Builder
	body.WriteString("[")
	for i := range 1000 {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"targets": ["a:1", "b:1", "a:1"], "labels": {"env": "%s"}}`, []string{"x", "y"}[i%2])
	}
	body.WriteString("]")
	h, _ := NewHTTPSD(HTTPSDOptions{URL: "http://sd.example/", Client: &http.Client{Transport: roundTrip{[]byte(body.String()), "application/json"}}})
	gs, err := h.Targets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := (Result{Groups: tstore.FromAll(gs)}).Targets(); n != 4 {
		t.Fatalf("%d targets from 3000 entries with 4 distinct ones (2 addresses × 2 label sets)", n)
	}
	capped, _ := NewHTTPSD(HTTPSDOptions{URL: "http://sd.example/", MaxTargets: 3,
		Client: &http.Client{Transport: roundTrip{[]byte(body.String()), "application/json"}}})
	if _, err := capped.Targets(context.Background()); err == nil || !strings.Contains(err.Error(), "more than 3 distinct targets") {
		t.Fatalf("MaxTargets 3: %v", err)
	}
}

func TestFileCheck(t *testing.T) {
	dir := t.TempDir()
	f, _ := NewFile(FileOptions{Files: []string{filepath.Join(dir, "*.json")}})
	if err := f.Check(); err == nil || !strings.Contains(err.Error(), "no file matches") {
		t.Fatalf("Check with no file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "a.json"), []byte("[]"), 0o644)
	if err := f.Check(); err != nil {
		t.Fatal(err)
	}
}

// A rewrite is noticed from the file system's events, long before the
// periodic look.
func TestFileFollowsEvents(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	os.WriteFile(p, []byte(`[{"targets": ["h1:9100"]}]`), 0o644)
	f, _ := NewFile(FileOptions{Files: []string{filepath.Join(dir, "*.json")}, Interval: time.Hour})
	if _, err := f.Targets(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	notified := make(chan struct{}, 10)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx, notified) }()
	defer func() { cancel(); <-done }()
	// Run may not watch yet: rewrite until it announces, within a bound.
	deadline := time.After(10 * time.Second)
	for i := 2; ; i++ {
		os.WriteFile(p, []byte(fmt.Sprintf(`[{"targets": ["h%d:9100"]}]`, i)), 0o644)
		select {
		case <-notified:
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("a rewrite was not noticed within 10 s with a 1 h interval: no file system events")
		}
	}
}

// bearer is a client that sends a bearer token, built as HTTPSDOptions.Client
// documents.
func bearer(token string) *http.Client {
	c, _ := promcfg.NewClientFromConfig(promcfg.HTTPClientConfig{
		Authorization: &promcfg.Authorization{Type: "Bearer", Credentials: promcfg.Secret(token)}}, "test")
	return c
}

// An unchanged file is neither read nor parsed again: its size and
// modification time vouch for it once it was a second old when read (the
// same groups come back). A file written within the last second is read
// every time, so that a rewrite of the same size in the same tick is seen.
func TestFileNotParsedAgainWhenUnchanged(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t.json")
	write := func(body string, at time.Time) { t.Helper(); writeAt(t, p, body, at) }
	old := time.Now().Add(-time.Hour)
	write(`[{"targets": ["a:1"]}]`, old)
	f, err := NewFile(FileOptions{Files: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.compactTargets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := f.compactTargets(context.Background())
	if len(again) != 1 || again[0] != first[0] {
		t.Fatal("an unchanged file was parsed again")
	}
	// A File that replaces this one (a config reload) inherits what it read.
	next, _ := NewFile(FileOptions{Files: []string{p}})
	if other, _ := NewFile(FileOptions{Files: []string{p, filepath.Join(dir, "*.yml")}}); other.Inherit(f) || next.Inherit(Static{}) {
		t.Fatal("inherited from another configuration")
	}
	if !next.Inherit(f) {
		t.Fatal("not inherited")
	}
	if gs, _ := next.compactTargets(context.Background()); len(gs) != 1 || gs[0] != first[0] {
		t.Fatal("an unchanged file was parsed again after a reload")
	}
	write(`[{"targets": ["b:2"]}]`, time.Now())
	if gs, _ := f.compactTargets(context.Background()); gs[0].Targets[0] != "b:2" {
		t.Fatalf("a changed file: %v", gs)
	}
	write(`[{"targets": ["c:3"]}]`, time.Now()) // the same size, written within the second
	if gs, _ := f.compactTargets(context.Background()); gs[0].Targets[0] != "c:3" {
		t.Fatalf("a fresh rewrite of the same size: %v", gs)
	}
}

// A JSON file in which one group changed gives back the very groups of the
// others, also when a look for changes (Run's) read it first, and after a
// File replaced another: what was built from them (a writer's encoded
// files) stays theirs, and a million label sets are not made again.
func TestFileChangedGroupAloneIsParsed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "t.json")
	write := func(body string) { t.Helper(); writeAt(t, p, body, time.Now()) }
	a, b := `{"labels": {"team": "a"}, "targets": ["a:1", "a:2"]}`, `{"labels": {"team": "b"}, "targets": ["b:1"]}`
	write("[" + a + "," + b + "]")
	f, err := NewFile(FileOptions{Files: []string{p}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := f.compactTargets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	write("[" + a + `, {"labels": {"team": "b"}, "targets": ["b:1", "b:2"]}]`)
	f.fingerprint() // Run looks first
	second, err := f.compactTargets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if second[0] != first[0] || second[1] == first[1] || len(second[1].Targets) != 2 {
		t.Fatalf("one group changed: got %v after %v", second, first)
	}
	write(`[{"targets": ["c:1"]}, ` + a + "]") // a moves: a new group with a's label sets, and its new source
	next, _ := NewFile(FileOptions{Files: []string{p}})
	next.Inherit(f)
	third, err := next.compactTargets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if third[1] == first[0] || &third[1].Targets[0] != &first[0].Targets[0] || third[1].Source != p+":1" || first[0].Source != p+":0" {
		t.Fatalf("a group that moved: %v (was %v)", third[1], first[0])
	}
	if _, err := next.compactTargets(context.Background()); err != nil {
		t.Fatal(err)
	}
	write("[" + a + ", oops")
	if _, err := next.compactTargets(context.Background()); err == nil || !strings.Contains(err.Error(), "parse "+p) {
		t.Fatalf("malformed file: %v", err)
	}
}

// writeAt writes body to p with the modification time at.
func writeAt(t *testing.T, p, body string, at time.Time) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, at, at); err != nil {
		t.Fatal(err)
	}
}

// validate checks a group it has seen (the same *Group, as many targets)
// once: what it gave back then, invalid parts and fingerprint included,
// stands; a new group is checked.
func TestValidateChecksAGroupOnce(t *testing.T) {
	good := tstore.From(&targetgroup.Group{Source: "a", Labels: model.LabelSet{"env": "prod"},
		Targets: []model.LabelSet{{model.AddressLabel: "h1:80"}, {model.AddressLabel: "h2:80"}}})
	part := tstore.From(&targetgroup.Group{Source: "b", Targets: []model.LabelSet{{model.AddressLabel: "h3:80"}, {"x": "no address"}}})
	v1, inv1, fp1, checks := validate("node", []*tstore.Group{good, part}, nil)
	// The check is reused: an entry that says nothing valid would stand.
	was := checks[good].fp
	checks[good] = groupCheck{n: len(good.Targets), fp: 7}
	v2, inv2, fp2, _ := validate("node", []*tstore.Group{good, part}, checks)
	if len(v2) != 1 || v2[0] != v1[1] || fp2 != fp1-was+7 {
		t.Fatalf("with a check in hand: valid %v fp %x, want the part alone, the stored fingerprint", v2, fp2)
	}
	if len(inv2) != 1 || inv2[0] != inv1[0] {
		t.Fatalf("invalid %v, want the same error as the first check %v", inv2, inv1)
	}
	// A new group, equal in content, is checked.
	again := &tstore.Group{Source: good.Source, Labels: good.Labels, Targets: good.Targets}
	v3, _, fp3, _ := validate("node", []*tstore.Group{again, part}, checks)
	if len(v3) != 2 || v3[0] != again || fp3 != fp1 {
		t.Fatalf("a new group: valid %v fp %x, want it checked, fp %x", v3, fp3, fp1)
	}
	// A group with more targets than when it was checked is checked again.
	checks[again] = groupCheck{n: 1}
	if v4, _, fp4, _ := validate("node", []*tstore.Group{again, part}, checks); len(v4) != 2 || fp4 != fp1 {
		t.Fatalf("a group whose targets changed: valid %v fp %x, want it checked again", v4, fp4)
	}
}
