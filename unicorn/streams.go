package unicorn

import (
	"context"
	"errors"

	"github.com/cocaine/cocaine/rpc"
)

// The stream methods: subscribe and children_subscribe (latest-state semantics, as the
// original's one-shot ZooKeeper watches gave), and watch (every event, from a
// revision). Each runs on one goroutine of the service that reads its Watcher at the
// pace of the client: a slow client never holds up Apply or other watchers.

// waitEvents waits for the watcher's next events, or the end of the scope or service.
// It returns ok false when the stream must stop without an error of its own.
func waitEvents(ctx context.Context, sc *scope, w *Watcher) (evs []Event, err error, ok bool) {
	for {
		evs, err := w.Poll()
		if sc.ended() {
			return nil, nil, false // closed: what happened after the close is not sent
		}
		if err != nil || len(evs) > 0 {
			return evs, err, true
		}
		select {
		case <-w.Ready():
		case <-sc.done:
			return nil, nil, false
		case <-ctx.Done():
			return nil, errStopping, true
		}
	}
}

// subscribe: [path] -> stream of [[value, version]]: the current state ([nil, -1] while
// absent), then the state after each change. Intermediate states may be skipped. The
// stream fails with ErrNoNode when the node is removed, ErrChildNotAllowed when it has
// children when read.
func (s *Service) subscribe(_ context.Context, req *rpc.Request) error {
	var path string
	if err := req.Args.Scan(&path); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	return s.stream(req, func(ctx context.Context, sc *scope, tx *rpc.Tx) error {
		if err := s.barrier(ctx, Default); err != nil {
			return err
		}
		var w *Watcher
		defer func() {
			if w != nil {
				w.Close()
			}
		}()
		sent := int64(-2) // the version last sent; -2: nothing yet
		// resync reads the state, (re)starts the watcher at the revision read, and sends
		// the state if it changed.
		resync := func() error {
			value, version, rev, err := s.store.Get(path)
			if err != nil {
				return err
			}
			if version < 0 && sent >= 0 {
				return errorf(ErrNoNode, "node was removed: %s", quote(path))
			}
			if w != nil {
				w.Close()
			}
			if w, err = s.store.Watch(path, WatchExact, rev); err != nil {
				return err
			}
			if version == sent {
				return nil
			}
			sent = version
			return tx.SendRaw(rpc.Write, appendVersioned(args(1), value, version))
		}
		if err := resync(); err != nil {
			return err
		}
		for {
			evs, err, ok := waitEvents(ctx, sc, w)
			if !ok {
				return nil
			}
			if errors.Is(err, ErrCompacted) {
				// Fell behind: latest-state semantics only need the current state.
				if err := resync(); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if ev.Kind == EventDelete {
					return errorf(ErrNoNode, "node was removed: %s", quote(path))
				}
			}
			value, version, _, err := s.store.Get(path)
			if err != nil {
				return err
			}
			if version < 0 || version == sent {
				continue // removed meanwhile: the next events say so
			}
			sent = version
			if err := tx.SendRaw(rpc.Write, appendVersioned(args(1), value, version)); err != nil {
				return nil
			}
		}
	})
}

// children_subscribe: [path] -> stream of [cversion, [names]] (names sorted): the
// children now, then after each child created or removed. A missing node is ErrNoNode,
// and so is its removal later.
func (s *Service) childrenSubscribe(_ context.Context, req *rpc.Request) error {
	var path string
	if err := req.Args.Scan(&path); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	return s.stream(req, func(ctx context.Context, sc *scope, tx *rpc.Tx) error {
		if err := s.barrier(ctx, Default); err != nil {
			return err
		}
		var w *Watcher
		defer func() {
			if w != nil {
				w.Close()
			}
		}()
		sent := int64(-1)
		resync := func(restart bool) error {
			cv, names, rev, err := s.store.Children(path)
			if errors.Is(err, ErrNoNode) && sent >= 0 {
				return errorf(ErrNoNode, "watched node was deleted: %s", quote(path))
			}
			if err != nil {
				return err
			}
			if restart {
				if w != nil {
					w.Close()
				}
				if w, err = s.store.Watch(path, WatchChildren, rev); err != nil {
					return err
				}
			}
			if cv == sent {
				return nil
			}
			sent = cv
			return tx.SendRaw(rpc.Write, appendChildren(args(2), cv, names))
		}
		if err := resync(true); err != nil {
			return err
		}
		for {
			evs, err, ok := waitEvents(ctx, sc, w)
			if !ok {
				return nil
			}
			restart := errors.Is(err, ErrCompacted)
			if err != nil && !restart {
				return err
			}
			for _, ev := range evs {
				if ev.Path == path && ev.Kind == EventDelete {
					return errorf(ErrNoNode, "watched node was deleted: %s", quote(path))
				}
			}
			if err := resync(restart); err != nil {
				return err
			}
		}
	})
}

// watch: [path, from_revision, ?recursive] -> stream of
// [start_revision, "sync", path, nil, -1], then [revision, kind, path, value, version]
// for every event above start_revision, in order. from_revision < 0 starts now; one
// below the compacted revision fails with ErrCompacted, and so does a client that falls
// behind the retained history.
func (s *Service) watch(_ context.Context, req *rpc.Request) error {
	var path string
	var from int64
	var recursive bool
	if err := req.Args.Scan(&path, &from, rpc.Optional(&recursive)); err != nil {
		return err
	}
	if !(recursive && path == "/") {
		if err := ValidatePath(path); err != nil {
			return err
		}
	}
	return s.stream(req, func(ctx context.Context, sc *scope, tx *rpc.Tx) error {
		w, err := s.openWatch(ctx, path, Revision(from), recursive)
		if err != nil {
			return err
		}
		defer w.Close()
		if err := tx.SendRaw(rpc.Write, appendEvent(nil, Event{Revision: w.Start(), Path: path, Version: -1}, "sync")); err != nil {
			return nil
		}
		for {
			evs, err, ok := waitEvents(ctx, sc, w)
			if !ok {
				return nil
			}
			if err != nil {
				return err
			}
			for _, ev := range evs {
				if err := tx.SendRaw(rpc.Write, appendEvent(nil, ev, ev.Kind.String())); err != nil {
					return nil
				}
			}
		}
	})
}

// appendEvent encodes the args of a watch chunk: [revision, kind, path, value, version].
func appendEvent(b []byte, ev Event, kind string) []byte {
	b = rpc.AppendArrayHeader(b, 5)
	b = rpc.AppendInt(b, int64(ev.Revision))
	b = rpc.AppendString(b, kind)
	b = rpc.AppendString(b, ev.Path)
	b = appendValue(b, ev.Value)
	return rpc.AppendInt(b, ev.Version)
}
