package daemon_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// benchNode starts a daemon with the echo example running under profile.
func benchNode(b *testing.B, profile map[string]any) (*node, *rpc.Conn) {
	cfg := testConfig(&testing.T{}) // only for its defaults; the paths are set below
	cfg.DataDir = b.TempDir()
	cfg.Logging.Sinks = nil
	cfg.Node.CgroupRoot = "/cocaine-bench"
	b.Cleanup(func() { removeCgroupRoot(b, cfg.Node.CgroupRoot) })
	n := benchDaemon(b, cfg)
	echo := goBinary(b, "github.com/cocaine/cocaine/examples/echo")
	benchStart(b, n, "echo", tarGz(b, map[string]string{"echo": echo}), "echo", profile)
	c, err := rpc.Service(context.Background(), n.locator(), "echo", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return n, c
}

// benchDaemon runs a daemon with cfg until the benchmark ends and waits until it is
// ready. Register cleanups that need the daemon stopped (its cgroup root) before.
func benchDaemon(b *testing.B, cfg daemon.Config) *node {
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
	return &node{d: d, cfg: cfg}
}

// benchStart uploads an app through storage and starts it.
func benchStart(b *testing.B, n *node, name string, archive []byte, slave string, profile map[string]any) {
	ctx := context.Background()
	if profile == nil {
		profile = map[string]any{}
	}
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

// pingApp is one small request: enqueue("ping"), one chunk, close, one chunk back, close.
func pingApp(ctx context.Context, c *rpc.Conn, enqueue rpc.Method, args rpc.Raw) error {
	ch, err := c.CallRaw(ctx, enqueue, args)
	if err != nil {
		return err
	}
	if err := ch.Write("ping"); err != nil {
		return err
	}
	if err := ch.Close(); err != nil {
		return err
	}
	for {
		m, err := ch.Recv(ctx)
		if err != nil {
			return err
		}
		if err := m.Err(); err != nil {
			return err
		}
		if m.Name == "close" {
			return nil
		}
	}
}

// throughput sends b.N requests over c, inflight at once, and reports requests/s. It
// resets the timer first.
func throughput(ctx context.Context, b *testing.B, c *rpc.Conn, enqueue rpc.Method, args rpc.Raw, inflight int) {
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
}

func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := min(int(p/100*float64(len(ds))), len(ds)-1)
	return float64(ds[i].Microseconds())
}

// BenchmarkAppRoundTrip: one request at a time, client -> app service -> worker and
// back, over a connection resolved through the locator. Reports p50/p99 in µs.
func BenchmarkAppRoundTrip(b *testing.B) {
	_, c := benchNode(b, nil)
	enqueue, _ := c.Graph().MethodByName("enqueue")
	args, _ := rpc.AppendArgs(nil, "ping")
	ctx := context.Background()
	if err := pingApp(ctx, c, enqueue, args); err != nil { // spawns the worker
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if err := pingApp(ctx, c, enqueue, args); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.ReportMetric(percentile(lat, 50), "p50-µs")
	b.ReportMetric(percentile(lat, 99), "p99-µs")
}

// BenchmarkAppThroughput: many requests in flight through one app whose pool is pinned
// to two workers (concurrency 100 each). Reports requests/s.
func BenchmarkAppThroughput(b *testing.B) {
	for _, inflight := range []int{64, 256} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			n, c := benchNode(b, map[string]any{"pool-limit": 2, "concurrency": 200, "queue-limit": 1000})
			ctx := context.Background()
			ctl, err := c.Call(ctx, "control")
			if err != nil {
				b.Fatal(err)
			}
			ctl.Write(int64(2))
			waitActive(b, n, "echo", 2)
			enqueue, _ := c.Graph().MethodByName("enqueue")
			args, _ := rpc.AppendArgs(nil, "ping")
			if err := pingApp(ctx, c, enqueue, args); err != nil {
				b.Fatal(err)
			}
			throughput(ctx, b, c, enqueue, args, inflight)
			ctl.Close()
		})
	}
}

// activeWorkers counts app's workers, and the active ones, from node.info.
func activeWorkers(b *testing.B, nc *rpc.Conn, app string) (active, all int) {
	ctx := context.Background()
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
	s, _ := path(info, "pool", "slaves").(map[string]any)
	for _, w := range s {
		if w.(map[string]any)["state"] == "active" {
			active++
		}
	}
	return active, len(s)
}

// waitActive waits until app has want active workers.
func waitActive(b *testing.B, n *node, app string, want int) {
	nc, err := rpc.Service(context.Background(), n.locator(), "node", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(20 * time.Second) // the Python and Node.js workers start slower
	for {
		if a, _ := activeWorkers(b, nc, app); a == want {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never reached %d active workers", app, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkWorkerColdStart: control(1) on an empty pool until the worker is active (spawn
// to handshake), then back to automatic mode until idle-timeout retires it. Reports
// p50/p99 in µs; polling node.info every 200 µs adds up to that much.
func BenchmarkWorkerColdStart(b *testing.B) {
	n, c := benchNode(b, map[string]any{"idle-timeout": 0.01})
	ctx := context.Background()
	nc, err := rpc.Service(ctx, n.locator(), "node", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	active := func() (int, int) { return activeWorkers(b, nc, "echo") }
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		ctl, err := c.Call(ctx, "control")
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		ctl.Write(int64(1))
		for {
			if a, _ := active(); a == 1 {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		ctl.Close()
		for {
			if _, all := active(); all == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(percentile(lat, 50), "p50-µs")
	b.ReportMetric(percentile(lat, 99), "p99-µs")
}
