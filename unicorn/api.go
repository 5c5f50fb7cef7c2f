package unicorn

import (
	"context"
	"fmt"
	"time"
)

// The Go API of the service, for other packages of the daemon (the locator, the node).
// Every method blocks until consensus answers or ctx is done (each round trip is also
// bounded by Config.RequestTimeout); consensus failures are ErrConnectionLoss. Values are
// msgpack objects ([]byte holding exactly one object). All methods are safe for
// concurrent use.

// Get reads a node: its value and version, [nil (0xc0), -1] when it is absent. It fails
// with ErrChildNotAllowed for a node with children, ErrInvalidPath.
func (s *Service) Get(ctx context.Context, path string, c Consistency) ([]byte, int64, error) {
	if err := ValidatePath(path); err != nil {
		return nil, 0, err
	}
	if err := s.barrier(ctx, c); err != nil {
		return nil, 0, err
	}
	value, version, _, err := s.store.Get(path)
	return value, version, err
}

// Put sets a node's value if its version is version (a compare-and-set). On a version
// mismatch it returns ok false with the current value and version, and no error. It
// fails with ErrNoNode (put never creates), ErrVersionNotAllowed for a negative version,
// ErrInvalidValue, ErrInvalidPath.
func (s *Service) Put(ctx context.Context, path string, value []byte, version int64) (ok bool, cur []byte, curVersion int64, err error) {
	if err := s.checkWrite(path, value); err != nil {
		return false, nil, 0, err
	}
	if version < 0 {
		return false, nil, 0, errorf(ErrVersionNotAllowed, "put of %s with version %d", quote(path), version)
	}
	res, err := s.propose(ctx, encodePut(path, value, version))
	if err != nil {
		return false, nil, 0, err
	}
	return decodePutResult(res)
}

// Create creates a node, and its missing ancestors (persistent, holding msgpack nil). It
// returns the created path (with its sequence suffix) and the revision of the creation.
// An ephemeral node without a lease is bound to the host lease. It fails with
// ErrNodeExists, ErrLeaseNotFound, ErrInvalidValue, ErrInvalidPath, ErrBackend (children
// under an ephemeral node).
func (s *Service) Create(ctx context.Context, path string, value []byte, o CreateOptions) (string, Revision, error) {
	if o.Ephemeral && o.Lease == 0 {
		id, _, err := s.HostLease(ctx)
		if err != nil {
			return "", 0, err
		}
		o.Lease = id
	}
	return s.create(ctx, path, value, o)
}

// create is Create with the lease already resolved.
func (s *Service) create(ctx context.Context, path string, value []byte, o CreateOptions) (string, Revision, error) {
	if err := s.checkWrite(path, value); err != nil {
		return "", 0, err
	}
	res, err := s.propose(ctx, encodeCreate(path, value, o))
	if err != nil {
		return "", 0, err
	}
	return decodeCreateResult(res)
}

// Remove deletes a node without children if its version is version (-1: any). It fails
// with ErrNoNode, ErrVersionNotAllowed, ErrBackend (the node has children).
func (s *Service) Remove(ctx context.Context, path string, version int64) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	res, err := s.propose(ctx, encodeRemove(path, version))
	if err != nil {
		return err
	}
	_, err = decodeRemoveResult(res)
	return err
}

// Increment adds delta (a msgpack int, uint or double) to a node's numeric value,
// creating the node with delta when absent, and returns the new value and version. It
// fails with ErrInvalidType (non-numeric delta or value, overflow), ErrChildNotAllowed.
func (s *Service) Increment(ctx context.Context, path string, delta []byte) ([]byte, int64, error) {
	if err := ValidatePath(path); err != nil {
		return nil, 0, err
	}
	if _, ok := parseNumber(delta); !ok {
		return nil, 0, errorf(ErrInvalidType, "increment of %s by a value that is not a number", quote(path))
	}
	res, err := s.propose(ctx, encodeIncrement(path, delta))
	if err != nil {
		return nil, 0, err
	}
	return decodeIncrementResult(res)
}

// Children returns a node's children version and its children's names, sorted. It
// fails with ErrNoNode.
func (s *Service) Children(ctx context.Context, path string, c Consistency) (int64, []string, error) {
	if err := ValidatePath(path); err != nil {
		return 0, nil, err
	}
	if err := s.barrier(ctx, c); err != nil {
		return 0, nil, err
	}
	cv, names, _, err := s.store.Children(path)
	return cv, names, err
}

// Txn runs a transaction (see Txn and Op for the semantics). An ephemeral create without
// a lease is bound to the host lease.
func (s *Service) Txn(ctx context.Context, t Txn) (TxnResult, error) {
	for _, branch := range [][]Op{t.Then, t.Else} {
		for i := range branch {
			if o := &branch[i]; o.Kind == OpCreate && o.Create.Ephemeral && o.Create.Lease == 0 {
				id, _, err := s.HostLease(ctx)
				if err != nil {
					return TxnResult{}, err
				}
				o.Create.Lease = id
			}
		}
	}
	return s.txn(ctx, t)
}

func (s *Service) txn(ctx context.Context, t Txn) (TxnResult, error) {
	if len(t.If) > MaxTxnOps || len(t.Then) > MaxTxnOps || len(t.Else) > MaxTxnOps {
		return TxnResult{}, errorf(ErrInvalidNodeName, "a transaction has at most %d compares and %d operations per branch", MaxTxnOps, MaxTxnOps)
	}
	for _, branch := range [][]Op{t.Then, t.Else} {
		for _, o := range branch {
			if o.Kind == OpPut || o.Kind == OpCreate {
				if err := s.checkWrite(o.Path, o.Value); err != nil {
					return TxnResult{}, err
				}
			}
		}
	}
	res, err := s.propose(ctx, encodeTxn(t))
	if err != nil {
		return TxnResult{}, err
	}
	return decodeTxnResultBytes(res)
}

// GrantLease grants a lease; ttl is brought within [MinLeaseTTL, MaxLeaseTTL] and
// rounded up to seconds, and the TTL granted is returned. The caller keeps it alive with
// KeepAlive (at least every TTL/3 is wise) or loses it after TTL.
func (s *Service) GrantLease(ctx context.Context, ttl time.Duration) (LeaseID, time.Duration, error) {
	id, secs, err := s.grant(ctx, ttl)
	return id, time.Duration(secs) * time.Second, err
}

// KeepAlive renews a lease on the leader and returns its TTL. It fails with
// ErrLeaseNotFound when the lease is gone.
func (s *Service) KeepAlive(ctx context.Context, id LeaseID) (time.Duration, error) {
	ttls, err := s.keepalive(ctx, s.cfg.RequestTimeout, []LeaseID{id})
	if err != nil {
		return 0, err
	}
	if ttls[0] <= 0 {
		return 0, errorf(ErrLeaseNotFound, "lease %d", id)
	}
	return time.Duration(ttls[0]) * time.Second, nil
}

// RevokeLease revokes a lease and deletes its ephemeral nodes, at one revision. It fails
// with ErrLeaseNotFound.
func (s *Service) RevokeLease(ctx context.Context, id LeaseID) error {
	res, err := s.propose(ctx, encodeRevoke(id))
	if err != nil {
		return err
	}
	_, found, err := decodeRevokeResult(res)
	if err == nil && found == 0 {
		err = errorf(ErrLeaseNotFound, "lease %d", id)
	}
	return err
}

// WatchOptions select the events of a Watch.
type WatchOptions struct {
	// From: events with a revision above it are delivered; negative means "from now"
	// (after a read barrier). A From below the compacted revision fails with
	// ErrCompacted.
	From Revision
	// Recursive also delivers the events of every node below the path ("/" then
	// watches the whole tree).
	Recursive bool
}

// WatchResponse is a batch of events, in revision order, or the error that ended the
// watch (then the channel is closed right after).
type WatchResponse struct {
	Events []Event
	Err    error
}

// Watch streams the events of path: gap-free, duplicate-free, in revision order. It
// returns the start revision (every event above it follows) and a channel that is closed
// when ctx is done or after a response carrying an error (ErrCompacted when the consumer
// fell behind the retained history, ErrConnectionLoss when the service stops).
func (s *Service) Watch(ctx context.Context, path string, o WatchOptions) (Revision, <-chan WatchResponse, error) {
	w, err := s.openWatch(ctx, path, o.From, o.Recursive)
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan WatchResponse) // unbuffered: the pump reads the history at the consumer's pace
	if !s.work.Go(func(gctx context.Context) {
		defer close(ch)
		defer w.Close()
		for {
			evs, err := w.Poll()
			if err == nil && len(evs) == 0 {
				select {
				case <-w.Ready():
					continue
				case <-ctx.Done():
					return
				case <-gctx.Done():
					err = errStopping
				}
			}
			select {
			case ch <- WatchResponse{Events: evs, Err: err}:
				if err != nil {
					return
				}
			case <-ctx.Done():
				return
			case <-gctx.Done():
				return
			}
		}
	}) {
		w.Close()
		return 0, nil, errStopping
	}
	return w.Start(), ch, nil
}

// openWatch registers a store watcher; from < 0 reads through the barrier first.
func (s *Service) openWatch(ctx context.Context, path string, from Revision, recursive bool) (*Watcher, error) {
	mode := WatchExact
	if recursive {
		mode = WatchPrefix
	}
	if from < 0 {
		if err := s.barrier(ctx, Default); err != nil {
			return nil, err
		}
	}
	return s.store.Watch(path, mode, from)
}

// checkWrite checks what the proposer must: the path and the value.
func (s *Service) checkWrite(path string, value []byte) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	sizeErr, shapeErr := validateValue(value, s.cfg.MaxValueSize)
	if sizeErr != nil {
		return sizeErr
	}
	if shapeErr != nil {
		return fmt.Errorf("%w (at %s)", shapeErr, quote(path))
	}
	return nil
}
