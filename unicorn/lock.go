package unicorn

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Locks follow ZooKeeper's recipe (plugins.md §1.4), on the store:
//
//	create <folder>/lock<10 digits>, ephemeral and sequential, bound to the connection's
//	session lease
//	loop: list the folder; ours the smallest -> held: send [true] (once)
//	      else watch the immediate predecessor (which must be a lock node) until it goes
//	release: close, discard, disconnect -> remove our node (retried until it is gone or
//	         the lease is)
//	lost:    our node removed, or the session lease lost on this host -> an error, never
//	         [false]
//
// Watching only the predecessor wakes one waiter per release, however many wait.

// lockPrefix is the name of lock nodes before their sequence number.
const lockPrefix = "lock"

// lock: [path] -> stream of [true]; the node's value is the current Unix time.
func (s *Service) lock(_ context.Context, req *rpc.Request) error {
	var path string
	if err := req.Args.Scan(&path); err != nil {
		return err
	}
	return s.lockStream(req, path, rpc.AppendInt(nil, time.Now().Unix()))
}

// named_lock: [path, value] -> stream of [true]; the node holds the caller's value.
func (s *Service) namedLock(_ context.Context, req *rpc.Request) error {
	var path string
	var value rpc.Raw
	if err := req.Args.Scan(&path, &value); err != nil {
		return err
	}
	if err := s.checkValueArg(value); err != nil {
		return err
	}
	return s.lockStream(req, path, value)
}

func (s *Service) lockStream(req *rpc.Request, folder string, value []byte) error {
	if err := ValidatePath(folder); err != nil {
		return err
	}
	sess := req.Session()
	return s.stream(req, func(ctx context.Context, sc *scope, tx *rpc.Tx) error {
		l, err := s.sessionLease(ctx, sess)
		if err != nil {
			return err
		}
		told := false
		lost := func(err error) {
			told = true
			if !sc.ended() {
				if ctx.Err() != nil {
					err = errStopping
				}
				tx.Error(errorTable.Wire(err))
			}
		}
		err = s.holdLock(ctx, sc.done, l, folder, value, func() error { return tx.SendRaw(rpc.Write, rpc.AppendBool(args(1), true)) }, lost)
		if told {
			return nil
		}
		return err
	})
}

// holdLock takes the lock of folder under lease l, calls acquired once it is held, and
// keeps it until release is closed (nil error) or it is lost (an error). The lock node
// is removed on return. When the lock was held and ends with an error, lost (if not
// nil) is called with it first: the holder must hear that it lost the lock before
// removing the node lets another client take it.
func (s *Service) holdLock(ctx context.Context, release <-chan struct{}, l *ownedLease, folder string, value []byte, acquired func() error, lost func(error)) error {
	created, rev, err := s.create(ctx, childPath(folder, lockPrefix), value, CreateOptions{Ephemeral: true, Sequence: true, Lease: l.id})
	if err != nil {
		return err
	}
	// While the node exists, a revoke of l because it was lost here waits for this
	// holder to have told its client (forget).
	l.enter()
	held := false
	err = s.waitLock(ctx, release, l, folder, created, rev, func() error { held = true; return acquired() })
	if err != nil && held && lost != nil {
		lost(err)
	}
	l.leave()
	s.unlock(ctx, l, created)
	return err
}

// waitLock is holdLock's loop, with its node created.
func (s *Service) waitLock(ctx context.Context, release <-chan struct{}, l *ownedLease, folder, created string, rev Revision, acquired func() error) error {
	own, err := s.store.Watch(created, WatchExact, rev)
	if err != nil {
		return err
	}
	defer func() { own.Close() }() // own may be replaced below
	var pred *Watcher
	defer func() {
		if pred != nil {
			pred.Close()
		}
	}()
	name := baseOf(created)
	held := false
	for {
		_, names, at, err := s.store.Children(folder)
		if err != nil && !errors.Is(err, ErrNoNode) {
			return err
		}
		i := slices.Index(names, name)
		switch {
		case i < 0:
			return errorf(ErrNoNode, "lock lost: created path %s is not found in children", quote(created))
		case i == 0:
			if pred != nil {
				pred.Close()
				pred = nil
			}
			if !held {
				held = true
				if err := acquired(); err != nil {
					return nil // the client is gone; release
				}
			}
		case held:
			return errorf(ErrBackend, "lock lost: %s now sorts before %s in the lock folder", quote(names[0]), quote(name))
		case !isSequenceName(names[i-1], lockPrefix):
			return errorf(ErrBackend, "trash data in lock folder %s: %s", quote(folder), quote(names[i-1]))
		default:
			p := childPath(folder, names[i-1])
			if pred == nil || pred.path != p {
				if pred != nil {
					pred.Close()
				}
				if pred, err = s.store.Watch(p, WatchExact, at); err != nil {
					return err
				}
			}
		}
		var predReady <-chan struct{}
		if pred != nil {
			predReady = pred.Ready()
		}
		select {
		case <-own.Ready():
			evs, err := own.Poll()
			if err != nil && !errors.Is(err, ErrCompacted) {
				return err
			}
			for _, ev := range evs {
				if ev.Kind == EventDelete {
					return errorf(ErrNoNode, "lock lost: %s was removed", quote(created))
				}
			}
			if err != nil { // compacted: re-watch from the listing
				own.Close()
				if own, err = s.store.Watch(created, WatchExact, -1); err != nil {
					return err
				}
			}
		case <-predReady:
			if _, err := pred.Poll(); err != nil {
				pred.Close()
				pred = nil // relist and watch again
			}
		case <-l.lost:
			return errorf(ErrConnectionLoss, "lock lost: the session lease %d could not be renewed in time", l.id)
		case <-release:
			return nil
		case <-ctx.Done():
			return errStopping
		}
	}
}

// unlock removes a lock node, retrying until it is gone, or its lease is (the node goes
// with it), or the service stops.
func (s *Service) unlock(ctx context.Context, l *ownedLease, created string) {
	t := time.NewTicker(l.ttl / 8)
	defer t.Stop()
	for {
		err := s.Remove(ctx, created, -1)
		if err == nil || errors.Is(err, ErrNoNode) {
			return
		}
		select {
		case <-t.C:
		case <-l.lost:
			return
		case <-ctx.Done():
			return
		}
	}
}
