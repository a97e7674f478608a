package sdfile

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// marshalJSON writes what json.MarshalIndent writes, byte for byte, for
// strings of every kind: plain, quotes, backslashes, HTML characters,
// control characters, U+2028, invalid UTF-8.
func TestMarshalJSONIsMarshalIndent(t *testing.T) {
	pieces := []string{"10.0.0.1:9100", "a\"b", `c\d`, "<x>&y", "tab\there", "nl\n", "\b\f\r", "\x01\x1f", "\u2028\u2029",
		"é", "\xff\xfe", "", "zone-a", " "}
	rng := rand.New(rand.NewPCG(1, 1))
	str := func() string {
		var s string
		for range rng.IntN(3) + 1 {
			s += pieces[rng.IntN(len(pieces))]
		}
		return s
	}
	check := func(entries []entry) {
		t.Helper()
		want, err := json.MarshalIndent(entries, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		if got := marshalJSON(entries); !bytes.Equal(got, want) {
			t.Fatalf("marshalJSON\n%s\njson.MarshalIndent\n%s", got, want)
		}
	}
	check([]entry{})
	check([]entry{{Targets: []string{}}})
	for range 500 {
		var entries []entry
		for range rng.IntN(4) + 1 {
			e := entry{}
			for range rng.IntN(4) {
				e.Targets = append(e.Targets, str())
			}
			if rng.IntN(3) > 0 {
				e.Labels = model.LabelSet{}
				for range rng.IntN(4) {
					e.Labels[model.LabelName(str())] = model.LabelValue(str())
				}
			}
			entries = append(entries, e)
		}
		check(entries)
	}
}

// promshard's own labels (__promshard_*) are never written, on a target or
// on its group, and a target left with only its address joins the plain
// ones.
func TestReservedLabelsAreNotWritten(t *testing.T) {
	g := &targetgroup.Group{Source: "s", Labels: model.LabelSet{"env": "prod", ReservedPrefix + "every__": "true"}, Targets: []model.LabelSet{
		{model.AddressLabel: "a:1"},
		{model.AddressLabel: "b:1", ReservedPrefix + "pin__": "c1"},
		{model.AddressLabel: "c:1", "team": "x", ReservedPrefix + "replicas__": "2"},
	}}
	b, err := Marshal([]*targetgroup.Group{g}, JSON)
	if err != nil {
		t.Fatal(err)
	}
	want := `[
  {
    "targets": [
      "a:1",
      "b:1"
    ],
    "labels": {
      "env": "prod"
    }
  },
  {
    "targets": [
      "c:1"
    ],
    "labels": {
      "env": "prod",
      "team": "x"
    }
  }
]
`
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	if !bytes.Contains(b, []byte("prod")) || bytes.Contains(b, []byte("__promshard")) {
		t.Fatal(string(b))
	}
}
