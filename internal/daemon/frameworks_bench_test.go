package daemon_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// BenchmarkFrameworksThroughput: requests per second through one app whose pool is
// pinned to two workers (concurrency 200 each), with the worker written in Go, Python
// and Node.js: the echo examples, one daemon, the same profile. Each request is
// enqueue("echo"), one chunk, close, the chunk back, close, with 64 in flight from a Go
// client over one connection.
//
//	go test ./internal/daemon -run '^$' -bench BenchmarkFrameworksThroughput -benchtime 5000x
func BenchmarkFrameworksThroughput(b *testing.B) {
	needPython(b)
	needNode(b)
	cfg := testConfig(&testing.T{}) // only for its defaults; the paths are set below
	cfg.DataDir = b.TempDir()
	cfg.Logging.Sinks = nil
	cfg.Node.CgroupRoot = "/cocaine-bench-frameworks"
	b.Cleanup(func() { removeCgroupRoot(b, cfg.Node.CgroupRoot) })
	d, err := daemon.New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1) // Run's result
	go func() { done <- d.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case <-d.Ready():
	case err := <-done:
		b.Fatal(err)
	}
	n := &node{d: d, cfg: cfg}
	profile := map[string]any{"pool-limit": 2, "concurrency": 200, "queue-limit": 1000}
	apps := []struct {
		worker, app, slave string
		archive            []byte
	}{
		{"go", "goecho", "echo", tarGz(b, map[string]string{"echo": goBinary(b, "github.com/cocaine/cocaine/examples/echo")})},
		{"python", "pyecho", "echo.py", pythonEchoArchive(b)},
		{"nodejs", "jsecho", "echo.js", nodeEchoArchive(b)},
	}
	for _, a := range apps {
		benchStart(b, n, a.app, a.archive, a.slave, profile)
	}
	const inflight = 64
	for _, a := range apps {
		b.Run("worker="+a.worker, func(b *testing.B) {
			c, err := rpc.Service(ctx, n.locator(), a.app, rpc.DialConfig{})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctl, err := c.Call(ctx, "control")
			if err != nil {
				b.Fatal(err)
			}
			defer ctl.Close()
			ctl.Write(int64(2))
			benchWaitActive(b, n, a.app, 2)
			enqueue, _ := c.Graph().MethodByName("enqueue")
			args, _ := rpc.AppendArgs(nil, "echo")
			if err := pingApp(ctx, c, enqueue, args); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var wg sync.WaitGroup
			work := make(chan struct{}, inflight) // a token per request still to send
			go func() {
				for range b.N {
					work <- struct{}{}
				}
				close(work)
			}()
			for range inflight {
				wg.Go(func() {
					for range work {
						if err := pingApp(ctx, c, enqueue, args); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// benchStart uploads an app through storage and starts it.
func benchStart(b *testing.B, n *node, name string, archive []byte, slave string, profile map[string]any) {
	ctx := context.Background()
	st, err := rpc.Service(ctx, n.locator(), "storage", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	nd, err := rpc.Service(ctx, n.locator(), "node", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer nd.Close()
	for _, c := range []struct {
		conn *rpc.Conn
		m    string
		args []any
	}{
		{st, "write", []any{"apps", name, marshal(b, archive), []string{"app"}}},
		{st, "write", []any{"manifests", name, marshal(b, map[string]any{"slave": slave}), []string{"app"}}},
		{st, "write", []any{"profiles", name, marshal(b, profile), []string{"profile"}}},
		{nd, "start_app", []any{name, name}},
	} {
		ch, err := c.conn.Call(ctx, c.m, c.args...)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ch.Get(ctx); err != nil {
			b.Fatalf("%s %s: %v", c.m, name, err)
		}
	}
}

// benchWaitActive waits until app has want active workers, from node.info.
func benchWaitActive(b *testing.B, n *node, app string, want int) {
	ctx := context.Background()
	nc, err := rpc.Service(ctx, n.locator(), "node", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ch, err := nc.Call(ctx, "info", app, uint32(1))
		if err != nil {
			b.Fatal(err)
		}
		a, err := ch.Get(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var info map[string]any
		a.Scan(&info)
		active := 0
		s, _ := path(info, "pool", "slaves").(map[string]any)
		for _, w := range s {
			if w.(map[string]any)["state"] == "active" {
				active++
			}
		}
		if active == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never reached %d active workers: %v", app, want, info["pool"])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
