//go:build linux

package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cocaine/cocaine/node/isolate/runc"
	"github.com/cocaine/cocaine/node/isolate/runc/runctest"
	"github.com/cocaine/cocaine/rpc"
)

// hogScript is a batch worker that keeps both cores busy while it serves: two busybox
// "yes" loops in its container, then the echo worker.
const hogScript = "#!/bin/sh\nyes > /dev/null &\nyes > /dev/null &\nexec /echo \"$@\"\n"

// BenchmarkRuncProdLatency: requests from four clients at once to the echo worker in a prod runc
// container (one core), first alone on the host, then beside a batch runc container
// (cores 0.25: shares 256 and SCHED_BATCH) that burns both cores. Reports p50 and p99
// of each phase in µs, and how much CPU the batch container got meanwhile; then, for
// contrast, beside the same burners in a second prod container without a CPU limit.
func BenchmarkRuncProdLatency(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("containers need root")
	}
	cfg := testConfig(&testing.T{}) // its defaults only; the paths are set below
	cfg.DataDir = b.TempDir()
	cfg.Node.CgroupRoot = "/cocaine-bench-runc"
	cfg.Node.Runc = &runc.Config{BasesDir: runctest.Bases(b)}
	b.Cleanup(func() { removeCgroupRoot(b, cfg.Node.CgroupRoot) })
	n := benchDaemon(b, cfg)
	ctx := context.Background()
	echo := staticBinary(b, "../../examples/echo")
	hog := filepath.Join(b.TempDir(), "hog")
	if err := os.WriteFile(hog, []byte(hogScript), 0o755); err != nil {
		b.Fatal(err)
	}
	for _, a := range []struct {
		name, slave string
		files       map[string]string
		args        map[string]any
	}{
		{"prod", "echo", map[string]string{"echo": echo}, map[string]any{"base": "busybox", "class": "prod", "cores": 1.0}},
		{"hog", "hog", map[string]string{"echo": echo, "hog": hog}, map[string]any{"base": "busybox", "class": "batch", "cores": 0.25}},
		// the same burners with no class to hold them back, for contrast
		{"hogprod", "hog", map[string]string{"echo": echo, "hog": hog}, map[string]any{"base": "busybox", "class": "prod"}},
	} {
		profile := map[string]any{"pool-limit": 1, "isolate": map[string]any{"type": "runc", "args": a.args}}
		benchStart(b, n, a.name, tarGz(b, a.files), a.slave, profile)
	}
	conn := func(name string) (*rpc.Conn, rpc.Method, rpc.Raw) {
		c, err := rpc.Service(ctx, n.locator(), name, rpc.DialConfig{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		enqueue, _ := c.Graph().MethodByName("enqueue")
		args, _ := rpc.AppendArgs(nil, "ping")
		if err := pingApp(ctx, c, enqueue, args); err != nil { // spawns the worker
			b.Fatal(err)
		}
		return c, enqueue, args
	}
	prod, enqueue, args := conn("prod")
	// Four clients at once keep the prod worker busy, so that it needs the CPU the
	// burners want.
	const clients = 4
	measure := func(name string) {
		var mu sync.Mutex
		lat := make([]time.Duration, 0, b.N)
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range b.N / clients {
					start := time.Now()
					if err := pingApp(ctx, prod, enqueue, args); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(start))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		b.ReportMetric(percentile(lat, 50), name+"-p50-µs")
		b.ReportMetric(percentile(lat, 99), name+"-p99-µs")
	}
	b.ResetTimer()
	measure("alone")
	conn("hog")
	time.Sleep(200 * time.Millisecond) // the burners are running
	usage := func() float64 {
		m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/cpuacct", cfg.Node.CgroupRoot, "batch", "c*", "cpuacct.usage"))
		if len(m) == 0 {
			return 0
		}
		v, _ := os.ReadFile(m[0])
		f, _ := strconv.ParseFloat(strings.TrimSpace(string(v)), 64)
		return f
	}
	before, t0 := usage(), time.Now()
	measure("batch")
	b.ReportMetric((usage()-before)/float64(time.Since(t0).Nanoseconds())*100, "batch-cpu-%")
	nd, err := rpc.Service(ctx, n.locator(), "node", rpc.DialConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer nd.Close()
	ch, err := nd.Call(ctx, "pause_app", "hog")
	if err == nil {
		_, err = ch.Get(ctx)
	}
	if err != nil {
		b.Fatal(err)
	}
	conn("hogprod")
	time.Sleep(200 * time.Millisecond)
	measure("unclassed")
}
