package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Consensus is what the Replicated backend needs from the raft layer: the raft group's
// handle for the FSM that drives the backend's ReplicatedState. Every method is safe for
// concurrent use.
type Consensus interface {
	// Propose replicates cmd through the log and returns the FSM's result for it, once
	// the command is applied on this host too (so a read here right after sees it).
	// Followers forward the command to the leader. An error means the command may or may
	// not have been applied (the raft layer's sentinels tell which).
	Propose(ctx context.Context, cmd []byte) ([]byte, error)

	// ReadIndex returns a log index that covers every write acknowledged anywhere in the
	// cluster before the call. With linearizable set the leader first confirms with a
	// quorum that it still leads. Wait for it with WaitApplied before reading local
	// state.
	ReadIndex(ctx context.Context, linearizable bool) (uint64, error)

	// WaitApplied blocks until the local FSM has applied index, or ctx is done.
	WaitApplied(ctx context.Context, index uint64) error
}

// Replicated is a Backend over a ReplicatedState that a raft group keeps equal on every
// host. Writes and removes are proposed through the Consensus; reads wait for the read
// index, then read the local state (see the package doc for what they see). It is safe
// for concurrent use.
//
// The daemon wires it as follows: it creates the state with NewReplicatedState, registers
// it as the FSM of a raft group (adapting Snapshot's result type to raft.Snapshot, which
// *ReplicatedSnapshot implements), opens the host's blob store with NewBlobs over the
// state and the group's handle, which satisfies Consensus, and passes all three to
// NewReplicated; it serves the blob store as the blobs service, through which hosts fetch
// each other's blobs. The state, not the backend, belongs to the raft layer, and
// the blob store to its Run: Close leaves them alone.
//
// Values up to the state's limit (ReplicatedConfig.MaxValueSize) travel through the log;
// larger ones, up to the blob store's limit, are kept in the blob store and only a
// reference travels (see Blobs). Without a blob store they are refused.
//
// Besides the errors each method lists, any method may return the Consensus's own errors,
// wrapped with the operation and name.
type Replicated struct {
	state *ReplicatedState
	c     Consensus
	blobs *Blobs // nil: no values over the state's limit

	closing context.Context // cancelled by Close, which ends the calls in flight
	cancel  context.CancelFunc

	// mu guards closed, and orders inflight.Add before Close's inflight.Wait.
	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // the calls that passed the closed check
}

var _ Backend = (*Replicated)(nil)

// NewReplicated returns a backend over state, replicated through c, with values over the
// state's limit (ReplicatedConfig.MaxValueSize) kept in blobs, up to its limit. state and
// c must be non-nil; blobs may be nil, and then larger values are refused. blobs must
// have been opened over state.
func NewReplicated(state *ReplicatedState, c Consensus, blobs *Blobs) *Replicated {
	if state == nil || c == nil {
		panic("storage: NewReplicated needs a state and a consensus")
	}
	if blobs != nil && blobs.state != state {
		panic("storage: NewReplicated needs the blob store of its own state")
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Replicated{state: state, c: c, blobs: blobs, closing: ctx, cancel: cancel}
}

// Close cancels the calls in flight, waits for them to return, and makes later calls
// return ErrClosed. A write or remove that Close interrupts returns ErrClosed too, but
// once proposed it may still be applied, as with any failed Propose. Close does not touch
// the state or the consensus. It is idempotent and always returns nil.
func (r *Replicated) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.inflight.Wait()
	return nil
}

// Read implements Backend. It returns ErrNotFound, ErrInvalidName, ErrClosed or ctx.Err(),
// wrapped, besides the Consensus's errors. A value kept in the blob store is read from
// this host's copy or fetched from a holder (see Blobs); when none can send it Read
// returns ErrBlobUnavailable, within ctx and the blob store's timeouts.
func (r *Replicated) Read(ctx context.Context, collection, key string) ([]byte, error) {
	name := keyName(collection, key)
	ctx, end, err := r.begin(ctx)
	if err != nil {
		return nil, &opError{op: "read", name: name, err: err}
	}
	defer end()
	if err := Validate(collection, key); err != nil {
		return nil, &opError{op: "read", name: name, err: err}
	}
	if err := r.catchUp(ctx); err != nil {
		return nil, &opError{op: "read", name: name, err: r.cause(ctx, err)}
	}
	value, ref, holders, ok := r.state.read(collection, key)
	if !ok {
		return nil, &opError{op: "read", name: name, err: ErrNotFound}
	}
	if ref == nil {
		return value, nil
	}
	if r.blobs == nil {
		return nil, &opError{op: "read", name: name, err: fmt.Errorf("%w: blob %s: this host has no blob store", ErrBlobUnavailable, ref.digest)}
	}
	value, err = r.blobs.read(ctx, *ref, holders)
	if err != nil {
		return nil, &opError{op: "read", name: name, err: r.cause(ctx, err)}
	}
	return value, nil
}

// Write implements Backend. It returns ErrInvalidName, ErrTooLarge (for a value over the
// blob store's limit, or over the state's without a blob store, before proposing
// anything), ErrClosed or ctx.Err(), wrapped, besides the Consensus's errors and the blob
// store's I/O errors. A value over the state's limit is stored in this host's blob store
// before its reference is proposed.
func (r *Replicated) Write(ctx context.Context, collection, key string, value []byte, tags []string) error {
	name := keyName(collection, key)
	ctx, end, err := r.begin(ctx)
	if err != nil {
		return &opError{op: "write", name: name, err: err}
	}
	defer end()
	if err := Validate(collection, key); err != nil {
		return &opError{op: "write", name: name, err: err}
	}
	if err := ValidateTags(tags); err != nil {
		return &opError{op: "write", name: name, err: err}
	}
	var cmd []byte
	switch {
	case len(value) <= r.state.maxValueSize:
		cmd = appendWriteCommand(nil, collection, key, value, normalizeTags(tags))
	case r.blobs == nil:
		return &opError{op: "write", name: name, err: fmt.Errorf(
			"%w: %d bytes, the limit is %d; larger values need a blob store, which this backend does not have",
			ErrTooLarge, len(value), r.state.maxValueSize)}
	default:
		var done func()
		if cmd, done, err = r.blobs.prepareWrite(collection, key, value, normalizeTags(tags)); err != nil {
			return &opError{op: "write", name: name, err: err}
		}
		// The blob is safe from collection until the proposal returns; after a failure
		// that may yet commit, for one more collection interval.
		defer done()
	}
	if err := r.propose(ctx, cmd); err != nil {
		return &opError{op: "write", name: name, err: err}
	}
	return nil
}

// Remove implements Backend. It returns ErrInvalidName, ErrClosed or ctx.Err(), wrapped,
// besides the Consensus's errors; a missing key is not an error.
func (r *Replicated) Remove(ctx context.Context, collection, key string) error {
	name := keyName(collection, key)
	ctx, end, err := r.begin(ctx)
	if err != nil {
		return &opError{op: "remove", name: name, err: err}
	}
	defer end()
	if err := Validate(collection, key); err != nil {
		return &opError{op: "remove", name: name, err: err}
	}
	// A remove of a missing key is proposed all the same: whether the key exists is known
	// only at the log position where the command lands.
	if err := r.propose(ctx, appendRemoveCommand(nil, collection, key)); err != nil {
		return &opError{op: "remove", name: name, err: err}
	}
	return nil
}

// Find implements Backend. It returns ErrInvalidName (for the collection), ErrClosed or
// ctx.Err(), wrapped, besides the Consensus's errors. A tag that could never be written
// is unknown, so it gives an empty result rather than an error.
func (r *Replicated) Find(ctx context.Context, collection string, tags []string) ([]string, error) {
	name := displayName(collection)
	ctx, end, err := r.begin(ctx)
	if err != nil {
		return nil, &opError{op: "find", name: name, err: err}
	}
	defer end()
	if err := validateName("collection", collection); err != nil {
		return nil, &opError{op: "find", name: name, err: err}
	}
	if len(tags) == 0 {
		return []string{}, nil // nothing to wait for: the answer is empty at any index
	}
	if err := r.catchUp(ctx); err != nil {
		return nil, &opError{op: "find", name: name, err: r.cause(ctx, err)}
	}
	return r.state.find(collection, tags), nil
}

// begin admits a call: it fails with ErrClosed after Close and with ctx.Err() for a done
// ctx; otherwise it returns a context that Close cancels too, and the func that ends the
// call, which the caller must run.
func (r *Replicated) begin(ctx context.Context) (context.Context, func(), error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, nil, ErrClosed
	}
	r.inflight.Add(1)
	r.mu.Unlock()
	if err := ctx.Err(); err != nil {
		r.inflight.Done()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(r.closing, func() { cancel(ErrClosed) })
	return ctx, func() {
		stop()
		cancel(nil)
		r.inflight.Done()
	}, nil
}

// cause returns ErrClosed for an error that Close caused by cancelling ctx, and err
// otherwise.
func (r *Replicated) cause(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), ErrClosed) {
		return ErrClosed
	}
	return err
}

// catchUp waits until the local state covers every write acknowledged before the call.
func (r *Replicated) catchUp(ctx context.Context) error {
	index, err := r.c.ReadIndex(ctx, false)
	if err != nil {
		return err
	}
	return r.c.WaitApplied(ctx, index)
}

// propose replicates cmd and returns the error its result carries, if any.
func (r *Replicated) propose(ctx context.Context, cmd []byte) error {
	result, err := r.c.Propose(ctx, cmd)
	if err != nil {
		return r.cause(ctx, err)
	}
	return decodeResult(result)
}
