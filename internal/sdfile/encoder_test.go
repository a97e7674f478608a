package sdfile

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// An Encoder writes what Marshal writes, byte for byte, call after call,
// while groups keep, lose, gain, reorder and share their label sets, change
// their labels, repeat a source and labels, or are nil or empty; an error
// is Marshal's and leaves the Encoder as it was.
func TestEncoderIsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var sets []model.LabelSet // the label sets groups draw from, shared
	for i := range 200 {
		ls := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.%d.%d:9100", i/50, i%50))}
		if i%7 == 0 {
			ls["rack"] = model.LabelValue(fmt.Sprint("r", i%3))
		}
		sets = append(sets, ls)
	}
	labelMaps := []model.LabelSet{nil, {"env": "prod"}, {"env": "dev", "team": "a"}}
	for _, f := range []Format{JSON, YAML} {
		enc := &Encoder{Format: f}
		var last []byte
		groups := make([]*targetgroup.Group, 6)
		for step := range 400 {
			for i := range groups {
				switch rng.IntN(8) {
				case 0: // a new group
					g := &targetgroup.Group{Source: fmt.Sprint("s", rng.IntN(3)), Labels: labelMaps[rng.IntN(len(labelMaps))]}
					for range rng.IntN(12) {
						g.Targets = append(g.Targets, sets[rng.IntN(len(sets))])
					}
					groups[i] = g
				case 1:
					groups[i] = nil
				case 2: // the same group, one label set replaced: a copy of the group, as Assign makes
					if g := groups[i]; g != nil && len(g.Targets) > 0 {
						c := *g
						c.Targets = slices.Clone(g.Targets)
						c.Targets[rng.IntN(len(c.Targets))] = sets[rng.IntN(len(sets))]
						groups[i] = &c
					}
				case 3: // the same label sets in a new slice
					if g := groups[i]; g != nil {
						c := *g
						c.Targets = slices.Clone(g.Targets)
						groups[i] = &c
					}
				case 4: // another labels map of the same content
					if g := groups[i]; g != nil && g.Labels != nil {
						c := *g
						c.Labels = model.LabelSet{}
						for k, v := range g.Labels {
							c.Labels[k] = v
						}
						groups[i] = &c
					}
				}
			}
			if rng.IntN(10) == 0 {
				rng.Shuffle(len(groups), func(a, b int) { groups[a], groups[b] = groups[b], groups[a] })
			}
			want, werr := Marshal(groups, f)
			handed := last // the file as written; now and then not (changed by hand, or lost)
			switch rng.IntN(10) {
			case 0:
				handed = nil
			case 1:
				handed = bytes.Replace(slices.Clone(last), []byte("10.0."), []byte("10.9."), 1)
			}
			got, gerr := enc.Marshal(tstore.FromAll(groups), handed)
			if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
				t.Fatalf("%s step %d: Encoder\n%s (%v)\nMarshal\n%s (%v)", f, step, got, gerr, want, werr)
			}
			last = got
		}
		// A bad label: Marshal's error, and the next call is right again.
		bad := &targetgroup.Group{Source: "bad", Labels: model.LabelSet{"0bad": "x"}, Targets: sets[:2]}
		_, werr := Marshal(append(slices.Clone(groups), bad), f)
		if _, err := enc.Marshal(tstore.FromAll(append(slices.Clone(groups), bad)), last); err == nil || err.Error() != werr.Error() {
			t.Fatalf("%s: a bad label: %v, want %v", f, err, werr)
		}
		want, _ := Marshal(groups, f)
		if got, _ := enc.Marshal(tstore.FromAll(groups), last); !bytes.Equal(got, want) {
			t.Fatalf("%s: after an error:\n%s\nwant\n%s", f, got, want)
		}
	}
	if _, err := (&Encoder{Format: "toml"}).Marshal(nil, nil); err == nil {
		t.Fatal("an unknown format was accepted")
	}
}
