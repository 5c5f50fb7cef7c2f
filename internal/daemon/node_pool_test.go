package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	cnode "github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// slaves returns the workers info reports, by uuid.
func slaves(t *testing.T, n *node, app string) map[string]any {
	t.Helper()
	m, _ := path(nodeInfo(t, n, app, cnode.InfoOverseerReport), "pool", "slaves").(map[string]any)
	return m
}

// burst sends count concurrent "sleep" requests and sorts the outcomes.
func burst(t *testing.T, app *rpc.Conn, count int) (ok int, errs []error) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx := ctxT(t)
	for i := range count {
		wg.Go(func() {
			body := "req" + strconv.Itoa(i)
			got, err := exchange(ctx, app, "sleep", nil, body)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case got != body:
				errs = append(errs, fmt.Errorf("sent %q, got %q", body, got))
			default:
				ok++
			}
		})
	}
	wg.Wait()
	return ok, errs
}

// TestNodeConcurrencyAndQueueLimit: one worker takes at most concurrency requests at a
// time; beyond that, queue-limit events wait and the rest are refused with queue_is_full.
func TestNodeConcurrencyAndQueueLimit(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "slow", binary: bw, env: map[string]any{"MODE": "sleep", "SLEEP_MS": "300"},
		profile: map[string]any{"pool-limit": 1, "concurrency": 2, "queue-limit": 2}})
	app := connect(t, n, "slow")
	// Warm up, so the burst meets an active worker.
	if _, err := exchange(ctxT(t), app, "info", nil); err != nil {
		t.Fatal(err)
	}
	ok, errs := burst(t, app, 12)
	if ok < 2 || len(errs) == 0 {
		t.Fatalf("%d served, %d refused: the burst should overflow the queue (%v)", ok, len(errs), errs)
	}
	for _, err := range errs {
		if !errors.Is(err, cnode.ErrQueueFull) {
			t.Fatalf("a refused request: %v", err)
		}
	}
	got, err := exchange(ctxT(t), app, "peak", nil)
	if err != nil || got != "2" {
		t.Fatalf("the worker had %s requests at once (concurrency 2): %v", got, err)
	}
	info := nodeInfo(t, n, "slow", cnode.InfoOverseerReport)
	if asInt(path(info, "requests", "rejected")) != len(errs) || asInt(path(info, "queue", "capacity")) != 2 {
		t.Fatalf("info: %v", info["requests"])
	}
}

// TestNodePoolGrowsAndShrinks: a queue deeper than grow-threshold spawns more workers
// up to pool-limit; idle workers retire after idle-timeout; control(N) pins the pool and
// closing the control stream hands it back to automatic sizing.
func TestNodePoolGrowsAndShrinks(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "elastic", binary: bw, env: map[string]any{"MODE": "sleep", "SLEEP_MS": "200"},
		profile: map[string]any{"pool-limit": 3, "concurrency": 1, "queue-limit": 20, "grow-threshold": 1, "idle-timeout": 0.3}})
	if s := slaves(t, n, "elastic"); len(s) != 0 {
		t.Fatalf("an app without traffic has no workers: %v", s)
	}
	app := connect(t, n, "elastic")
	ok, errs := burst(t, app, 9)
	if ok != 9 {
		t.Fatalf("%d of 9 served: %v", ok, errs)
	}
	info := nodeInfo(t, n, "elastic", cnode.InfoOverseerReport)
	if spawned := asInt(path(info, "pool", "total:spawned")); spawned < 2 || spawned > 3 {
		t.Fatalf("the pool should grow beyond one worker and stop at pool-limit 3: spawned %d", spawned)
	}
	eventually(t, callTimeout, func() error {
		if s := slaves(t, n, "elastic"); len(s) != 0 {
			return fmt.Errorf("%d workers still in the pool after idle-timeout", len(s))
		}
		return nil
	})

	// control(2): two workers without any traffic; the end of the stream returns to
	// automatic mode, where idle workers retire again.
	ctx := ctxT(t)
	ctl, err := app.Call(ctx, "control")
	if err != nil {
		t.Fatal(err)
	}
	ctl.Write(int64(2))
	active := func(want int) func() error {
		return func() error {
			got := 0
			for _, s := range slaves(t, n, "elastic") {
				if s.(map[string]any)["state"] == "active" {
					got++
				}
			}
			if got != want {
				return fmt.Errorf("%d active workers, want %d", got, want)
			}
			return nil
		}
	}
	eventually(t, callTimeout, active(2))
	ctl.Write(int64(1))
	eventually(t, callTimeout, active(1))
	ctl.Close()
	eventually(t, callTimeout, active(0))
	_ = context.Background
}

// TestNodeSlotFreedWhenWorkerAnswers: a client that never closes its direction (as the
// original Go HTTP proxy) does not hold the worker's slot once the worker has answered.
func TestNodeSlotFreedWhenWorkerAnswers(t *testing.T) {
	n := startNode(t, nodeTestConfig(t))
	bw := goBinary(t, "./testdata/badworker")
	startApp(t, n, appSpec{name: "one", binary: bw, env: map[string]any{"MODE": "info"},
		profile: map[string]any{"pool-limit": 1, "concurrency": 1}})
	app := connect(t, n, "one")
	ctx := ctxT(t)
	open, err := app.Call(ctx, "enqueue", "info")
	if err != nil {
		t.Fatal(err)
	}
	open.Write("one chunk, and no close")
	if got, err := readStream(ctx, open); err != nil || got == "" {
		t.Fatalf("first: %q %v", got, err)
	}
	if got, err := exchange(ctx, app, "info", nil); err != nil || got == "" {
		t.Fatalf("the second request did not get the only slot: %q %v", got, err)
	}
}
