package targets

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// The fingerprint does not depend on the order of groups or targets, and a
// changed label, target or source changes it.
func TestResultFingerprint(t *testing.T) {
	fp := func(gs []*targetgroup.Group) uint64 {
		r, err := NewRegistry(RegistryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Register("j", Static(gs), JobOptions{}); err != nil {
			t.Fatal(err)
		}
		res, err := r.Targets(context.Background(), "j")
		if err != nil {
			t.Fatal(err)
		}
		return res.Fingerprint
	}
	g := func(src, env string, addrs ...string) *targetgroup.Group {
		out := &targetgroup.Group{Source: src, Labels: model.LabelSet{"env": model.LabelValue(env)}}
		for _, a := range addrs {
			out.Targets = append(out.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
		}
		return out
	}
	base := fp([]*targetgroup.Group{g("a", "prod", "h1:1", "h2:1"), g("b", "dev", "h3:1")})
	if base == 0 || fp([]*targetgroup.Group{g("b", "dev", "h3:1"), g("a", "prod", "h2:1", "h1:1")}) != base {
		t.Fatal("the fingerprint depends on the order")
	}
	for name, gs := range map[string][]*targetgroup.Group{
		"group label": {g("a", "staging", "h1:1", "h2:1"), g("b", "dev", "h3:1")},
		"target":      {g("a", "prod", "h1:1", "h2:2"), g("b", "dev", "h3:1")},
		"source":      {g("a2", "prod", "h1:1", "h2:1"), g("b", "dev", "h3:1")},
		"one fewer":   {g("a", "prod", "h1:1"), g("b", "dev", "h3:1")},
		"moved":       {g("a", "prod", "h1:1"), g("b", "dev", "h3:1", "h2:1")},
	} {
		if fp(gs) == base {
			t.Errorf("%s changed, the fingerprint did not", name)
		}
	}
}

// A fetch that finds the targets as they were keeps the groups in hand
// (what was built from them stays valid for them); a change replaces them.
func TestUnchangedFetchKeepsTheGroups(t *testing.T) {
	addrs := []string{"h1:1", "h2:1"}
	r, _ := newReg(t, RegistryOptions{})
	r.Register("j", Func(func(context.Context) ([]*targetgroup.Group, error) {
		return []*targetgroup.Group{group("a", addrs...)}, nil // new maps every time
	}), JobOptions{})
	first, err := r.Targets(context.Background(), "j")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := r.Targets(context.Background(), "j")
	if again.Groups[0] != first.Groups[0] {
		t.Fatal("the same targets read again replaced the groups")
	}
	addrs = []string{"h1:1", "h3:1"}
	changed, _ := r.Targets(context.Background(), "j")
	if changed.Groups[0] == first.Groups[0] || changed.Fingerprint == first.Fingerprint ||
		changed.Groups[0].Targets[1] != "h3:1" {
		t.Fatalf("a change kept the old groups: %v", changed.Groups[0])
	}
}

// A provider that answers in groups (not the compact form) and gives back a
// group of its last answer gets back the compact group made then, whose
// check stands; a new group, even an equal one, is made and checked anew.
func TestRegistryKeepsTheCompactFormOfAGroupGivenBack(t *testing.T) {
	kept := &targetgroup.Group{Source: "a", Targets: []model.LabelSet{{model.AddressLabel: "h1:80"}}}
	n := 0
	fresh := func() *targetgroup.Group { // another target each time, so that the answer changes
		n++
		return &targetgroup.Group{Source: "b", Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:80", n))}}}
	}
	r, _ := NewRegistry(RegistryOptions{})
	r.Register("j", Func(func(context.Context) ([]*targetgroup.Group, error) {
		return []*targetgroup.Group{kept, fresh()}, nil
	}), JobOptions{})
	first, err := r.Targets(context.Background(), "j")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := r.Targets(context.Background(), "j")
	if len(again.Groups) != 2 || again.Groups[0] != first.Groups[0] || again.Groups[1] == first.Groups[1] {
		t.Fatalf("groups %v after %v: want the kept group's compact form again, the fresh one made anew", again.Groups, first.Groups)
	}
	if again.Groups[0].Own != nil || again.Groups[1].Targets[0] != "h2:80" || first.Groups[1].Targets[0] != "h1:80" {
		t.Fatalf("compact form: %+v %+v", again.Groups[0], again.Groups[1])
	}
}
