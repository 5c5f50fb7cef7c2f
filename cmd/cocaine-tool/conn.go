package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// tool is the state of one run: where the locator is, the connections made so far (one
// per service, reused, so that storage operations of one command keep their order) and
// how to print.
type tool struct {
	env     *env
	locator rpc.Endpoint
	timeout time.Duration // 0: none
	verbose int
	output  string // "", "json" or "table"

	mu    sync.Mutex
	conns map[string]*serviceConn
}

// serviceConn is a connection to one service, counting the bytes sent (progress bars).
type serviceConn struct {
	*rpc.Conn
	endpoint rpc.Endpoint
	sent     *atomic.Int64
}

func (e *env) newTool(vals values) (*tool, error) {
	ep, err := parseLocator(vals, e.getenv)
	if err != nil {
		return nil, err
	}
	t := &tool{env: e, locator: ep, timeout: defaultTimeout, verbose: len(vals["verbose"]), conns: map[string]*serviceConn{}}
	if vals.has("timeout") {
		if t.timeout, err = parseTimeout(vals.str("timeout")); err != nil {
			return nil, err
		}
	}
	switch o := vals.str("output"); o {
	case "", "json", "table":
		t.output = o
	default:
		return nil, badf("-o/--output %q: want json or table", o)
	}
	return t, nil
}

func (t *tool) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = nil
}

// logf says what the tool does, on stderr, when -v was given level times or more.
func (t *tool) logf(level int, format string, args ...any) {
	if t.verbose >= level {
		fmt.Fprintf(t.env.stderr, "cocaine-tool: "+format+"\n", args...)
	}
}

// ctx bounds a command by --timeout, but by at least floor (app upload takes 120 s, as
// the original). It ends early on SIGINT/SIGTERM.
func (t *tool) ctx(floor time.Duration) (context.Context, context.CancelFunc) {
	d := t.timeout
	if d == 0 {
		return context.WithCancel(t.env.ctx)
	}
	d = max(d, floor)
	ctx, cancel := context.WithTimeoutCause(t.env.ctx, d, timeoutError{d})
	return ctx, cancel
}

// wrapCtx turns ctx's end into the reason: the timeout, or an interruption.
func wrapCtx(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return errors.New("interrupted")
}

// locatorConn connects to the locator itself, with the graph every client knows.
func (t *tool) locatorConn(ctx context.Context) (*serviceConn, error) {
	return t.conn(ctx, "locator")
}

// conn returns the connection to service name, resolving it through the locator the
// first time. Calls made at once (info) share it: it is made once, under t.mu.
func (t *tool) conn(ctx context.Context, name string) (*serviceConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c := t.conns[name]; c != nil {
		select {
		case <-c.Done():
			c.Close()
		default:
			return c, nil
		}
	}
	var eps []rpc.Endpoint
	graph := rpc.LocatorGraph
	if name == "locator" {
		eps = []rpc.Endpoint{t.locator}
	} else {
		t.logf(2, "resolving %s through the locator at %s", name, t.locator)
		r, err := rpc.Resolve(ctx, []rpc.Endpoint{t.locator}, name, "", rpc.DialConfig{Timeout: 5 * time.Second})
		if err != nil {
			return nil, wrapCtx(ctx, t.unreachable(err))
		}
		eps, graph = r.Endpoints, r.Graph
	}
	c, err := dial(ctx, eps, graph)
	if err != nil {
		if name == "locator" {
			err = t.unreachable(err)
		} else {
			err = fmt.Errorf("connect to %s at %v: %w", name, eps, err)
		}
		return nil, wrapCtx(ctx, err)
	}
	t.logf(2, "connected to %s at %s", name, c.endpoint)
	t.conns[name] = c
	return c, nil
}

// unreachable says which locator could not be reached, and how to pick another.
func (t *tool) unreachable(err error) error {
	var e *rpc.Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("no locator at %s (set --host/--port or COCAINE_LOCATOR): %w", t.locator, err)
}

// dial connects to the first endpoint that answers, counting the bytes written.
func dial(ctx context.Context, eps []rpc.Endpoint, graph *rpc.Graph) (*serviceConn, error) {
	if len(eps) == 0 {
		return nil, errors.New("no endpoints")
	}
	var errs []error
	for _, ep := range eps {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		nc, err := (&net.Dialer{}).DialContext(dctx, "tcp", ep.String())
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sent := new(atomic.Int64)
		conn := rpc.NewConn(&countingConn{Conn: nc, sent: sent}, graph, rpc.DialConfig{})
		return &serviceConn{Conn: conn, endpoint: ep, sent: sent}, nil
	}
	return nil, errors.Join(errs...)
}

// countingConn counts the bytes written to a connection. Large writes (an app's
// archive is one frame) go in slices, so that the count moves while they are sent.
type countingConn struct {
	net.Conn
	sent *atomic.Int64
}

const countSlice = 256 << 10

func (c *countingConn) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		n, err := c.Conn.Write(b[:min(len(b), countSlice)])
		total += n
		c.sent.Add(int64(n))
		if err != nil {
			return total, err
		}
		b = b[n:]
	}
	return total, nil
}

// call makes a call with a single reply and returns its value's args.
func (t *tool) call(ctx context.Context, service, method string, args ...any) (rpc.Args, error) {
	c, err := t.conn(ctx, service)
	if err != nil {
		return nil, err
	}
	t.logf(3, "%s.%s%v", service, method, args)
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		return nil, err
	}
	a, err := ch.Get(ctx)
	if err != nil {
		return nil, wrapCtx(ctx, err)
	}
	return a, nil
}

// value makes a call and decodes its reply: one value alone, several as an array.
func (t *tool) value(ctx context.Context, service, method string, args ...any) (any, error) {
	a, err := t.call(ctx, service, method, args...)
	if err != nil {
		return nil, err
	}
	return decodeArgs(a)
}

// showValue makes a call and prints its reply, bounded by --timeout.
func (x *inv) showValue(service, method string, args ...any) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	v, err := x.t.value(ctx, service, method, args...)
	if err != nil {
		return err
	}
	return x.show(v, nil)
}

// decodeArgs decodes the args of a message: one value alone, several as an array, none
// as nil.
func decodeArgs(a rpc.Args) (any, error) {
	d, n, err := a.Decoder()
	if err != nil {
		return nil, err
	}
	vals := make([]any, n)
	for i := range vals {
		if vals[i], err = d.Value(); err != nil {
			return nil, err
		}
	}
	switch n {
	case 0:
		return nil, nil
	case 1:
		return vals[0], nil
	}
	return vals, nil
}

// Storage through the storage service (protocol.md §6.3), on one connection so that the
// operations of a command are applied in order.

func (t *tool) storageRead(ctx context.Context, collection, key string) ([]byte, error) {
	a, err := t.call(ctx, "storage", "read", collection, key)
	if err != nil {
		return nil, err
	}
	var b []byte
	if err := a.Scan(&b); err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", collection, key, err)
	}
	return b, nil
}

// storageObject reads a msgpack-encoded value, as the tools store every object.
func (t *tool) storageObject(ctx context.Context, collection, key string) (any, error) {
	b, err := t.storageRead(ctx, collection, key)
	if err != nil {
		return nil, err
	}
	v, err := rpc.Unmarshal(b)
	if err != nil {
		return nil, toolErrorf("%s/%s is not msgpack: %v", collection, key, err)
	}
	return v, nil
}

func (t *tool) storageWrite(ctx context.Context, collection, key string, value []byte, tags []string) error {
	if tags == nil {
		tags = []string{}
	}
	if _, err := t.call(ctx, "storage", "write", collection, key, value, tags); err != nil {
		return err
	}
	return nil
}

// storagePut msgpack-encodes v and writes it.
func (t *tool) storagePut(ctx context.Context, collection, key string, v any, tags []string) error {
	b, err := rpc.Marshal(v)
	if err != nil {
		return err
	}
	return t.storageWrite(ctx, collection, key, b, tags)
}

func (t *tool) storageRemove(ctx context.Context, collection, key string) error {
	if _, err := t.call(ctx, "storage", "remove", collection, key); err != nil {
		return err
	}
	return nil
}

// storageHas reports whether key is among the keys of collection that carry tags.
func (t *tool) storageHas(ctx context.Context, collection string, tags []string, key string) (bool, error) {
	keys, err := t.storageFind(ctx, collection, tags)
	if err != nil {
		return false, err
	}
	return slices.Contains(keys, key), nil
}

func (t *tool) storageFind(ctx context.Context, collection string, tags []string) ([]string, error) {
	if tags == nil {
		tags = []string{}
	}
	a, err := t.call(ctx, "storage", "find", collection, tags)
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := a.Scan(&keys); err != nil {
		return nil, err
	}
	if keys == nil {
		keys = []string{}
	}
	return keys, nil
}

// inv is one invocation of a command: its options and arguments, and the tool.
type inv struct {
	t    *tool
	cmd  *command
	opts values
	args []string
}

func (x *inv) stdout() io.Writer { return x.t.env.stdout }

// str is an option's value.
func (x *inv) str(name string) string { return x.opts.str(name) }

// need is a required option's value.
func (x *inv) need(name string) (string, error) {
	v := x.opts.str(name)
	if v == "" {
		for _, o := range x.cmd.opts {
			if o.long == name {
				return "", badf("%s: %s is required", x.cmd.name, optName(o))
			}
		}
		return "", badf("%s: --%s is required", x.cmd.name, name)
	}
	return v, nil
}
