package harness

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Consistency of a read.
type Consistency int

const (
	// Linearizable: etcd's default range, unicorn's "linearizable", ZooKeeper's sync+getData.
	Linearizable Consistency = iota
	// Serializable: the contacted member's state as it is (etcd --consistency=s, unicorn
	// "serializable", ZooKeeper's plain getData).
	Serializable
)

func (c Consistency) String() string {
	if c == Serializable {
		return "serializable"
	}
	return "linearizable"
}

// Client is one connection to one member of a system. Its methods are safe for
// concurrent use (the harness runs many logical clients over one connection, as etcd's
// benchmark runs --clients over --conns).
type Client interface {
	// Put writes val to key unconditionally, creating it if needed: etcd's Put,
	// ZooKeeper's setData(-1), unicorn's txn with one put of any version.
	Put(ctx context.Context, key string, val []byte) error
	// Create makes key (and, for the hierarchical systems, its parents).
	Create(ctx context.Context, key string, val []byte) error
	// Get reads key at the consistency c.
	Get(ctx context.Context, key string, c Consistency) error
	// Read returns key's value and its version for CompareAndSwap.
	Read(ctx context.Context, key string) (val []byte, ver int64, err error)
	// CompareAndSwap writes val if key is still at ver. When it is not, it returns
	// ok false and, where the system returns it with the failure, the current value and
	// version (known true), saving the retry its read.
	CompareAndSwap(ctx context.Context, key string, ver int64, val []byte) (ok bool, cur []byte, curVer int64, known bool, err error)
	// Watch watches key. The first event is Sync, once the watch is established; then
	// one Event per change after revision after (after < 0: from now). A system without
	// history (ZooKeeper) ignores after and sends the current state as its Sync event.
	// The channel is closed after an event with Err, or when ctx ends.
	Watch(ctx context.Context, key string, after int64) (<-chan Event, error)
	// Count counts the children of prefix (the keys under prefix+"/").
	Count(ctx context.Context, prefix string) (int, error)
	Close() error
}

// Event is one watch notification.
type Event struct {
	Sync  bool   // the watch is established (ZooKeeper: Value is the current state)
	Rev   int64  // the change's revision (ZooKeeper: the zxid of the data read back)
	Value []byte // the value after the change
	// After is set by systems whose notifications carry no data (ZooKeeper): the
	// notification fired for the first change after this value, and Value is what the
	// watcher read back when re-arming; changes in between were coalesced.
	After []byte
	At    time.Time // when the harness received the notification
	Err   error
}

// ErrNoHistory is returned by systems that cannot watch from a past revision.
var ErrNoHistory = errors.New("watch from a revision is not supported")

// Dial connects a Client to member i of c.
func (c *Cluster) Dial(ctx context.Context, i int) (Client, error) {
	i %= c.Members()
	switch c.System {
	case Cocaine:
		return dialCocaine(ctx, c.unicorn[i], c.graph)
	case Etcd:
		return dialEtcd(c.Endpoints[i])
	case ZooKeeper:
		return dialZK(ctx, c.Endpoints[i], 10*time.Second)
	}
	return nil, fmt.Errorf("unknown system %q", c.System)
}

// dialAll opens n clients spread round robin over the members.
func (c *Cluster) dialAll(ctx context.Context, n int) ([]Client, error) {
	out := make([]Client, 0, n)
	for i := range n {
		cl, err := c.Dial(ctx, i)
		if err != nil {
			closeAll(out)
			return nil, fmt.Errorf("connect %d of %d to %s: %w", i+1, n, c.System, err)
		}
		out = append(out, cl)
	}
	return out, nil
}

func closeAll(cs []Client) {
	for _, c := range cs {
		c.Close()
	}
}
