package sdfile

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/common/model"

	"github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/tstore"
)

func source(i int) string { return fmt.Sprintf("f.json:%d", i) }

// sameAsParse fails unless ParseReusing's answer for b, given prev, is
// Parse's (with sources set), error for error.
func sameAsParse(t *testing.T, b []byte, prev *Parsed) ([]*tstore.Group, *Parsed) {
	t.Helper()
	want, werr := Parse(b, JSON)
	for i, g := range want {
		if g != nil {
			g.Source = source(i)
		}
	}
	got, next, err := ParseReusing(b, prev, source)
	if fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Fatalf("%q: error %v, Parse's %v", b, err, werr)
	}
	if err == nil && !reflect.DeepEqual(tstore.All(got), want) {
		t.Fatalf("%q: got %v, Parse gives %v", b, tstore.All(got), want)
	}
	if err == nil && next == nil {
		t.Fatalf("%q: no Parsed for the next call", b)
	}
	return got, next
}

// ParseReusing gives back the groups (and their label sets) whose text did
// not change, a new group sharing them where only the index changed, and
// parses the rest, always agreeing with Parse.
func TestParseReusingGivesBackUnchangedGroups(t *testing.T) {
	g := func(label string, addrs ...string) string {
		return fmt.Sprintf(`{"labels": {"team": %q}, "targets": ["%s"]}`, label, strings.Join(addrs, `", "`))
	}
	a, b, c := g("a", "10.0.0.1:80", "10.0.0.2:80"), g("b", "10.0.1.1:80"), g("c", "10.0.2.1:80")
	first, p1 := sameAsParse(t, []byte("["+a+",\n"+b+",\n"+c+"]"), nil)

	// b changes: a and c are the very groups of the first parse.
	b2 := g("b", "10.0.1.1:80", "10.0.1.2:80")
	second, p2 := sameAsParse(t, []byte("[ "+a+", "+b2+", "+c+" ]"), p1)
	if second[0] != first[0] || second[2] != first[2] {
		t.Fatal("unchanged groups were parsed again")
	}
	if second[1] == first[1] || tstore.Identity(second[1].Targets[0]) == tstore.Identity(first[1].Targets[0]) {
		t.Fatal("the changed group shares the old one's label sets")
	}

	// A group inserted first: the others' indices, so sources, change; their
	// label sets stay, the groups handed out before are not modified.
	d := g("d", "10.0.3.1:80")
	third, _ := sameAsParse(t, []byte("["+d+","+a+","+b2+","+c+"]"), p2)
	if third[1] == second[0] || tstore.Identity(third[1].Targets[0]) != tstore.Identity(second[0].Targets[0]) ||
		labels.Identity(third[1].Labels) != labels.Identity(second[0].Labels) {
		t.Fatal("a group that moved should be a new group sharing its labels and label sets")
	}
	if second[0].Source != source(0) || third[1].Source != source(1) {
		t.Fatalf("sources: was %q, now %q", second[0].Source, third[1].Source)
	}

	// A text twice in one file: the two groups share no label set.
	twice, p4 := sameAsParse(t, []byte("["+a+","+a+"]"), p2)
	if tstore.Identity(twice[0].Targets[0]) == tstore.Identity(twice[1].Targets[0]) {
		t.Fatal("two groups of one parse share a label set")
	}
	again, _ := sameAsParse(t, []byte("["+a+","+a+"]"), p4)
	if tstore.Identity(again[0].Targets[0]) == tstore.Identity(again[1].Targets[0]) {
		t.Fatal("two groups of one parse share a label set")
	}

	// Nulls, an empty list, a top-level null, and every error are Parse's.
	for _, s := range []string{"[null, " + a + "]", "[]", "null", " [ ] ", `[{"targets": ["x:1"], "oops": 1}]`,
		`[{"targets": [""]}]`, `[{"targets": ["x:1"]}`, `{"targets": ["x:1"]}`, "", `[{"targets": "x"}]`,
		`[{"labels": {"a": 1}, "targets": ["x:1"]}]`, "[" + a + "] trailing",
		// The forms the hand-read path takes, and those it leaves to encoding/json.
		`[{"labels": {"b": "2", "a": ""}, "targets": ["x:1", "y:2"]}]`, "[ {\n\t\"targets\" : [ \"x:1\" ] ,\"labels\":{ } } ]",
		`[{}]`, `[{"targets": []}]`, `[{"labels": {}}]`, `[{"Targets": ["x:1"]}]`, `[{"targets": ["x\u003a1"]}]`,
		`[{"targets": ["x:1"], "targets": ["y:2"]}]`, `[{"labels": {"a": "1", "a": "2"}, "targets": ["x:1"]}]`,
		`[{"labels": {"a-b": "1"}, "targets": ["x:1"]}]`, `[{"labels": {"": "1"}, "targets": ["x:1"]}]`,
		`[{"labels": {"é": "1"}, "targets": ["x:1"]}]`, `[{"labels": {"a": "é"}, "targets": ["é:1"]}]`,
		`[{"targets": null}]`, `[{"labels": null, "targets": ["x:1"]}]`, `[{"targets": ["x:1", null]}]`,
		`[{"targets": ["x:1"], "labels": {"a": "1"}}, {"targets": ["x:1"]}]`} {
		sameAsParse(t, []byte(s), p2)
	}
	// After an error, the Parsed of before still serves.
	if _, _, err := ParseReusing([]byte("[oops"), p2, source); err == nil {
		t.Fatal("malformed JSON accepted")
	}
	if got, _ := sameAsParse(t, []byte("["+a+"]"), p2); got[0] != first[0] {
		t.Fatal("an unchanged group was parsed again")
	}
}

// FuzzParseReusing: whatever two texts, parsing the second given what the
// first gave agrees with Parse.
func FuzzParseReusing(f *testing.F) {
	a := `{"labels": {"team": "a"}, "targets": ["10.0.0.1:80"]}`
	b := `{"targets": ["10.0.0.2:80", "10.0.0.3:80"]}`
	f.Add("["+a+","+b+"]", "["+b+","+a+"]")
	f.Add("["+a+"]", "["+a+","+a+",null]")
	f.Add("null", "[]")
	f.Add("["+a+"]", `[{"targets": [""]}]`)
	f.Add("[]", `[{"labels": {"a": "1", "a": "2"}, "targets": ["x:1"]}, {"TARGETS": ["y"]}]`)
	f.Add("[]", "[ {\n\"labels\" : {\"a\":\"\\u0041\"}, \"targets\":[\"x:1\" ,\"y:2\"]} ]")
	f.Fuzz(func(t *testing.T, first, second string) {
		gs, p, _ := ParseReusing([]byte(first), nil, source)
		sameAsParse(t, []byte(second), p)
		knownAsParse(t, []byte(second), gs)
	})
}

// targetsOf is g's addresses; none for a null group.
func targetsOf(g *tstore.Group) []string {
	if g == nil {
		return nil
	}
	return g.Targets
}

// knownAsParse fails unless ParseCompact's answer for b, knowing the
// addresses of the groups in from, is Parse's, error for error, and every
// address it knows is the very string known.
func knownAsParse(t *testing.T, b []byte, from []*tstore.Group) {
	t.Helper()
	known := map[string]string{}
	sets := map[uint64][]model.LabelSet{}
	for _, g := range from {
		for _, a := range targetsOf(g) {
			known[a] = a
		}
		if g != nil {
			_, h := labels.CheckHash(g.Labels)
			sets[h] = append(sets[h], g.Labels)
		}
	}
	want, werr := Parse(b, JSON)
	got, err := ParseCompact(b, JSON, &Known{Addr: func(a string) string { return known[a] },
		Labels: func(h uint64) []model.LabelSet { return sets[h] }})
	if fmt.Sprint(err) != fmt.Sprint(werr) {
		t.Fatalf("%q: error %v, Parse's %v", b, err, werr)
	}
	if err == nil && !reflect.DeepEqual(tstore.All(got), want) {
		t.Fatalf("%q: got %v, Parse gives %v", b, tstore.All(got), want)
	}
	for _, g := range got {
		for i, a := range targetsOf(g) {
			if k, ok := known[a]; ok && g.OwnOf(i) == nil && tstore.Identity(k) != tstore.Identity(a) && simpleText(b) {
				t.Fatalf("%q: address %q is a new string, not the one known", b, a)
			}
		}
	}
}

// simpleText reports whether every group of b is in the form read by hand.
func simpleText(b []byte) bool {
	var raws []json.RawMessage
	if json.Unmarshal(b, &raws) != nil {
		return false
	}
	for _, r := range raws {
		if _, ok := simpleGroup(r, nil); !ok && string(r) != "null" {
			return false
		}
	}
	return true
}

// ParseCompact holds a known address as the very string known.
func TestParseCompactSharesKnownAddresses(t *testing.T) {
	known := strings.Clone("10.0.0.1:80")
	env := model.LabelSet{"env": "a"}
	_, h := labels.CheckHash(env)
	gs, err := ParseCompact([]byte(`[{"labels": {"env": "a"}, "targets": ["10.0.0.1:80", "10.0.0.2:80"]}]`), JSON,
		&Known{Addr: func(a string) string {
			if a == known {
				return known
			}
			return ""
		}, Labels: func(x uint64) []model.LabelSet {
			if x == h {
				return []model.LabelSet{{"env": "b"}, env}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	ts := gs[0].Targets
	if len(ts) != 2 || tstore.Identity(ts[0]) != tstore.Identity(known) || ts[1] != "10.0.0.2:80" || gs[0].Own != nil {
		t.Fatalf("targets %v: want the known string first, then a new one", ts)
	}
	if labels.Identity(gs[0].Labels) != labels.Identity(env) {
		t.Fatalf("labels %v: want the known map", gs[0].Labels)
	}
	if _, err := ParseCompact([]byte(`[{"targets": [""]}]`), JSON, nil); err == nil || !strings.Contains(err.Error(), "empty address") {
		t.Fatalf("an empty address: %v, want Parse's error", err)
	}
}

// The common form of a group is read by hand; the rest is left to
// encoding/json (what it gives is checked against Parse above).
func TestSimpleGroupTakesTheCommonForm(t *testing.T) {
	for s, want := range map[string]bool{
		`{"labels": {"env": "prod", "team": "a"}, "targets": ["10.0.0.1:9100", "10.0.0.2:9100"]}`: true,
		"{ \"targets\" : [ ] }":                  true,
		`{"targets": ["x\u003a1"]}`:              false, // an escape
		`{"Targets": ["x:1"]}`:                   false, // encoding/json matches names without case
		`{"targets": ["x:1"], "oops": 1}`:        false,
		`{"labels": {"a.b": "1"}}`:               false, // a name not every version accepts
		`{"targets": ["x:1"], "targets": ["y"]}`: false,
	} {
		if _, ok := simpleGroup([]byte(s), nil); ok != want {
			t.Errorf("%s: simple %v, want %v", s, ok, want)
		}
	}
}
