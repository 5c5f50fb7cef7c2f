package node

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cocaine/cocaine/rpc"
)

// Limits on an unpacked archive, so a hostile upload cannot fill the disk.
const (
	maxSpoolBytes = 4 << 30
	maxSpoolFiles = 100_000
)

// UnwrapArchive returns the archive bytes of an "apps" value: cocaine-tool stores the
// .tar.gz as a msgpack raw. A value that is not msgpack-wrapped is taken as it is.
func UnwrapArchive(value []byte) []byte {
	d := rpc.NewDecoder(value)
	if d.Peek() == rpc.KindRaw {
		if b, err := d.Bytes(); err == nil && d.Remaining() == 0 {
			return b
		}
	}
	return value
}

// Unpack extracts a tar or tar.gz archive into dir, which it empties first. Entries must
// stay inside dir: absolute names, "..", links pointing out of dir and device files are
// refused. Errors wrap ErrSpool.
func Unpack(archive []byte, dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("%w: clearing %s: %v", ErrSpool, dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrSpool, err)
	}
	var r io.Reader = bytes.NewReader(archive)
	if len(archive) >= 2 && archive[0] == 0x1f && archive[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrSpool, err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	var total int64
	for files := 0; ; files++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if files == 0 {
				return fmt.Errorf("%w: the archive is empty", ErrSpool)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: tar: %v", ErrSpool, err)
		}
		if files >= maxSpoolFiles {
			return fmt.Errorf("%w: more than %d entries", ErrSpool, maxSpoolFiles)
		}
		target, err := inside(dir, h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("%w: %v", ErrSpool, err)
			}
		case tar.TypeReg:
			total += h.Size
			if total > maxSpoolBytes {
				return fmt.Errorf("%w: the archive unpacks to more than %d bytes", ErrSpool, int64(maxSpoolBytes))
			}
			if err := writeFile(target, tr, h.FileInfo().Mode().Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if filepath.IsAbs(h.Linkname) || !within(dir, filepath.Join(filepath.Dir(target), h.Linkname)) {
				return fmt.Errorf("%w: symlink %q -> %q points outside the app", ErrSpool, h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("%w: %v", ErrSpool, err)
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return fmt.Errorf("%w: %v", ErrSpool, err)
			}
		case tar.TypeXGlobalHeader, tar.TypeXHeader:
		default:
			return fmt.Errorf("%w: entry %q has unsupported type %q", ErrSpool, h.Name, string(h.Typeflag))
		}
	}
}

// inside resolves an entry name under dir, refusing names that leave it.
func inside(dir, name string) (string, error) {
	switch {
	case name == "" || strings.Contains(name, "\x00"):
		return "", fmt.Errorf("%w: bad entry name %q", ErrSpool, name)
	case filepath.IsAbs(name):
		return "", fmt.Errorf("%w: entry %q is absolute", ErrSpool, name)
	}
	for _, part := range strings.Split(filepath.ToSlash(name), "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: entry %q leaves the app directory", ErrSpool, name)
		}
	}
	return filepath.Join(dir, filepath.Clean(name)), nil
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	dir, path = filepath.Clean(dir), filepath.Clean(path)
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

func writeFile(path string, r io.Reader, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrSpool, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscallNoFollow, perm|0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSpool, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("%w: %v", ErrSpool, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrSpool, err)
	}
	return nil
}
