package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// zkClient is one ZooKeeper session (one connection) to one server.
type zkClient struct {
	conn *zk.Conn
}

type zkNoLog struct{}

func (zkNoLog) Printf(string, ...any) {}

// dialZK opens a session with sessionTimeout and waits until the server has granted it.
func dialZK(ctx context.Context, ep string, sessionTimeout time.Duration) (*zkClient, error) {
	conn, events, err := zk.Connect([]string{ep}, sessionTimeout, zk.WithLogger(zkNoLog{}), zk.WithLogInfo(false))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return &zkClient{conn: conn}, nil
			}
		case <-ctx.Done():
			conn.Close()
			return nil, fmt.Errorf("zookeeper %s: no session: %w", ep, ctx.Err())
		}
	}
}

func (c *zkClient) Close() error { c.conn.Close(); return nil }

func (c *zkClient) Put(ctx context.Context, key string, val []byte) error {
	_, err := c.conn.Set(key, val, -1)
	if errors.Is(err, zk.ErrNoNode) {
		return c.Create(ctx, key, val)
	}
	return err
}

// Create makes key and its missing parents (persistent znodes).
func (c *zkClient) Create(ctx context.Context, key string, val []byte) error {
	return c.create(key, val, 0)
}

func (c *zkClient) create(key string, val []byte, flags int32) error {
	_, err := c.conn.Create(key, val, flags, zk.WorldACL(zk.PermAll))
	if errors.Is(err, zk.ErrNoNode) {
		parent := key[:strings.LastIndexByte(key, '/')]
		if parent == "" {
			return err
		}
		if err := c.create(parent, nil, 0); err != nil {
			return err
		}
		_, err = c.conn.Create(key, val, flags, zk.WorldACL(zk.PermAll))
	}
	if errors.Is(err, zk.ErrNodeExists) {
		return nil
	}
	return err
}

// Get is getData; linearizable reads do sync(key) first, as ZooKeeper's documentation
// prescribes for a client that must see every write before its read.
func (c *zkClient) Get(ctx context.Context, key string, cons Consistency) error {
	if cons == Linearizable {
		if _, err := c.conn.Sync(key); err != nil {
			return err
		}
	}
	_, _, err := c.conn.Get(key)
	return err
}

func (c *zkClient) Read(ctx context.Context, key string) ([]byte, int64, error) {
	b, st, err := c.conn.Get(key)
	if err != nil {
		return nil, 0, err
	}
	return b, int64(st.Version), nil
}

// CompareAndSwap is setData(key, val, ver); a conflict returns no current value, so the
// retry reads again.
func (c *zkClient) CompareAndSwap(ctx context.Context, key string, ver int64, val []byte) (bool, []byte, int64, bool, error) {
	_, err := c.conn.Set(key, val, int32(ver))
	if errors.Is(err, zk.ErrBadVersion) {
		return false, nil, 0, false, nil
	}
	return err == nil, val, ver + 1, false, err
}

// Watch keeps a one-shot data watch armed with getData(watch=true) (go-zookeeper has no
// persistent watches): each notification is followed by a getData that re-arms it and
// reads the value, so changes made meanwhile are coalesced, and a watch cannot start
// in the past (after is ignored).
func (c *zkClient) Watch(ctx context.Context, key string, after int64) (<-chan Event, error) {
	data, st, wch, err := c.conn.GetW(key)
	if err != nil {
		return nil, err
	}
	out := make(chan Event, 1024) // decouples the session from the workload
	out <- Event{Sync: true, Rev: st.Mzxid, Value: data, At: time.Now()}
	go func() {
		defer close(out)
		for {
			var ev zk.Event
			select {
			case ev = <-wch:
			case <-ctx.Done():
				return
			}
			at := time.Now()
			if ev.Err != nil || ev.Type == zk.EventNotWatching {
				if ctx.Err() == nil {
					out <- Event{Err: fmt.Errorf("zookeeper watch ended: %v %v", ev.Type, ev.Err), At: at}
				}
				return
			}
			prev := data
			data, st, wch, err = c.conn.GetW(key)
			if err != nil {
				if ctx.Err() == nil {
					out <- Event{Err: err, At: at}
				}
				return
			}
			select {
			case out <- Event{Rev: st.Mzxid, Value: data, After: prev, At: at}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (c *zkClient) Count(ctx context.Context, prefix string) (int, error) {
	ch, _, err := c.conn.Children(prefix)
	if errors.Is(err, zk.ErrNoNode) {
		return 0, nil
	}
	return len(ch), err
}
