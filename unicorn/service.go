package unicorn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Name is the service's name.
const Name = "unicorn"

// final is the dispatch every method switches to: its only message is close, which ends
// the request's scope (plugins.md §1.3).
var final = rpc.NewState(rpc.Transition{ID: 0, Name: "close", Next: rpc.Terminal})

// Graph is the unicorn protocol, version 1: the original methods at their original ids
// (plugins.md §1.3), then the additions (see the package documentation).
var Graph = rpc.ServiceGraph(1,
	rpc.Method{Name: "subscribe", Dispatch: final, Upstream: rpc.Streaming},
	rpc.Method{Name: "children_subscribe", Dispatch: final, Upstream: rpc.Streaming},
	rpc.Method{Name: "put", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "get", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "create", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "del", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "remove", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "increment", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "lock", Dispatch: final, Upstream: rpc.Streaming},
	rpc.Method{Name: "named_lock", Dispatch: final, Upstream: rpc.Streaming},
	rpc.Method{Name: "watch", Dispatch: final, Upstream: rpc.Streaming},
	rpc.Method{Name: "create_ex", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "lease_grant", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "lease_keepalive", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "lease_revoke", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "txn", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "children", Dispatch: final, Upstream: rpc.Primitive},
	rpc.Method{Name: "revision", Dispatch: final, Upstream: rpc.Primitive},
)

// KeepaliveMethod is the LeaderCall method of lease keepalives; LeaderHandlers serves it.
const KeepaliveMethod = "unicorn.keepalive"

// Service is the `unicorn` service over a Store replicated through a Consensus: the RPC
// methods, the Go API used by other packages, and the lease machinery (the leader's
// expiry loop, this host's keeper loop, the host and session leases). Every exported
// method is safe for concurrent use.
type Service struct {
	cfg   Config
	store *Store
	c     Consensus
	log   *slog.Logger
	d     *rpc.Dispatcher
	work  *lifecycle.Group

	leader leaderState
	keeper keeper

	mu sync.Mutex
	// mu guards the following fields.
	sessions map[*rpc.Session]*session
	host     *ownedLease   // nil until granted
	hostWait chan struct{} // closed (and replaced) when host changes
}

// New builds the service. store must be the FSM that c drives. It starts nothing.
func New(cfg Config, store *Store, c Consensus, log *slog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || c == nil {
		return nil, errors.New("unicorn: New needs a store and a consensus")
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg: cfg, store: store, c: c, log: log.With("component", Name),
		work:     lifecycle.NewGroup(context.Background()),
		sessions: map[*rpc.Session]*session{},
		hostWait: make(chan struct{}),
	}
	s.keeper.leases = map[LeaseID]*ownedLease{}
	s.d = rpc.NewDispatcher(Graph, errorTable, s.log)
	s.bind()
	return s, nil
}

// Dispatcher serves the unicorn graph.
func (s *Service) Dispatcher() *rpc.Dispatcher { return s.d }

// Store is the store the service serves.
func (s *Service) Store() *Store { return s.store }

// LeaderHandlers are the handlers the raft layer must serve for LeaderCall on the
// leader: register each under its name.
func (s *Service) LeaderHandlers() map[string]LeaderHandler {
	return map[string]LeaderHandler{KeepaliveMethod: s.handleKeepalive}
}

// Run runs the lease machinery until ctx is done: the leader's expiry loop (while this
// host leads), the keeper loop, and the host lease. On return every goroutine the
// service started, request handlers included, has exited, and the leases this host owns
// have been revoked if consensus allowed it within a second.
func (s *Service) Run(ctx context.Context) error {
	s.work.Go(s.leaderLoop)
	s.work.Go(s.keeperLoop)
	s.work.Go(s.hostLoop)
	<-ctx.Done()
	s.revokeOwned()
	s.work.Stop()
	return nil
}

// revokeOwned revokes, best effort, every lease this host keeps alive, so that its
// ephemeral nodes go at once rather than when they expire.
func (s *Service) revokeOwned() {
	ids := s.keeper.ids()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for len(ids) > 0 {
		n := min(len(ids), MaxRevokeBatch)
		if _, err := s.c.Propose(ctx, encodeRevoke(ids[:n]...)); err != nil {
			s.log.Warn("revoking this host's leases on shutdown failed", "err", err)
			return
		}
		ids = ids[n:]
	}
}

// unavailable wraps a consensus failure as ErrConnectionLoss.
func unavailable(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %s: %v", ErrConnectionLoss, op, err)
}

// propose replicates cmd and returns the FSM's result.
func (s *Service) propose(ctx context.Context, cmd []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	res, err := s.c.Propose(ctx, cmd)
	return res, unavailable("propose", err)
}

// Consistency is the consistency level of a read.
type Consistency uint8

// Consistency levels.
const (
	// Default reads through the read index: the read sees every write acknowledged
	// anywhere in the cluster before it started.
	Default Consistency = iota
	// Linearizable also has the leader confirm with a quorum that it still leads.
	Linearizable
	// Serializable reads the local replica as it is: fastest, possibly stale.
	Serializable
)

var consistencyNames = map[string]Consistency{"default": Default, "linearizable": Linearizable, "serializable": Serializable}

// barrier waits until the local store reflects what a read at consistency c must see.
func (s *Service) barrier(ctx context.Context, c Consistency) error {
	if c == Serializable {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	defer cancel()
	idx, err := s.c.ReadIndex(ctx, c == Linearizable)
	if err != nil {
		return unavailable("read index", err)
	}
	return unavailable("wait applied", s.c.WaitApplied(ctx, idx))
}

// scope is the lifetime of one request: it ends when the client sends close, or the
// channel is discarded (the connection closed or the channel was revoked). Replies of
// an ended scope are suppressed, streams stop, locks are released.
type scope struct {
	once sync.Once
	done chan struct{}
}

func newScope(req *rpc.Request) *scope {
	sc := &scope{done: make(chan struct{})}
	req.Receive(sc)
	return sc
}

// Receive implements rpc.Receiver: the only message of the final dispatch is close.
func (sc *scope) Receive(rpc.Message, bool) error { sc.end(); return nil }

// Discard implements rpc.Receiver.
func (sc *scope) Discard(error) { sc.end() }

func (sc *scope) end() { sc.once.Do(func() { close(sc.done) }) }

func (sc *scope) ended() bool {
	select {
	case <-sc.done:
		return true
	default:
		return false
	}
}

// errStopping is the error of requests that arrive while the service stops.
var errStopping = fmt.Errorf("%w: the unicorn service is stopping", ErrConnectionLoss)

// oneShot runs fn on a goroutine of the service and replies with its encoded args (an
// array) or its error, unless the scope ended first.
func (s *Service) oneShot(req *rpc.Request, fn func(ctx context.Context) (rpc.Raw, error)) error {
	sc := newScope(req)
	tx := req.Tx
	if !s.work.Go(func(ctx context.Context) {
		args, err := fn(ctx)
		if sc.ended() {
			return
		}
		if err != nil {
			tx.Error(errorTable.Wire(err))
			return
		}
		tx.SendRaw(rpc.Value, args)
	}) {
		return errStopping
	}
	return nil
}

// stream runs fn on a goroutine of the service with the request's scope; fn sends
// chunks on tx until it fails, and its error (unless the scope ended) is the stream's
// last message.
func (s *Service) stream(req *rpc.Request, fn func(ctx context.Context, sc *scope, tx *rpc.Tx) error) error {
	sc := newScope(req)
	tx := req.Tx
	if !s.work.Go(func(ctx context.Context) {
		err := fn(ctx, sc, tx)
		if sc.ended() || err == nil {
			return
		}
		if ctx.Err() != nil {
			err = errStopping
		}
		tx.Error(errorTable.Wire(err))
	}) {
		return errStopping
	}
	return nil
}
