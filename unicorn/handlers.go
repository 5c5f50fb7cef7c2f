package unicorn

import (
	"context"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// The RPC handlers. Each decodes its arguments on the session's reader goroutine (a type
// error is a protocol violation, rpc.Fatal, as in the original), checks the path (an
// error reply), then hands the work to a goroutine of the service and replies through
// req.Tx.

func (s *Service) bind() {
	for name, h := range map[string]rpc.Handler{
		"subscribe": s.subscribe, "children_subscribe": s.childrenSubscribe,
		"put": s.put, "get": s.get, "create": s.createRPC, "del": s.remove, "remove": s.remove,
		"increment": s.increment, "lock": s.lock, "named_lock": s.namedLock,
		"watch": s.watch, "create_ex": s.createEx,
		"lease_grant": s.leaseGrant, "lease_keepalive": s.leaseKeepalive, "lease_revoke": s.leaseRevoke,
		"txn": s.txnRPC, "children": s.children, "revision": s.revision,
	} {
		s.d.MustHandle(name, h)
	}
}

// checkValueArg checks a value argument: a value that is not a dynamic value (ext
// types, non-string map keys) is a protocol violation, as the original's argument
// decoding fails on it; an oversized one is an error reply.
func (s *Service) checkValueArg(v []byte) error {
	sizeErr, shapeErr := validateValue(v, s.cfg.MaxValueSize)
	if shapeErr != nil {
		return rpc.Fatal(shapeErr)
	}
	return sizeErr
}

// args starts the encoding of a reply's args array of n elements.
func args(n int) []byte { return rpc.AppendArrayHeader(nil, n) }

func appendVersioned(b, value []byte, version int64) []byte {
	b = rpc.AppendArrayHeader(b, 2)
	b = appendValue(b, value)
	return rpc.AppendInt(b, version)
}

// put: [path, value, version] -> [bool, [value, version]].
func (s *Service) put(_ context.Context, req *rpc.Request) error {
	var path string
	var value rpc.Raw
	var version int64
	if err := req.Args.Scan(&path, &value, &version); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	if err := s.checkValueArg(value); err != nil {
		return err
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		ok, cur, ver, err := s.Put(ctx, path, value, version)
		if err != nil {
			return nil, err
		}
		return appendVersioned(rpc.AppendBool(args(2), ok), cur, ver), nil
	})
}

// get: [path, ?consistency] -> [[value, version]].
func (s *Service) get(_ context.Context, req *rpc.Request) error {
	var path string
	level := "default"
	if err := req.Args.Scan(&path, rpc.Optional(&level)); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	c, ok := consistencyNames[level]
	if !ok {
		return errorf(ErrInvalidNodeName, "unknown consistency %q: want default, linearizable or serializable", level)
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		value, version, err := s.Get(ctx, path, c)
		if err != nil {
			return nil, err
		}
		return appendVersioned(args(1), value, version), nil
	})
}

// create: [path, value, ?ephemeral, ?sequence] -> [true].
func (s *Service) createRPC(_ context.Context, req *rpc.Request) error {
	var path string
	var value rpc.Raw
	var o CreateOptions
	if err := req.Args.Scan(&path, &value, rpc.Optional(&o.Ephemeral), rpc.Optional(&o.Sequence)); err != nil {
		return err
	}
	return s.createReply(req, path, value, o, func(string, Revision) rpc.Raw { return rpc.AppendBool(args(1), true) })
}

// create_ex: [path, value, flags] -> [created_path, revision].
func (s *Service) createEx(_ context.Context, req *rpc.Request) error {
	var path string
	var value rpc.Raw
	var f createFlagsArg
	if err := req.Args.Scan(&path, &value, &f); err != nil {
		return err
	}
	return s.createReply(req, path, value, f.CreateOptions, func(created string, rev Revision) rpc.Raw {
		return rpc.AppendInt(rpc.AppendString(args(2), created), int64(rev))
	})
}

func (s *Service) createReply(req *rpc.Request, path string, value []byte, o CreateOptions, reply func(string, Revision) rpc.Raw) error {
	if err := ValidatePath(path); err != nil {
		return err
	}
	if err := s.checkValueArg(value); err != nil {
		return err
	}
	sess := req.Session()
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		if o.Ephemeral && o.Lease == 0 {
			l, err := s.sessionLease(ctx, sess)
			if err != nil {
				return nil, err
			}
			o.Lease = l.id
		}
		created, rev, err := s.create(ctx, path, value, o)
		if err != nil {
			return nil, err
		}
		return reply(created, rev), nil
	})
}

// del, remove: [path, version] -> [true].
func (s *Service) remove(_ context.Context, req *rpc.Request) error {
	var path string
	var version int64
	if err := req.Args.Scan(&path, &version); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		if err := s.Remove(ctx, path, version); err != nil {
			return nil, err
		}
		return rpc.AppendBool(args(1), true), nil
	})
}

// increment: [path, delta] -> [[value, version]].
func (s *Service) increment(_ context.Context, req *rpc.Request) error {
	var path string
	var delta rpc.Raw
	if err := req.Args.Scan(&path, &delta); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	if err := s.checkValueArg(delta); err != nil {
		return err
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		value, version, err := s.Increment(ctx, path, delta)
		if err != nil {
			return nil, err
		}
		return appendVersioned(args(1), value, version), nil
	})
}

// children: [path] -> [cversion, [names]].
func (s *Service) children(_ context.Context, req *rpc.Request) error {
	var path string
	if err := req.Args.Scan(&path); err != nil {
		return err
	}
	if err := ValidatePath(path); err != nil {
		return err
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		cv, names, err := s.Children(ctx, path, Default)
		if err != nil {
			return nil, err
		}
		return appendChildren(args(2), cv, names), nil
	})
}

func appendChildren(b []byte, cv int64, names []string) []byte {
	b = rpc.AppendInt(b, cv)
	b = rpc.AppendArrayHeader(b, len(names))
	for _, n := range names {
		b = rpc.AppendString(b, n)
	}
	return b
}

// revision: [] -> [revision, compacted_revision], after a read barrier.
func (s *Service) revision(_ context.Context, req *rpc.Request) error {
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		if err := s.barrier(ctx, Default); err != nil {
			return nil, err
		}
		rev, compacted := s.store.Revisions()
		return rpc.AppendInt(rpc.AppendInt(args(2), int64(rev)), int64(compacted)), nil
	})
}

// lease_grant: [ttl_seconds] -> [lease_id, ttl].
func (s *Service) leaseGrant(_ context.Context, req *rpc.Request) error {
	var ttl int64
	if err := req.Args.Scan(&ttl); err != nil {
		return err
	}
	ttl = min(max(ttl, 0), int64(MaxLeaseTTL/time.Second))
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		id, granted, err := s.GrantLease(ctx, time.Duration(ttl)*time.Second)
		if err != nil {
			return nil, err
		}
		return rpc.AppendInt(rpc.AppendInt(args(2), int64(id)), int64(granted/time.Second)), nil
	})
}

// lease_keepalive: [lease_id] -> [ttl].
func (s *Service) leaseKeepalive(_ context.Context, req *rpc.Request) error {
	var id int64
	if err := req.Args.Scan(&id); err != nil {
		return err
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		ttl, err := s.KeepAlive(ctx, LeaseID(id))
		if err != nil {
			return nil, err
		}
		return rpc.AppendInt(args(1), int64(ttl/time.Second)), nil
	})
}

// lease_revoke: [lease_id] -> [true].
func (s *Service) leaseRevoke(_ context.Context, req *rpc.Request) error {
	var id int64
	if err := req.Args.Scan(&id); err != nil {
		return err
	}
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		if err := s.RevokeLease(ctx, LeaseID(id)); err != nil {
			return nil, err
		}
		return rpc.AppendBool(args(1), true), nil
	})
}

// txn: [compares, success_ops, failure_ops] -> [succeeded, [[path, value, version]...],
// revision].
func (s *Service) txnRPC(_ context.Context, req *rpc.Request) error {
	var cs wireCompares
	var then, els wireOps
	if err := req.Args.Scan(&cs, &then, &els); err != nil {
		return err
	}
	for _, err := range []error{cs.invalidArg, then.invalidArg, els.invalidArg} {
		if err != nil {
			return err
		}
	}
	t := Txn{If: cs.cs, Then: then.ops, Else: els.ops}
	for _, branch := range [][]Op{t.Then, t.Else} {
		for _, o := range branch {
			if o.Kind == OpPut || o.Kind == OpCreate {
				if err := s.checkValueArg(o.Value); err != nil {
					return err
				}
			}
		}
	}
	sess := req.Session()
	return s.oneShot(req, func(ctx context.Context) (rpc.Raw, error) {
		for _, branch := range [][]Op{t.Then, t.Else} {
			for i := range branch {
				if o := &branch[i]; o.Kind == OpCreate && o.Create.Ephemeral && o.Create.Lease == 0 {
					l, err := s.sessionLease(ctx, sess)
					if err != nil {
						return nil, err
					}
					o.Create.Lease = l.id
				}
			}
		}
		r, err := s.txn(ctx, t)
		if err != nil {
			return nil, err
		}
		return appendTxnResult(nil, r), nil
	})
}
