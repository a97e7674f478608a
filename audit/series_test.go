package audit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/promshard/promshard/internal/testenv"
)

// queryAPI fakes a Prometheus query API that answers a vector.
func queryAPI(t *testing.T, answer string, asked *string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if asked != nil {
			*asked = r.Form.Get("query")
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":[%s]}}`, answer)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Series asks each collector for its targets' most samples over the
// window, keyed by instance; a target on two collectors counts its largest
// figure; a collector that fails is named and the others still count.
func TestSeries(t *testing.T) {
	var asked string
	a := queryAPI(t, `{"metric":{"instance":"h1:9100"},"value":[1,"120"]},{"metric":{"instance":"h2:9100"},"value":[1,"5000"]}`, &asked)
	b := queryAPI(t, `{"metric":{"instance":"h1:9100"},"value":[1,"150"]},{"metric":{},"value":[1,"7"]}`, nil)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	au, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := au.Series(context.Background(), []Collector{{ID: "a", URL: a.URL}, {ID: "b", URL: b.URL}, {ID: "dead", URL: dead.URL}},
		"node", 30*time.Minute)
	if err == nil || !strings.Contains(err.Error(), `collector "dead"`) {
		t.Fatalf("err %v, want the dead collector named", err)
	}
	if len(got) != 2 || got["h1:9100"] != 150 || got["h2:9100"] != 5000 {
		t.Fatalf("series %v", got)
	}
	if want := `max by (instance) (max_over_time(scrape_samples_post_metric_relabeling{job="node"}[30m]))`; asked != want {
		t.Fatalf("query %q, want %q", asked, want)
	}
}

// Against a real Prometheus that scrapes targets of 10, 100 and 5,000
// series, Series reads exactly those figures.
func TestSeriesFromRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Prometheus")
	}
	targets := testenv.SeriesTargets(t, 10, 100, 5000)
	prom := testenv.StartPrometheus(t, t.TempDir(), fmt.Sprintf(`global: {scrape_interval: 1s, scrape_timeout: 900ms}
scrape_configs:
  - job_name: node
    static_configs: [{targets: ["%s"]}]
`, strings.Join(targets, `", "`)))
	au, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = testenv.WaitFor(30*time.Second, 250*time.Millisecond, func() error {
		got, err := au.Series(context.Background(), []Collector{{ID: "c1", URL: "http://" + prom.Addr}}, "node", 0)
		if err != nil {
			return err
		}
		for i, n := range []uint64{10, 100, 5000} {
			if got[targets[i]] != n {
				return fmt.Errorf("series %v, want %s: %d", got, targets[i], n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
