package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/internal/lifecycle"
	"github.com/cocaine/cocaine/rpc"
)

// Name is the service's name.
const Name = "logging"

// namedLog is the state a channel moves to after get(name): emit and emit_ack with the
// logger name implied, as often as the client likes. The original lists the control
// messages in it too.
var namedLog = rpc.NewState(append([]rpc.Transition{
	{ID: 0, Name: "emit", Next: nil},
	{ID: 1, Name: "emit_ack", Next: nil},
}, rpc.ControlTransitions...)...)

// Graph is the logging v2 protocol, version 2 (plugins.md §3.1).
var Graph = rpc.ServiceGraph(2,
	rpc.Method{Name: "emit", Dispatch: rpc.Terminal, Upstream: rpc.Terminal},
	rpc.Method{Name: "verbosity", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "set_verbosity", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "emit_ack", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "get", Dispatch: namedLog, Upstream: rpc.Streaming},
	rpc.Method{Name: "list_loggers", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "set_filter", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "remove_filter", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "list_filters", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
	rpc.Method{Name: "set_cluster_filter", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
)

// errorTable maps the package's sentinels to wire codes.
var errorTable = rpc.ErrorTable{
	{Err: ErrInvalidFilter, Category: rpc.CategoryGeneric, Code: int(syscall.EINVAL)},
	{Err: ErrNoCluster, Category: rpc.CategoryPlugins, Code: 1}, // component_not_found
	{Err: ErrSinkClosed, Category: rpc.CategoryGeneric, Code: int(syscall.ESHUTDOWN)},
}

// Config configures the logging service.
type Config struct {
	// Verbosity drops records below this severity before any filter (0 debug .. 3 error);
	// verbosity() answers it.
	Verbosity int `json:"verbosity"`
	// Sinks receive the accepted records.
	Sinks []SinkConfig `json:"sinks"`
	// DefaultFilter is the default metafilter: filter representations, of which any may
	// accept a record (plugins.md §3.1), e.g. [["severity", 1]].
	DefaultFilter []any `json:"default_filter"`
	// UnicornPath is the folder of the cluster filters in unicorn, one node per filter
	// named by its id. Empty means DefaultUnicornPath.
	UnicornPath string `json:"unicorn_path"`
}

// SinkConfig is one sink: {"type": "stderr"} or {"type": "file", "path": "/var/log/x.jsonl"}.
type SinkConfig struct {
	Type string `json:"type"`
	Path string `json:"path,omitempty"`
}

// DefaultConfig writes every record to stderr.
func DefaultConfig() Config {
	return Config{Sinks: []SinkConfig{{Type: "stderr"}}, DefaultFilter: []any{[]any{"empty"}}, UnicornPath: DefaultUnicornPath}
}

// Validate reports every problem of c.
func (c Config) Validate() error {
	var errs []error
	if c.Verbosity < SeverityDebug || c.Verbosity > SeverityError {
		errs = append(errs, fmt.Errorf("logging.verbosity must be 0 (debug) to 3 (error), got %d", c.Verbosity))
	}
	for i, s := range c.Sinks {
		switch s.Type {
		case "stderr":
			if s.Path != "" {
				errs = append(errs, fmt.Errorf("logging.sinks[%d]: a stderr sink takes no path", i))
			}
		case "file":
			if s.Path == "" {
				errs = append(errs, fmt.Errorf("logging.sinks[%d]: a file sink needs a path", i))
			}
		default:
			errs = append(errs, fmt.Errorf("logging.sinks[%d]: unknown type %q (want stderr or file)", i, s.Type))
		}
	}
	if _, err := c.filters(); err != nil {
		errs = append(errs, fmt.Errorf("logging.default_filter: %w", err))
	}
	if c.UnicornPath != "" {
		if err := validFolder(c.UnicornPath); err != nil {
			errs = append(errs, fmt.Errorf("logging.unicorn_path %q: %w", c.UnicornPath, err))
		}
	}
	return errors.Join(errs...)
}

// folder is the unicorn folder of the cluster filters.
func (c Config) folder() string {
	if c.UnicornPath == "" {
		return DefaultUnicornPath
	}
	return c.UnicornPath
}

// validFolder checks p as unicorn checks its paths: absolute, not "/", no empty, "." or
// ".." elements, no trailing slash, no NUL, room left for an id.
func validFolder(p string) error {
	const maxPath = 4096 - 21 // unicorn's limit, less "/" and the longest uint64
	switch {
	case !strings.HasPrefix(p, "/") || p == "/":
		return errors.New("must be an absolute path below /")
	case len(p) > maxPath:
		return fmt.Errorf("longer than %d bytes", maxPath)
	case strings.ContainsRune(p, 0):
		return errors.New("contains NUL")
	}
	for _, elem := range strings.Split(p[1:], "/") {
		if elem == "" || elem == "." || elem == ".." {
			return errors.New(`has an empty, "." or ".." element`)
		}
	}
	return nil
}

func (c Config) filters() ([]Filter, error) {
	var out []Filter
	for i, repr := range c.DefaultFilter {
		f, err := ParseFilter(normalize(repr))
		if err != nil {
			return nil, fmt.Errorf("filter %d: %w", i, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// normalize turns integral float64s (as encoding/json decodes numbers) into the integer
// types the wire decoder produces, so a filter reads the same from a config as from a
// client.
func normalize(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			if x >= 0 {
				return uint64(x)
			}
			return int64(x)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

// Service is the logging service: it filters structured records from apps and writes
// the accepted ones to its sinks.
type Service struct {
	cfg     Config
	log     *slog.Logger
	filters *Filters
	sink    Sink
	d       *rpc.Dispatcher
	nextID  atomic.Uint64
	now     func() time.Time
	store   FilterStore // nil: no cluster filters
	cluster *cluster    // set when store is

	closeOnce sync.Once
}

// New opens the sinks and builds the service.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defaults, _ := cfg.filters()
	var sinks []Sink
	for _, sc := range cfg.Sinks {
		switch sc.Type {
		case "stderr":
			sinks = append(sinks, NewTextSink(os.Stderr))
		case "file":
			s, err := NewJSONSink(sc.Path)
			if err != nil {
				for _, open := range sinks {
					open.Close()
				}
				return nil, fmt.Errorf("logging: sink %s: %w", sc.Path, err)
			}
			sinks = append(sinks, s)
		}
	}
	return newService(cfg, log, defaults, MultiSink(sinks...), time.Now, opts...), nil
}

func newService(cfg Config, log *slog.Logger, defaults []Filter, sink Sink, now func() time.Time, opts ...Option) *Service {
	s := &Service{cfg: cfg, log: log.With("component", "logging"), sink: sink, now: now,
		filters: NewFilters(defaults, now)}
	for _, o := range opts {
		o(s)
	}
	if s.store != nil {
		s.cluster = newCluster(s.store, cfg.folder(), s.filters, now, s.log)
	}
	d := rpc.NewDispatcher(Graph, errorTable, s.log)
	d.MustHandle("emit", s.emit)
	d.MustHandle("verbosity", s.verbosity)
	d.MustHandle("set_verbosity", s.setVerbosity)
	d.MustHandle("emit_ack", s.emitAck)
	d.MustHandle("get", s.get)
	d.MustHandle("list_loggers", s.listLoggers)
	d.MustHandle("set_filter", s.setFilter)
	d.MustHandle("remove_filter", s.removeFilter)
	d.MustHandle("list_filters", s.listFilters)
	d.MustHandle("set_cluster_filter", s.setClusterFilter)
	s.d = d
	return s
}

// Dispatcher serves the logging graph.
func (s *Service) Dispatcher() *rpc.Dispatcher { return s.d }

// Run prunes expired filters every second and flushes buffered sinks, until ctx is done.
// With a FilterStore it also watches the cluster filters and deletes the expired ones;
// it returns only when those loops have stopped.
func (s *Service) Run(ctx context.Context) error {
	g := lifecycle.NewGroup(ctx)
	defer g.Stop()
	if s.cluster != nil {
		g.Go(s.cluster.watchLoop)
		g.Go(s.cluster.sweepLoop)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flush()
			return nil
		case <-t.C:
			s.filters.Prune(s.now())
			s.flush()
		}
	}
}

func (s *Service) flush() {
	if f, ok := s.sink.(Flusher); ok {
		if err := f.Flush(); err != nil {
			s.log.Error("flushing log sinks failed", "err", err)
		}
	}
}

// Close flushes and closes the sinks. Call it after Run has returned.
func (s *Service) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.sink.Close() })
	return err
}

// Filters exposes the filter registry (for tests and the daemon).
func (s *Service) Filters() *Filters { return s.filters }

// record decodes [severity, message, ?attrs] (after get) or [severity, backend, message,
// ?attrs] (emit, emit_ack) and submits it; it reports whether it was accepted.
func (s *Service) record(args rpc.Args, backend string, named bool, trace rpc.Trace) (bool, error) {
	r := Record{Backend: backend, Verbose: trace.Verbose, TraceID: trace.TraceID, SpanID: trace.SpanID, ParentID: trace.ParentID}
	var severity int64
	var attrs attributes
	var err error
	if named {
		err = args.Scan(&severity, &r.Message, rpc.Optional(&attrs))
	} else {
		err = args.Scan(&severity, &r.Backend, &r.Message, rpc.Optional(&attrs))
	}
	if err != nil {
		return false, err
	}
	r.Severity, r.Attrs = int(severity), attrs
	return s.Submit(&r), nil
}

// Submit filters r and writes it to the sinks if accepted. It assigns r's id and time.
func (s *Service) Submit(r *Record) bool {
	now := s.now()
	if r.Severity < s.cfg.Verbosity || !s.filters.Accept(r, now) {
		return false
	}
	r.ID = s.nextID.Add(1)
	r.Time = now
	if err := s.sink.Write(r); err != nil {
		s.log.Error("writing a log record failed", "err", err, "backend", r.Backend)
		return false
	}
	return true
}

// emit is mute: nothing is ever sent back, whatever happens.
func (s *Service) emit(ctx context.Context, req *rpc.Request) error {
	_, err := s.record(req.Args, "", false, req.Trace)
	return err
}

func (s *Service) emitAck(ctx context.Context, req *rpc.Request) error {
	ok, err := s.record(req.Args, "", false, req.Trace)
	if err != nil {
		return err
	}
	return req.Tx.Value(ok)
}

func (s *Service) verbosity(ctx context.Context, req *rpc.Request) error {
	return req.Tx.Value(s.cfg.Verbosity)
}

// setVerbosity is a legacy no-op in logging v2 (filters replaced it).
func (s *Service) setVerbosity(ctx context.Context, req *rpc.Request) error {
	var level int64
	if err := req.Args.Scan(&level); err != nil {
		return err
	}
	return req.Tx.Value()
}

// get binds a logger name to the channel: later emit/emit_ack messages use it.
func (s *Service) get(ctx context.Context, req *rpc.Request) error {
	var name string
	if err := req.Args.Scan(&name); err != nil {
		return err
	}
	req.Receive(&namedLogger{s: s, name: name, tx: req.Tx, trace: req.Trace})
	return nil
}

type namedLogger struct {
	s     *Service
	name  string
	tx    *rpc.Tx
	trace rpc.Trace
}

func (n *namedLogger) Receive(m rpc.Message, last bool) error {
	ok, err := n.s.record(m.Args, n.name, true, n.trace)
	if err != nil {
		return err
	}
	if m.Name == "emit_ack" {
		n.tx.Write(ok) // the client may be gone; the channel is discarded then
	}
	return nil
}

func (n *namedLogger) Discard(error) {}

func (s *Service) listLoggers(ctx context.Context, req *rpc.Request) error {
	return req.Tx.Value(s.filters.Loggers())
}

func (s *Service) setFilter(ctx context.Context, req *rpc.Request) error {
	var logger string
	var repr any
	var ttl uint64
	if err := req.Args.Scan(&logger, &repr, &ttl); err != nil {
		return err
	}
	f, err := ParseFilter(repr)
	if err != nil {
		return err // in-band EINVAL; the original dropped the connection instead
	}
	return req.Tx.Value(s.filters.Add(logger, f, ttlDuration(ttl), DispositionLocal))
}

// ttlDuration clamps seconds to what a time.Duration can hold (about 292 years).
func ttlDuration(seconds uint64) time.Duration {
	const maxSeconds = uint64(math.MaxInt64 / int64(time.Second))
	if seconds > maxSeconds {
		seconds = maxSeconds
	}
	return time.Duration(seconds) * time.Second
}

// removeFilter removes a local filter here, and any other one from the cluster store
// as well as here (false: it was found nowhere). A local filter never waits for the
// store.
func (s *Service) removeFilter(ctx context.Context, req *rpc.Request) error {
	var id uint64
	if err := req.Args.Scan(&id); err != nil {
		return err
	}
	if info, ok := s.filters.lookup(id); s.cluster == nil || (ok && info.Disposition == DispositionLocal) {
		return req.Tx.Value(s.filters.Remove(id))
	}
	found, err := s.cluster.remove(ctx, id)
	if err != nil {
		return err
	}
	return req.Tx.Value(found)
}

func (s *Service) listFilters(ctx context.Context, req *rpc.Request) error {
	infos := s.filters.List()
	out := make([]any, len(infos))
	for i, fi := range infos {
		out[i] = []any{fi.Logger, fi.Filter.Repr(), fi.ID, fi.DeadlineUnix(), fi.Disposition}
	}
	return req.Tx.Value(out)
}

// setClusterFilter stores the filter in the cluster store, where every host's watch
// finds it, and applies it here at once. A node without a store says so rather than
// pretending.
func (s *Service) setClusterFilter(ctx context.Context, req *rpc.Request) error {
	var logger string
	var repr any
	var ttl uint64
	if err := req.Args.Scan(&logger, &repr, &ttl); err != nil {
		return err
	}
	f, err := ParseFilter(repr)
	if err != nil {
		return err
	}
	if s.cluster == nil {
		return ErrNoCluster
	}
	id, err := s.cluster.set(ctx, logger, f, ttl)
	if err != nil {
		return err
	}
	return req.Tx.Value(id)
}

// attributes decodes [[name, value], ...]: values are nil, bool, integers, doubles or
// raws; arrays and maps are a protocol error.
type attributes []Attr

// DecodeMsgpack implements rpc.ArgDecoder.
func (a *attributes) DecodeMsgpack(d *rpc.Decoder) error {
	n, err := d.ArrayLen()
	if err != nil {
		return err
	}
	out := make([]Attr, 0, n)
	for i := 0; i < n; i++ {
		k, err := d.ArrayLen()
		if err != nil {
			return fmt.Errorf("attribute %d: %w", i, err)
		}
		if k != 2 {
			return fmt.Errorf("attribute %d: a pair [name, value] has 2 elements, got %d", i, k)
		}
		var at Attr
		if at.Name, err = d.String(); err != nil {
			return fmt.Errorf("attribute %d name: %w", i, err)
		}
		switch kind := d.Peek(); kind {
		case rpc.KindArray, rpc.KindMap, rpc.KindExt, rpc.KindInvalid:
			return fmt.Errorf("attribute %q: a value must be nil, bool, number or string, got %s", at.Name, kind)
		}
		if at.Value, err = d.Value(); err != nil {
			return fmt.Errorf("attribute %q: %w", at.Name, err)
		}
		out = append(out, at)
	}
	*a = out
	return nil
}
