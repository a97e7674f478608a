package filesd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// Dir.Update, Handler.Update and MemberFile.Update report exactly the
// collectors whose output changed.
func TestUpdateReportsChangedMembers(t *testing.T) {
	ctx := context.Background()
	gs := sample()
	d, err := NewDir(DirOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{}
	for _, u := range []interface {
		Update(context.Context, map[string][]*targetgroup.Group) ([]string, error)
	}{d, h} {
		steps := []struct {
			groups map[string][]*targetgroup.Group
			want   []string
		}{
			{map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:]}, []string{"a", "b"}},
			{map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:]}, nil},
			{map[string][]*targetgroup.Group{"a": gs, "b": {}}, []string{"a", "b"}},
			{map[string][]*targetgroup.Group{"a": gs}, []string{"b"}}, // b left
		}
		for i, s := range steps {
			got, err := u.Update(ctx, s.groups)
			if err != nil || !slices.Equal(got, s.want) {
				t.Fatalf("%T step %d: changed %v (%v), want %v", u, i, got, err, s.want)
			}
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/b", nil))
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "[]" { // not 404: Prometheus would keep its old list
		t.Fatalf("http_sd of a collector that left: %d %q, want 200 []", rec.Code, rec.Body)
	}
}

// A MemberFile writes only its collector's groups, [] when it has none or is
// not in the assignment, and never touches other files.
func TestMemberFile(t *testing.T) {
	dir := t.TempDir()
	d, _ := NewDir(DirOptions{Dir: dir, Template: "{{.ID}}.yml"})
	f, err := d.File("b")
	if err != nil || f.Path != filepath.Join(dir, "b.yml") || f.Format != YAML {
		t.Fatalf("File: %+v %v", f, err)
	}
	gs := sample()
	changed, err := f.Update(context.Background(), map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:]})
	if err != nil || !slices.Equal(changed, []string{"b"}) {
		t.Fatalf("first write: %v %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.yml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a MemberFile wrote another collector's file")
	}
	if changed, _ := f.Update(context.Background(), map[string][]*targetgroup.Group{"b": gs[1:]}); changed != nil {
		t.Fatalf("unchanged content reported as changed: %v", changed)
	}
	if changed, _ := f.Update(context.Background(), map[string][]*targetgroup.Group{"a": gs}); !slices.Equal(changed, []string{"b"}) {
		t.Fatal("leaving the assignment did not empty the file")
	}
	if b, _ := os.ReadFile(f.Path); string(b) != "[]\n" {
		t.Fatalf("file of a collector outside the assignment: %q, want []", b)
	}
	if _, err := d.File("../x"); !errors.Is(err, ErrBadMemberID) {
		t.Fatalf("File(../x): %v", err)
	}
}

// Two collectors whose IDs render to one file name write nothing, with an
// error naming both.
func TestDirRejectsNameCollisions(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDir(DirOptions{Dir: dir, Template: "{{slice .ID 0 1}}.json"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Sync(map[string][]*targetgroup.Group{"aa": sample()[:1], "ab": sample()[1:]})
	if !errors.Is(err, ErrNameCollision) || err.Error() == "" {
		t.Fatalf("Sync: %v, want ErrNameCollision", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("a colliding Sync wrote %d files", len(ents))
	}
	if err := d.CheckMember("../x"); !errors.Is(err, ErrBadMemberID) {
		t.Fatalf("CheckMember(../x): %v", err)
	}
	if err := d.CheckMember("good"); err != nil {
		t.Fatal(err)
	}
}

// A changed template removes the files the old one wrote, including those
// recorded by the per-template manifests of earlier versions.
func TestDirChangedTemplateRemovesOldFiles(t *testing.T) {
	dir := t.TempDir()
	old, _ := NewDir(DirOptions{Dir: dir, Template: "old-{{.ID}}.json"})
	if _, err := old.Sync(map[string][]*targetgroup.Group{"a": sample()}); err != nil {
		t.Fatal(err)
	}
	// An earlier version's manifest, for a file of yet another template.
	os.WriteFile(filepath.Join(dir, "older-a.json"), []byte("[]"), 0o644)
	os.WriteFile(filepath.Join(dir, ".promshard-owned-00000000deadbeef"), []byte(`{"older-a.json": "a"}`), 0o644)
	d, _ := NewDir(DirOptions{Dir: dir, Template: "{{.ID}}.json"})
	res, err := d.Sync(map[string][]*targetgroup.Group{"a": sample()})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{".promshard-owned", "a.json"}) || !slices.Equal(res.Removed, []string{"a", "a"}) {
		t.Fatalf("directory holds %v after the template changed (removed %v), want only the new file", names, res.Removed)
	}
}

// A file changed behind the Dir's back (another sharder with another
// config writing the same directory) is counted and logged.
func TestDirNoticesForeignWrites(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewPedanticRegistry()
	d, _ := NewDir(DirOptions{Dir: dir, Registerer: reg})
	groups := map[string][]*targetgroup.Group{"a": sample()}
	for range 2 {
		if _, err := d.Sync(groups); err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.ToFloat64(d.m.foreign); n != 0 {
		t.Fatalf("%v foreign changes counted for the Dir's own writes", n)
	}
	os.WriteFile(filepath.Join(dir, "a.json"), []byte("[]\n"), 0o644)
	if _, err := d.Sync(groups); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(d.m.foreign); n != 1 {
		t.Fatalf("%v foreign changes counted, want 1", n)
	}
	// The very same groups again: a file changed by hand is still written
	// back, a file left alone is not touched.
	want, _ := Marshal(groups["a"], JSON)
	if b, _ := os.ReadFile(filepath.Join(dir, "a.json")); string(b) != string(want) {
		t.Fatalf("a.json not written back: %q", b)
	}
	res, err := d.Sync(groups)
	if err != nil || len(res.Written) != 0 || !slices.Equal(res.Unchanged, []string{"a"}) {
		t.Fatalf("the same groups, the file as left: %+v %v", res, err)
	}
}

// Create makes a missing directory at the first write; without it the
// write fails and names the directory.
func TestDirCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	plain, _ := NewDir(DirOptions{Dir: dir})
	if _, err := plain.Update(context.Background(), map[string][]*targetgroup.Group{"c1": sample()}); err == nil {
		t.Fatal("a write into a missing directory succeeded without Create")
	}
	d, _ := NewDir(DirOptions{Dir: dir, Create: true})
	if changed, err := d.Update(context.Background(), map[string][]*targetgroup.Group{"c1": sample()}); err != nil || !slices.Equal(changed, []string{"c1"}) {
		t.Fatalf("%v %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "c1.json")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "x")
	d, _ = NewDir(DirOptions{Dir: other, Create: true})
	mf, _ := d.File("c2")
	if changed, err := mf.Update(context.Background(), nil); err != nil || !slices.Equal(changed, []string{"c2"}) {
		t.Fatalf("member file: %v %v", changed, err)
	}
}

// A Dir that replaces another of the same directory (a config reload)
// inherits what it wrote: an unchanged assignment changes no file, a
// changed one rewrites only its member's file, byte-identical to a whole
// encoding, and files it never wrote are not its own.
func TestDirInherit(t *testing.T) {
	ctx := context.Background()
	gs := sample()
	dir := t.TempDir()
	prev, err := NewDir(DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prev.Update(ctx, map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:]}); err != nil {
		t.Fatal(err)
	}
	other, _ := NewDir(DirOptions{Dir: dir, Template: "{{.ID}}.yml"})
	next, _ := NewDir(DirOptions{Dir: dir})
	if other.Inherit(prev) || next.Inherit(&Handler{}) || !next.Inherit(prev) {
		t.Fatal("Inherit: want it from a Dir of the same options only")
	}
	if got, err := next.Update(ctx, map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:]}); err != nil || len(got) != 0 {
		t.Fatalf("unchanged after a reload: changed %v (%v)", got, err)
	}
	if got, err := next.Update(ctx, map[string][]*targetgroup.Group{"a": gs, "b": gs[1:]}); err != nil || !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a changed: changed %v (%v)", got, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "a.json"))
	want, merr := Marshal(gs, JSON)
	if err != nil || merr != nil || string(b) != string(want) {
		t.Fatalf("a.json after a reload:\n%s\nwant\n%s (%v %v)", b, want, err, merr)
	}
}

// Over random pools, every file a Dir writes is byte-identical to a whole
// encoding of its collector's groups (Marshal), whatever it copies, leaves
// alone or inherits: collectors keep their very groups, get new ones or
// groups sharing label sets, come and go; now and then a Dir replaces the
// last one (a config reload, Inherit) and a file is changed by hand.
func TestDirIsMarshalOverRandomPools(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 9))
	var sets []model.LabelSet
	for i := range 300 {
		ls := model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("10.1.%d.%d:9100", i/100, i%100))}
		if i%9 == 0 {
			ls["rack"] = model.LabelValue(fmt.Sprint("r", i%4))
		}
		sets = append(sets, ls)
	}
	labelMaps := []model.LabelSet{nil, {"env": "prod"}, {"env": "dev", "team": "a"}, {"__promshard_pin__": "c1", "env": "x"}}
	newGroups := func() []*targetgroup.Group {
		gs := []*targetgroup.Group{}
		for range rng.IntN(5) {
			g := &targetgroup.Group{Source: fmt.Sprint("s", rng.IntN(4)), Labels: labelMaps[rng.IntN(len(labelMaps))]}
			for range 1 + rng.IntN(20) {
				g.Targets = append(g.Targets, sets[rng.IntN(len(sets))])
			}
			gs = append(gs, g)
		}
		return gs
	}
	dir := t.TempDir()
	d, _ := NewDir(DirOptions{Dir: dir})
	groups := map[string][]*targetgroup.Group{}
	for step := range 300 {
		next := map[string][]*targetgroup.Group{}
		for i := range 6 {
			id := fmt.Sprint("c", i)
			switch gs, ok := groups[id]; {
			case rng.IntN(12) == 0: // leaves, or stays away
			case !ok || rng.IntN(3) == 0:
				next[id] = newGroups()
			case rng.IntN(4) == 0 && len(gs) > 0: // one group copied with a label set replaced, as Assign makes them
				gs = slices.Clone(gs)
				k := rng.IntN(len(gs))
				c := *gs[k]
				c.Targets = slices.Clone(c.Targets)
				c.Targets[rng.IntN(len(c.Targets))] = sets[rng.IntN(len(sets))]
				gs[k] = &c
				next[id] = gs
			default: // the very same groups
				next[id] = gs
			}
		}
		groups = next
		if rng.IntN(15) == 0 { // a config reload
			nd, _ := NewDir(DirOptions{Dir: dir})
			if !nd.Inherit(d) {
				t.Fatal("not inherited")
			}
			d = nd
		}
		if rng.IntN(10) == 0 && len(groups) > 0 { // a file changed by hand
			ids := slices.Sorted(maps.Keys(groups))
			os.WriteFile(filepath.Join(dir, ids[rng.IntN(len(ids))]+".json"), []byte("[]\n"), 0o644)
		}
		if _, err := d.Update(ctx, groups); err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for id, gs := range groups {
			want, _ := Marshal(gs, JSON)
			if b, err := os.ReadFile(filepath.Join(dir, id+".json")); err != nil || !bytes.Equal(b, want) {
				t.Fatalf("step %d: %s.json differs from Marshal (%v):\n%s\nwant\n%s", step, id, err, b, want)
			}
		}
	}
}

// A Dir that starts over files that are right (a restart) gets the very
// groups it is given back for them from HeldAgainst, parses only the
// others, as Held reads them, and then writes and encodes nothing for the
// files that were right.
func TestDirHeldAgainst(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	before, err := NewDir(DirOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	gs := sample()
	if _, err := before.Update(ctx, map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:], "c": {}}); err != nil {
		t.Fatal(err)
	}
	stamp := func(name string) time.Time {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return st.ModTime()
	}
	old := time.Now().Add(-time.Hour) // so that a write would show
	for _, n := range []string{"a.json", "b.json", "c.json"} {
		os.Chtimes(filepath.Join(dir, n), old, old)
	}
	os.WriteFile(filepath.Join(dir, "c.json"), []byte(`[{"targets": ["x:1"]}]`), 0o644) // c's was changed by hand

	after, _ := NewDir(DirOptions{Dir: dir}) // a new process: the same content in new groups
	again := sample()
	next := map[string][]*targetgroup.Group{"a": again[:1], "b": {tg("cmdb/db", nil, addr("10.0.1.2:9187"))}, "c": {}}
	compact := tstore.FromAllOf(next)
	held, err := after.HeldAgainstCompact(compact)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := after.Held()
	if !slices.Equal(held["a"], compact["a"]) {
		t.Fatal("a's file is right: want next's very groups back")
	}
	for _, id := range []string{"b", "c"} { // b's holds other targets, c's was changed: both read back
		if slices.Equal(held[id], compact[id]) || !slices.Equal(flatten(tstore.All(held[id])), flatten(plain[id])) {
			t.Fatalf("%s: held %v, want what Held reads, %v", id, flatten(tstore.All(held[id])), flatten(plain[id]))
		}
	}
	if public, _ := after.HeldAgainst(next); !slices.Equal(flatten(public["b"]), flatten(plain["b"])) {
		t.Fatalf("HeldAgainst: b holds %v, want %v", flatten(public["b"]), flatten(plain["b"]))
	}
	res, err := after.sync(compact)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Written, []string{"b", "c"}) || !slices.Equal(res.Unchanged, []string{"a"}) {
		t.Fatalf("written %v, unchanged %v: want b and c written, a left alone", res.Written, res.Unchanged)
	}
	if !stamp("a.json").Equal(old) {
		t.Fatal("a.json was written again")
	}
	for id, gs := range next {
		b, _ := os.ReadFile(filepath.Join(dir, id+".json"))
		if want, _ := Marshal(gs, JSON); string(b) != string(want) {
			t.Fatalf("%s.json:\n%s\nwant\n%s", id, b, want)
		}
	}
}
