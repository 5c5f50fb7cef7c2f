package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Defaults of BlobsConfig.
const (
	// DefaultMaxBlobSize is the largest value a host keeps in its blob store unless told
	// otherwise: room for any app archive.
	DefaultMaxBlobSize = 256 << 20

	// DefaultBlobGCInterval is how often a host deletes the blobs no key refers to.
	DefaultBlobGCInterval = time.Minute

	// DefaultBlobFetchTimeout bounds how long a host serving a blob may stay silent.
	DefaultBlobFetchTimeout = 30 * time.Second
)

// Timing of the background work that the config does not expose.
const (
	blobDialTimeout  = 2 * time.Second  // connecting to one endpoint of a holder
	blobRetryMin     = time.Second      // the first retry of a failed fetch or hold
	blobRetryMax     = 30 * time.Second // the longest wait between retries
	blobProposeBound = 10 * time.Second // one hold proposal, one read index for a collection
)

// BlobsConfig configures a host's blob store. The zero value of each field but Dir gives
// its default.
type BlobsConfig struct {
	// Dir holds the blob files (the daemon uses <data_dir>/blobs). Required.
	Dir string
	// MaxBlobSize is the largest value the store accepts, in bytes; 0 means
	// DefaultMaxBlobSize, and it may not exceed MaxBlobSizeLimit. Like the inline limit
	// it is checked where a value is written, so hosts may differ; a host never fetches
	// a blob over its own limit.
	MaxBlobSize int
	// GCInterval is how often blobs that no key refers to are deleted; 0 means
	// DefaultBlobGCInterval. A blob is deleted by the second collection that finds it
	// unreferenced, so it outlives its last reference by one to two intervals.
	GCInterval time.Duration
	// FetchTimeout bounds the silence of a holder sending a blob: a holder that sends
	// nothing for this long is given up for the next one; 0 means
	// DefaultBlobFetchTimeout.
	FetchTimeout time.Duration
}

// Validate reports every invalid field.
func (c BlobsConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("storage: the blob store needs a directory"))
	}
	if c.MaxBlobSize < 0 || c.MaxBlobSize > MaxBlobSizeLimit {
		errs = append(errs, fmt.Errorf("storage: MaxBlobSize (%d) must be between 0 and MaxBlobSizeLimit (%d)", c.MaxBlobSize, MaxBlobSizeLimit))
	}
	if c.GCInterval < 0 {
		errs = append(errs, fmt.Errorf("storage: GCInterval (%s) must not be negative", c.GCInterval))
	}
	if c.FetchTimeout < 0 {
		errs = append(errs, fmt.Errorf("storage: FetchTimeout (%s) must not be negative", c.FetchTimeout))
	}
	return errors.Join(errs...)
}

// BlobsDeps are what a blob store works with.
type BlobsDeps struct {
	// State is the replicated state whose references the store serves; Consensus
	// replicates it (the same the Replicated backend is given).
	State     *ReplicatedState
	Consensus Consensus
	// Host names this host among a blob's holders: the same on every restart (the daemon
	// uses the node's uuid).
	Host string
	// Endpoints returns where this host's blobs service listens, which other hosts dial
	// to fetch its blobs. Nil or empty while the service is not listening yet.
	Endpoints func() []rpc.Endpoint
	// Log receives the background work's failures; nil discards them.
	Log *slog.Logger
}

// Blobs is a host's blob store: the values over the inline limit of a Replicated backend,
// one file each under Config.Dir, named by the SHA-256 of its bytes, while the replicated
// state keeps each value's digest, size and holders (the hosts with a copy).
//
//   - A write stores the value here first, then proposes a reference naming this host as
//     its holder; the file is kept from collection until the proposal returns.
//   - A read serves the local copy, checked against its digest, or fetches the blob from
//     a holder through its blobs service (BlobsGraph), checks it, keeps it and serves it.
//   - Run fetches every referenced blob this host lacks and records the host as a holder
//     through the log, so that losing the writer loses nothing; and it deletes the blobs
//     no key refers to any more.
//
// Blobs is itself the blobs service (Dispatcher, Run), which the daemon serves on its own
// port: the endpoints of BlobsDeps are that service's. Reads and writes work whether Run
// runs or not. A Blobs is safe for concurrent use.
type Blobs struct {
	cfg       BlobsConfig // defaults filled in
	store     *blobStore
	state     *ReplicatedState
	c         Consensus
	host      string
	endpoints func() []rpc.Endpoint
	log       *slog.Logger
	locks     digestLocks // one fetch per blob at a time

	d       *rpc.Dispatcher  // the blobs service
	work    *lifecycle.Group // the blob streams it sends; stopped by Run
	streams chan struct{}    // a token per stream in flight, maxBlobStreams at most
}

// NewBlobs opens the blob store of cfg.Dir (creating it, and removing what an interrupted
// write left behind). It starts nothing.
func NewBlobs(cfg BlobsConfig, deps BlobsDeps) (*Blobs, error) {
	errs := []error{cfg.Validate()}
	if deps.State == nil || deps.Consensus == nil {
		errs = append(errs, errors.New("storage: the blob store needs a state and a consensus"))
	}
	if err := validateName("host", deps.Host); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxBlobSize == 0 {
		cfg.MaxBlobSize = DefaultMaxBlobSize
	}
	if cfg.GCInterval == 0 {
		cfg.GCInterval = DefaultBlobGCInterval
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultBlobFetchTimeout
	}
	store, err := openBlobStore(cfg.Dir, cfg.MaxBlobSize)
	if err != nil {
		return nil, err
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	endpoints := deps.Endpoints
	if endpoints == nil {
		endpoints = func() []rpc.Endpoint { return nil }
	}
	b := &Blobs{
		cfg: cfg, store: store, state: deps.State, c: deps.Consensus, host: deps.Host,
		endpoints: endpoints, log: log.With("component", "blobs"),
		locks:   digestLocks{m: map[Digest]*digestLock{}},
		work:    lifecycle.NewGroup(context.Background()),
		streams: make(chan struct{}, maxBlobStreams), // a token per stream
	}
	b.d = rpc.NewDispatcher(BlobsGraph, errorTable, b.log)
	b.d.MustHandle("read", b.serveRead)
	return b, nil
}

// MaxBlobSize is the largest value the store accepts.
func (b *Blobs) MaxBlobSize() int { return b.cfg.MaxBlobSize }

// self is this host as a holder, with no endpoints while the service is not listening.
// Only endpoints the replicated formats accept are kept (literal IPs; at most
// maxHolderEndpoints).
func (b *Blobs) self() holder {
	var eps []rpc.Endpoint
	for _, ep := range b.endpoints() {
		if holderIP(ep.Host) && ep.Port != 0 && len(eps) < maxHolderEndpoints {
			eps = append(eps, ep)
		}
	}
	return holder{host: b.host, endpoints: eps}
}

// prepareWrite stores value and returns the write blob command that refers to it, and
// the func that ends the protection of the stored file, to be called once the command
// has been proposed. tags must be normalized.
func (b *Blobs) prepareWrite(collection, key string, value []byte, tags []string) ([]byte, func(), error) {
	if len(value) > b.cfg.MaxBlobSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(value), b.cfg.MaxBlobSize)
	}
	me := b.self()
	if len(me.endpoints) == 0 {
		return nil, nil, fmt.Errorf("%w: this host does not serve its blobs yet", ErrBlobUnavailable)
	}
	d, unpin, err := b.store.put(value)
	if err != nil {
		return nil, nil, err
	}
	ref := blobRef{digest: d, size: int64(len(value))}
	return appendWriteBlobCommand(nil, collection, key, ref, []holder{me}, tags), unpin, nil
}

// read returns the blob ref: the local copy, or one fetched from holders and kept here.
// Errors: ErrBlobUnavailable when no holder could send it (wrapping ctx's error if ctx
// ended first), or the local store's I/O errors.
func (b *Blobs) read(ctx context.Context, ref blobRef, holders []holder) ([]byte, error) {
	data, err := b.store.get(ref.digest)
	if err == nil || !errors.Is(err, errNoBlob) && !errors.Is(err, ErrCorrupt) {
		return data, err
	}
	unlock, err := b.locks.lock(ctx, ref.digest)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %w", ErrBlobUnavailable, ref.digest, err)
	}
	defer unlock()
	// Another caller may have fetched it while this one waited.
	if data, err := b.store.get(ref.digest); err == nil || !errors.Is(err, errNoBlob) && !errors.Is(err, ErrCorrupt) {
		return data, err
	}
	if err := b.fetch(ctx, ref, holders); err != nil {
		return nil, err
	}
	b.state.signalBlobs() // the replication loop records this host as a holder
	return b.store.get(ref.digest)
}

// ensure fetches the blob ref unless this host has a file for it.
func (b *Blobs) ensure(ctx context.Context, ref blobRef, holders []holder) error {
	if b.store.has(ref.digest) {
		return nil
	}
	unlock, err := b.locks.lock(ctx, ref.digest)
	if err != nil {
		return err
	}
	defer unlock()
	if b.store.has(ref.digest) {
		return nil
	}
	return b.fetch(ctx, ref, holders)
}

// fetch gets the blob ref from the first of holders (other than this host, in random
// order, so that readers spread over them) that sends all of it, and keeps it. Each
// holder is bounded by the dial timeout and the fetch timeout; the whole by ctx. The
// caller holds the blob's lock.
func (b *Blobs) fetch(ctx context.Context, ref blobRef, holders []holder) error {
	others := make([]holder, 0, len(holders))
	for _, h := range holders {
		if h.host != b.host {
			others = append(others, h)
		}
	}
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	if len(others) == 0 {
		return fmt.Errorf("%w: blob %s: no other host holds it", ErrBlobUnavailable, ref.digest)
	}
	if ref.size > int64(b.cfg.MaxBlobSize) {
		return fmt.Errorf("%w: blob %s: %d bytes, this host's limit is %d", ErrBlobUnavailable, ref.digest, ref.size, b.cfg.MaxBlobSize)
	}
	var failures []string
	for _, h := range others {
		err := b.fetchFrom(ctx, ref, h)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: blob %s: %w", ErrBlobUnavailable, ref.digest, ctx.Err())
		}
		failures = append(failures, displayName(h.host)+": "+err.Error())
	}
	return fmt.Errorf("%w: blob %s: no holder sent it (%s)", ErrBlobUnavailable, ref.digest, strings.Join(failures, "; "))
}

// blobChunk is the size of the chunks the blobs service sends.
const blobChunk = 256 << 10

// fetchFrom fetches the blob ref from h through its blobs service.
func (b *Blobs) fetchFrom(ctx context.Context, ref blobRef, h holder) error {
	conn, err := rpc.Dial(ctx, h.endpoints, BlobsGraph, rpc.DialConfig{Timeout: blobDialTimeout, MaxFrameSize: 2 * blobChunk, Log: b.log})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "read", ref.digest.String())
	if err != nil {
		return err
	}
	w, err := b.store.create(ref.digest, ref.size)
	if err != nil {
		return err
	}
	defer w.abort()
	return receiveBlob(w, func() (rpc.Message, error) {
		rctx, cancel := context.WithTimeout(ctx, b.cfg.FetchTimeout)
		defer cancel()
		m, err := ch.Recv(rctx)
		if err != nil && ctx.Err() == nil && rctx.Err() != nil {
			return m, fmt.Errorf("nothing received for %s", b.cfg.FetchTimeout)
		}
		return m, err
	})
}

// receiveBlob writes the chunks of a blob stream that next returns into w, and commits w
// when the stream closes. Anything but chunks then a close is an error: an error reply, a
// malformed chunk, too many bytes, or bytes that are not the blob.
func receiveBlob(w *blobWriter, next func() (rpc.Message, error)) error {
	for {
		m, err := next()
		if err != nil {
			return err
		}
		switch m.Type {
		case rpc.Write:
			var chunk []byte
			if err := m.Args.Scan(&chunk); err != nil {
				return fmt.Errorf("%w: blob %s: malformed chunk: %v", ErrCorrupt, w.d, err)
			}
			if _, err := w.Write(chunk); err != nil {
				return err
			}
		case rpc.Close:
			return w.commit()
		default:
			if err := m.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%w: blob %s: unexpected message %d", ErrCorrupt, w.d, m.Type)
		}
	}
}

// Run replicates and collects blobs until ctx is done, then stops the blob streams the
// service sends and returns nil once they have ended. It fetches each referenced blob
// this host lacks and records the host as its holder, at once when a reference appears
// and again after failures, with backoff; and every GCInterval it deletes the blobs no
// key refers to (see BlobsConfig.GCInterval). Call it once.
func (b *Blobs) Run(ctx context.Context) error {
	defer b.work.Stop()
	gc := time.NewTicker(b.cfg.GCInterval)
	defer gc.Stop()
	retry := time.NewTimer(0) // the first pass, at once
	defer retry.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.state.blobsAdded:
		case <-retry.C:
		case <-gc.C:
			b.collect(ctx)
		}
		if b.replicate(ctx) {
			backoff = 0
			continue
		}
		backoff = min(max(2*backoff, blobRetryMin), blobRetryMax)
		retry.Reset(backoff)
	}
}

// replicate fetches the referenced blobs this host lacks and records it as their holder.
// It reports whether everything succeeded.
func (b *Blobs) replicate(ctx context.Context) bool {
	me := b.self()
	ok := true
	var record []Digest
	for _, st := range b.state.blobList() {
		if ctx.Err() != nil {
			return false
		}
		if st.ref.size > int64(b.cfg.MaxBlobSize) {
			continue // over this host's limit: it serves such a value by fetching it each time
		}
		recorded, full := false, len(st.holders) >= MaxBlobHolders
		for _, h := range st.holders {
			recorded = recorded || equalHolder(h, me)
		}
		if err := b.ensure(ctx, st.ref, st.holders); err != nil {
			if ctx.Err() == nil {
				b.log.Warn("blob fetch failed", "digest", st.ref.digest.String(), "size", st.ref.size, "err", err)
			}
			ok = false
			continue
		}
		if !recorded && !full {
			record = append(record, st.ref.digest)
		}
	}
	if len(record) == 0 {
		return ok
	}
	if len(me.endpoints) == 0 {
		return false // not listening yet: record later
	}
	for batch := range slices.Chunk(record, maxHoldDigests) {
		pctx, cancel := context.WithTimeout(ctx, blobProposeBound)
		result, err := b.c.Propose(pctx, appendHoldCommand(nil, me, batch))
		cancel()
		if err == nil {
			err = decodeResult(result)
		}
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn("recording blob holder failed", "blobs", len(batch), "err", err)
			}
			return false
		}
	}
	return ok
}

// collect deletes the blobs no key refers to, once the local state has caught up with
// the cluster: a reference this host has not applied yet would look like none.
func (b *Blobs) collect(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, blobProposeBound)
	defer cancel()
	index, err := b.c.ReadIndex(cctx, true)
	if err == nil {
		err = b.c.WaitApplied(cctx, index)
	}
	if err != nil {
		if ctx.Err() == nil {
			b.log.Debug("blob collection skipped", "err", err)
		}
		return
	}
	deleted, err := b.store.collect(b.state.referenced)
	for _, d := range deleted {
		b.log.Debug("blob deleted", "digest", d.String())
	}
	if err != nil {
		b.log.Warn("blob collection failed", "err", err)
	}
}

// digestLocks serializes the fetches of each blob, so that concurrent readers of a
// missing blob fetch it once.
type digestLocks struct {
	mu sync.Mutex
	m  map[Digest]*digestLock // only digests locked or waited for
}

type digestLock struct {
	token chan struct{} // holding the lock is having put the one token in
	users int           // holders and waiters; guarded by digestLocks.mu
}

// lock takes the lock of d, or returns ctx's error. The returned func releases it.
func (l *digestLocks) lock(ctx context.Context, d Digest) (func(), error) {
	l.mu.Lock()
	e := l.m[d]
	if e == nil {
		e = &digestLock{token: make(chan struct{}, 1)} // one token: the lock
		l.m[d] = e
	}
	e.users++
	l.mu.Unlock()
	select {
	case e.token <- struct{}{}:
		return func() {
			<-e.token
			l.leave(d, e)
		}, nil
	case <-ctx.Done():
		l.leave(d, e)
		return nil, ctx.Err()
	}
}

func (l *digestLocks) leave(d Digest, e *digestLock) {
	l.mu.Lock()
	if e.users--; e.users == 0 {
		delete(l.m, d)
	}
	l.mu.Unlock()
}
