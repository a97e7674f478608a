package filesd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/tstore"
)

// MemberFile is the file of one collector, for a sharder that runs beside
// that collector (self mode): it writes only that collector's groups, and
// an empty list when the collector has none or is not in the assignment at
// all (it is not healthy), so that its old targets are not scraped twice.
// It never touches any other file, so copies for different collectors can
// share a directory.
type MemberFile struct {
	// ID is the collector whose groups go into the file. Required.
	ID string
	// Path of the file. Required.
	Path string
	// Format of the file; empty means by the file's extension.
	Format Format
	// Mode of the file; zero means [DefaultMode].
	Mode fs.FileMode
	// Create makes the file's directory, and its parents (mode 0755), when
	// a write finds it missing.
	Create bool

	mu   sync.Mutex
	left fileStamp // the file as the last Update left it
	has  bool
}

// PathOf returns the file's path for f.ID, an error for another ID.
func (f *MemberFile) PathOf(id string) (string, error) {
	if id != f.ID {
		return "", fmt.Errorf("filesd: MemberFile of %q has no file for %q", f.ID, id)
	}
	return f.Path, nil
}

// Drifted returns f.ID when the file no longer is as the last Update left
// it (removed, or changed by someone else).
func (f *MemberFile) Drifted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now, ok := stampOf(f.Path); f.has && (!ok || now != f.left) {
		return []string{f.ID}
	}
	return nil
}

// File returns the [MemberFile] of collector id under the Dir's template,
// format, mode and Create.
func (d *Dir) File(id string) (*MemberFile, error) {
	name, err := d.render(id)
	if err != nil {
		return nil, err
	}
	p, _ := d.PathOf(id)
	return &MemberFile{ID: id, Path: p, Format: d.format(name), Mode: d.opts.Mode, Create: d.opts.Create}, nil
}

// Update writes groups[f.ID] (or an empty list) to the file, atomically,
// unless it already holds that content. It returns f.ID when the file
// changed.
func (f *MemberFile) Update(ctx context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	return f.UpdateCompact(ctx, map[string][]*tstore.Group{f.ID: tstore.FromAll(groups[f.ID])})
}

// UpdateCompact is Update over groups in the module's compact form, as
// the Sharder holds them.
func (f *MemberFile) UpdateCompact(_ context.Context, groups map[string][]*tstore.Group) ([]string, error) {
	if f.ID == "" || f.Path == "" {
		return nil, errors.New("filesd: MemberFile needs an ID and a Path")
	}
	gs := groups[f.ID]
	if gs == nil {
		gs = []*tstore.Group{}
	}
	if f.Create {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return nil, fmt.Errorf("filesd: %w", err)
		}
	}
	changed, err := writeFile(f.Path, gs, WriteOptions{Format: f.Format, Mode: f.Mode})
	f.mu.Lock()
	f.left, f.has = stampOf(f.Path)
	f.has = f.has && err == nil
	f.mu.Unlock()
	if err != nil || !changed {
		return nil, err
	}
	return []string{f.ID}, nil
}
