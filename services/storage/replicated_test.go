package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestReplicatedConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, maxValueSize int) backendUnderTest {
		r, state, _ := newTestReplicated(t, ReplicatedConfig{MaxValueSize: maxValueSize})
		return backendUnderTest{
			Backend: r,
			collections: func(t *testing.T) []string {
				if err := checkState(state); err != nil {
					t.Fatal(err)
				}
				state.mu.RLock()
				defer state.mu.RUnlock()
				return slices.Sorted(maps.Keys(state.collections))
			},
			indexedTags: func(t *testing.T, collection string) []string {
				if err := checkState(state); err != nil {
					t.Fatal(err)
				}
				state.mu.RLock()
				defer state.mu.RUnlock()
				c := state.collections[collection]
				if c == nil {
					return nil
				}
				return slices.Sorted(maps.Keys(c.index))
			},
		}
	})
}

// Without a blob store, a value over the replicated limit is refused before anything is
// proposed, with advice.
func TestReplicatedTooLarge(t *testing.T) {
	ctx := context.Background()
	r, _, c := newTestReplicated(t, ReplicatedConfig{})
	mustWrite(t, r, "apps", "fits", make([]byte, DefaultReplicatedValueSize))
	err := r.Write(ctx, "apps", "archive", make([]byte, DefaultReplicatedValueSize+1), []string{"app"})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Write = %v, want ErrTooLarge", err)
	}
	want := fmt.Sprintf("storage: write apps/archive: value too large: %d bytes, the limit is %d; larger values need a blob store, which this backend does not have",
		DefaultReplicatedValueSize+1, DefaultReplicatedValueSize)
	if err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if n := len(c.commands()); n != 1 {
		t.Fatalf("%d commands proposed, want only the write that fits", n)
	}
}

// Nothing the backend rejects itself reaches the log.
func TestReplicatedRejectsBeforeProposing(t *testing.T) {
	ctx := context.Background()
	r, _, c := newTestReplicated(t, ReplicatedConfig{MaxValueSize: 4})
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, err := range []error{
		r.Write(ctx, "", "k", nil, nil),
		r.Write(ctx, "c", "k", nil, []string{""}),
		r.Write(ctx, "c", "k", []byte("12345"), nil),
		r.Write(canceled, "c", "k", nil, nil),
		r.Remove(ctx, "c", "\x00"),
		r.Remove(canceled, "c", "k"),
	} {
		if err == nil {
			t.Fatal("an invalid call succeeded")
		}
	}
	if n := len(c.commands()); n != 0 {
		t.Fatalf("%d commands proposed", n)
	}
}

// Writes are normalized before they are proposed, so every replica applies the same
// canonical command, and replaying the log elsewhere rebuilds the same state.
func TestReplicatedLogReplay(t *testing.T) {
	ctx := context.Background()
	r, state, c := newTestReplicated(t, ReplicatedConfig{})
	mustWrite(t, r, "groups", "g", []byte("v1"), "b", "a", "b")
	mustWrite(t, r, "groups", "h", nil)
	if err := r.Remove(ctx, "groups", "h"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, "groups", "never-written"); err != nil {
		t.Fatal(err)
	}
	log := c.commands()
	if want := writeCmd("groups", "g", "v1", "a", "b"); !bytes.Equal(log[0], want) {
		t.Fatalf("first command % x, want % x", log[0], want)
	}
	replica := newState(t)
	for _, cmd := range log {
		mustApply(t, replica, cmd)
	}
	if !bytes.Equal(snapshotBytes(t, state), snapshotBytes(t, replica)) {
		t.Fatal("a replica that replayed the log differs")
	}
}

// Reads ask for the read index and wait until it is applied before they look at the
// state, so a host that lags behind the log still sees every committed write.
func TestReplicatedReadsWaitForReadIndex(t *testing.T) {
	ctx := context.Background()
	state := newState(t)
	c := &laggingConsensus{state: state}
	r := NewReplicated(state, c, nil)
	defer r.Close()

	mustWrite(t, r, "c", "k", []byte("v"), "t")
	if _, ok := readValue(state, "c", "k"); ok {
		t.Fatal("the lagging consensus applied the write at once")
	}
	if got := mustRead(t, r, "c", "k"); string(got) != "v" {
		t.Fatalf("Read = %q, want v", got)
	}
	mustWrite(t, r, "c", "k2", nil, "t")
	if got := mustFind(t, r, "c", "t"); !slices.Equal(got, []string{"k", "k2"}) {
		t.Fatalf("Find = %q", got)
	}
	if err := r.Remove(ctx, "c", "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(ctx, "c", "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Read after Remove = %v", err)
	}
}

func TestReplicatedUsesReadIndex(t *testing.T) {
	r, _, c := newTestReplicated(t, ReplicatedConfig{})
	mustWrite(t, r, "c", "k", []byte("v"), "t")
	mustRead(t, r, "c", "k")
	mustFind(t, r, "c", "t")
	if _, err := r.Read(context.Background(), "c", "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if n := c.readIndexCalls(); n != 3 {
		t.Fatalf("%d ReadIndex calls for two reads and a find, want 3", n)
	}
	// A find without tags is empty at any index: it asks nothing.
	mustFind(t, r, "c")
	if n := c.readIndexCalls(); n != 3 {
		t.Fatalf("%d ReadIndex calls after an empty find, want 3", n)
	}
}

// The consensus's errors reach the caller wrapped, with the operation and name.
func TestReplicatedConsensusErrors(t *testing.T) {
	ctx := context.Background()
	errNoLeader := errors.New("raft: no leader")
	state := newState(t)
	for _, tc := range []struct {
		name string
		c    fixedConsensus
		op   func(r *Replicated) error
		want error
		msg  string
	}{
		{"propose", fixedConsensus{proposeErr: errNoLeader}, func(r *Replicated) error {
			return r.Write(ctx, "c", "k", nil, nil)
		}, errNoLeader, "storage: write c/k: raft: no leader"},
		{"remove", fixedConsensus{proposeErr: errNoLeader}, func(r *Replicated) error {
			return r.Remove(ctx, "c", "k")
		}, errNoLeader, "storage: remove c/k: raft: no leader"},
		{"read index", fixedConsensus{readErr: errNoLeader}, func(r *Replicated) error {
			_, err := r.Read(ctx, "c", "k")
			return err
		}, errNoLeader, "storage: read c/k: raft: no leader"},
		{"wait applied", fixedConsensus{waitErr: errNoLeader}, func(r *Replicated) error {
			_, err := r.Find(ctx, "c", []string{"t"})
			return err
		}, errNoLeader, "storage: find c: raft: no leader"},
		{"garbage result", fixedConsensus{result: []byte{0xc1}}, func(r *Replicated) error {
			return r.Write(ctx, "c", "k", nil, nil)
		}, ErrCorrupt, "storage: write c/k: corrupt store: malformed apply result c1"},
		{"no result", fixedConsensus{}, func(r *Replicated) error {
			return r.Remove(ctx, "c", "k")
		}, ErrCorrupt, "storage: remove c/k: corrupt store: empty apply result"},
		{"rejection", fixedConsensus{result: appendRejectedResult(nil, fmt.Errorf("%w: command version 2, this build applies 1", ErrUnsupportedVersion))},
			func(r *Replicated) error { return r.Write(ctx, "c", "k", nil, nil) },
			ErrUnsupportedVersion, "storage: write c/k: unsupported store version: command version 2, this build applies 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReplicated(state, tc.c, nil)
			defer r.Close()
			err := tc.op(r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err.Error() != tc.msg {
				t.Fatalf("message %q, want %q", err, tc.msg)
			}
		})
	}
}

// Close cancels the calls in flight, waits until they have returned, and they return
// ErrClosed.
func TestReplicatedCloseInFlight(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, method string
		op           func(r *Replicated) error
	}{
		{"write", "Propose", func(r *Replicated) error { return r.Write(ctx, "c", "k", []byte("v"), nil) }},
		{"remove", "Propose", func(r *Replicated) error { return r.Remove(ctx, "c", "k") }},
		{"read", "ReadIndex", func(r *Replicated) error { _, err := r.Read(ctx, "c", "k"); return err }},
		{"find", "ReadIndex", func(r *Replicated) error { _, err := r.Find(ctx, "c", []string{"t"}); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := stalledConsensus{entered: make(chan string), cancelled: make(chan struct{}), release: make(chan struct{})}
			r := NewReplicated(newState(t), c, nil)
			var wg sync.WaitGroup
			opErr := make(chan error, 1)     // the call's one result
			closeDone := make(chan error, 1) // Close's one result
			wg.Go(func() { opErr <- tc.op(r) })
			if got := <-c.entered; got != tc.method {
				t.Fatalf("the call entered %s, want %s", got, tc.method)
			}
			wg.Go(func() { closeDone <- r.Close() })
			<-c.cancelled // Close cancelled the call, which now waits for release
			select {
			case err := <-closeDone:
				t.Fatalf("Close returned %v while a call was in flight", err)
			default:
			}
			close(c.release)
			if err := <-closeDone; err != nil {
				t.Fatalf("Close: %v", err)
			}
			wg.Wait()
			err := <-opErr
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("the call in flight returned %v, want ErrClosed", err)
			}
			if !strings.HasSuffix(err.Error(), ": backend closed") {
				t.Fatalf("message %q", err)
			}
		})
	}
}

// A caller's own cancellation is reported as such, not as ErrClosed.
func TestReplicatedCallerCancel(t *testing.T) {
	c := stalledConsensus{entered: make(chan string)}
	r := NewReplicated(newState(t), c, nil)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1) // the one result; the test reads it after the cancel
	go func() { errc <- r.Write(ctx, "c", "k", nil, nil) }()
	<-c.entered
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || errors.Is(err, ErrClosed) {
		t.Fatalf("Write = %v, want context.Canceled", err)
	}
}

func TestNewReplicatedNil(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state *ReplicatedState
		c     Consensus
	}{
		{"no state", nil, fixedConsensus{}},
		{"no consensus", newState(t), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("NewReplicated did not panic")
				}
			}()
			NewReplicated(tc.state, tc.c, nil)
		})
	}
}

func BenchmarkReplicatedWrite(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r, _, _ := newTestReplicated(b, ReplicatedConfig{})
			ctx := context.Background()
			value := make([]byte, size)
			tags := []string{"app"}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			i := 0
			for b.Loop() {
				if err := r.Write(ctx, "apps", fmt.Sprint("app", i%64), value, tags); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkReplicatedFind(b *testing.B) {
	r, _, _ := newTestReplicated(b, ReplicatedConfig{})
	ctx := context.Background()
	for i := range 10000 {
		tags := []string{"common"}
		if i%100 == 0 {
			tags = append(tags, "rare")
		}
		mustWrite(b, r, "c", fmt.Sprintf("k%05d", i), nil, tags...)
	}
	b.ReportAllocs()
	for b.Loop() {
		if keys, err := r.Find(ctx, "c", []string{"common", "rare"}); err != nil || len(keys) != 100 {
			b.Fatal(len(keys), err)
		}
	}
}
