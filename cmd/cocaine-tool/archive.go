package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// jsonArg reads a JSON object given on the command line either inline or as a file, as
// the original's CocaineConfigReader: text that parses as JSON is the content, anything
// else is a path.
func jsonArg(what, s string) (any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, badf("%s is empty", what)
	}
	content := []byte(s)
	if !json.Valid(content) {
		b, err := os.ReadFile(s)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, badf("%s %q is neither JSON nor a file", what, s)
			}
			return nil, badf("%s: %v", what, err)
		}
		content = b
	}
	v, err := parseJSONBytes(content)
	if err != nil {
		return nil, badf("%s: not JSON: %v", what, err)
	}
	return v, nil
}

// jsonObject is jsonArg for a value that must be an object.
func jsonObject(what, s string) (map[string]any, error) {
	v, err := jsonArg(what, s)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badf("%s must be a JSON object, got %s", what, compactJSON(v))
	}
	return m, nil
}

// checkManifest validates a manifest as the node will (node.DecodeManifest).
func checkManifest(m map[string]any) (node.Manifest, error) {
	b, err := rpc.Marshal(m)
	if err != nil {
		return node.Manifest{}, badf("manifest: %v", err)
	}
	man, err := node.DecodeManifest(b)
	if err != nil {
		return man, badf("%v", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return man, nil
}

// findManifest looks for the manifest of the app in dir: manifest.json or manifest at
// its top, else the first manifest.json below it (as the original's _locateFile).
func findManifest(dir string) (string, error) {
	for _, name := range []string{"manifest.json", "manifest"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	found := ""
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "manifest.json" {
			found = p
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return "", badf("no manifest.json in %s (give one with --manifest)", dir)
	}
	return found, nil
}

// packDir packs the contents of dir as a .tar.gz, names relative to dir: directories,
// regular files (with their permissions) and symlinks. Anything else (sockets, devices)
// is skipped, with a warning through warn.
func packDir(dir string, warn func(string)) ([]byte, error) {
	var buf bytes.Buffer
	// The fastest level: a 100 MiB app packs in about a second rather than four, for an
	// archive about a tenth larger.
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: name, ModTime: info.ModTime(), Mode: int64(info.Mode().Perm()), Format: tar.FormatPAX}
		switch {
		case info.Mode().IsDir():
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		case info.Mode().IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, info.Size()
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
		default:
			warn(fmt.Sprintf("skipping %s: not a file, directory or symlink", p))
			return nil
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, h.Size); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return nil, toolErrorf("packing %s: %v", dir, err)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// archiveEntries lists the entries of a tar or .tar.gz archive (a ready package given
// with --package), refusing anything that is not one.
func archiveEntries(archive []byte) (map[string]*tar.Header, error) {
	var r io.Reader = bytes.NewReader(archive)
	if len(archive) >= 2 && archive[0] == 0x1f && archive[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("not a .tar.gz: %v", err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	out := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a tar archive: %v", err)
		}
		out[path.Clean(strings.TrimPrefix(h.Name, "./"))] = h
	}
	if len(out) == 0 {
		return nil, errors.New("the archive is empty")
	}
	return out, nil
}

// checkSlave checks that the manifest's executable is in the archive (the node runs a
// relative slave from the unpacked archive) and warns if it is not executable.
func checkSlave(slave string, entries map[string]*tar.Header, warn func(string)) error {
	if filepath.IsAbs(slave) {
		return nil
	}
	name := path.Clean(strings.TrimPrefix(filepath.ToSlash(slave), "./"))
	h, ok := entries[name]
	if !ok {
		return badf("the manifest's slave %q is not in the app's archive", slave)
	}
	if h.Typeflag == tar.TypeReg && h.Mode&0o111 == 0 {
		warn(fmt.Sprintf("%s is not executable: the node will fail to start it", slave))
	}
	return nil
}
