package targets

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/sdfile"
	"github.com/promshard/promshard/internal/tick"
	"github.com/promshard/promshard/internal/tstore"
)

// DefaultFileInterval is how often a [File] checks its files for changes.
const DefaultFileInterval = 5 * time.Second

// FileOptions configures a [File] provider.
type FileOptions struct {
	// Files are paths or globs (path/filepath.Match syntax) of file_sd
	// files: .json, .yml or .yaml, in Prometheus' file_sd format.
	// Required.
	Files []string
	// Interval is how often Run looks at the files besides the file system's
	// events; zero means [DefaultFileInterval].
	Interval time.Duration
}

// File reads targets from file_sd files, as Prometheus' file_sd_configs
// does: each group's source is "path:index". A file that cannot be read or
// parsed fails the whole fetch (the registry then keeps the last good
// targets) and the error names the file.
type File struct {
	opts FileOptions

	mu    sync.Mutex
	read  uint64                // fingerprint of what Targets last read; 0 before
	files map[string]*fileState // what was last read of each file
}

// fileState is what was last read of one file: enough to know, from its
// size and modification time alone, that it has not changed, and then to
// hand back its groups without reading or parsing it again.
type fileState struct {
	size   int64
	mtime  time.Time
	stable bool   // the file was already a second old when read: the same size and time mean the same bytes
	hash   uint64 // of its path and content
	groups []*tstore.Group
	parsed *sdfile.Parsed // each group's text, to give back the groups of those that did not change (JSON)
}

// Inherit takes over what prev, a File this one replaces (a config
// reload), read: a file whose size and modification time vouch that it did
// not change is then neither read nor parsed again, and the very groups
// prev returned are returned, which a [Registry] seeded with them keeps.
// It does so only when prev is a *File of the same globs, and reports
// whether it did.
func (f *File) Inherit(prev any) bool {
	p, ok := prev.(*File)
	if !ok || p == f || !slices.Equal(p.opts.Files, f.opts.Files) {
		return false
	}
	p.mu.Lock()
	read, files := p.read, maps.Clone(p.files)
	p.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read, f.files = read, files
	return true
}

// stableAge is how old a file must be, when read, for its size and
// modification time to vouch for its content later (a write within the
// file system's time granularity can keep both).
const stableAge = time.Second

// load returns a file's hash, and its groups when parse is set, reading
// and parsing only what changed since the last load.
func (f *File) load(p string, parse bool) (uint64, []*tstore.Group, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, nil, fmt.Errorf("read %s: %w", p, err)
	}
	f.mu.Lock()
	old := f.files[p]
	f.mu.Unlock()
	if old != nil && old.stable && st.Size() == old.size && st.ModTime().Equal(old.mtime) && (!parse || old.groups != nil) {
		return old.hash, old.groups, nil
	}
	var b []byte
	h := xxhash.New()
	if parse {
		if b, err = os.ReadFile(p); err != nil {
			return 0, nil, fmt.Errorf("read %s: %w", p, err)
		}
		hashFile(h, p, b)
	} else if err = hashStream(h, p); err != nil { // a look for changes: the file is hashed as it is read, not held
		return 0, nil, fmt.Errorf("read %s: %w", p, err)
	}
	fs := &fileState{size: st.Size(), mtime: st.ModTime(), hash: h.Sum64(), stable: time.Since(st.ModTime()) >= stableAge}
	if old != nil {
		fs.parsed = old.parsed // what the groups' texts gave, for the parse that follows a look without one
	}
	switch {
	case old != nil && old.hash == fs.hash && old.groups != nil:
		fs.groups = old.groups // the same bytes: the same groups, not parsed again
	case parse:
		source := func(i int) string { return fmt.Sprintf("%s:%d", p, i) }
		var gs []*tstore.Group
		if format, _ := sdfile.FormatOf(p); format == sdfile.JSON { // the globs end in a file_sd extension
			// The groups whose text did not change are those of the last
			// parse, their label sets too: one group changed in a
			// thousand makes one group's label sets, not a million.
			gs, fs.parsed, err = sdfile.ParseReusing(b, fs.parsed, source)
		} else if gs, err = sdfile.ParseCompact(b, format, nil); err == nil {
			for i, g := range gs {
				if g != nil {
					g.Source = source(i)
				}
			}
		}
		if err != nil {
			return 0, nil, fmt.Errorf("parse %s: %w", p, err)
		}
		fs.groups = make([]*tstore.Group, 0, len(gs))
		for _, g := range gs {
			if g != nil {
				fs.groups = append(fs.groups, g)
			}
		}
	}
	f.mu.Lock()
	if f.files == nil {
		f.files = map[string]*fileState{}
	}
	f.files[p] = fs
	f.mu.Unlock()
	return fs.hash, fs.groups, nil
}

var (
	_ Provider = (*File)(nil)
	_ Runner   = (*File)(nil)
)

// NewFile validates opts. It reads nothing.
func NewFile(opts FileOptions) (*File, error) {
	if len(opts.Files) == 0 {
		return nil, errors.New("targets: FileOptions.Files is empty")
	}
	for i, pat := range opts.Files {
		if _, err := filepath.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("targets: FileOptions.Files[%d] %q: %w", i, pat, err)
		}
		if _, err := sdfile.FormatOf(pat); err != nil {
			return nil, fmt.Errorf("targets: FileOptions.Files[%d] %q: must end in .json, .yml or .yaml", i, pat)
		}
	}
	if opts.Interval < 0 {
		return nil, fmt.Errorf("targets: FileOptions.Interval %v: must not be negative", opts.Interval)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultFileInterval
	}
	return &File{opts: opts}, nil
}

// paths expands the globs, sorted and deduplicated.
func (f *File) paths() []string {
	var out []string
	for _, pat := range f.opts.Files {
		ms, _ := filepath.Glob(pat) // patterns were checked in NewFile
		out = append(out, ms...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Check reports an error, naming the patterns, when no file matches any of
// them: a source that does not exist yet would give no targets, so a
// program can refuse it at start (a mistyped path) instead of running
// without any.
func (f *File) Check() error {
	if len(f.paths()) == 0 {
		return fmt.Errorf("targets: file_sd %q: no file matches", f.opts.Files)
	}
	return nil
}

// Targets reads and parses every file.
func (f *File) Targets(ctx context.Context) ([]*targetgroup.Group, error) {
	gs, err := f.compactTargets(ctx)
	return tstore.All(gs), err
}

// compactTargets is Targets in the module's compact form, as a [Registry]
// asks for them: a file's million addresses are a million strings carved
// from its text, not a million label sets.
func (f *File) compactTargets(ctx context.Context) ([]*tstore.Group, error) {
	var out []*tstore.Group
	h := xxhash.New()
	for _, p := range f.paths() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fh, gs, err := f.load(p, true)
		if err != nil {
			return nil, err
		}
		_ = binary.Write(h, binary.LittleEndian, fh)
		out = append(out, gs...)
	}
	f.mu.Lock()
	f.read = h.Sum64()
	f.mu.Unlock()
	return out, nil
}

func hashFile(h *xxhash.Digest, path string, content []byte) {
	_, _ = h.WriteString(path)
	_, _ = h.WriteString("\x00")
	_, _ = h.Write(content)
}

// hashStream is hashFile of the file at path, read a piece at a time.
func hashStream(h *xxhash.Digest, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, _ = h.WriteString(path)
	_, _ = h.WriteString("\x00")
	_, err = io.Copy(h, f)
	return err
}

// ParseFileSD parses file_sd content (JSON when isJSON, else YAML) as
// Prometheus does.
func ParseFileSD(b []byte, isJSON bool) ([]*targetgroup.Group, error) {
	if isJSON {
		return sdfile.Parse(b, sdfile.JSON)
	}
	return sdfile.Parse(b, sdfile.YAML)
}

// Run follows the files until ctx is done: it watches their directories
// with fsnotify and also looks every Interval (a safety net for file
// systems without events), as Prometheus' file SD does. It sends on changed
// when the files' set or content differs from what Targets last read (or,
// before any read, from what was there when Run started).
func (f *File) Run(ctx context.Context, changed chan<- struct{}) error {
	start := f.fingerprint()
	var notified uint64 // the content last announced, so it is announced once
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		for _, pat := range f.opts.Files {
			_ = w.Add(filepath.Dir(pat)) // a missing directory is left to the timer
		}
		events = w.Events
	}
	tick.Every(ctx, f.opts.Interval, events, func() bool {
		f.mu.Lock()
		seen := cmp.Or(f.read, start) // what the consumer has
		f.mu.Unlock()
		if fp := f.fingerprint(); fp != seen && fp != notified {
			notified = fp
			select {
			case changed <- struct{}{}:
			case <-ctx.Done():
				return false
			}
		}
		return true
	})
	return nil
}

func (f *File) fingerprint() uint64 {
	h := xxhash.New()
	for _, p := range f.paths() {
		fh, _, err := f.load(p, false)
		if err != nil {
			_, _ = h.WriteString(p + "\x00unreadable")
			continue
		}
		_ = binary.Write(h, binary.LittleEndian, fh)
	}
	return h.Sum64()
}
