package audit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/audit"
)

// An audit of a job whose collector c1 scrapes one of its two targets.
func ExampleAuditor_Audit() {
	// A stand-in for collector c1's Prometheus (a real one answers the same).
	c1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"status": "success", "data": {"activeTargets": [{"discoveredLabels": {"__address__": "10.0.0.1:9100"},
			"scrapePool": "node", "health": "up", "lastScrape": "2026-11-25T12:00:00Z"}], "droppedTargets": []}}`)
	}))
	defer c1.Close()

	a, err := audit.New(audit.Options{Grace: 1}) // no grace: judge at once
	if err != nil {
		panic(err)
	}
	job := audit.Job{
		Name: "node",
		Assignment: map[string][]*targetgroup.Group{"c1": {{Targets: []model.LabelSet{
			{model.AddressLabel: "10.0.0.1:9100"}, {model.AddressLabel: "10.0.0.2:9100"},
		}}}},
		Collectors: []audit.Collector{{ID: "c1", URL: c1.URL}},
	}
	a.Audit(context.Background(), job) // the first audit only learns the assignment
	r, err := a.Audit(context.Background(), job)
	if err != nil {
		panic(err)
	}
	fmt.Println("ok:", r.Counts[audit.OK], "missing:", r.Counts[audit.Missing], "orphan:", r.Counts[audit.Orphan])
	for _, t := range r.Problems {
		fmt.Println(t.Address, t.States, "intended for", t.Intended)
	}
	// Output:
	// ok: 1 missing: 1 orphan: 1
	// 10.0.0.2:9100 [missing orphan] intended for [c1]
}
