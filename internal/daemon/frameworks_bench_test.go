package daemon_test

import (
	"context"
	"testing"

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
	n := benchDaemon(b, cfg)
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
	ctx := context.Background()
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
			waitActive(b, n, a.app, 2)
			enqueue, _ := c.Graph().MethodByName("enqueue")
			args, _ := rpc.AppendArgs(nil, "echo")
			if err := pingApp(ctx, c, enqueue, args); err != nil {
				b.Fatal(err)
			}
			throughput(ctx, b, c, enqueue, args, inflight)
		})
	}
}
