package targets

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/common/model"
)

// Seeds: valid files, the malformed and truncated ones the reliability
// probes used, and odd labels.
var fileSDSeeds = []string{
	`[{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "prod"}}]`,
	`[{"targets": ["h1:9100"]}, null, {"targets": []}]`,
	`[{"targets": ["h1:9100"], "labels": {"env": "pr`,
	`[{"targets": [""]}]`,
	`[{"targets": ["h1:9100"], "labels": {"0bad": "x"}}]`,
	`[{"targets": ["h1:9100"], "extra": 1}]`,
	"- targets: [h1:9100, h2:9100]\n  labels: {env: prod}\n",
	"- targets: [h1:9100, h2:91",
	"- targets:\n  - h1:9100\n  labels: {a: [1]}\n",
	"{}", "[]", "null", "",
}

// ParseFileSD never panics, and whatever it accepts validates without
// panicking and keeps only groups whose targets all have an address.
func FuzzParseFileSD(f *testing.F) {
	for _, s := range fileSDSeeds {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, isJSON bool) {
		gs, err := ParseFileSD(b, isJSON)
		if err != nil {
			return
		}
		valid, _ := Validate("fuzz", gs)
		for _, g := range valid {
			for _, tg := range g.Targets {
				if tg[model.AddressLabel] == "" {
					t.Fatalf("a valid group holds a target without address: %v", g)
				}
			}
		}
	})
}

// roundTrip answers every request with the fuzzed body.
type roundTrip struct {
	body        []byte
	contentType string
}

func (r roundTrip) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {r.contentType}},
		Body: io.NopCloser(bytes.NewReader(r.body)), Request: req}, nil
}

// The http_sd provider never panics on any answer, and names every group it
// returns by the URL.
func FuzzHTTPBody(f *testing.F) {
	for _, s := range fileSDSeeds {
		f.Add([]byte(s), "application/json")
	}
	f.Add([]byte(`[]`), "text/html")
	f.Add([]byte(`[]`), "application/json; charset=utf-8")
	f.Fuzz(func(t *testing.T, b []byte, ct string) {
		h, err := NewHTTPSD(HTTPSDOptions{URL: "http://sd.example/targets", Client: &http.Client{Transport: roundTrip{b, ct}}})
		if err != nil {
			t.Fatal(err)
		}
		gs, err := h.Targets(context.Background())
		if err != nil {
			return
		}
		for _, g := range gs {
			if g != nil && g.Source == "" {
				t.Fatalf("a group without source: %v", g)
			}
		}
	})
}
