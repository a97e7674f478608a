package filesd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"go.yaml.in/yaml/v2"
)

func tg(source string, labels model.LabelSet, targets ...model.LabelSet) *targetgroup.Group {
	return &targetgroup.Group{Source: source, Labels: labels, Targets: targets}
}

func addr(a string) model.LabelSet { return model.LabelSet{model.AddressLabel: model.LabelValue(a)} }

// flatten gives the labels Prometheus sees for each target: its own over
// its group's.
func flatten(gs []*targetgroup.Group) []string {
	var out []string
	for _, g := range gs {
		for _, t := range g.Targets {
			ls := g.Labels.Clone()
			if ls == nil {
				ls = model.LabelSet{}
			}
			maps.Copy(ls, t)
			out = append(out, ls.String())
		}
	}
	slices.Sort(out)
	return out
}

// parse reads a file as Prometheus' file_sd does.
func parse(t *testing.T, b []byte, f Format) []*targetgroup.Group {
	t.Helper()
	var gs []*targetgroup.Group
	var err error
	if f == YAML {
		err = yaml.UnmarshalStrict(b, &gs)
	} else {
		err = json.Unmarshal(b, &gs)
	}
	if err != nil {
		t.Fatalf("file_sd would reject %q: %v", b, err)
	}
	return gs
}

func sample() []*targetgroup.Group {
	return []*targetgroup.Group{
		tg("cmdb/web", model.LabelSet{"job": "web", "env": "prod"},
			addr("10.0.0.2:9100"), addr("10.0.0.1:9100"),
			model.LabelSet{"__address__": "10.0.0.3:9100", "rack": "r1"},
			model.LabelSet{"__address__": "10.0.0.4:9100", "rack": "r1", "env": "canary"}),
		tg("cmdb/db", nil, addr("10.0.1.1:9187")),
	}
}

func TestMarshalRoundTripKeepsEveryLabel(t *testing.T) {
	for _, f := range []Format{JSON, YAML} {
		b, err := Marshal(sample(), f)
		if err != nil {
			t.Fatal(err)
		}
		got := flatten(parse(t, b, f))
		if want := flatten(sample()); !slices.Equal(got, want) {
			t.Fatalf("%s: Prometheus would see\n%v\nwant\n%v\nfile:\n%s", f, got, want, b)
		}
		b2, _ := Marshal(sample(), f)
		if string(b) != string(b2) {
			t.Fatalf("%s output not stable", f)
		}
	}
}

// Values that mean something else to YAML unquoted keep their meaning.
func TestMarshalTrickyValues(t *testing.T) {
	var ts []model.LabelSet
	for i, v := range []string{"true", "null", "~", "a: b", "- x", "#c", "multi\nline", `q"uote`, "tab\t", "ünï", "\x01", "{x}", "'", "yes", "0x1F", ""} {
		ts = append(ts, model.LabelSet{model.AddressLabel: model.LabelValue(fmt.Sprintf("h%d:1", i)), "v": model.LabelValue(v)})
	}
	gs := []*targetgroup.Group{tg("s", model.LabelSet{"on": "off", "n": "no"}, ts...)}
	for _, f := range []Format{JSON, YAML} {
		b, err := Marshal(gs, f)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := flatten(parse(t, b, f)), flatten(gs); !slices.Equal(got, want) {
			t.Fatalf("%s: read back\n%v\nwant\n%v", f, got, want)
		}
	}
}

func TestMarshalEmptyIsAList(t *testing.T) {
	for f, want := range map[Format]string{JSON: "[]\n", YAML: "[]\n"} {
		b, err := Marshal(nil, f)
		if err != nil || string(b) != want {
			t.Fatalf("%s: %q %v, want %q", f, b, err, want)
		}
	}
}

func TestMarshalRejectsBadLabels(t *testing.T) {
	for _, gs := range [][]*targetgroup.Group{
		{tg("s", model.LabelSet{"bad-name": "x"}, addr("a:1"))},
		{tg("s", nil, model.LabelSet{"__address__": "a:1", "0bad": "x"})},
		{tg("s", model.LabelSet{"ok": "\xff"}, addr("a:1"))},
		{tg("s", nil, model.LabelSet{"job": "x"})},
	} {
		if _, err := Marshal(gs, JSON); !errors.Is(err, ErrInvalidLabel) {
			t.Errorf("%v: error %v, want ErrInvalidLabel", gs[0], err)
		}
	}
	if _, err := Marshal(sample(), "toml"); err == nil || !strings.Contains(err.Error(), `"toml"`) {
		t.Errorf("unknown format: %v", err)
	}
}

func TestWriteFileAtomicAndIdempotent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.yml")
	changed, err := WriteFile(p, sample(), WriteOptions{})
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", st.Mode().Perm())
	}
	b, _ := os.ReadFile(p)
	parse(t, b, YAML)
	old := time.Unix(1_000_000, 0)
	os.Chtimes(p, old, old)
	changed, err = WriteFile(p, sample(), WriteOptions{})
	if err != nil || changed {
		t.Fatalf("same content: changed=%v err=%v", changed, err)
	}
	if st, _ := os.Stat(p); !st.ModTime().Equal(old) {
		t.Fatal("unchanged content touched the file")
	}
	// A bad label writes nothing: the old file stays.
	if _, err := WriteFile(p, []*targetgroup.Group{tg("s", model.LabelSet{"a b": "c"}, addr("x:1"))}, WriteOptions{}); err == nil {
		t.Fatal("bad label written")
	}
	if b2, _ := os.ReadFile(p); string(b2) != string(b) {
		t.Fatal("failed write changed the file")
	}
	changed, err = WriteFile(p, nil, WriteOptions{Mode: 0o640})
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "[]\n" {
		t.Fatalf("empty write %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", st.Mode().Perm())
	}
	if _, err := WriteFile(filepath.Join(dir, "a.txt"), nil, WriteOptions{}); err == nil {
		t.Fatal(".txt accepted without a format")
	}
	if _, err := WriteFile(filepath.Join(dir, "missing", "a.json"), nil, WriteOptions{}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	onlyFiles(t, dir)
}

// onlyFiles fails when dir holds a temp file: none is ever left behind.
func onlyFiles(t *testing.T, dir string) {
	t.Helper()
	es, _ := os.ReadDir(dir)
	for _, e := range es {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}
}

func TestTempNamesMatchNoPrometheusGlob(t *testing.T) {
	for _, p := range []string{"/d/a.json", "/d/a.yml", "/d/a.yaml"} {
		name := filepath.Base(tempName(p))
		for _, glob := range []string{"*.json", "*.yml", "*.yaml"} {
			if ok, _ := filepath.Match(glob, name); ok {
				t.Fatalf("temp name %q matches %q", name, glob)
			}
		}
	}
}

// A reader in a tight loop never sees a partial or empty file while the
// file is rewritten many times.
func TestReaderNeverSeesPartialFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.json")
	big := func(n int) []*targetgroup.Group {
		g := tg("s", model.LabelSet{"job": "x"})
		for i := range n {
			g.Targets = append(g.Targets, addr(fmt.Sprintf("10.0.%d.%d:9100", i/250, i%250)))
		}
		return []*targetgroup.Group{g}
	}
	if _, err := WriteFile(p, big(1000), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(p)
			reads.Add(1)
			var gs []*targetgroup.Group
			if err != nil || json.Unmarshal(b, &gs) != nil || len(gs) != 1 || (len(gs[0].Targets) != 1000 && len(gs[0].Targets) != 2000) {
				bad.Add(1)
			}
		}
	})
	rewrites := 300
	if testing.Short() {
		rewrites = 30 // the same property, a tenth of the fsyncs
	}
	for i := range rewrites {
		if _, err := WriteFile(p, big(1000*(1+i%2)), WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 || reads.Load() < 10 {
		t.Fatalf("%d of %d reads saw a partial file", bad.Load(), reads.Load())
	}
	onlyFiles(t, dir)
}

func TestDirSync(t *testing.T) {
	dir := t.TempDir()
	// Someone else's file in the same directory is never touched.
	foreign := filepath.Join(dir, "other.json")
	os.WriteFile(foreign, []byte("[]"), 0o644)
	reg := prometheus.NewPedanticRegistry()
	d, err := NewDir(DirOptions{Dir: dir, Template: "shard-{{.ID}}.yml", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	gs := sample()
	res, err := d.Sync(map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:], "c": {}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Written, []string{"a", "b", "c"}) {
		t.Fatalf("written %v", res.Written)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "shard-c.yml")); string(b) != "[]\n" {
		t.Fatalf("collector without targets got %q, want []", b)
	}
	res, err = d.Sync(map[string][]*targetgroup.Group{"a": gs[:1], "b": gs[1:], "c": {}})
	if err != nil || len(res.Written) != 0 || len(res.Unchanged) != 3 || len(res.Changed()) != 0 {
		t.Fatalf("second sync %+v %v", res, err)
	}
	// b leaves, c gets targets.
	res, err = d.Sync(map[string][]*targetgroup.Group{"a": gs[:1], "c": gs[1:]})
	if err != nil || !slices.Equal(res.Written, []string{"c"}) || !slices.Equal(res.Removed, []string{"b"}) {
		t.Fatalf("third sync %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shard-b.yml")); !os.IsNotExist(err) {
		t.Fatal("file of a collector that left is still there")
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatal("a file the Dir did not write was removed")
	}
	// A new Dir (a restart) knows what the old one wrote.
	d2, _ := NewDir(DirOptions{Dir: dir, Template: "shard-{{.ID}}.yml"})
	res, err = d2.Sync(map[string][]*targetgroup.Group{"a": gs[:1]})
	if err != nil || !slices.Equal(res.Removed, []string{"c"}) {
		t.Fatalf("after restart %+v %v", res, err)
	}
	if got := testutil.ToFloat64(d.m.writes); got != 4 {
		t.Fatalf("writes_total %v, want 4", got)
	}
	onlyFiles(t, dir)
}

// A temp file left by a crash between create and rename is cleaned up by
// the next process's first Sync; other hidden files are not touched.
func TestDirRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".a.json.tmp-0123456789ab")
	other := filepath.Join(dir, ".someone-elses.tmp-1")
	inFlight := filepath.Join(dir, ".b.json.tmp-fedcba987654") // another copy writing right now
	os.WriteFile(stale, []byte("[{"), 0o600)
	os.WriteFile(other, []byte("x"), 0o600)
	os.WriteFile(inFlight, []byte("[{"), 0o600)
	old := time.Now().Add(-2 * staleTemp)
	os.Chtimes(stale, old, old)
	d, _ := NewDir(DirOptions{Dir: dir})
	if _, err := d.Sync(map[string][]*targetgroup.Group{"a": sample(), "b": sample()}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("stale temp file still there")
	}
	if _, err := os.Stat(inFlight); err != nil {
		t.Fatal("a fresh temp file, another copy's write in flight, was removed")
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatal("a temp file the Dir does not own was removed")
	}
}

func TestDirEmptyOnLeave(t *testing.T) {
	dir := t.TempDir()
	d, _ := NewDir(DirOptions{Dir: dir, EmptyOnLeave: true})
	d.Sync(map[string][]*targetgroup.Group{"a": sample()})
	res, err := d.Sync(map[string][]*targetgroup.Group{})
	if err != nil || !slices.Equal(res.Removed, []string{"a"}) {
		t.Fatalf("%+v %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a.json")); string(b) != "[]\n" {
		t.Fatalf("left collector's file %q, want []", b)
	}
}

func TestDirRejectsEscapingIDs(t *testing.T) {
	dir := t.TempDir()
	d, _ := NewDir(DirOptions{Dir: dir})
	for _, id := range []string{"", ".", "..", "../x", "/etc/passwd", "a/b", `a\b`, "a\x00b", ".hidden"} {
		if _, err := d.Sync(map[string][]*targetgroup.Group{id: sample()}); !errors.Is(err, ErrBadMemberID) {
			t.Errorf("ID %q: error %v, want ErrBadMemberID", id, err)
		}
	}
	es, _ := os.ReadDir(dir)
	if len(es) != 0 {
		t.Fatalf("rejected IDs wrote %d files", len(es))
	}
	if p, err := d.PathOf("10.0.0.1:9090"); err != nil || p != filepath.Join(dir, "10.0.0.1:9090.json") {
		t.Fatalf("address ID: %q %v", p, err)
	}
}

func TestNewDirErrors(t *testing.T) {
	for _, tc := range []struct {
		o    DirOptions
		want string
	}{
		{DirOptions{}, "Dir is empty"},
		{DirOptions{Dir: "d", Template: "{{.ID"}, "Template"},
		{DirOptions{Dir: "d", Template: "all.json"}, "must depend on {{.ID}}"},
		{DirOptions{Dir: "d", Template: "{{.ID}}.txt"}, "extension"},
		{DirOptions{Dir: "d", Template: "{{.Name}}.json"}, "Name"},
		{DirOptions{Dir: "d", Format: "xml"}, `Format "xml"`},
		{DirOptions{Dir: "d", Format: YAML}, `file_sd reads a .json name as json`},
		{DirOptions{Dir: "d", Template: "{{.ID}}.yml", Format: JSON}, `Format "json" with Template "{{.ID}}.yml"`},
	} {
		_, err := NewDir(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to mention %q", tc.o, err, tc.want)
		}
	}
}

func TestHandler(t *testing.T) {
	var h Handler
	mux := http.NewServeMux()
	mux.Handle("/sd/", http.StripPrefix("/sd/", &h))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path, etag string) (*http.Response, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, _ := get("/sd/?collector=a", ""); resp.StatusCode != 404 {
		t.Fatalf("before Set: %d", resp.StatusCode)
	}
	if err := h.Set(map[string][]*targetgroup.Group{"a": sample(), "b": nil}); err != nil {
		t.Fatal(err)
	}
	resp, body := get("/sd/?collector=a", "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := flatten(parse(t, []byte(body), JSON)); !slices.Equal(got, flatten(sample())) {
		t.Fatalf("served %v", got)
	}
	etag := resp.Header.Get("ETag")
	if resp, _ := get("/sd/a", etag); resp.StatusCode != 304 {
		t.Fatalf("matching ETag: %d", resp.StatusCode)
	}
	if _, body := get("/sd/b", ""); body != "[]\n" {
		t.Fatalf("empty collector served %q", body)
	}
	resp, body = get("/sd/?collector=zz", "")
	if resp.StatusCode != 404 || !strings.Contains(body, `"zz"`) {
		t.Fatalf("unknown collector: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get("/sd/", ""); resp.StatusCode != 400 {
		t.Fatalf("no collector named: %d", resp.StatusCode)
	}
	h.Set(map[string][]*targetgroup.Group{"a": sample()[1:]})
	if resp, _ := get("/sd/a", etag); resp.StatusCode != 200 || resp.Header.Get("ETag") == etag {
		t.Fatalf("changed content: %d, etag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if err := h.Set(map[string][]*targetgroup.Group{"a": {tg("s", model.LabelSet{"a-b": "c"}, addr("x:1"))}}); err == nil {
		t.Fatal("bad label accepted")
	}
	if got := h.Collectors(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("a failed Set changed the content: %v", got)
	}
}

// A collector no longer served gets an empty list for Retain (Prometheus'
// http_sd keeps its last list on a 404, so one that still runs would scrape
// targets that moved); one never served gets 404.
func TestHandlerAnswersEmptyToACollectorThatLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &Handler{Retain: time.Hour}
		g := []*targetgroup.Group{{Targets: []model.LabelSet{{model.AddressLabel: "10.0.0.1:9100"}}}}
		if err := h.Set(map[string][]*targetgroup.Group{"a": g, "b": g}); err != nil {
			t.Fatal(err)
		}
		get := func(id string) (int, string) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/"+id, nil))
			return rec.Code, rec.Body.String()
		}
		if err := h.Set(map[string][]*targetgroup.Group{"a": g}); err != nil { // b left
			t.Fatal(err)
		}
		if code, body := get("b"); code != 200 || strings.TrimSpace(body) != "[]" {
			t.Fatalf("a collector that left: %d %q, want 200 []", code, body)
		}
		if code, _ := get("never"); code != 404 {
			t.Fatalf("a collector never served: %d, want 404", code)
		}
		time.Sleep(time.Hour)
		if code, _ := get("b"); code != 404 {
			t.Fatalf("after Retain: %d, want 404", code)
		}
		if err := h.Set(map[string][]*targetgroup.Group{"a": g, "b": g}); err != nil { // back
			t.Fatal(err)
		}
		if code, body := get("b"); code != 200 || !strings.Contains(body, "10.0.0.1:9100") {
			t.Fatalf("back: %d %q", code, body)
		}
	})
}

// An ID whose file name would not fit the file system with its temp
// file's prefix and suffix cannot name a file: a sharder leaves it out.
func TestLongIDCannotNameAFile(t *testing.T) {
	d, err := NewDir(DirOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fits := strings.Repeat("a", MaxNameLen-len(".json"))
	if err := d.CheckMember(fits); err != nil {
		t.Fatalf("an ID of %d bytes: %v", len(fits), err)
	}
	if _, err := d.Sync(map[string][]*targetgroup.Group{fits: sample()}); err != nil {
		t.Fatalf("writing the longest name: %v", err)
	}
	if err := d.CheckMember(fits + "a"); !errors.Is(err, ErrBadMemberID) {
		t.Fatalf("an ID of %d bytes: %v, want ErrBadMemberID", len(fits)+1, err)
	}
}
