package targets

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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

	mu   sync.Mutex
	read uint64 // fingerprint of what Targets last read; 0 before
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
	var out []*targetgroup.Group
	h := xxhash.New()
	for _, p := range f.paths() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		hashFile(h, p, b)
		format, _ := sdfile.FormatOf(p) // the globs end in a file_sd extension
		gs, err := sdfile.Parse(b, format)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", p, err)
		}
		for i, g := range gs {
			if g == nil {
				continue
			}
			g.Source = fmt.Sprintf("%s:%d", p, i)
			out = append(out, g)
		}
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
		b, err := os.ReadFile(p)
		if err != nil {
			b = []byte("\x00unreadable")
		}
		hashFile(h, p, b)
	}
	return h.Sum64()
}
