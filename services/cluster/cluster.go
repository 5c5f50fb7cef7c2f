// Package cluster is the `cluster` service: the operator's handle on the Raft group that
// holds the cluster's state. It lists the members, lets servers join, leave and be
// removed, and streams backups out and in. `cocaine-tool cluster ...` speaks to it.
//
// Methods (version 1):
//
//	members()                 → [[{id, address, voter, leader, healthy, failing_since}...]]
//	status()                  → [{id, address, leader_id, leader_address, leader, applied_index}]
//	join(id, raft_address)    → []        add a server (the daemon of a joining host calls it)
//	leave()                   → []        this host leaves the cluster, then its daemon stops
//	remove(id)                → []        take a (dead) server out of the cluster
//	snapshot_save()           → stream of byte chunks, then close: a backup of this replica
//	snapshot_restore()        ← stream of byte chunks, then close → []: restore the cluster
//
// Errors are in category CategoryCluster.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Name is the service's name.
const Name = "cluster"

// Graph is the cluster protocol, version 1.
var Graph = rpc.ServiceGraph(1,
	rpc.Method{Name: "members", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "status", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "join", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "leave", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "remove", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "snapshot_save", Dispatch: rpc.Terminal, Upstream: rpc.Streaming},
	rpc.Method{Name: "snapshot_restore", Dispatch: rpc.Streaming, Upstream: rpc.Primitive},
)

// CategoryCluster is the error category of this service (not in the original: the
// original had no consensus of its own).
const CategoryCluster = 0x54FF

// Sentinels the Raft adapter wraps, so the service can map them to codes.
var (
	ErrNoLeader      = errors.New("cluster: no leader")
	ErrNotMember     = errors.New("cluster: no such member")
	ErrBadSnapshot   = errors.New("cluster: not a valid snapshot")
	ErrIndeterminate = errors.New("cluster: outcome unknown")
	ErrStopped       = errors.New("cluster: node stopping")
	ErrTooLarge      = errors.New("cluster: snapshot too large")
)

var errorTable = rpc.ErrorTable{
	{Err: ErrNoLeader, Category: CategoryCluster, Code: 1},
	{Err: ErrNotMember, Category: CategoryCluster, Code: 2},
	{Err: ErrBadSnapshot, Category: CategoryCluster, Code: 3},
	{Err: ErrIndeterminate, Category: CategoryCluster, Code: 4},
	{Err: ErrStopped, Category: CategoryCluster, Code: 5},
	{Err: ErrTooLarge, Category: CategoryCluster, Code: 6},
}

// Errors is the service's error table, for clients that match codes.
func Errors() rpc.ErrorTable { return errorTable }

// Member is one server of the Raft configuration.
type Member struct {
	ID           string
	Address      string
	Voter        bool
	Leader       bool
	Healthy      bool
	FailingSince time.Time
}

// Status is this host's view of the cluster.
type Status struct {
	ID, Address             string
	LeaderID, LeaderAddress string
	Leader                  bool
	AppliedIndex            uint64
}

// Raft is what the service needs of the consensus layer (internal/daemon adapts
// *raft.Node and maps its errors to the sentinels above).
type Raft interface {
	Members(ctx context.Context) ([]Member, error)
	Status() Status
	Join(ctx context.Context, id, addr string) error
	Leave(ctx context.Context) error
	Remove(ctx context.Context, id string) error
	SaveSnapshot(ctx context.Context, w io.Writer) error
	RestoreSnapshot(ctx context.Context, r io.Reader) error
}

// Config configures the service.
type Config struct {
	// MaxSnapshotSize bounds a backup sent to snapshot_restore.
	MaxSnapshotSize int64
	// Timeout bounds one operation (membership changes wait for the log).
	Timeout time.Duration
	// Shutdown is called after a successful leave, to stop the daemon.
	Shutdown func()
}

// Service is the cluster service.
type Service struct {
	cfg  Config
	r    Raft
	log  *slog.Logger
	d    *rpc.Dispatcher
	work *lifecycle.Group
}

// New returns the service over r.
func New(cfg Config, r Raft, log *slog.Logger) (*Service, error) {
	if r == nil {
		return nil, errors.New("cluster: nil raft")
	}
	if cfg.MaxSnapshotSize <= 0 {
		return nil, fmt.Errorf("cluster: max snapshot size must be positive, got %d", cfg.MaxSnapshotSize)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, r: r, log: log.With("component", "cluster"), work: lifecycle.NewGroup(context.Background())}
	d := rpc.NewDispatcher(Graph, errorTable, s.log)
	d.MustHandle("members", s.members)
	d.MustHandle("status", s.status)
	d.MustHandle("join", s.join)
	d.MustHandle("leave", s.leave)
	d.MustHandle("remove", s.remove)
	d.MustHandle("snapshot_save", s.snapshotSave)
	d.MustHandle("snapshot_restore", s.snapshotRestore)
	s.d = d
	return s, nil
}

// Dispatcher serves the cluster graph.
func (s *Service) Dispatcher() *rpc.Dispatcher { return s.d }

// Run waits for ctx, then for the operations in flight.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	s.work.Stop()
	return nil
}

// async runs op in the background and replies with its result.
func (s *Service) async(req *rpc.Request, op func(ctx context.Context) ([]any, error)) error {
	tx := req.Tx
	if !s.work.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		args, err := op(ctx)
		if err != nil {
			tx.Error(errorTable.Wire(err))
			return
		}
		tx.Value(args...)
	}) {
		return fmt.Errorf("%w: the cluster service is stopping", ErrStopped)
	}
	return nil
}

func (s *Service) members(ctx context.Context, req *rpc.Request) error {
	if err := req.Args.Scan(); err != nil {
		return err
	}
	return s.async(req, func(ctx context.Context) ([]any, error) {
		ms, err := s.r.Members(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(ms))
		for i, m := range ms {
			e := map[string]any{"id": m.ID, "address": m.Address, "voter": m.Voter, "leader": m.Leader, "healthy": m.Healthy}
			if !m.FailingSince.IsZero() {
				e["failing_since"] = m.FailingSince.UTC().Format(time.RFC3339Nano)
			}
			out[i] = e
		}
		return []any{out}, nil
	})
}

func (s *Service) status(ctx context.Context, req *rpc.Request) error {
	if err := req.Args.Scan(); err != nil {
		return err
	}
	st := s.r.Status()
	return req.Tx.Value(map[string]any{
		"id": st.ID, "address": st.Address, "leader_id": st.LeaderID, "leader_address": st.LeaderAddress,
		"leader": st.Leader, "applied_index": st.AppliedIndex,
	})
}

func (s *Service) join(ctx context.Context, req *rpc.Request) error {
	var id, addr string
	if err := req.Args.Scan(&id, &addr); err != nil {
		return err
	}
	return s.async(req, func(ctx context.Context) ([]any, error) {
		if id == "" || addr == "" {
			return nil, fmt.Errorf("%w: join needs a server id and its raft address", rpc.ErrInvalidArgument)
		}
		return nil, s.r.Join(ctx, id, addr)
	})
}

func (s *Service) leave(ctx context.Context, req *rpc.Request) error {
	if err := req.Args.Scan(); err != nil {
		return err
	}
	return s.async(req, func(ctx context.Context) ([]any, error) {
		if err := s.r.Leave(ctx); err != nil {
			return nil, err
		}
		if s.cfg.Shutdown != nil {
			s.log.Info("left the cluster; stopping the node")
			s.cfg.Shutdown()
		}
		return nil, nil
	})
}

func (s *Service) remove(ctx context.Context, req *rpc.Request) error {
	var id string
	if err := req.Args.Scan(&id); err != nil {
		return err
	}
	return s.async(req, func(ctx context.Context) ([]any, error) { return nil, s.r.Remove(ctx, id) })
}

// chunkSize is the size of the byte chunks a backup travels in.
const chunkSize = 256 << 10

func (s *Service) snapshotSave(ctx context.Context, req *rpc.Request) error {
	if err := req.Args.Scan(); err != nil {
		return err
	}
	tx := req.Tx
	if !s.work.Go(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		w := &chunkWriter{tx: tx, buf: make([]byte, 0, chunkSize)}
		err := s.r.SaveSnapshot(ctx, w)
		if err == nil {
			err = w.flush()
		}
		if err != nil {
			tx.Error(errorTable.Wire(err))
			return
		}
		tx.Close()
	}) {
		return fmt.Errorf("%w: the cluster service is stopping", ErrStopped)
	}
	return nil
}

// chunkWriter sends what is written to it as stream chunks of chunkSize bytes. Tx.Write
// blocks while the client does not read, which paces the snapshot.
type chunkWriter struct {
	tx  *rpc.Tx
	buf []byte
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), chunkSize-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == chunkSize {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.tx.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (s *Service) snapshotRestore(ctx context.Context, req *rpc.Request) error {
	if err := req.Args.Scan(); err != nil {
		return err
	}
	req.Receive(&restoreReceiver{s: s, tx: req.Tx})
	return nil
}

// restoreReceiver collects a backup's chunks (on the session's reader goroutine, so it
// only appends) and restores it when the client closes its stream.
type restoreReceiver struct {
	s    *Service
	tx   *rpc.Tx
	buf  bytes.Buffer
	over bool
}

func (r *restoreReceiver) Receive(m rpc.Message, last bool) error {
	switch m.Name {
	case "write":
		var chunk []byte
		if err := m.Args.Scan(&chunk); err != nil {
			return err
		}
		if r.over {
			return nil
		}
		if int64(r.buf.Len()+len(chunk)) > r.s.cfg.MaxSnapshotSize {
			r.over = true
			r.buf = bytes.Buffer{}
			r.tx.Error(errorTable.Wire(fmt.Errorf("%w: over %d bytes", ErrTooLarge, r.s.cfg.MaxSnapshotSize)))
		}
		r.buf.Write(chunk)
	case "close":
		if r.over {
			return nil
		}
		data := r.buf.Bytes()
		r.buf = bytes.Buffer{}
		tx := r.tx
		if !r.s.work.Go(func(ctx context.Context) {
			ctx, cancel := context.WithTimeout(ctx, r.s.cfg.Timeout)
			defer cancel()
			if err := r.s.r.RestoreSnapshot(ctx, bytes.NewReader(data)); err != nil {
				tx.Error(errorTable.Wire(err))
				return
			}
			r.s.log.Info("cluster state restored from a backup", "bytes", len(data))
			tx.Value()
		}) {
			tx.Error(errorTable.Wire(fmt.Errorf("%w: the cluster service is stopping", ErrStopped)))
		}
	case "error":
		r.buf = bytes.Buffer{} // the client gave up
	}
	return nil
}

func (r *restoreReceiver) Discard(error) { r.buf = bytes.Buffer{} }
