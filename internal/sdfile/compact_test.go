package sdfile

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// reference renders groups of label sets as the file_sd writer did before
// targets were held in the compact form: per group, the targets that are
// their address alone (once promshard's own labels are left out), then one
// entry per set of own labels, in the order of their text, each with the
// group's labels under its own.
func reference(groups []*targetgroup.Group) []entry {
	var out []entry
	clean := func(ls model.LabelSet) model.LabelSet {
		c := maps.Clone(ls)
		maps.DeleteFunc(c, func(k model.LabelName, _ model.LabelValue) bool { return strings.HasPrefix(string(k), ReservedPrefix) })
		return c
	}
	for _, g := range groups {
		if g == nil || len(g.Targets) == 0 {
			continue
		}
		base := clean(g.Labels)
		if base == nil {
			base = model.LabelSet{}
		}
		var plain []string
		own := map[string]*entry{}
		for _, t := range g.Targets {
			rest := clean(t)
			delete(rest, model.AddressLabel)
			if len(rest) == 0 {
				plain = append(plain, string(t[model.AddressLabel]))
				continue
			}
			k := rest.String()
			if own[k] == nil {
				merged := maps.Clone(base)
				maps.Copy(merged, rest)
				own[k] = &entry{Labels: merged}
			}
			own[k].Targets = append(own[k].Targets, string(t[model.AddressLabel]))
		}
		if len(plain) > 0 {
			out = append(out, entry{Targets: plain, Labels: base})
		}
		for _, k := range slices.Sorted(maps.Keys(own)) {
			out = append(out, *own[k])
		}
	}
	if out == nil {
		out = []entry{}
	}
	return out
}

// Written from the compact form, a file is byte for byte what the writer
// of label sets wrote, over random pools: targets with labels of their own,
// promshard's reserved labels on targets and groups, empty and nil groups,
// both formats.
func TestCompactWritesWhatLabelSetsWrote(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 3))
	for round := range 400 {
		var groups []*targetgroup.Group
		for g := range rng.IntN(6) {
			if rng.IntN(10) == 0 {
				groups = append(groups, nil)
				continue
			}
			grp := &targetgroup.Group{Source: fmt.Sprint("s", g), Labels: model.LabelSet{"env": model.LabelValue(fmt.Sprint("e", rng.IntN(2)))}}
			if rng.IntN(4) == 0 {
				grp.Labels[ReservedPrefix+"pin__"] = "c1"
			}
			for i := range rng.IntN(12) {
				ts := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.0.%d.%d:9100", g, i))}
				switch rng.IntN(8) {
				case 0:
					ts["zone"] = model.LabelValue(fmt.Sprint("z", rng.IntN(2)))
				case 1:
					ts[ReservedPrefix+"every__"] = "true" // left out: the target joins the plain ones
				case 2:
					ts["env"] = "own" // its own wins over the group's
				}
				grp.Targets = append(grp.Targets, ts)
			}
			groups = append(groups, grp)
		}
		for _, f := range []Format{JSON, YAML} {
			got, err := MarshalCompact(tstore.FromAll(groups), f)
			if err != nil {
				t.Fatal(err)
			}
			want := marshalJSON(reference(groups))
			if f == YAML {
				want = marshalYAML(reference(groups))
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d, %s:\n%s\nwant\n%s", round, f, got, want)
			}
			var enc Encoder
			enc.Format = f
			if again, _ := enc.Marshal(tstore.FromAll(groups), nil); !bytes.Equal(again, want) {
				t.Fatalf("round %d, %s, Encoder:\n%s\nwant\n%s", round, f, again, want)
			}
		}
	}
}
