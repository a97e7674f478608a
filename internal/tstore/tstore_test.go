package tstore

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// randomGroup is a group whose targets are now and then more than their
// address, or have none.
func randomGroup(rng *rand.Rand) *targetgroup.Group {
	g := &targetgroup.Group{Source: fmt.Sprint("s", rng.IntN(3)), Labels: model.LabelSet{"env": "prod"}}
	for i := range rng.IntN(8) {
		t := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:%d", i, rng.IntN(3)))}
		switch rng.IntN(6) {
		case 0:
			t["zone"] = "a"
		case 1:
			delete(t, model.AddressLabel)
			t["x"] = "no address"
		}
		g.Targets = append(g.Targets, t)
	}
	return g
}

// From and Group are inverses; a target that is its address alone costs a
// string, any other keeps its very set.
func TestFromAndBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		g := randomGroup(rng)
		c := From(g)
		if back := c.Group(); !reflect.DeepEqual(back.Targets, g.Targets) && len(g.Targets) > 0 || back.Source != g.Source {
			t.Fatalf("%v: back as %v", g, back)
		}
		for i, ts := range g.Targets {
			for _, n := range []model.LabelName{model.AddressLabel, "zone", "x", "env"} {
				want, wok := ts[n]
				if v, ok := c.Label(i, n); v != want || ok != wok {
					t.Fatalf("%v target %d: label %s %q %v, want %q %v", g, i, n, v, ok, want, wok)
				}
			}
			alone := len(ts) == 1 && ts[model.AddressLabel] != ""
			if own := c.OwnOf(i); alone != (own == nil) || own != nil && reflect.ValueOf(own).Pointer() != reflect.ValueOf(ts).Pointer() {
				t.Fatalf("%v target %d: own %v", g, i, own)
			}
		}
		if Count([]*Group{c, nil}) != len(g.Targets) {
			t.Fatal("Count")
		}
	}
	if From(nil) != nil || (*Group)(nil).Group() != nil || FromAll(nil) != nil || All(nil) != nil {
		t.Fatal("nil in, nil out")
	}
}

// With and Append copy targets with their own sets, whatever their place.
func TestWithAndAppend(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		g := From(randomGroup(rng))
		var idx []int
		for i := range g.Targets {
			if rng.IntN(2) == 0 {
				idx = append(idx, i)
			}
		}
		w := g.With(idx)
		a := &Group{Source: g.Source, Labels: g.Labels}
		for _, i := range idx {
			a.Append(g, i)
		}
		for _, x := range []*Group{w, a} {
			if x.Len() != len(idx) {
				t.Fatalf("%d targets, want %d", x.Len(), len(idx))
			}
			for k, i := range idx {
				if !reflect.DeepEqual(x.Target(k), g.Target(i)) {
					t.Fatalf("target %d: %v, want %v", k, x.Target(k), g.Target(i))
				}
			}
		}
	}
}

// SameTargets is identity: the very strings and sets, never equal copies.
func TestSameTargets(t *testing.T) {
	g := From(&targetgroup.Group{Targets: []model.LabelSet{{model.AddressLabel: "h1:80"}, {model.AddressLabel: "h2:80", "a": "b"}}})
	shared := &Group{Targets: append([]string(nil), g.Targets...), Own: append([]model.LabelSet(nil), g.Own...)}
	copied := &Group{Targets: []string{strings.Clone(g.Targets[0]), g.Targets[1]}, Own: g.Own}
	other := &Group{Targets: []string{g.Targets[0], g.Targets[1]}, Own: []model.LabelSet{nil, {model.AddressLabel: "h2:80", "a": "b"}}}
	short := &Group{Targets: []string{g.Targets[0][:2], g.Targets[1]}, Own: g.Own}
	if !SameTargets(g, g) || !SameTargets(g, shared) {
		t.Fatal("the same targets are not the same")
	}
	for name, x := range map[string]*Group{"a copied address": copied, "a copied set": other, "a prefix": short, "fewer": g.With([]int{0})} {
		if SameTargets(g, x) {
			t.Fatalf("%s: same", name)
		}
	}
}
