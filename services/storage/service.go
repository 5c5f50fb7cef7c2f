package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Name is the service's name.
const Name = "storage"

// Graph is the storage protocol, version 1 (protocol.md §6.3).
var Graph = rpc.ServiceGraph(1,
	rpc.Method{Name: "read", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "write", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "remove", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "find", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
)

// errorTable maps the backend's sentinels to the generic (errno) category, as the
// original's files backend reported them (protocol.md §6.3). The blobs service uses it too.
var errorTable = rpc.ErrorTable{
	{Err: ErrNotFound, Category: rpc.CategoryGeneric, Code: int(syscall.ENOENT)},
	{Err: ErrInvalidName, Category: rpc.CategoryGeneric, Code: int(syscall.EINVAL)},
	{Err: ErrTooLarge, Category: rpc.CategoryGeneric, Code: int(syscall.EFBIG)},
	{Err: ErrClosed, Category: rpc.CategoryGeneric, Code: int(syscall.ESHUTDOWN)},
	{Err: ErrBlobUnavailable, Category: rpc.CategoryGeneric, Code: int(syscall.EAGAIN)},
	{Err: ErrCorrupt, Category: rpc.CategoryGeneric, Code: int(syscall.EIO)},
}

// Config configures the storage service.
type Config struct {
	// Path of the database file; "storage.db" in the data directory if empty.
	Path string `json:"path,omitempty"`
	// MaxValueSize bounds one value (DefaultMaxValueSize if zero).
	MaxValueSize int `json:"max_value_size,omitempty"`
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	if c.MaxValueSize < 0 {
		return fmt.Errorf("storage: max_value_size must not be negative, got %d", c.MaxValueSize)
	}
	return nil
}

// Open opens the bolt backend that cfg describes, under dataDir unless cfg.Path is set.
func Open(cfg Config, dataDir string) (*Bolt, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	path := cfg.Path
	if path == "" {
		path = filepath.Join(dataDir, "storage.db")
	}
	return OpenBolt(path, BoltOptions{MaxValueSize: cfg.MaxValueSize})
}

// Service serves a Backend as the `storage` service. Requests of one connection are
// executed in the order they arrived (a client may send writes without waiting for
// replies, as cocaine-tool's runlist commands do); different connections run in parallel.
// Work outlives the connection that asked for it: a write whose client hung up still
// completes.
type Service struct {
	b    Backend
	log  *slog.Logger
	d    *rpc.Dispatcher
	work *lifecycle.Group

	mu     sync.Mutex
	queues map[*rpc.Session]*queue
}

// queue holds one connection's pending operations; a goroutine drains it while non-empty.
type queue struct {
	jobs    []func(ctx context.Context)
	running bool
}

// New returns the service over b. The service does not close b.
func New(b Backend, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{b: b, log: log.With("component", "storage"), work: lifecycle.NewGroup(context.Background()),
		queues: map[*rpc.Session]*queue{}}
	d := rpc.NewDispatcher(Graph, errorTable, s.log)
	d.MustHandle("read", s.read)
	d.MustHandle("write", s.write)
	d.MustHandle("remove", s.remove)
	d.MustHandle("find", s.find)
	s.d = d
	return s
}

// Dispatcher serves the storage graph.
func (s *Service) Dispatcher() *rpc.Dispatcher { return s.d }

// Run waits for ctx, then for the operations in flight.
func (s *Service) Run(ctx context.Context) error {
	<-ctx.Done()
	s.work.Stop()
	return nil
}

// enqueue runs op after the earlier operations of the same connection and replies with
// its result: a value with the returned args, or the error.
func (s *Service) enqueue(req *rpc.Request, op func(ctx context.Context) ([]any, error)) error {
	tx := req.Tx
	job := func(ctx context.Context) {
		args, err := op(ctx)
		if err != nil {
			tx.Error(errorTable.Wire(err))
			return
		}
		tx.Value(args...)
	}
	sess := req.Session()
	s.mu.Lock()
	q := s.queues[sess]
	if q == nil {
		q = &queue{}
		s.queues[sess] = q
	}
	q.jobs = append(q.jobs, job)
	if q.running {
		s.mu.Unlock()
		return nil
	}
	q.running = true
	s.mu.Unlock()
	if !s.work.Go(func(ctx context.Context) { s.drain(ctx, sess, q) }) {
		// Nothing will drain this queue: drop it, or later requests of the connection
		// would be queued behind it and never answered.
		s.mu.Lock()
		delete(s.queues, sess)
		s.mu.Unlock()
		return fmt.Errorf("%w: the storage service is stopping", ErrClosed)
	}
	return nil
}

func (s *Service) drain(ctx context.Context, sess *rpc.Session, q *queue) {
	for {
		s.mu.Lock()
		if len(q.jobs) == 0 {
			q.running = false
			delete(s.queues, sess)
			s.mu.Unlock()
			return
		}
		job := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		s.mu.Unlock()
		job(ctx)
	}
}

func (s *Service) read(ctx context.Context, req *rpc.Request) error {
	var collection, key string
	if err := req.Args.Scan(&collection, &key); err != nil {
		return err
	}
	return s.enqueue(req, func(ctx context.Context) ([]any, error) {
		v, err := s.b.Read(ctx, collection, key)
		if err != nil {
			return nil, err
		}
		return []any{v}, nil
	})
}

func (s *Service) write(ctx context.Context, req *rpc.Request) error {
	var collection, key string
	var blob []byte
	var tags []string
	if err := req.Args.Scan(&collection, &key, &blob, rpc.Optional(&tags)); err != nil {
		return err
	}
	return s.enqueue(req, func(ctx context.Context) ([]any, error) {
		return nil, s.b.Write(ctx, collection, key, blob, tags)
	})
}

func (s *Service) remove(ctx context.Context, req *rpc.Request) error {
	var collection, key string
	if err := req.Args.Scan(&collection, &key); err != nil {
		return err
	}
	return s.enqueue(req, func(ctx context.Context) ([]any, error) {
		err := s.b.Remove(ctx, collection, key)
		if errors.Is(err, ErrNotFound) {
			err = nil // as the files backend: removing a missing key succeeds
		}
		return nil, err
	})
}

func (s *Service) find(ctx context.Context, req *rpc.Request) error {
	var collection string
	var tags []string
	if err := req.Args.Scan(&collection, &tags); err != nil {
		return err
	}
	return s.enqueue(req, func(ctx context.Context) ([]any, error) {
		keys, err := s.b.Find(ctx, collection, tags)
		if err != nil {
			return nil, err
		}
		return []any{keys}, nil
	})
}
