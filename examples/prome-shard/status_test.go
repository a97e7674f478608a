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
	if err := testenv.WaitFor(30*time.Second, 100*time.Millisecond, func() error {
		code, b, err := testenv.HTTPGet(context.Background(), base+"/-/ready")
		if err != nil || code != 200 {
			return fmt.Errorf("ready: %d %s %v", code, b, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want, err := assignment(listen)
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("tr.collector"))); err != nil {
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

	// The search asks explain and shows the owner.
	_, b, err := testenv.HTTPGet(context.Background(), base+"/api/v1/explain?target=10.0.0.7:9100")
	var ex []struct{ Owners []string }
	if err != nil || json.Unmarshal(b, &ex) != nil || len(ex) != 1 || len(ex[0].Owners) != 1 {
		t.Fatalf("explain: %s %v", b, err)
	}
	err = chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("target"), "10.0.0.7:9100"),
		chromedp.Click(chromedp.CSS("#search button")), chromedp.WaitVisible(chromedp.ID("explain")))
	shown, terr := chromedp.Run(ctx, chromedp.Text(chromedp.ID("explain")))
	if err = cmp.Or(err, terr); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`owned by ` + regexp.QuoteMeta(ex[0].Owners[0]) + `\b`).MatchString(shown) {
		t.Fatalf("the search shows %q; explain says %v", shown, ex[0].Owners)
	}

	// collector-b dies: its probe fails, the job reshards, its bar goes.
	stand["collector-b"].Close()
	if err := testenv.WaitFor(30*time.Second, 500*time.Millisecond, func() error {
		if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("tr.collector"))); err != nil {
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
