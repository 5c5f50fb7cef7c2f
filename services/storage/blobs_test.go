package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Hosts with blob stores over one replicated log, in one process: each host has its own
// state, blob directory and blobs service on a loopback port, so blobs travel between
// hosts over real TCP.

// fanoutConsensus is a log that applies each command to every host's state at once, in
// one order, as a cluster whose followers never lag.
type fanoutConsensus struct {
	mu     sync.Mutex
	index  uint64
	states []*ReplicatedState
}

// hostConsensus is one host's handle on a fanoutConsensus.
type hostConsensus struct {
	f    *fanoutConsensus
	host int
}

func (c hostConsensus) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.index++
	var result []byte
	for i, s := range c.f.states {
		if r := s.Apply(c.f.index, bytes.Clone(cmd)); i == c.host {
			result = r
		}
	}
	return result, nil
}

func (c hostConsensus) ReadIndex(ctx context.Context, _ bool) (uint64, error) {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	return c.f.index, ctx.Err()
}

func (c hostConsensus) WaitApplied(ctx context.Context, _ uint64) error { return ctx.Err() }

// blobHost is one host.
type blobHost struct {
	name  string
	state *ReplicatedState
	blobs *Blobs
	r     *Replicated

	mu  sync.Mutex
	eps []rpc.Endpoint // what Endpoints returns

	stopServing func() // closes the listener and the connections; idempotent
	stopRun     func() // ends blobs.Run if it was started; idempotent
}

func (h *blobHost) endpoints() []rpc.Endpoint {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.eps)
}

func (h *blobHost) setEndpoints(eps ...rpc.Endpoint) {
	h.mu.Lock()
	h.eps = eps
	h.mu.Unlock()
}

// dir is the host's blob directory.
func (h *blobHost) dir() string { return h.blobs.store.dir }

// blobCluster starts n hosts whose inline limit is inline bytes. cfg gives the blob
// stores' settings (Dir is set per host). The hosts serve their blobs service but do not
// run their blob stores' loops until run is called.
func blobCluster(t *testing.T, n, inline int, cfg BlobsConfig) []*blobHost {
	t.Helper()
	f := &fanoutConsensus{}
	hosts := make([]*blobHost, n)
	for i := range hosts {
		state, err := NewReplicatedState(ReplicatedConfig{MaxValueSize: inline})
		if err != nil {
			t.Fatal(err)
		}
		f.states = append(f.states, state)
		hosts[i] = &blobHost{name: fmt.Sprint("h", i), state: state}
	}
	for i, h := range hosts {
		c := hostConsensus{f: f, host: i}
		hcfg := cfg
		hcfg.Dir = t.TempDir()
		log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})).With("host", h.name)
		blobs, err := NewBlobs(hcfg, BlobsDeps{State: h.state, Consensus: c, Host: h.name, Endpoints: h.endpoints, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		h.blobs = blobs
		h.r = NewReplicated(h.state, c, blobs)
		t.Cleanup(func() { h.r.Close() })
		h.serve(t)
		h.stopRun = func() {}
	}
	return hosts
}

// serve serves the host's blobs service on a loopback port until stopServing.
func (h *blobHost) serve(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	h.setEndpoints(rpc.Endpoint{Host: addr.IP.String(), Port: uint16(addr.Port)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := rpc.NewServer(h.blobs.Dispatcher(), rpc.SessionConfig{})
	wg.Go(func() { srv.Serve(ctx, ln) })
	var once sync.Once
	h.stopServing = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(h.stopServing)
}

// run starts the host's blob store loops until stopRun or the end of the test.
func (h *blobHost) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's one result
	go func() { done <- h.blobs.Run(ctx) }()
	var once sync.Once
	h.stopRun = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", h.name, err)
			}
		})
	}
	t.Cleanup(h.stopRun)
}

// newSoloBlobs is a single host whose endpoint is never dialled: it is the only holder of
// every blob. Values over cfg.MaxValueSize go to its blob store, limited to maxBlobSize.
func newSoloBlobs(t testing.TB, cfg ReplicatedConfig, maxBlobSize int) *blobHost {
	t.Helper()
	state, err := NewReplicatedState(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := newLocalConsensus(state)
	h := &blobHost{name: "solo", state: state, eps: []rpc.Endpoint{{Host: "127.0.0.1", Port: 1}}}
	blobs, err := NewBlobs(BlobsConfig{Dir: t.TempDir(), MaxBlobSize: maxBlobSize},
		BlobsDeps{State: state, Consensus: c, Host: h.name, Endpoints: h.endpoints})
	if err != nil {
		t.Fatal(err)
	}
	h.blobs = blobs
	h.r = NewReplicated(state, c, blobs)
	t.Cleanup(func() { h.r.Close() })
	return h
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// has reports whether host h keeps the blob of data.
func (h *blobHost) has(data []byte) bool { return h.blobs.store.has(DigestOf(data)) }

// holderNames lists the recorded holders of the blob of data in host h's state.
func (h *blobHost) holderNames(data []byte) []string {
	h.state.mu.RLock()
	defer h.state.mu.RUnlock()
	return hosts(h.state.blobs[DigestOf(data)].holders)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after 10s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The conformance suite, with every value over 4 bytes kept in the blob store.
func TestReplicatedBlobConformance(t *testing.T) {
	runConformance(t, func(t *testing.T, maxValueSize int) backendUnderTest {
		h := newSoloBlobs(t, ReplicatedConfig{MaxValueSize: 4}, maxValueSize)
		state := h.state
		return backendUnderTest{
			Backend: h.r,
			collections: func(t *testing.T) []string {
				if err := checkState(state); err != nil {
					t.Fatal(err)
				}
				state.mu.RLock()
				defer state.mu.RUnlock()
				return slices.Sorted(maps.Keys(state.collections))
			},
			indexedTags: func(t *testing.T, collection string) []string {
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

// A value over the inline limit travels as a reference; a host without a copy fetches it
// from the writer on its first read and keeps it.
func TestBlobsFetchOnRead(t *testing.T) {
	ctx := t.Context()
	hs := blobCluster(t, 3, 1<<10, BlobsConfig{})
	value := randomBytes(600 << 10) // three chunks and a bit
	mustWrite(t, hs[0].r, "apps", "echo", value, "app")
	if !hs[0].has(value) || hs[1].has(value) || hs[2].has(value) {
		t.Fatal("only the writer should hold the blob before any read")
	}
	if got := hs[0].holderNames(value); !slices.Equal(got, []string{"h0"}) {
		t.Fatalf("holders %q, want the writer", got)
	}
	if got := mustFind(t, hs[2].r, "apps", "app"); !slices.Equal(got, []string{"echo"}) {
		t.Fatalf("find = %q", got)
	}
	// Concurrent readers of a missing blob all get it.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			got, err := hs[1].r.Read(ctx, "apps", "echo")
			if err != nil || !bytes.Equal(got, value) {
				t.Errorf("read through h1: %d bytes, %v", len(got), err)
			}
		})
	}
	wg.Wait()
	if !hs[1].has(value) || hs[2].has(value) {
		t.Fatal("the reader should keep the blob, and only it")
	}
	if names := dirNames(t, hs[1].blobs.store); len(names) != 1 {
		t.Fatalf("h1's blob directory holds %q", names)
	}
	// Reading again is local: the writer may be gone.
	hs[0].stopServing()
	if got := mustRead(t, hs[1].r, "apps", "echo"); !bytes.Equal(got, value) {
		t.Fatal("a second read differs")
	}
}

// Every host fetches referenced blobs in the background and records itself as a holder,
// so that the writer's loss loses nothing; unreferenced blobs are collected everywhere.
func TestBlobsBackgroundReplication(t *testing.T) {
	hs := blobCluster(t, 3, 1<<10, BlobsConfig{GCInterval: 20 * time.Millisecond})
	for _, h := range hs {
		h.run(t)
	}
	value := randomBytes(300 << 10)
	mustWrite(t, hs[0].r, "apps", "echo", value, "app")
	waitFor(t, "every host holds the blob and is recorded", func() bool {
		return hs[1].has(value) && hs[2].has(value) && slices.Equal(hs[2].holderNames(value), []string{"h0", "h1", "h2"})
	})
	// The writer dies; a host that lost its copy fetches it from the other.
	hs[0].stopRun()
	hs[0].stopServing()
	if err := os.Remove(hs[2].blobs.store.path(DigestOf(value))); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, hs[2].r, "apps", "echo"); !bytes.Equal(got, value) {
		t.Fatal("read after the writer's loss differs")
	}
	// A removed key's blob is deleted by every running host.
	if err := hs[1].r.Remove(t.Context(), "apps", "echo"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the blob is collected", func() bool { return !hs[1].has(value) && !hs[2].has(value) })
	if !hs[0].has(value) {
		t.Fatal("a stopped host's copy went too") // it is collected when the host runs again
	}
}

// A blob that no holder can send is an ErrBlobUnavailable naming the digest, at once when
// the holders are down, and within the fetch timeout or ctx when one is silent.
func TestBlobsUnavailable(t *testing.T) {
	hs := blobCluster(t, 2, 16, BlobsConfig{FetchTimeout: 100 * time.Millisecond})
	value := randomBytes(1 << 10)
	d := DigestOf(value)
	mustWrite(t, hs[0].r, "c", "k", value)
	hs[0].stopServing()
	_, err := hs[1].r.Read(t.Context(), "c", "k")
	if !errors.Is(err, ErrBlobUnavailable) || !strings.Contains(err.Error(), d.String()) || !strings.Contains(err.Error(), "h0") {
		t.Fatalf("Read = %v, want ErrBlobUnavailable naming the digest and the holder", err)
	}
	if got := errorTable.Wire(err); got.Category != rpc.CategoryGeneric || got.Code != 11 {
		t.Fatalf("on the wire: [%d, %d], want EAGAIN", got.Category, got.Code)
	}

	// A holder that accepts and says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	defer func() {
		ln.Close()
		conns.Wait()
	}()
	conns.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { // read and ignore until the fetcher hangs up
				defer c.Close()
				buf := make([]byte, 1024)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			})
		}
	})
	port := ln.Addr().(*net.TCPAddr).Port
	if _, err := hostConsensus(hs[1].r.c.(hostConsensus)).Propose(t.Context(), appendHoldCommand(nil, testHolder("silent", port), []Digest{d})); err != nil {
		t.Fatal(err)
	}
	_, err = hs[1].r.Read(t.Context(), "c", "k")
	if !errors.Is(err, ErrBlobUnavailable) || !strings.Contains(err.Error(), "silent: nothing received for 100ms") {
		t.Fatalf("Read = %v, want the silent holder's timeout", err)
	}
	// The caller's deadline bounds it too, however long the fetch timeout.
	hs[1].blobs.cfg.FetchTimeout = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err = hs[1].r.Read(ctx, "c", "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read = %v, want the deadline", err)
	}
	_, ref, holders, _ := hs[1].state.read("c", "k")
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := hs[1].blobs.read(ctx, *ref, holders); !errors.Is(err, ErrBlobUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read = %v, want ErrBlobUnavailable and the deadline", err)
	}
	if hs[1].has(value) || len(dirNames(t, hs[1].blobs.store)) != 0 {
		t.Fatal("a failed fetch left a file")
	}
}

// Corrupt copies are never served: a holder checks what it sends, the fetcher checks what
// it receives, and a host's own corrupt copy is replaced by a good one.
func TestBlobsCorruption(t *testing.T) {
	hs := blobCluster(t, 3, 16, BlobsConfig{})
	value := randomBytes(100 << 10)
	d := DigestOf(value)
	mustWrite(t, hs[0].r, "c", "k", value)
	corrupt := func(h *blobHost) {
		t.Helper()
		b, err := os.ReadFile(h.blobs.store.path(d))
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 1
		if err := os.WriteFile(h.blobs.store.path(d), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The only holder's copy is corrupt: nobody can read the value, and the holder
	// deletes its copy once it notices.
	corrupt(hs[0])
	if _, err := hs[1].r.Read(t.Context(), "c", "k"); !errors.Is(err, ErrBlobUnavailable) || !strings.Contains(err.Error(), "[12:5]") {
		t.Fatalf("Read = %v, want ErrBlobUnavailable with the holder's EIO", err)
	}
	if hs[0].has(value) || hs[1].has(value) {
		t.Fatal("a corrupt copy survived")
	}

	// A good copy elsewhere is found whatever the order, and replaces a corrupt local one.
	mustWrite(t, hs[0].r, "c", "k", value)
	mustRead(t, hs[1].r, "c", "k")
	if !hs[1].blobs.replicate(t.Context()) {
		t.Fatal("h1 could not record itself as a holder")
	}
	corrupt(hs[0])
	if got := mustRead(t, hs[2].r, "c", "k"); !bytes.Equal(got, value) {
		t.Fatal("read through h2 differs")
	}
	corrupt(hs[2])
	if got := mustRead(t, hs[2].r, "c", "k"); !bytes.Equal(got, value) {
		t.Fatal("read through h2 after its copy was damaged differs")
	}
}

// A host whose storage service moved records its new endpoints, so that fetchers find
// it; a host over the holder limit or without endpoints records nothing.
func TestBlobsEndpointsChange(t *testing.T) {
	hs := blobCluster(t, 2, 16, BlobsConfig{})
	value := randomBytes(1 << 10)
	mustWrite(t, hs[0].r, "c", "k", value)
	if !hs[1].blobs.replicate(t.Context()) {
		t.Fatal("replicate failed")
	}
	moved := rpc.Endpoint{Host: "127.0.0.2", Port: 4242}
	hs[1].setEndpoints(moved)
	if !hs[1].blobs.replicate(t.Context()) {
		t.Fatal("replicate failed")
	}
	_, _, holders, _ := hs[0].state.read("c", "k")
	if len(holders) != 2 || holders[1].host != "h1" || !slices.Equal(holders[1].endpoints, []rpc.Endpoint{moved}) {
		t.Fatalf("holders %+v, want h1 at its new endpoint", holders)
	}
	// Not listening: nothing to record, and a write is refused before anything is stored.
	hs[1].setEndpoints()
	if hs[1].blobs.replicate(t.Context()) {
		t.Fatal("replicate succeeded with no endpoints to record")
	}
	err := hs[1].r.Write(t.Context(), "c", "other", randomBytes(100), nil)
	if !errors.Is(err, ErrBlobUnavailable) {
		t.Fatalf("Write = %v, want ErrBlobUnavailable", err)
	}
	if names := dirNames(t, hs[1].blobs.store); len(names) != 1 {
		t.Fatalf("h1 keeps %q", names)
	}
}

// A value over the blob limit is refused before anything is stored or proposed.
func TestBlobsTooLarge(t *testing.T) {
	h := newSoloBlobs(t, ReplicatedConfig{MaxValueSize: 16}, 1<<10)
	err := h.r.Write(t.Context(), "apps", "big", make([]byte, 1<<10+1), nil)
	if !errors.Is(err, ErrTooLarge) || err.Error() != "storage: write apps/big: value too large: 1025 bytes, the limit is 1024" {
		t.Fatalf("Write = %v", err)
	}
	if names := dirNames(t, h.blobs.store); len(names) != 0 {
		t.Fatalf("the refused value left %q", names)
	}
	if h.blobs.MaxBlobSize() != 1<<10 {
		t.Fatalf("MaxBlobSize = %d", h.blobs.MaxBlobSize())
	}
}

// gatedConsensus holds every Propose until release is closed, then fails it as a raft
// layer that lost the leader would, without applying it.
type gatedConsensus struct {
	Consensus
	entered chan struct{}
	release chan struct{}
}

func (c gatedConsensus) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	c.entered <- struct{}{}
	<-c.release
	return nil, errors.New("test: leadership lost")
}

// A blob stored for a write whose proposal is in flight is never collected; after a
// failed proposal it outlives one more collection, in case the command commits anyway.
func TestBlobsCollectSparesWritesInFlight(t *testing.T) {
	state := newState(t)
	c := gatedConsensus{Consensus: newLocalConsensus(state), entered: make(chan struct{}), release: make(chan struct{})}
	blobs, err := NewBlobs(BlobsConfig{Dir: t.TempDir()}, BlobsDeps{State: state, Consensus: c, Host: "h",
		Endpoints: func() []rpc.Endpoint { return []rpc.Endpoint{{Host: "127.0.0.1", Port: 1}} }})
	if err != nil {
		t.Fatal(err)
	}
	r := NewReplicated(state, c, blobs)
	defer r.Close()
	value := randomBytes(2 << 20)
	errc := make(chan error, 1) // the write's one result
	go func() { errc <- r.Write(context.Background(), "c", "k", value, nil) }()
	<-c.entered
	for range 3 {
		blobs.collect(t.Context())
	}
	if !blobs.store.has(DigestOf(value)) {
		t.Fatal("a blob was collected while its write was in flight")
	}
	close(c.release)
	if err := <-errc; err == nil {
		t.Fatal("the write succeeded")
	}
	blobs.collect(t.Context())
	if !blobs.store.has(DigestOf(value)) {
		t.Fatal("a blob was collected by the first pass after its write failed")
	}
	blobs.collect(t.Context())
	if blobs.store.has(DigestOf(value)) {
		t.Fatal("an unreferenced blob survived two passes")
	}
}

// NewBlobs reports every problem of its config and deps.
func TestNewBlobsValidates(t *testing.T) {
	state := newState(t)
	c := newLocalConsensus(state)
	for _, tc := range []struct {
		name string
		cfg  BlobsConfig
		deps BlobsDeps
		want []string
	}{
		{"no dir", BlobsConfig{}, BlobsDeps{State: state, Consensus: c, Host: "h"}, []string{"directory"}},
		{"bad limits", BlobsConfig{Dir: "x", MaxBlobSize: MaxBlobSizeLimit + 1, GCInterval: -1, FetchTimeout: -1},
			BlobsDeps{State: state, Consensus: c, Host: "h"}, []string{"MaxBlobSize", "GCInterval", "FetchTimeout"}},
		{"no state, no host", BlobsConfig{Dir: "x"}, BlobsDeps{}, []string{"state and a consensus", "empty host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBlobs(tc.cfg, tc.deps)
			if err == nil {
				t.Fatal("NewBlobs succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	other := newState(t)
	b, err := NewBlobs(BlobsConfig{Dir: t.TempDir()}, BlobsDeps{State: other, Consensus: c, Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewReplicated accepted the blob store of another state")
		}
	}()
	NewReplicated(state, c, b)
}

// The blobs service refuses a stream over maxBlobStreams with EAGAIN, so that the fetcher
// tries another holder.
func TestBlobMethodBusy(t *testing.T) {
	h := newSoloBlobs(t, ReplicatedConfig{MaxValueSize: 16}, 0)
	value := randomBytes(100)
	mustWrite(t, h.r, "c", "k", value)
	h.serve(t)
	conn, err := rpc.Dial(t.Context(), h.endpoints(), BlobsGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	get := func() error {
		ch, err := conn.Call(t.Context(), "read", DigestOf(value).String())
		if err != nil {
			t.Fatal(err)
		}
		for {
			m, err := ch.Recv(t.Context())
			if err != nil || m.Name != "write" {
				if err == nil {
					err = m.Err()
				}
				return err
			}
		}
	}
	for range maxBlobStreams {
		h.blobs.streams <- struct{}{}
	}
	var e *rpc.Error
	if err := get(); !errors.As(err, &e) || e.Category != rpc.CategoryGeneric || e.Code != 11 {
		t.Fatalf("blob while busy = %v, want EAGAIN", err)
	}
	for range maxBlobStreams {
		<-h.blobs.streams
	}
	if err := get(); err != nil {
		t.Fatalf("blob = %v", err)
	}
}
