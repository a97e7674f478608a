package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/promshard/promshard/internal/testenv"
)

// bars reads the collector bars of a job from the page: ID → count.
func bars(ctx context.Context, job string) (map[string]int, error) {
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll(fmt.Sprintf(`section[data-job=%q] tr.collector`, job))))
	out := map[string]int{}
	for _, n := range nodes {
		c, _ := strconv.Atoi(n.AttributeValue("data-count"))
		out[n.AttributeValue("data-id")] = c
	}
	return out, err
}

// TestStatusPageInABrowser runs the binary on the demo config (its static
// collectors probed, stand-ins that answer) and drives a real chromium:
// the page loads without errors, shows each collector's bar with its count
// from /api/v1/assignment, the search shows the owner explain gives, and a
// collector that dies leaves the bars after the reshard.
func TestStatusPageInABrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx, pageErrors := browser(t)
	demo, err := os.ReadFile("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(demo)
	stand := map[string]*httptest.Server{}
	for i, id := range []string{"collector-a", "collector-b", "collector-c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		t.Cleanup(srv.Close)
		stand[id] = srv
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		cfg = strings.Replace(cfg, fmt.Sprintf("port: %d", 9091+i), "port: "+port, 1)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg = strings.Replace(cfg, "    collectors:\n", "    collectors:\n      probe: http\n      probe_interval: 1s\n", 1)
	cfg = strings.Replace(cfg, "dir: out/demo", "dir: OUT", 1)
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, cfg), "--web.listen-address", listen)
	base := "http://" + listen
	waitReady(t, base)
	want, err := assignment(listen)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?refresh=0"), chromedp.WaitVisible(chromedp.CSS("tr.collector"))); err != nil {
		t.Fatal(err)
	}
	got, err := bars(ctx, "node")
	if err != nil || len(got) != 3 {
		t.Fatalf("bars %v (%v), want 3", got, err)
	}
	for id, m := range want["node"] {
		if got[id] != len(m.Targets) {
			t.Errorf("%s: bar says %d targets, /api/v1/assignment %d", id, got[id], len(m.Targets))
		}
	}

	// A search for an address without its port finds the target, on the
	// collector explain names.
	_, b, err := testenv.HTTPGet(context.Background(), base+"/api/v1/explain?target=10.0.0.7:9100")
	var ex []struct{ Owners []string }
	if err != nil || json.Unmarshal(b, &ex) != nil || len(ex) != 1 || len(ex[0].Owners) != 1 {
		t.Fatalf("explain: %s %v", b, err)
	}
	err = chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("q"), "10.0.0.7"),
		chromedp.Click(chromedp.CSS("#search button")), chromedp.WaitVisible(chromedp.ID("found")))
	shown, terr := chromedp.Run(ctx, chromedp.Text(chromedp.ID("found")))
	if err = cmp.Or(err, terr); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`10\.0\.0\.7:9100 on ` + regexp.QuoteMeta(ex[0].Owners[0]) + `\b`).MatchString(shown) {
		t.Fatalf("the search for 10.0.0.7 shows %q; explain says %v", shown, ex[0].Owners)
	}

	// collector-b dies: its probe fails, the job reshards, its bar goes.
	stand["collector-b"].Close()
	if err := testenv.WaitFor(30*time.Second, 500*time.Millisecond, func() error {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?refresh=0"), chromedp.WaitVisible(chromedp.CSS("tr.collector"))); err != nil {
			return err
		}
		got, err := bars(ctx, "node")
		if err != nil {
			return err
		}
		if _, ok := got["collector-b"]; ok || len(got) != 2 || got["collector-a"]+got["collector-c"] != 12 {
			return fmt.Errorf("bars %v", got)
		}
		return nil
	}); err != nil {
		t.Fatalf("after collector-b died: %v", err)
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Fatalf("the page reported errors: %v", errs)
	}
}

// TestStatusPageTellsWhatHappened: real Consul, three real Prometheus
// collectors with the hand-off and the audit on, and a real chromium
// reading the page. A collector killed is a leave event naming it, with the
// targets that moved, and the audit names it as not answering; brought
// back, the page shows the pending hand-offs, then their confirmation, and
// says that every target is scraped as assigned. With
// PROMSHARD_SCREENSHOTS=DIR it saves the page at each step as PNG.
func TestStatusPageTellsWhatHappened(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx, pageErrors := browser(t)
	agent := testenv.StartConsul(t)
	targets := testenv.ScrapeTargets(t, 30)
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "node"), 0o755)
	var cs []*collector
	var b strings.Builder
	fmt.Fprintf(&b, "consul: {address: %q}\naudit: {interval: 2s, grace: 3s}\nhandoff: {mode: overlap, timeout: 1m}\n", agent.Addr)
	b.WriteString("jobs:\n  - name: node\n    collectors:\n      consul_service: page\n      check: {interval: 1s, timeout: 1s}\n      register:\n")
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("collector-%d", i)
		c := newCollector(id, testenv.StartPrometheus(t, t.TempDir(), promConfigFor(out, id, "node")))
		cs = append(cs, c)
		h, p := hostPortString(c.prom.Addr)
		fmt.Fprintf(&b, "        - {id: %s, address: %s, port: %s}\n", id, h, p)
	}
	fmt.Fprintf(&b, "    targets: {static: [{targets: [%s], labels: {team: page}}]}\n    output: {dir: %q}\n", strings.Join(targets, ", "),
		filepath.Join(out, "node"))
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, b.String()), "--web.listen-address", listen)
	page := "http://" + listen + "/?refresh=0"
	shots := os.Getenv("PROMSHARD_SCREENSHOTS")
	shoot := func(name string) {
		if shots == "" {
			return
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// read loads the page until its job section says everything in want.
	read := func(what string, timeout time.Duration, want ...string) string {
		t.Helper()
		var text string
		err := testenv.WaitFor(timeout, 300*time.Millisecond, func() error {
			if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("section.job"))); err != nil {
				return err
			}
			var err error
			if text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS("section.job"))); err != nil {
				return err
			}
			for _, w := range want {
				if !strings.Contains(text, w) {
					return fmt.Errorf("no %q", w)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v; the page says:\n%s", what, err, text)
		}
		return text
	}
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)
	read("healthy", 60*time.Second, "every target is scraped as assigned")
	shoot("healthy")

	victim := cs[1]
	before, _ := assignment(listen)
	moved := before["node"][victim.id].Targets
	victim.prom.Kill()
	victim.up.Store(false)
	text := read("after the kill", 60*time.Second, victim.id+" left (failed its check): ", "did not answer: "+victim.id)
	if !strings.Contains(text, fmt.Sprintf("%d targets moved to", len(moved))) {
		t.Fatalf("the leave event does not count the %d targets that moved:\n%s", len(moved), text)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr.event[data-kind="leave"] summary`))); err != nil {
		t.Fatal(err)
	}
	listed, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`tr.event[data-kind="leave"] details`)))
	if err != nil || !strings.Contains(listed, moved[0]) {
		t.Fatalf("the leave event's targets %q (%v) do not list %s", listed, err, moved[0])
	}
	shoot("failover")
	waitScraped(t, cs, "node", targets, 1, 60*time.Second, nil)

	victim.prom.Start()
	victim.up.Store(true)
	read("during the return", 60*time.Second, victim.id+" joined", "hand-off(s) pending for")
	shoot("handoff")
	read("after the return", 90*time.Second, "targets confirmed scraped by their new owners ("+victim.id+")",
		"every target is scraped as assigned")
	if errs := pageErrors(); len(errs) > 0 {
		t.Fatalf("the page reported errors: %v", errs)
	}
}

// TestStatusPageMarksOverrides: the page marks the targets placed apart
// from the rest, read in a real chromium. A target isolated by label is
// marked on the one collector that holds it (the owner explain gives),
// the targets pinned to a collector are counted on its row, and the job's
// placement line counts the targets on every collector, the pinned ones
// and the isolated one.
func TestStatusPageMarksOverrides(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx, pageErrors := browser(t)
	cfg := fmt.Sprintf(`listen: 127.0.0.1:9099
audit: {disabled: true}
handoff: {mode: off}
jobs:
  - name: node
    collectors:
      static:
        - {id: collector-a, address: 127.0.0.1, port: 9091}
        - {id: collector-b, address: 127.0.0.1, port: 9092}
        - {id: collector-c, address: 127.0.0.1, port: 9093}
    targets:
      static:
        - targets: [10.0.0.1:9100, 10.0.0.2:9100, 10.0.0.3:9100, 10.0.0.4:9100, 10.0.0.5:9100, 10.0.0.6:9100]
        - {targets: [10.0.2.1:9100], labels: {__promshard_every__: "true"}}
        - {targets: [10.0.3.1:9100, 10.0.3.2:9100], labels: {__promshard_pin__: collector-b}}
        - {targets: [10.0.4.1:9100], labels: {__promshard_isolate__: "true"}}
    output: {dir: %q}
    reload: {method: none}
`, t.TempDir())
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	startBinary(t, buildBinary(t), "--config.file", writeConfig(t, cfg), "--web.listen-address", listen)
	base := "http://" + listen
	waitReady(t, base)
	_, b, err := testenv.HTTPGet(context.Background(), base+"/api/v1/explain?target=10.0.4.1:9100")
	var ex []struct{ Owners []string }
	if err != nil || json.Unmarshal(b, &ex) != nil || len(ex) != 1 || len(ex[0].Owners) != 1 {
		t.Fatalf("explain: %s %v", b, err)
	}
	alone := ex[0].Owners[0]
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/?refresh=0"), chromedp.WaitVisible(chromedp.CSS("tr.collector"))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"collector-a", "collector-b", "collector-c"} {
		row, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(fmt.Sprintf(`tr.collector[data-id=%q]`, id))))
		if err != nil {
			t.Fatal(err)
		}
		if marked := strings.Contains(row, "isolated: 10.0.4.1:9100"); marked != (id == alone) {
			t.Errorf("row %s reads %q: marked isolated %v, explain puts the isolated target on %s", id, row, marked, alone)
		}
		if pinned := strings.Contains(row, "2 pinned"); pinned != (id == "collector-b") {
			t.Errorf("row %s reads %q: shows 2 pinned %v", id, row, pinned)
		}
	}
	line, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`section[data-job="node"] .placement`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 on every collector", "pinned: 2 to collector-b", "1 isolated by label", "outside the balancer"} {
		if !strings.Contains(line, want) {
			t.Errorf("the placement line reads %q, want %q in it", line, want)
		}
	}
	if errs := pageErrors(); len(errs) > 0 {
		t.Fatalf("the page reported errors: %v", errs)
	}
}
