package filesd

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"
)

// Whatever Marshal accepts, Prometheus' own file_sd parsing (targetgroup's
// JSON and YAML decoders, in strict YAML) reads back to exactly the same
// labels for every target; whatever it rejects is a label Prometheus would
// refuse.
func FuzzMarshalRoundTrip(f *testing.F) {
	f.Add("h1:9100", "env", "prod", "rack", "r1", false)
	f.Add("h1:9100", "env", "a\"b\\c\n", "__meta_x", "", true)
	f.Add("[::1]:9100", "0bad", "x", "rack", "r:1 # not a comment", false)
	f.Add("h:1", "env", "yes", "n", "null", true)
	f.Add("h:1", "a", "- item", "b", "{x: 1}", false)
	f.Add("h:1", "a", "\xff\xfe", "b", "\t", true)
	f.Fuzz(func(t *testing.T, addr, gname, gvalue, tname, tvalue string, asYAML bool) {
		if addr == "" {
			return
		}
		target := model.LabelSet{model.AddressLabel: model.LabelValue(addr)}
		if tname != "" {
			target[model.LabelName(tname)] = model.LabelValue(tvalue)
		}
		groups := []*targetgroup.Group{{Labels: model.LabelSet{model.LabelName(gname): model.LabelValue(gvalue)},
			Targets: []model.LabelSet{target}}}
		format := JSON
		if asYAML {
			format = YAML
		}
		b, err := Marshal(groups, format)
		if err != nil {
			return
		}
		var back []*targetgroup.Group
		if asYAML {
			err = yaml.UnmarshalStrict(b, &back)
		} else {
			err = json.Unmarshal(b, &back)
		}
		if err != nil {
			t.Fatalf("Prometheus cannot read what Marshal wrote: %v\n%s", err, b)
		}
		want := flatten(groups)
		if got := flatten(back); !slices.Equal(got, want) {
			t.Fatalf("round trip changed labels:\n got %v\nwant %v\nfile %s", got, want, b)
		}
	})
}
