package storage

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Digest is the SHA-256 of a blob's bytes: its name in the blob store and in the
// references the replicated state keeps.
type Digest [sha256.Size]byte

// DigestOf returns the digest of data.
func DigestOf(data []byte) Digest { return sha256.Sum256(data) }

// String returns the digest in lowercase hex, as blob files are named.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// ParseDigest reads a digest written by String: 64 hex digits, either case. The error
// wraps ErrInvalidName.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 2*len(d) {
		return d, fmt.Errorf("%w: a blob digest is %d hex digits, got %d bytes", ErrInvalidName, 2*len(d), len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return Digest{}, fmt.Errorf("%w: blob digest %s is not hex", ErrInvalidName, displayName(s))
	}
	return d, nil
}

// errNoBlob: the blob store of this host has no file for the digest. It never leaves the
// package as such: reads turn it into a fetch, the blob method into ErrNotFound.
var errNoBlob = errors.New("storage: blob not on this host")

// tmpPrefix starts the names of files being written. A file is renamed to its digest
// only once it is complete and synced, so a crash leaves at most a temporary file, which
// the next open removes.
const tmpPrefix = ".tmp-"

// blobStore is this host's content-addressed store: one file per blob, named by the hex
// digest of its bytes, in one directory. Files appear whole (written to a temporary file,
// synced, renamed, the directory synced) and are checked against their name whenever they
// are read. It is safe for concurrent use.
//
// A blob is pinned while a write that stores it is being proposed, so that collect never
// deletes a blob whose reference may still commit.
type blobStore struct {
	dir     string
	maxSize int // the largest blob put and get accept

	// mu guards the following fields, and orders remove after pin.
	mu         sync.Mutex
	pins       map[Digest]int      // digest -> writes in flight
	candidates map[Digest]struct{} // found unreferenced and unpinned by the last collect
}

// openBlobStore opens the store in dir, creating it if needed, and removes the temporary
// files a crash may have left.
func openBlobStore(dir string, maxSize int) (*blobStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: blob store: %w", err)
	}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: blob store: %w", err)
	}
	for _, e := range names {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("storage: blob store: %w", err)
			}
		}
	}
	return &blobStore{dir: dir, maxSize: maxSize, pins: map[Digest]int{}, candidates: map[Digest]struct{}{}}, nil
}

func (s *blobStore) path(d Digest) string { return filepath.Join(s.dir, d.String()) }

// pin protects d from collect until the returned func is called (exactly once).
func (s *blobStore) pin(d Digest) (unpin func()) {
	s.mu.Lock()
	s.pins[d]++
	delete(s.candidates, d) // the grace period starts again when the pin goes
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.pins[d]--; s.pins[d] <= 0 {
				delete(s.pins, d)
			}
			s.mu.Unlock()
		})
	}
}

// put stores data under its digest, pinned; the caller unpins it once the write that
// refers to it has been proposed. A file already there is kept if it verifies, and
// replaced otherwise.
func (s *blobStore) put(data []byte) (Digest, func(), error) {
	if len(data) > s.maxSize {
		return Digest{}, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(data), s.maxSize)
	}
	d := DigestOf(data)
	unpin := s.pin(d)
	if _, err := s.get(d); err == nil {
		return d, unpin, nil
	}
	w, err := s.create(d, int64(len(data)))
	if err == nil {
		_, err = w.Write(data)
		if err == nil {
			err = w.commit()
		}
		w.abort()
	}
	if err != nil {
		unpin()
		return Digest{}, nil, err
	}
	return d, unpin, nil
}

// blobWriter writes one blob to a temporary file, hashing it as it goes; commit checks
// size and digest and makes it visible.
type blobWriter struct {
	s    *blobStore
	d    Digest
	size int64 // the size the blob must have
	n    int64
	f    *os.File
	h    hash.Hash
}

// create starts writing the blob d of size bytes. The caller must call abort when done,
// after commit or instead of it.
func (s *blobStore) create(d Digest, size int64) (*blobWriter, error) {
	if size < 0 || size > int64(s.maxSize) {
		return nil, fmt.Errorf("%w: blob %s is %d bytes, the limit is %d", ErrTooLarge, d, size, s.maxSize)
	}
	f, err := os.CreateTemp(s.dir, tmpPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("storage: blob %s: %w", d, err)
	}
	return &blobWriter{s: s, d: d, size: size, f: f, h: sha256.New()}, nil
}

// Write appends p. It fails with ErrCorrupt once the blob would exceed its size.
func (w *blobWriter) Write(p []byte) (int, error) {
	if w.n+int64(len(p)) > w.size {
		return 0, fmt.Errorf("%w: blob %s: more than its %d bytes", ErrCorrupt, w.d, w.size)
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	w.h.Write(p[:n])
	if err != nil {
		return n, fmt.Errorf("storage: blob %s: %w", w.d, err)
	}
	return n, nil
}

// commit checks that the bytes written are the blob, then syncs the file, renames it to
// its digest and syncs the directory, so that a blob that exists is complete.
func (w *blobWriter) commit() error {
	if w.n != w.size {
		return fmt.Errorf("%w: blob %s: %d bytes, want %d", ErrCorrupt, w.d, w.n, w.size)
	}
	if got := Digest(w.h.Sum(nil)); got != w.d {
		return fmt.Errorf("%w: blob %s: the bytes have digest %s", ErrCorrupt, w.d, got)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("storage: blob %s: %w", w.d, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("storage: blob %s: %w", w.d, err)
	}
	tmp := w.f.Name()
	w.f = nil
	if err := os.Rename(tmp, w.s.path(w.d)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: blob %s: %w", w.d, err)
	}
	return w.s.syncDir()
}

// abort removes the temporary file unless commit renamed it. It is safe after commit.
func (w *blobWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

// syncDir makes the directory's entries (a rename, a removal) durable.
func (s *blobStore) syncDir() error {
	dir, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("storage: blob store: %w", err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("storage: blob store: %w", err)
	}
	return nil
}

// get returns the blob d, read whole and checked against its digest. It returns
// errNoBlob if there is no such file; a file whose bytes do not match is removed, and
// get returns ErrCorrupt, so the next get reports errNoBlob and the blob can be fetched
// again.
func (s *blobStore) get(d Digest) ([]byte, error) {
	f, size, err := s.open(d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > int64(s.maxSize) {
		return nil, s.corrupt(d, fmt.Errorf("%d bytes, over the limit of %d", size, s.maxSize))
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, s.corrupt(d, errors.New("the file shrank while it was read"))
		}
		return nil, fmt.Errorf("storage: blob %s: %w", d, err)
	}
	if got := DigestOf(data); got != d {
		return nil, s.corrupt(d, fmt.Errorf("the bytes have digest %s", got))
	}
	return data, nil
}

// corrupt removes the file of d, which failed verification for the reason why, and
// returns the error that says so.
func (s *blobStore) corrupt(d Digest, why error) error {
	err := fmt.Errorf("%w: blob %s: %v", ErrCorrupt, d, why)
	if rerr := os.Remove(s.path(d)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return errors.Join(err, fmt.Errorf("storage: removing the corrupt blob %s: %w", d, rerr))
	}
	return err
}

// open returns the file of d for streaming and its size, or errNoBlob. The caller checks
// the digest as it reads (see sendBlob).
func (s *blobStore) open(d Digest) (*os.File, int64, error) {
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, errNoBlob
	}
	if err != nil {
		return nil, 0, fmt.Errorf("storage: blob %s: %w", d, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("storage: blob %s: %w", d, err)
	}
	return f, info.Size(), nil
}

// has reports whether the file of d exists; it does not read it.
func (s *blobStore) has(d Digest) bool {
	_, err := os.Stat(s.path(d))
	return err == nil
}

// list returns the digests of every blob file. Names that are not digests are skipped.
func (s *blobStore) list() ([]Digest, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("storage: blob store: %w", err)
	}
	var out []Digest
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.ToLower(name) != name {
			continue
		}
		if d, err := ParseDigest(name); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// collect deletes the blobs that referenced reports unreferenced, unpinned and found so
// by the previous collect as well: a blob lives at least one collect interval after its
// last pin ends, which covers a write whose Propose failed but whose command still
// commits. It returns the digests deleted.
func (s *blobStore) collect(referenced func(Digest) bool) ([]Digest, error) {
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var deleted, errs = []Digest(nil), []error(nil)
	seen := make(map[Digest]struct{}, len(all))
	for _, d := range all {
		seen[d] = struct{}{}
		if s.pins[d] > 0 || referenced(d) {
			delete(s.candidates, d)
			continue
		}
		if _, ok := s.candidates[d]; !ok {
			s.candidates[d] = struct{}{}
			continue
		}
		delete(s.candidates, d)
		if err := os.Remove(s.path(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("storage: blob %s: %w", d, err))
			continue
		}
		deleted = append(deleted, d)
	}
	for d := range s.candidates {
		if _, ok := seen[d]; !ok {
			delete(s.candidates, d) // gone by other means
		}
	}
	if len(deleted) > 0 {
		if err := s.syncDir(); err != nil {
			errs = append(errs, err)
		}
	}
	return deleted, errors.Join(errs...)
}
