package filesd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	ilabels "github.com/promshard/promshard/internal/labels"
	"github.com/promshard/promshard/internal/promutil"
	"github.com/promshard/promshard/internal/sdfile"
	"github.com/promshard/promshard/internal/tstore"
)

// ErrBadMemberID means a collector ID cannot name a file inside the
// directory: it is empty, "." or "..", holds a path separator or NUL, or
// starts with a dot.
var ErrBadMemberID = errors.New("filesd: collector ID cannot name a file in the directory")

// ErrNameCollision means two collectors' IDs render to the same file name,
// so one file would hold the targets of two collectors.
var ErrNameCollision = errors.New("filesd: two collectors render to the same file name")

// DefaultTemplate names each collector's file.
const DefaultTemplate = "{{.ID}}.json"

// DirOptions configures a [Dir].
type DirOptions struct {
	// Dir is the directory the files go to. Required; it must exist,
	// unless Create is set. Give each Dir a directory of its own: a Dir
	// removes the files it wrote earlier (under any template) that it does
	// not write now.
	Dir string
	// Create makes the directory, and its parents (mode 0755), when a write
	// finds it missing.
	Create bool
	// Template names a collector's file: a text/template over a value with
	// the field ID (the collector ID). Default [DefaultTemplate]. The name
	// must end in .json, .yml or .yaml and must depend on the ID.
	Template string
	// Format overrides the format inferred from the file name.
	Format Format
	// Mode of the files; zero means [DefaultMode].
	Mode fs.FileMode
	// EmptyOnLeave writes [] for a collector that left instead of removing
	// its file (for setups whose Prometheus logs a missing file as an
	// error).
	EmptyOnLeave bool
	// Logger receives one line per file written or removed; nil discards.
	Logger *slog.Logger
	// Registerer receives the writer's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Dir keeps one file_sd file per collector in a directory. Its methods are
// safe for concurrent use; Sync calls are serialised.
type Dir struct {
	opts     DirOptions
	tmpl     *template.Template
	manifest string
	m        *dirMetrics

	mu      sync.Mutex
	cleaned bool                       // stale temp files removed
	left    map[string]fileStamp       // each file as this Dir last left it
	ids     map[string]string          // the collector of each file in left
	enc     map[string]*sdfile.Encoder // each file's encoder: what did not change is copied
	in      map[string][]groupRef      // the groups each file in left was written from
}

// encoding is one file that a Sync encodes.
type encoding struct {
	id, name     string
	enc          *sdfile.Encoder
	known        bool // enc encoded the file as it is on disk: it copies what did not change
	written, out []byte
	same         bool // the file read back (written, dropped once encoded) is out
	err          error
}

// groupRef is a group as a Sync was given it: the same pointer with as
// many targets, in a file whose stamp is as it was left, needs no encoding
// (groups are read-only once handed over).
type groupRef struct {
	g *tstore.Group
	n int
}

// refsOf are gs as groupRefs.
func refsOf(gs []*tstore.Group) []groupRef {
	refs := make([]groupRef, len(gs))
	for i, g := range gs {
		refs[i] = groupRef{g, 0}
		if g != nil {
			refs[i].n = len(g.Targets)
		}
	}
	return refs
}

// sameRefs reports whether gs are the groups refs were taken of.
func sameRefs(refs []groupRef, gs []*tstore.Group) bool {
	if len(refs) != len(gs) {
		return false
	}
	for i, g := range gs {
		if refs[i].g != g || g != nil && refs[i].n != len(g.Targets) {
			return false
		}
	}
	return true
}

// Inherit takes over what prev, a Dir this one replaces (a config
// reload), knows of the files it wrote: which are its own, and where each
// group's text is, so that the first write copies what did not change
// instead of reading every file back and encoding it again. It does so only
// when prev is a *Dir of the same directory, template, format and mode,
// and reports whether it did. prev must not be used afterwards.
func (d *Dir) Inherit(prev any) bool {
	p, ok := prev.(*Dir)
	if !ok || p == d || p.opts.Dir != d.opts.Dir || p.opts.Template != d.opts.Template || p.opts.Format != d.opts.Format ||
		p.opts.Mode != d.opts.Mode {
		return false
	}
	p.mu.Lock()
	cleaned, left, ids, enc, in := p.cleaned, p.left, p.ids, p.enc, p.in
	p.left, p.ids, p.enc, p.in = nil, nil, nil, nil
	p.mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cleaned, d.left, d.ids, d.enc, d.in = cleaned, left, ids, enc, in
	return true
}

// fileStamp tells whether a file changed since it was last seen.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stampOf(path string) (fileStamp, bool) {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, false
	}
	return fileStamp{st.Size(), st.ModTime()}, true
}

// SyncResult says what [Dir.Sync] did, by collector ID, each list sorted.
type SyncResult struct {
	// Written lists collectors whose file changed.
	Written []string
	// Unchanged lists collectors whose file already held the content.
	Unchanged []string
	// Removed lists collectors whose file was removed (or emptied, with
	// EmptyOnLeave) because they left.
	Removed []string
}

// Changed returns the collectors whose Prometheus sees new content.
func (r SyncResult) Changed() []string {
	return slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(r.Written), r.Removed...))))
}

// NewDir validates opts and registers the writer's metrics. It reads
// nothing and writes nothing.
func NewDir(opts DirOptions) (*Dir, error) {
	if opts.Dir == "" {
		return nil, errors.New("filesd: DirOptions.Dir is empty")
	}
	if opts.Template == "" {
		opts.Template = DefaultTemplate
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl, err := template.New("file").Option("missingkey=error").Parse(opts.Template)
	if err != nil {
		return nil, fmt.Errorf("filesd: DirOptions.Template %q: %w", opts.Template, err)
	}
	d := &Dir{opts: opts, tmpl: tmpl,
		manifest: filepath.Join(opts.Dir, manifestName)}
	a, err := d.render("a")
	if err != nil {
		return nil, err
	}
	b, err := d.render("b")
	if err != nil {
		return nil, err
	}
	if a == b {
		return nil, fmt.Errorf("filesd: DirOptions.Template %q: the file name must depend on {{.ID}}", opts.Template)
	}
	byName, err := FormatOf(a)
	switch {
	case opts.Format == "" && err != nil:
		return nil, fmt.Errorf("filesd: DirOptions.Template %q: %w", opts.Template, err)
	case opts.Format != "" && opts.Format != JSON && opts.Format != YAML:
		return nil, fmt.Errorf("filesd: DirOptions.Format %q: want %q or %q", opts.Format, JSON, YAML)
	case opts.Format != "" && err == nil && opts.Format != byName:
		// Prometheus' file_sd reads a file by its extension: it would
		// reject every file and scrape nothing.
		return nil, fmt.Errorf("filesd: DirOptions.Format %q with Template %q: file_sd reads a %s name as %s", opts.Format,
			opts.Template, filepath.Ext(a), byName)
	}
	if d.m, err = newDirMetrics(opts.Registerer, opts.Dir); err != nil {
		return nil, err
	}
	return d, nil
}

// CheckID reports whether id can name a file in the directory.
func CheckID(id string) error {
	if id == "" || id == "." || id == ".." || strings.HasPrefix(id, ".") || strings.ContainsAny(id, "/\\\x00") {
		return fmt.Errorf("%w: %q", ErrBadMemberID, id)
	}
	return nil
}

// MaxNameLen is the longest file name a Dir writes: a file is written as a
// temp file ".NAME.tmp-" plus 12 hex digits beside it first, and file
// systems take names of at most 255 bytes.
const MaxNameLen = 255 - len(".") - len(".tmp-") - 12

// render returns the file name for a collector ID.
func (d *Dir) render(id string) (string, error) {
	if err := CheckID(id); err != nil {
		return "", err
	}
	var b bytes.Buffer
	if err := d.tmpl.Execute(&b, struct{ ID string }{id}); err != nil {
		return "", fmt.Errorf("filesd: DirOptions.Template %q for %q: %w", d.opts.Template, id, err)
	}
	name := b.String()
	if !filepath.IsLocal(name) || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		return "", fmt.Errorf("%w: %q gives file name %q", ErrBadMemberID, id, name)
	}
	if len(name) > MaxNameLen {
		return "", fmt.Errorf("%w: %q gives a file name of %d bytes, above %d (its temp file's name would not fit the file system's 255)",
			ErrBadMemberID, id, len(name), MaxNameLen)
	}
	return name, nil
}

// CheckMember reports whether a collector ID can name a file under the
// Dir's template. A sharder leaves a member that fails it out of the ring
// instead of failing the whole job.
func (d *Dir) CheckMember(id string) error {
	_, err := d.render(id)
	return err
}

// Update is [Dir.Sync] as an output of a sharder: it returns the IDs of
// the collectors whose file changed or was removed.
func (d *Dir) Update(ctx context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	return d.UpdateCompact(ctx, tstore.FromAllOf(groups))
}

// UpdateCompact is Update over groups in the module's compact form, as the
// Sharder holds them: a group handed again (the same pointer) is known
// without a look at its targets.
func (d *Dir) UpdateCompact(_ context.Context, groups map[string][]*tstore.Group) ([]string, error) {
	res, err := d.sync(groups)
	return res.Changed(), err
}

// Held reads back what the directory's files hold, by collector ID: the
// files a Dir over this directory wrote, as its manifest lists them. A
// process that takes over the directory (a new leader, a restart) learns
// from it what the collectors were given. A file that cannot be read or
// parsed is left out; the groups have no Source (file_sd keeps none).
func (d *Dir) Held() (map[string][]*targetgroup.Group, error) {
	owned, err := d.readManifest()
	if err != nil {
		return nil, err
	}
	out := map[string][]*targetgroup.Group{}
	for name, id := range owned {
		b, err := os.ReadFile(filepath.Join(d.opts.Dir, name))
		if err != nil {
			continue
		}
		f, err := sdfile.FormatOf(name)
		if err != nil {
			continue
		}
		gs, err := sdfile.ParseCompact(b, f, nil)
		if err != nil {
			continue
		}
		out[id] = tstore.All(slices.DeleteFunc(gs, func(g *tstore.Group) bool { return g == nil }))
	}
	return out, nil
}

// HeldAgainst is Held that compares first: a collector whose file holds,
// byte for byte, what a Sync of next would write for it gets next's very
// groups back, and only the other files are parsed. A process that starts
// over files that are already right (a restart, a -once run, a new leader)
// then pays an encoding of each file instead of a label set per target
// read back, and the Sync that follows with the same groups writes nothing
// and encodes nothing: the Dir knows those files for its own. A file that
// differs shares the label sets of its collector's next groups for the
// targets it has in common with them (a file that holds a few targets more,
// or fewer, makes label sets for those alone).
func (d *Dir) HeldAgainst(next map[string][]*targetgroup.Group) (map[string][]*targetgroup.Group, error) {
	held, err := d.HeldAgainstCompact(tstore.FromAllOf(next))
	return tstore.AllOf(held), err
}

// HeldAgainstCompact is HeldAgainst over groups in the module's compact
// form, as the Sharder holds them: a file that differs shares the address
// strings of its collector's next groups, and no label set is made for a
// target that is its address alone.
func (d *Dir) HeldAgainstCompact(next map[string][]*tstore.Group) (map[string][]*tstore.Group, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	owned, err := d.readManifest()
	if err != nil {
		return nil, err
	}
	type check struct {
		id, name string
		enc      *sdfile.Encoder
		read     bool // the file was read and understood
		same     bool // and it is what next gives it
		groups   []*tstore.Group
	}
	checks := make([]check, 0, len(owned))
	for _, name := range slices.Sorted(maps.Keys(owned)) {
		checks = append(checks, check{id: owned[name], name: name})
	}
	sideBySide(len(checks), func(i int) { // the files are compared, or parsed, side by side
		c := &checks[i]
		b, err := os.ReadFile(filepath.Join(d.opts.Dir, c.name))
		if err != nil {
			return
		}
		if gs, ok := next[c.id]; ok {
			if name, err := d.render(c.id); err == nil && name == c.name {
				enc := &sdfile.Encoder{Format: d.format(c.name)}
				if out, err := enc.Marshal(gs, nil); err == nil && bytes.Equal(out, b) {
					c.enc, c.read, c.same, c.groups = enc, true, true, gs
					return
				}
			}
		}
		f, err := sdfile.FormatOf(c.name)
		if err != nil {
			return
		}
		if gs, err := sdfile.ParseCompact(b, f, knownOf(next[c.id])); err == nil {
			c.read, c.groups = true, slices.DeleteFunc(gs, func(g *tstore.Group) bool { return g == nil })
		}
	})
	out := map[string][]*tstore.Group{}
	for _, c := range checks {
		if !c.read {
			continue // unreadable or unparsable: left out, as Held does
		}
		out[c.id] = c.groups
		if !c.same {
			continue
		}
		st, ok := stampOf(filepath.Join(d.opts.Dir, c.name))
		if !ok {
			continue
		}
		if d.left == nil {
			d.left, d.ids, d.in = map[string]fileStamp{}, map[string]string{}, map[string][]groupRef{}
		}
		if d.enc == nil {
			d.enc = map[string]*sdfile.Encoder{}
		}
		d.left[c.name], d.ids[c.name], d.in[c.name], d.enc[c.name] = st, c.id, refsOf(c.groups), c.enc
	}
	return out, nil
}

// knownOf indexes the addresses of the targets of gs that are their
// address alone, and the groups' labels maps, for [sdfile.ParseCompact]: a
// file read back shares the address strings and labels maps of the
// collector's next groups rather than holding its own. Nil for no groups.
func knownOf(gs []*tstore.Group) *sdfile.Known {
	if len(gs) == 0 {
		return nil
	}
	addrs := make(map[string]string, tstore.Count(gs))
	byHash := make(map[uint64][]model.LabelSet, len(gs))
	seen := make(map[uintptr]bool, len(gs))
	for _, g := range gs {
		if g == nil {
			continue
		}
		if id := ilabels.Identity(g.Labels); !seen[id] {
			seen[id] = true
			_, h := ilabels.CheckHash(g.Labels) // next's labels were validated: the hash is theirs
			byHash[h] = append(byHash[h], g.Labels)
		}
		for i, a := range g.Targets {
			if g.OwnOf(i) == nil {
				addrs[a] = a
			}
		}
	}
	return &sdfile.Known{Addr: func(addr string) string { return addrs[addr] },
		Labels: func(h uint64) []model.LabelSet { return byHash[h] }}
}

// PathOf returns the path of a collector's file.
func (d *Dir) PathOf(id string) (string, error) {
	name, err := d.render(id)
	if err != nil {
		return "", err
	}
	return filepath.Join(d.opts.Dir, name), nil
}

// Drifted returns the collectors whose file no longer is as the last Sync
// left it (removed, or changed by someone else: its size or modification
// time differs), sorted; a Sync with the same groups writes them again.
// It reads no file, so it costs a stat per file.
func (d *Dir) Drifted() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for name := range d.left {
		if !d.asLeft(name) {
			out = append(out, d.ids[name])
		}
	}
	slices.Sort(out)
	return out
}

// asLeft reports whether file name is there as this Dir last left it:
// the same size and modification time.
func (d *Dir) asLeft(name string) bool {
	was, ok := d.left[name]
	now, there := stampOf(filepath.Join(d.opts.Dir, name))
	return ok && there && now == was
}

func (d *Dir) format(name string) Format {
	if d.opts.Format != "" {
		return d.opts.Format
	}
	f, _ := FormatOf(name)
	return f
}

// Sync makes the directory hold exactly one file per collector in groups
// (an empty list for a collector with no groups) and removes the files it
// wrote earlier for collectors no longer in groups. Every file is rendered
// and validated before any is written, so a bad label writes nothing. A
// failure to write one file does not stop the others; the errors are joined.
func (d *Dir) Sync(groups map[string][]*targetgroup.Group) (SyncResult, error) {
	return d.sync(tstore.FromAllOf(groups))
}

// sync is Sync over groups in the module's compact form.
func (d *Dir) sync(groups map[string][]*tstore.Group) (SyncResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	var res SyncResult
	files := make([]struct{ id, name string }, 0, len(groups))
	content := make(map[string][]byte, len(groups))
	byName := make(map[string]string, len(groups))
	encs := make(map[string]*sdfile.Encoder, len(groups))
	read := make(map[string][]byte, len(groups)) // files read back, so as not to read them twice
	same := map[string]bool{}                    // files left as they are: their groups did not change
	var todo []encoding                          // files to encode
	defer func() { d.enc = encs }()              // those of files that are gone go with them
	for _, id := range slices.Sorted(maps.Keys(groups)) {
		name, err := d.render(id)
		if err != nil {
			return res, err
		}
		if other, ok := byName[name]; ok {
			return res, fmt.Errorf("%w: collectors %q and %q both give file name %q (template %q)",
				ErrNameCollision, other, id, name, d.opts.Template)
		}
		byName[name] = id
		enc, known := d.enc[name]
		known = known && enc.Format == d.format(name)
		if !known {
			enc = &sdfile.Encoder{Format: d.format(name)}
		}
		encs[name] = enc
		files = append(files, struct{ id, name string }{id, name})
		if known && d.ids[name] == id && sameRefs(d.in[name], groups[id]) && d.asLeft(name) {
			// The very groups of the file as this Dir left it: nothing to
			// encode, read or write.
			content[name], same[name] = nil, true
			continue
		}
		todo = append(todo, encoding{id: id, name: name, enc: enc, known: known})
	}
	// The files are encoded side by side, each by its own encoder.
	sideBySide(len(todo), func(i int) {
		e := &todo[i]
		if e.known { // what did not change is copied from the file as written
			e.written, _ = os.ReadFile(filepath.Join(d.opts.Dir, e.name))
		}
		e.out, e.err = e.enc.Marshal(groups[e.id], e.written)
		e.same = e.written != nil && bytes.Equal(e.written, e.out)
		e.written = nil // not held while the others are encoded
	})
	for _, e := range todo {
		if e.err != nil {
			return res, fmt.Errorf("filesd: collector %q: %w", e.id, e.err)
		}
		content[e.name] = e.out
		switch {
		case e.same:
			read[e.name] = e.out
		case e.known: // read, and not what is written: not read again
			read[e.name] = []byte{}
		}
	}
	if d.opts.Create {
		if err := os.MkdirAll(d.opts.Dir, 0o755); err != nil {
			return res, fmt.Errorf("filesd: %w", err)
		}
	}
	owned, err := d.readManifest()
	if err != nil {
		return res, err
	}
	if !d.cleaned {
		d.removeStaleTemps(owned, files)
		d.cleaned = true
	}
	// Record the new files as owned before writing them, so a crash in
	// between never leaves a file that a later Sync would not clean up.
	for _, f := range files {
		owned[f.name] = f.id
	}
	if err := d.writeManifest(owned); err != nil {
		return res, err
	}
	var errs []error
	if d.left == nil {
		d.left, d.ids, d.in = map[string]fileStamp{}, map[string]string{}, map[string][]groupRef{}
	}
	for name := range d.left {
		if _, ok := content[name]; !ok {
			delete(d.left, name)
			delete(d.ids, name)
			delete(d.in, name)
		}
	}
	for _, f := range files {
		if same[f.name] {
			res.Unchanged = append(res.Unchanged, f.id)
			d.m.unchanged.Inc()
			continue
		}
		path := filepath.Join(d.opts.Dir, f.name)
		if was, ok := d.left[f.name]; ok {
			if now, ok := stampOf(path); ok && (now.size != was.size || !now.mod.Equal(was.mod)) {
				d.m.foreign.Inc()
				d.opts.Logger.Warn("a file this directory writer wrote was changed by someone else: does another sharder, "+
					"with another config, write to this directory?", "collector", f.id, "file", f.name)
			}
		}
		changed, err := writeChanged(path, content[f.name], read[f.name], d.opts.Mode)
		if st, ok := stampOf(path); ok && err == nil {
			d.left[f.name] = st
			d.ids[f.name] = f.id
			d.in[f.name] = refsOf(groups[f.id])
		} else {
			delete(d.left, f.name)
			delete(d.in, f.name)
		}
		switch {
		case err != nil:
			errs = append(errs, err)
			d.m.errors.Inc()
		case changed:
			res.Written = append(res.Written, f.id)
			d.m.writes.Inc()
			d.opts.Logger.Debug("wrote file_sd file", "collector", f.id, "file", f.name)
		default:
			res.Unchanged = append(res.Unchanged, f.id)
			d.m.unchanged.Inc()
		}
	}
	for _, name := range slices.Sorted(maps.Keys(owned)) {
		if _, ok := content[name]; ok {
			continue
		}
		id, path := owned[name], filepath.Join(d.opts.Dir, name)
		if d.opts.EmptyOnLeave {
			changed, err := writeBytes(path, mustEmpty(d.format(name)), d.opts.Mode)
			if err != nil {
				errs = append(errs, err)
				d.m.errors.Inc()
				continue
			}
			if changed {
				res.Removed = append(res.Removed, id)
				d.m.removed.Inc()
			}
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("filesd: remove %s: %w", path, err))
			d.m.errors.Inc()
			continue
		}
		delete(owned, name)
		res.Removed = append(res.Removed, id)
		d.m.removed.Inc()
		d.opts.Logger.Info("removed file_sd file of a collector that left", "collector", id, "file", name)
	}
	if len(res.Removed) > 0 && !d.opts.EmptyOnLeave {
		if err := d.writeManifest(owned); err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(res.Removed)
	d.m.duration.Observe(time.Since(start).Seconds())
	return res, errors.Join(errs...)
}

// sideBySide runs f(0) … f(n-1), as many at once as Go has processors.
func sideBySide(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// removeStaleTemps removes temp files that a crash between the create and
// the rename of a write left behind, for the files this Dir owns or is
// about to write. They never match Prometheus' globs, but they are litter.
func (d *Dir) removeStaleTemps(owned map[string]string, files []struct{ id, name string }) {
	names := slices.Collect(maps.Keys(owned))
	for _, f := range files {
		names = append(names, f.name)
	}
	names = append(names, filepath.Base(d.manifest))
	for _, name := range names {
		ms, _ := filepath.Glob(filepath.Join(d.opts.Dir, "."+globEscape(name)+".tmp-*"))
		for _, m := range ms {
			// A fresh temp file may be another copy's write in flight; no
			// write takes a minute, so an older one is litter.
			if st, err := os.Stat(m); err != nil || time.Since(st.ModTime()) < staleTemp {
				continue
			}
			if err := os.Remove(m); err == nil {
				d.opts.Logger.Info("removed a temp file left by an interrupted write", "file", filepath.Base(m))
			}
		}
	}
}

// staleTemp is the age from which a temp file is taken for the litter of
// an interrupted write.
const staleTemp = time.Minute

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

func mustEmpty(f Format) []byte {
	b, err := Marshal(nil, f)
	if err != nil {
		panic(err) // the empty list always encodes
	}
	return b
}

// manifestName is the file in which a Dir records the files it wrote. It
// is one per directory, whatever the template, so that a changed template
// removes the files the old one wrote: give each Dir a directory of its
// own.
const manifestName = ".promshard-owned"

// legacyManifests matches the per-template manifests of earlier versions,
// read once and merged so that their files are cleaned up too.
const legacyManifests = ".promshard-owned-*"

// readManifest returns the files this directory's Dir wrote before: name →
// ID.
func (d *Dir) readManifest() (map[string]string, error) {
	owned := map[string]string{}
	legacy, _ := filepath.Glob(filepath.Join(d.opts.Dir, legacyManifests))
	for _, p := range append(legacy, d.manifest) {
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("filesd: read manifest: %w", err)
		}
		m := map[string]string{}
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("filesd: manifest %s is corrupt (remove it to start over): %w", p, err)
		}
		maps.Copy(owned, m)
	}
	for name := range owned {
		// Never act on a name that would leave the directory.
		if !filepath.IsLocal(name) || strings.ContainsAny(name, "/\\") {
			delete(owned, name)
		}
	}
	return owned, nil
}

// writeManifest records the owned files, then drops the legacy manifests
// whose entries it now holds.
func (d *Dir) writeManifest(owned map[string]string) error {
	b, err := json.Marshal(owned)
	if err != nil {
		return fmt.Errorf("filesd: encode manifest: %w", err)
	}
	if _, err := writeBytes(d.manifest, b, 0o644); err != nil {
		return err
	}
	legacy, _ := filepath.Glob(filepath.Join(d.opts.Dir, legacyManifests))
	for _, p := range legacy {
		_ = os.Remove(p)
	}
	return nil
}

type dirMetrics struct {
	writes, unchanged, removed, errors, foreign prometheus.Counter
	duration                                    prometheus.Histogram
}

func newDirMetrics(reg prometheus.Registerer, dir string) (*dirMetrics, error) {
	cl := prometheus.Labels{"dir": dir}
	m := &dirMetrics{
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_filesd_writes_total",
			Help: "Files written because their content changed.", ConstLabels: cl}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_filesd_unchanged_total",
			Help: "Files left alone because their content was already right.", ConstLabels: cl}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_filesd_removed_total",
			Help: "Files removed (or emptied) because their collector left.", ConstLabels: cl}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_filesd_errors_total",
			Help: "Files that could not be written or removed.", ConstLabels: cl}),
		foreign: prometheus.NewCounter(prometheus.CounterOpts{Name: "promshard_filesd_foreign_changes_total",
			Help: "Files found changed by someone else since this writer last wrote them.", ConstLabels: cl}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "promshard_filesd_sync_duration_seconds",
			Help: "Duration of a directory sync.", ConstLabels: cl, Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}),
	}
	if err := promutil.Register(reg, fmt.Sprintf("filesd: register metrics for directory %q", dir),
		m.writes, m.unchanged, m.removed, m.errors, m.foreign, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}
