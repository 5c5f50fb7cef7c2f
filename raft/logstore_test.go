package raft

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/raft-wal/migrate"
)

// A data dir written by a version that kept its log in raft-boltdb (raft.db) starts on
// the WAL with every entry and its term, keeps raft.db as raft.db.migrated, and a crash
// between the two renames of the migration loses nothing either.
func TestMigrateFromBoltDB(t *testing.T) {
	cfg := fastConfig(t, "solo")
	cfg.Bootstrap = true
	cfg.SnapshotThreshold = 50 // the log to move starts after a snapshot
	cfg.TrailingLogs = 10
	cfg.SnapshotInterval = 50 * time.Millisecond
	tn := start(t, cfg)
	waitLeader(t, []*testNode{tn})
	for i := range 200 {
		set(t, tn, "k", strconv.Itoa(i))
	}
	eventually(t, 10*time.Second, func() error {
		if list, err := tn.n.snaps.List(); err != nil || len(list) == 0 {
			return errors.New("no snapshot yet")
		}
		return nil
	})
	set(t, tn, "after", "snapshot")
	tn.stop()
	term := walToBolt(t, cfg.Dir)

	check := func(want map[string]string) {
		t.Helper()
		waitLeader(t, []*testNode{tn})
		catchUp(t, tn, false)
		for k, v := range want {
			if got, _ := tn.kv.get(k); got != v {
				t.Fatalf("%s = %q, want %q", k, got, v)
			}
		}
		if _, err := os.Stat(filepath.Join(cfg.Dir, boltFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("raft.db is still there: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Dir, boltKept)); err != nil {
			t.Fatalf("raft.db was not kept: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.Dir, walDir+".migrating")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the migration's work dir is left: %v", err)
		}
	}
	tn.kv = newKV()
	tn.run()
	check(map[string]string{"k": "199", "after": "snapshot"})
	if got := set(t, tn, "k", "new"); got != "199" {
		t.Fatalf("first write after the migration saw %q, want 199", got)
	}
	tn.stop()
	if got := walTerm(t, cfg.Dir); got < term {
		t.Fatalf("term went back from %d to %d", term, got)
	}

	// A crash after the WAL was renamed into place but before raft.db was: raft.db is
	// back, next to a complete WAL (and a half-made copy from another attempt).
	copyFile(t, filepath.Join(cfg.Dir, boltKept), filepath.Join(cfg.Dir, boltFile))
	if err := os.MkdirAll(filepath.Join(cfg.Dir, walDir+".migrating"), 0o755); err != nil {
		t.Fatal(err)
	}
	tn.restart()
	check(map[string]string{"k": "new", "after": "snapshot"})
}

// A second server on a data dir in use fails at once and says why.
func TestDataDirInUse(t *testing.T) {
	cfg := fastConfig(t, "a")
	cfg.Bootstrap = true
	tn := start(t, cfg)
	waitLeader(t, []*testNode{tn})

	other := cfg
	other.ID = "b"
	other.Bind = "127.0.0.1:0"
	n, err := New(other, newKV(), testLogger(t, "b"))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Run(ctxFor(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second server on %s: %v, want in use", cfg.Dir, err)
	}
	set(t, tn, "still", "serving")
}

// walToBolt turns dir's WAL back into the raft.db an earlier version wrote and returns
// the current term it holds.
func walToBolt(t *testing.T, dir string) uint64 {
	t.Helper()
	w, err := openWAL(filepath.Join(dir, walDir), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	b, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate.CopyLogs(context.Background(), b, w, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if err := migrate.CopyStable(context.Background(), b, w, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	term, err := b.GetUint64([]byte("CurrentTerm"))
	if err != nil || term == 0 {
		t.Fatalf("current term %d: %v", term, err)
	}
	if first, _ := b.FirstIndex(); first <= 1 {
		t.Fatalf("the log starts at %d: no snapshot truncated it", first)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, walDir)); err != nil {
		t.Fatal(err)
	}
	return term
}

func walTerm(t *testing.T, dir string) uint64 {
	t.Helper()
	w, err := openWAL(filepath.Join(dir, walDir), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	term, err := w.GetUint64([]byte("CurrentTerm"))
	if err != nil {
		t.Fatal(err)
	}
	return term
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A raft.db that is not a database stops the start with the file's name, and stays
// where it is for the operator.
func TestMigrateBadBoltDB(t *testing.T) {
	cfg := fastConfig(t, "solo")
	old := filepath.Join(cfg.Dir, boltFile)
	if err := os.WriteFile(old, []byte(strings.Repeat("not a bbolt file ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := New(cfg, newKV(), testLogger(t, "solo"))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Run(ctxFor(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "migrate "+old) {
		t.Fatalf("Run on a bad raft.db: %v", err)
	}
	if _, err := os.Stat(old); err != nil {
		t.Fatalf("raft.db: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, walDir+".migrating")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the migration's work dir is left: %v", err)
	}
}

// A follower that drops the tail of its log (a leader of a newer term overrides it)
// must be able to start again on that log: raft-wal before v0.4.2 left the segment
// unsealed and panicked at the next open.
func TestLogStoreReopensAfterTailTruncation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), walDir)
	s, err := openWAL(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 100; i++ {
		if err := s.StoreLog(&hraft.Log{Index: i, Term: 1, Data: []byte(strconv.FormatUint(i, 10))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLog(&hraft.Log{Index: 91, Term: 2, Data: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = openWAL(dir, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, err := s.LastIndex(); err != nil || last != 91 {
		t.Fatalf("last index %d (%v), want 91", last, err)
	}
	for _, i := range []uint64{1, 90, 91} {
		var l hraft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d after reopening: %v", i, err)
		}
	}
	var l hraft.Log
	if err := s.GetLog(91, &l); err != nil || l.Term != 2 || string(l.Data) != "new" {
		t.Fatalf("entry 91: term %d %q (%v), want the new term's", l.Term, l.Data, err)
	}
}
