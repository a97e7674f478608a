package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// oracle is the same answer decoded by encoding/json.
type oracle struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ActiveTargets []struct {
			DiscoveredLabels struct {
				Address string `json:"__address__"`
			} `json:"discoveredLabels"`
			ScrapePool string    `json:"scrapePool"`
			LastError  string    `json:"lastError"`
			LastScrape time.Time `json:"lastScrape"`
			Health     string    `json:"health"`
		} `json:"activeTargets"`
	} `json:"data"`
}

// plainKeys reports whether b's objects have no repeated key and no key
// that matches a field only when case is ignored: there encoding/json's
// rules (the last repeated key merges into the earlier value; "STATUS" is
// status) differ from the decoder's, which Prometheus never exercises.
func plainKeys(b []byte) bool {
	fields := []string{"status", "errorType", "error", "data", "activeTargets", "discoveredLabels", "__address__",
		"scrapePool", "lastError", "lastScrape", "health"}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	type frame struct {
		obj    bool
		keys   map[string]bool
		expect bool // the next token in an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.expect {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					stack[len(stack)-1].expect = true
				}
				continue
			}
			k := tok.(string)
			if top.keys[k] {
				return false
			}
			top.keys[k] = true
			for _, f := range fields {
				if strings.EqualFold(k, f) && k != f {
					return false
				}
			}
			top.expect = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, expect: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].expect = true
		}
	}
}

func decodeBoth(t *testing.T, b []byte) {
	var got []activeTarget
	ans, err := decodeAnswer(b, func(a *activeTarget) { got = append(got, *a) }, func() { got = nil })
	if !json.Valid(b) || !plainKeys(b) {
		return // no panic is all that is asked
	}
	var o oracle
	oerr := json.Unmarshal(b, &o)
	if (oerr == nil) != (err == nil) {
		t.Fatalf("encoding/json: %v; decoder: %v\n%q", oerr, err, b)
	}
	if oerr != nil {
		return
	}
	var want []activeTarget
	for _, a := range o.Data.ActiveTargets {
		want = append(want, activeTarget{Address: a.DiscoveredLabels.Address, ScrapePool: a.ScrapePool, Health: a.Health,
			LastError: a.LastError, LastScrape: a.LastScrape})
	}
	if ans != (answer{o.Status, o.ErrorType, o.Error}) || !reflect.DeepEqual(got, want) {
		t.Fatalf("decoder %+v %+v\nencoding/json %+v %+v\n%q", ans, got, o, want, b)
	}
}

var decodeSeeds = []string{
	`{"status":"success","data":{"activeTargets":[{"discoveredLabels":{"__address__":"h1:9100","job":"node"},` +
		`"labels":{"instance":"x"},"scrapePool":"node","scrapeUrl":"http://h1:9100/metrics","lastError":"",` +
		`"lastScrape":"2026-11-25T12:00:00.123456789Z","lastScrapeDuration":0.002,"health":"up"},` +
		`{"discoveredLabels":{"__address__":"h2:9100"},"scrapePool":"node","health":"up","lastScrape":"2026-11-25T12:00:00+01:00"},` +
		`{"discoveredLabels":{"__address__":"h3:9100"},"scrapePool":"node","health":"down","lastError":"dial: \"refused\"\n"}],` +
		`"droppedTargets":[{"discoveredLabels":{"a":"b"}}],"droppedTargetCounts":{"node":3}}}`,
	`{"status":"error","errorType":"bad_data","error":"invalid parameter \u0022state\u0022"}`,
	`null`,
	`{"data":null,"status":"success"}`,
	`{"data":{"activeTargets":[null,{"health":null,"lastScrape":null,"discoveredLabels":null}]}}`,
	` { "status" : "success" , "data" : { "activeTargets" : [ ] , "x" : [1, -2.5e3, true, false, null, {"y": [[]]}] } } `,
	`{"status":5}`,
	`{"data":{"activeTargets":[{"lastScrape":"yesterday"}]}}`,
	`{"status":"succ\u00e9ss","data":{"activeTargets":[{"health":"\ud83d\ude00","scrapePool":"p\\q"}]}}`,
	`{"status":"success"} x`,
	`{"status":"\xff"}`,
	`[1,2]`,
}

func TestDecodeAnswerMatchesEncodingJSON(t *testing.T) {
	for _, s := range decodeSeeds {
		decodeBoth(t, []byte(s))
	}
}

func FuzzDecodeAnswer(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(decodeBoth)
}

// BenchmarkDecodeAnswer decodes a 10k-target answer: the decoder against
// encoding/json into the same fields.
func BenchmarkDecodeAnswer(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"status":"success","data":{"droppedTargets":[],"activeTargets":[`)
	for i := range 10_000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`{"discoveredLabels":{"__address__":"10.1.2.3:9100","__metrics_path__":"/metrics","__scheme__":"http",` +
			`"__scrape_interval__":"15s","__scrape_timeout__":"10s","job":"node","team":"bench"},"labels":{"instance":"10.1.2.3:9100",` +
			`"job":"node","team":"bench"},"scrapePool":"node","scrapeUrl":"http://10.1.2.3:9100/metrics","globalUrl":"http://10.1.2.3:9100/metrics",` +
			`"lastError":"","lastScrape":"2026-11-25T12:00:00.123456789Z","lastScrapeDuration":0.0021,"health":"up",` +
			`"scrapeInterval":"15s","scrapeTimeout":"10s"}`)
	}
	sb.WriteString(`]}}`)
	body := []byte(sb.String())
	b.Run("decoder", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			n := 0
			if _, err := decodeAnswer(body, func(*activeTarget) { n++ }, func() {}); err != nil || n != 10_000 {
				b.Fatal(err, n)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_000, "ns/target")
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var o oracle
			if err := json.Unmarshal(body, &o); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_000, "ns/target")
	})
}

// BenchmarkCompare judges 1M targets on 100 collectors from reads already
// made: the audit's own work besides reading and decoding.
func BenchmarkCompare(b *testing.B) {
	b.Run("moved-unknown", func(b *testing.B) { benchCompare(b, 0) })
	b.Run("same-generation", func(b *testing.B) { benchCompare(b, 7) })
}

func benchCompare(b *testing.B, generation uint64) {
	const collectors, per = 100, 10_000
	asg := map[string][]*targetgroup.Group{}
	seen := map[string]map[string]Scrape{}
	for c := range collectors {
		id := fmt.Sprintf("c%03d", c)
		g := &targetgroup.Group{}
		got := make(map[string]Scrape, per)
		for i := range per {
			addr := fmt.Sprintf("10.%d.%d.%d:9100", c, i/250, i%250)
			g.Targets = append(g.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(addr)})
			got[addr] = Scrape{Collector: id, Health: healthUp}
		}
		asg[id] = []*targetgroup.Group{g}
		seen[id] = got
	}
	a, _ := New(Options{Grace: 1})
	st := a.state("node")
	compact := tstore.FromAllOf(asg)
	var rep *Report
	for b.Loop() {
		rep = &Report{Job: "node", Time: time.Now(), Counts: map[State]int{}, seen: seen}
		a.compare(rep, st, compact, generation)
	}
	if rep.Counts[OK] != collectors*per {
		b.Fatalf("%+v", rep.Counts)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(collectors*per), "ns/target")
}
