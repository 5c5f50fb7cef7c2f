package harness

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Unicorn's errors the harness tells apart (category 11, unicorn/doc.go).
var (
	errUnicornNoNode     = rpc.NewError(rpc.CategoryUnicorn, 8, "")
	errUnicornNodeExists = rpc.NewError(rpc.CategoryUnicorn, 9, "")
)

// cocaineClient speaks to one member's unicorn service over one multiplexed connection.
type cocaineClient struct {
	conn                                   *rpc.Conn
	txn, get, put, create, watch, children rpc.Method
}

func dialCocaine(ctx context.Context, ep rpc.Endpoint, graph *rpc.Graph) (*cocaineClient, error) {
	conn, err := rpc.Dial(ctx, []rpc.Endpoint{ep}, graph, rpc.DialConfig{})
	if err != nil {
		return nil, err
	}
	c := &cocaineClient{conn: conn}
	for name, m := range map[string]*rpc.Method{"txn": &c.txn, "get": &c.get, "put": &c.put, "create": &c.create, "watch": &c.watch, "children": &c.children} {
		var ok bool
		if *m, ok = graph.MethodByName(name); !ok {
			conn.Close()
			return nil, fmt.Errorf("unicorn at %s has no method %q", ep, name)
		}
	}
	return c, nil
}

func (c *cocaineClient) Close() error { return c.conn.Close() }

// call sends pre-encoded args and returns the primitive reply.
func (c *cocaineClient) call(ctx context.Context, m rpc.Method, args []byte) (rpc.Args, error) {
	ch, err := c.conn.CallRaw(ctx, m, args)
	if err != nil {
		return nil, err
	}
	return ch.Get(ctx)
}

// Put is txn([[key, "exists", "==", true]], [["put", key, val]], [["create", key, val]]):
// an unconditional write in one round trip, as etcd's Put (unicorn's own put is a
// compare-and-swap on the version).
func (c *cocaineClient) Put(ctx context.Context, key string, val []byte) error {
	b := rpc.AppendArrayHeader(make([]byte, 0, 64+2*len(key)+2*len(val)), 3)
	b = rpc.AppendArrayHeader(b, 1)
	b = rpc.AppendArrayHeader(b, 4)
	b = rpc.AppendString(b, key)
	b = rpc.AppendString(b, "exists")
	b = rpc.AppendString(b, "==")
	b = rpc.AppendBool(b, true)
	for _, op := range []string{"put", "create"} {
		b = rpc.AppendArrayHeader(b, 1)
		b = rpc.AppendArrayHeader(b, 3)
		b = rpc.AppendString(b, op)
		b = rpc.AppendString(b, key)
		b = rpc.AppendBytes(b, val)
	}
	a, err := c.call(ctx, c.txn, b)
	if err != nil {
		return err
	}
	d, _, err := a.Decoder()
	if err != nil {
		return err
	}
	if _, err := d.Bool(); err != nil { // either branch is a success: exists or created
		return fmt.Errorf("txn reply: %w", err)
	}
	return nil
}

func (c *cocaineClient) Create(ctx context.Context, key string, val []byte) error {
	b := rpc.AppendArrayHeader(nil, 2)
	b = rpc.AppendString(b, key)
	b = rpc.AppendBytes(b, val)
	_, err := c.call(ctx, c.create, b)
	if errors.Is(err, errUnicornNodeExists) {
		return nil
	}
	return err
}

func (c *cocaineClient) Get(ctx context.Context, key string, cons Consistency) error {
	_, _, err := c.read(ctx, key, cons.String())
	return err
}

func (c *cocaineClient) Read(ctx context.Context, key string) ([]byte, int64, error) {
	return c.read(ctx, key, "default")
}

// read is get(key, consistency) -> [[value, version]].
func (c *cocaineClient) read(ctx context.Context, key, consistency string) ([]byte, int64, error) {
	b := rpc.AppendArrayHeader(make([]byte, 0, 32+len(key)), 2)
	b = rpc.AppendString(b, key)
	b = rpc.AppendString(b, consistency)
	a, err := c.call(ctx, c.get, b)
	if err != nil {
		return nil, 0, err
	}
	d, _, err := a.Decoder()
	if err != nil {
		return nil, 0, err
	}
	return decodeVersioned(d)
}

// decodeVersioned decodes [value, version]; a value that is not a raw comes back as its
// msgpack encoding.
func decodeVersioned(d *rpc.Decoder) ([]byte, int64, error) {
	if n, err := d.ArrayLen(); err != nil || n != 2 {
		return nil, 0, fmt.Errorf("want [value, version], got %d elements (%v)", n, err)
	}
	val, err := decodeValue(d)
	if err != nil {
		return nil, 0, err
	}
	ver, err := d.Int()
	return val, ver, err
}

func decodeValue(d *rpc.Decoder) ([]byte, error) {
	if d.Peek() == rpc.KindRaw {
		b, err := d.Bytes()
		return append([]byte(nil), b...), err
	}
	r, err := d.Raw()
	return append([]byte(nil), r...), err
}

// CompareAndSwap is unicorn's put(key, val, ver) -> [ok, [value, version]].
func (c *cocaineClient) CompareAndSwap(ctx context.Context, key string, ver int64, val []byte) (bool, []byte, int64, bool, error) {
	b := rpc.AppendArrayHeader(make([]byte, 0, 32+len(key)+len(val)), 3)
	b = rpc.AppendString(b, key)
	b = rpc.AppendBytes(b, val)
	b = rpc.AppendInt(b, ver)
	a, err := c.call(ctx, c.put, b)
	if err != nil {
		return false, nil, 0, false, err
	}
	d, _, err := a.Decoder()
	if err != nil {
		return false, nil, 0, false, err
	}
	ok, err := d.Bool()
	if err != nil {
		return false, nil, 0, false, err
	}
	cur, curVer, err := decodeVersioned(d)
	return ok, cur, curVer, !ok, err
}

// Watch is unicorn's watch(key, after, false): a sync chunk, then every event.
func (c *cocaineClient) Watch(ctx context.Context, key string, after int64) (<-chan Event, error) {
	b := rpc.AppendArrayHeader(nil, 2)
	b = rpc.AppendString(b, key)
	b = rpc.AppendInt(b, after)
	ch, err := c.conn.CallRaw(ctx, c.watch, b)
	if err != nil {
		return nil, err
	}
	out := make(chan Event, 1024) // decouples the connection's reader from the workload
	go func() {
		defer close(out)
		defer ch.Close()
		for {
			m, err := ch.Recv(ctx)
			if err == nil {
				err = m.Err()
			}
			if err != nil {
				if ctx.Err() == nil {
					out <- Event{Err: err}
				}
				return
			}
			ev, err := decodeWatchEvent(m.Args)
			if err != nil {
				out <- Event{Err: err}
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// decodeWatchEvent decodes [revision, kind, path, value, version].
func decodeWatchEvent(a rpc.Args) (Event, error) {
	ev := Event{}
	ev.At = time.Now()
	d, n, err := a.Decoder()
	if err != nil {
		return ev, err
	}
	if n != 5 {
		return ev, fmt.Errorf("watch chunk: want 5 elements, got %d", n)
	}
	if ev.Rev, err = d.Int(); err != nil {
		return ev, err
	}
	kind, err := d.String()
	if err != nil {
		return ev, err
	}
	ev.Sync = kind == "sync"
	if err := d.Skip(); err != nil { // path
		return ev, err
	}
	if !d.IsNil() {
		if ev.Value, err = decodeValue(d); err != nil {
			return ev, err
		}
	}
	return ev, nil
}

// Count is children(prefix) -> [cversion, [names]]; an absent prefix has none.
func (c *cocaineClient) Count(ctx context.Context, prefix string) (int, error) {
	b := rpc.AppendArrayHeader(nil, 1)
	b = rpc.AppendString(b, prefix)
	a, err := c.call(ctx, c.children, b)
	if errors.Is(err, errUnicornNoNode) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	d, _, err := a.Decoder()
	if err != nil {
		return 0, err
	}
	if err := d.Skip(); err != nil {
		return 0, err
	}
	return d.ArrayLen()
}
