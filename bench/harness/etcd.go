package harness

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdClient is one clientv3 client (one gRPC connection) to one member.
type etcdClient struct {
	cl *clientv3.Client
}

func dialEtcd(ep string) (*etcdClient, error) {
	cl, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{ep},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, err
	}
	return &etcdClient{cl: cl}, nil
}

func (c *etcdClient) Close() error { return c.cl.Close() }

func (c *etcdClient) Put(ctx context.Context, key string, val []byte) error {
	_, err := c.cl.Put(ctx, key, string(val))
	return err
}

func (c *etcdClient) Create(ctx context.Context, key string, val []byte) error {
	return c.Put(ctx, key, val)
}

func (c *etcdClient) Get(ctx context.Context, key string, cons Consistency) error {
	var err error
	if cons == Serializable {
		_, err = c.cl.Get(ctx, key, clientv3.WithSerializable())
	} else {
		_, err = c.cl.Get(ctx, key)
	}
	return err
}

// Read returns the value and its mod revision, the version CompareAndSwap compares.
func (c *etcdClient) Read(ctx context.Context, key string) ([]byte, int64, error) {
	r, err := c.cl.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if len(r.Kvs) == 0 {
		return nil, 0, nil
	}
	return r.Kvs[0].Value, r.Kvs[0].ModRevision, nil
}

// CompareAndSwap is Txn(If(mod_revision == ver), Then(put), Else(get)), as etcd's STM
// and lock recipes do.
func (c *etcdClient) CompareAndSwap(ctx context.Context, key string, ver int64, val []byte) (bool, []byte, int64, bool, error) {
	r, err := c.cl.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", ver)).
		Then(clientv3.OpPut(key, string(val))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return false, nil, 0, false, err
	}
	if r.Succeeded {
		return true, val, r.Header.Revision, false, nil
	}
	rr := r.Responses[0].GetResponseRange()
	if rr == nil || len(rr.Kvs) == 0 {
		return false, nil, 0, false, nil
	}
	return false, rr.Kvs[0].Value, rr.Kvs[0].ModRevision, true, nil
}

func (c *etcdClient) Watch(ctx context.Context, key string, after int64) (<-chan Event, error) {
	opts := []clientv3.OpOption{clientv3.WithCreatedNotify()}
	if after >= 0 {
		opts = append(opts, clientv3.WithRev(after+1))
	}
	wctx, cancel := context.WithCancel(ctx)
	wch := c.cl.Watch(clientv3.WithRequireLeader(wctx), key, opts...)
	out := make(chan Event, 1024) // decouples the client's stream from the workload
	go func() {
		defer close(out)
		defer cancel()
		for wr := range wch {
			at := time.Now()
			if err := wr.Err(); err != nil {
				if ctx.Err() == nil {
					out <- Event{Err: err, At: at}
				}
				return
			}
			if wr.Created {
				out <- Event{Sync: true, Rev: wr.Header.Revision, At: at}
			}
			for _, ev := range wr.Events {
				select {
				case out <- Event{Rev: ev.Kv.ModRevision, Value: ev.Kv.Value, At: at}:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() == nil {
			out <- Event{Err: errors.New("etcd watch channel closed"), At: time.Now()}
		}
	}()
	return out, nil
}

func (c *etcdClient) Count(ctx context.Context, prefix string) (int, error) {
	r, err := c.cl.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(r.Count), nil
}
