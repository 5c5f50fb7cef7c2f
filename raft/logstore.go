package raft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"
	"go.etcd.io/bbolt"
)

// The log store is hashicorp/raft-wal in Dir/wal: append-only segment files,
// preallocated, with one fdatasync per append. raft-boltdb, which earlier versions
// used (Dir/raft.db), commits every append as a bbolt transaction: dirty pages, an
// fdatasync, the meta page, a second fdatasync, ~34 KB written for a 100-byte entry
// once the file has been truncated by a few snapshots. hashicorp's leader writes its
// own log before it replicates, so a commit waits for two servers' appends in series;
// halving each append halves the disk part of every write's latency (README, "The
// cluster"). raft-wal before v0.4.2 did not seal a segment whose tail raft truncated
// (a follower dropping a suffix), and panicked at the next start: the chaos test in
// internal/testcluster runs into it within seconds.
const (
	walDir      = "wal"
	boltFile    = "raft.db"
	boltKept    = "raft.db.migrated"
	walMetaFile = "wal-meta.db" // raft-wal's own name: its presence means the WAL exists
	lockFile    = "LOCK"
)

// logStore is the raft log and stable store of one server, and the lock on its data
// dir.
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

// openLogStore locks dir, moves a raft.db left by an earlier version into a new WAL,
// and opens the WAL.
func openLogStore(dir string, hlog hclog.Logger, log *slog.Logger) (*logStore, error) {
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	if err := migrateBolt(dir, hlog, log); err != nil {
		lock.Close()
		return nil, err
	}
	s, err := openWAL(filepath.Join(dir, walDir), hlog)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func openWAL(path string, hlog hclog.Logger) (*logStore, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("raft: log store: %w", err)
	}
	// raft-wal's Close leaves a meta store it opened itself open (and its file locked,
	// so the same process could not open the dir again); one we pass in we close.
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(path, wal.WithMetaStore(meta), wal.WithLogger(hlog.Named("wal")))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("raft: open log store %s: %w", path, err)
	}
	return &logStore{WAL: w, meta: meta}, nil
}

// Close closes the WAL, then its meta store, then releases the data dir.
func (s *logStore) Close() error {
	err := s.WAL.Close()
	if merr := s.meta.Close(); err == nil {
		err = merr
	}
	if s.lock != nil {
		if lerr := s.lock.Close(); err == nil {
			err = lerr
		}
	}
	if err != nil {
		return fmt.Errorf("raft: close log store: %w", err)
	}
	return nil
}

// lockDir takes an exclusive lock on dir/LOCK, so that a second daemon pointed at the
// same data dir fails at once and says why instead of corrupting or waiting. The
// kernel drops the lock when the process dies.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("raft: data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("raft: data dir %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("raft: lock data dir %s: %w", dir, err)
	}
	return f, nil
}

// migrateBolt copies the log and the stable keys of dir/raft.db into dir/wal, then
// renames raft.db to raft.db.migrated (kept for the operator to delete). The WAL is
// built under another name and renamed into place, so a crash at any point leaves
// either raft.db alone (the copy starts again) or a complete WAL.
func migrateBolt(dir string, hlog hclog.Logger, log *slog.Logger) error {
	old := filepath.Join(dir, boltFile)
	if _, err := os.Stat(old); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	final := filepath.Join(dir, walDir)
	tmp := final + ".migrating" // what an attempt that crashed left
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("raft: migrate log store: %w", err)
	}
	if _, err := os.Stat(filepath.Join(final, walMetaFile)); err == nil {
		// The copy finished but the rename of raft.db did not happen.
		return keepBolt(dir, old)
	}
	n, err := copyBolt(old, tmp, hlog)
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("raft: migrate %s to %s: %w", old, final, err)
	}
	// An empty wal dir (made before the WAL had any state) must not block the rename.
	if err := os.RemoveAll(final); err != nil {
		return fmt.Errorf("raft: migrate log store: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("raft: migrate log store: %w", err)
	}
	if err := keepBolt(dir, old); err != nil {
		return err
	}
	log.Info("moved the raft log from raft-boltdb to the WAL", "entries", n, "from", old, "kept", filepath.Join(dir, boltKept))
	return nil
}

func copyBolt(old, tmp string, hlog hclog.Logger) (entries uint64, err error) {
	src, err := raftboltdb.New(raftboltdb.Options{Path: old, BoltOptions: &bbolt.Options{Timeout: 5 * time.Second}})
	if err != nil {
		return 0, err
	}
	defer src.Close()
	dst, err := openWAL(tmp, hlog)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
	}()
	first, err := src.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := src.LastIndex()
	if err != nil {
		return 0, err
	}
	if last > 0 { // migrate.CopyLogs reads index 0 of an empty log
		if err := migrate.CopyLogs(context.Background(), dst, src, 1<<20, nil); err != nil {
			return 0, err
		}
		entries = last - first + 1
	}
	// hashicorp/raft keeps only its term and vote in the stable store (raft.go's
	// keys). migrate.CopyStable fails on a missing key, and a server that never voted
	// has none for its vote, so they are copied here.
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := src.GetUint64([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if err := dst.SetUint64([]byte(k), v); err != nil {
			return 0, err
		}
	}
	v, err := src.Get([]byte("LastVoteCand"))
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, err
	}
	if err == nil {
		if err := dst.Set([]byte("LastVoteCand"), v); err != nil {
			return 0, err
		}
	}
	return entries, nil
}

// keepBolt renames raft.db out of the way and makes both renames durable.
func keepBolt(dir, old string) error {
	if err := os.Rename(old, filepath.Join(dir, boltKept)); err != nil {
		return fmt.Errorf("raft: migrate log store: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raft: migrate log store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("raft: migrate log store: sync %s: %w", dir, err)
	}
	return nil
}

var _ interface {
	hraft.LogStore
	hraft.StableStore
} = (*logStore)(nil)
