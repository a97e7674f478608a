package filesd

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/prometheus/prometheus/discovery/targetgroup"

	"github.com/promshard/promshard/internal/sdfile"
	"github.com/promshard/promshard/internal/tstore"
)

// DefaultMode is the permission of written files: Prometheus, often another
// user, must read them.
const DefaultMode fs.FileMode = 0o644

// WriteOptions configures [WriteFile].
type WriteOptions struct {
	// Format of the file; empty means by the file's extension.
	Format Format
	// Mode of the file; zero means [DefaultMode].
	Mode fs.FileMode
}

// WriteFile writes groups to path as a file_sd file, atomically, unless the
// file already holds exactly that content. It reports whether the file
// changed. Nothing is written when the groups do not validate.
func WriteFile(path string, groups []*targetgroup.Group, opts WriteOptions) (changed bool, err error) {
	return writeFile(path, tstore.FromAll(groups), opts)
}

// writeFile is WriteFile over groups in the module's compact form.
func writeFile(path string, groups []*tstore.Group, opts WriteOptions) (changed bool, err error) {
	f := opts.Format
	if f == "" {
		if f, err = FormatOf(path); err != nil {
			return false, err
		}
	}
	b, err := sdfile.MarshalCompact(groups, f)
	if err != nil {
		return false, fmt.Errorf("filesd: %s: %w", path, err)
	}
	return writeBytes(path, b, opts.Mode)
}

// writeBytes replaces path with b atomically, unless it holds b already.
func writeBytes(path string, b []byte, mode fs.FileMode) (bool, error) {
	return writeChanged(path, b, nil, mode)
}

// writeChanged is writeBytes given the file's content as just read (nil:
// read it here).
func writeChanged(path string, b, old []byte, mode fs.FileMode) (bool, error) {
	if mode == 0 {
		mode = DefaultMode
	}
	var err error
	if old == nil {
		old, err = os.ReadFile(path)
	}
	if err == nil && bytes.Equal(old, b) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == mode.Perm() {
			return false, nil
		}
	}
	if err := atomicWrite(path, b, mode); err != nil {
		return false, fmt.Errorf("filesd: write %s: %w", path, err)
	}
	return true, nil
}

// tempName is a sibling of path that no *.json / *.yml / *.yaml glob
// matches: it ends in a random suffix after ".tmp-".
func tempName(path string) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(r[:]))
}

// atomicWrite writes b to a temp file beside path, syncs it, renames it over
// path and syncs the directory, so that after a crash path holds either the
// old or the new content, and no temp file is left behind on error.
func atomicWrite(path string, b []byte, mode fs.FileMode) (err error) {
	tmp := tempName(path)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	// The umask may have narrowed the mode given to OpenFile.
	if err = f.Chmod(mode.Perm()); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
