package filesd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/prometheus/prometheus/discovery/targetgroup"
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
}

// File returns the [MemberFile] of collector id under the Dir's template,
// format, mode and Create.
func (d *Dir) File(id string) (*MemberFile, error) {
	name, err := d.render(id)
	if err != nil {
		return nil, err
	}
	p, _ := d.Path(id)
	return &MemberFile{ID: id, Path: p, Format: d.format(name), Mode: d.opts.Mode, Create: d.opts.Create}, nil
}

// Update writes groups[f.ID] (or an empty list) to the file, atomically,
// unless it already holds that content. It returns f.ID when the file
// changed.
func (f *MemberFile) Update(_ context.Context, groups map[string][]*targetgroup.Group) ([]string, error) {
	if f.ID == "" || f.Path == "" {
		return nil, errors.New("filesd: MemberFile needs an ID and a Path")
	}
	gs := groups[f.ID]
	if gs == nil {
		gs = []*targetgroup.Group{}
	}
	if f.Create {
		if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
			return nil, fmt.Errorf("filesd: %w", err)
		}
	}
	changed, err := WriteFile(f.Path, gs, WriteOptions{Format: f.Format, Mode: f.Mode})
	if err != nil || !changed {
		return nil, err
	}
	return []string{f.ID}, nil
}
