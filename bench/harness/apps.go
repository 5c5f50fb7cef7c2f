package harness

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// errIsolateRefused is the node's answer to a profile naming an isolate this host cannot
// run (an unknown type, or runc off or unsupported here): component_not_found.
var errIsolateRefused = rpc.NewError(rpc.CategoryPlugins, 1, "")

// appServers is servers with, as root, a config that turns the runc isolate on for the
// A3 runc row: its state under dir, and a base layer "busybox" holding a static busybox
// (the rootfs A4 runs), when the host has one.
func appServers(servers Servers, dir string) (Servers, error) {
	if os.Geteuid() != 0 {
		return servers, nil // the node refuses runc profiles; the row says why
	}
	state, err := mkdir(dir, "runc")
	if err != nil {
		return servers, err
	}
	bases, err := mkdir(state, "bases", "busybox", "bin")
	if err != nil {
		return servers, err
	}
	for _, b := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if static(b) {
			bb, err := os.ReadFile(b)
			if err != nil {
				return servers, err
			}
			if err := os.WriteFile(filepath.Join(bases, "busybox"), bb, 0o755); err != nil {
				return servers, err
			}
			break
		}
	}
	cfg, err := json.Marshal(map[string]any{"node": map[string]any{"runc": map[string]any{
		"state_dir": state, "bases_dir": filepath.Join(state, "bases"),
	}}})
	if err != nil {
		return servers, err
	}
	path := filepath.Join(dir, "cocaine-apps.json")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		return servers, err
	}
	servers.CocaineConfig = path
	return servers, nil
}

// appBench drives the node service of a one-member cocaine cluster, as
// internal/daemon's node benchmarks do: upload the echo example through storage, start
// it through the node, call it through its own service.
type appBench struct {
	c       *Cluster
	p       Profile
	echoBin string
	loc     []rpc.Endpoint
}

func (a *appBench) row(id, workload, params string) Result {
	return Result{ID: id, System: Cocaine, Topo: a.c.Topo(), Workload: workload, Params: params}
}

// call opens service's method with args and returns its primitive reply.
func call(ctx context.Context, conn *rpc.Conn, method string, args ...any) (rpc.Args, error) {
	ch, err := conn.Call(ctx, method, args...)
	if err != nil {
		return nil, err
	}
	a, err := ch.Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	return a, nil
}

// upload writes the echo app's archive and manifest under name and the profile, and
// starts it; the node answers once the app is running.
func (a *appBench) upload(ctx context.Context, name string, profile map[string]any) error {
	bin, err := os.ReadFile(a.echoBin)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "echo", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg})
	tw.Write(bin)
	tw.Close()
	zw.Close()
	st, err := rpc.Service(ctx, a.loc, "storage", rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer st.Close()
	nd, err := rpc.Service(ctx, a.loc, "node", rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer nd.Close()
	for _, w := range []struct {
		coll, tag string
		v         any
	}{{"apps", "app", buf.Bytes()}, {"manifests", "app", map[string]any{"slave": "echo"}}, {"profiles", "profile", profile}} {
		b, err := rpc.Marshal(w.v)
		if err != nil {
			return err
		}
		if _, err := call(ctx, st, "write", w.coll, name, b, []string{w.tag}); err != nil {
			return fmt.Errorf("storage %s/%s: %w", w.coll, name, err)
		}
	}
	_, err = call(ctx, nd, "start_app", name, name)
	return err
}

// pingApp is one request: enqueue("ping"), one chunk, close; one chunk and close back.
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

// A1, A2: request round trips through the node to the echo worker: one at a time
// (latency), then AppInflight at a time (throughput), over one connection resolved
// through the locator.
func (a *appBench) roundTrip(ctx context.Context, emit func(Result, error)) {
	const app = "echo"
	params := map[string]any{"pool-limit": 2, "concurrency": 200, "queue-limit": 1000}
	r1 := a.row("A1", "app-roundtrip", fmt.Sprintf("--inflight=1 --total=%d (client -> app service -> Go echo worker -> client)", a.p.AppRequests))
	r2 := a.row("A2", "app-throughput", fmt.Sprintf("--inflight=%d --total=%d --pool-limit=2", a.p.AppInflight, a.p.AppTotal))
	if err := a.upload(ctx, app, params); err != nil {
		emit(r1, err)
		emit(r2, err)
		return
	}
	conn, err := rpc.Service(ctx, a.loc, app, rpc.DialConfig{})
	if err != nil {
		emit(r1, err)
		emit(r2, err)
		return
	}
	defer conn.Close()
	enqueue, _ := conn.Graph().MethodByName("enqueue")
	args, _ := rpc.AppendArgs(nil, "ping")
	if err := pingApp(ctx, conn, enqueue, args); err != nil { // spawns the first worker
		emit(r1, err)
		emit(r2, err)
		return
	}
	for _, run := range []struct {
		r               *Result
		inflight, total int
	}{{&r1, 1, a.p.AppRequests}, {&r2, a.p.AppInflight, a.p.AppTotal}} {
		m := meter(a.c.Procs)
		var next, failed atomic.Int64
		var first firstError
		lats := make([][]time.Duration, run.inflight)
		var wg sync.WaitGroup
		start := time.Now()
		for i := range run.inflight {
			wg.Go(func() {
				for ctx.Err() == nil && next.Add(1) <= int64(run.total) {
					t0 := time.Now()
					if err := pingApp(ctx, conn, enqueue, args); err != nil {
						failed.Add(1)
						first.set(err)
						continue
					}
					lats[i] = append(lats[i], time.Since(t0))
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		m.fill(run.r)
		var all []time.Duration
		for _, l := range lats {
			all = append(all, l...)
		}
		run.r.setRate(int64(len(all)), el)
		run.r.setLatency(all)
		run.r.Errors = failed.Load()
		run.r.Note = "server CPU and RSS: the daemon only (the workers are processes of their own)"
		if err := first.get(); err != nil {
			run.r.Note = "first error: " + err.Error()
		}
		emit(*run.r, nil)
	}
}

// activeWorkers counts the app's workers, and the active ones, from node.info(app, 1).
func activeWorkers(ctx context.Context, nd *rpc.Conn, app string) (active, all int, err error) {
	a, err := call(ctx, nd, "info", app, uint32(1))
	if err != nil {
		return 0, 0, err
	}
	var info map[string]any
	if err := a.Scan(&info); err != nil {
		return 0, 0, err
	}
	pool, _ := info["pool"].(map[string]any)
	slaves, _ := pool["slaves"].(map[string]any)
	for _, w := range slaves {
		if w, _ := w.(map[string]any); w["state"] == "active" {
			active++
		}
	}
	return active, len(slaves), nil
}

// A3: worker cold start under isolate: control(1) on an empty pool until the worker is
// active (spawn to handshake, polled through node.info every 200 µs), then back to
// automatic sizing until idle-timeout retires it. For the runc isolate, the same app
// with {"isolate": {"type": "runc", "args": {"base": "busybox"}}}: each worker a new
// container (the rootfs overlay, libcontainer create and run, the worker's handshake).
func (a *appBench) coldStart(ctx context.Context, isolate string) (Result, error) {
	app := "cold-" + isolate
	r := a.row("A3", "worker-cold-start", fmt.Sprintf("--isolate=%s --total=%d (control(1) to an active worker)", isolate, a.p.ColdStarts))
	args := map[string]any{}
	if isolate == "runc" {
		if !static(a.echoBin) {
			r.Skipped = "the echo binary is linked dynamically; a container needs it static (CGO_ENABLED=0)"
			return r, nil
		}
		args["base"] = "busybox"
	}
	profile := map[string]any{"idle-timeout": 0.01, "isolate": map[string]any{"type": isolate, "args": args}}
	if err := a.upload(ctx, app, profile); err != nil {
		if errors.Is(err, errIsolateRefused) && isolate == "runc" {
			// no runc isolate on this host (not root, a kernel feature missing): the
			// node's message says which
			r.Skipped = "the node refused the runc isolate: " + err.Error()
			return r, nil
		}
		return r, err
	}
	conn, err := rpc.Service(ctx, a.loc, app, rpc.DialConfig{})
	if err != nil {
		return r, err
	}
	defer conn.Close()
	nd, err := rpc.Service(ctx, a.loc, "node", rpc.DialConfig{})
	if err != nil {
		return r, err
	}
	defer nd.Close()
	m := meter(a.c.Procs)
	var lat []time.Duration
	start := time.Now()
	for range a.p.ColdStarts {
		ctl, err := conn.Call(ctx, "control")
		if err != nil {
			return r, err
		}
		t0 := time.Now()
		if err := ctl.Write(int64(1)); err != nil {
			return r, err
		}
		for {
			n, _, err := activeWorkers(ctx, nd, app)
			if err != nil {
				return r, err
			}
			if n == 1 {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
		ctl.Close()
		for {
			_, all, err := activeWorkers(ctx, nd, app)
			if err != nil {
				return r, err
			}
			if all == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	m.fill(&r)
	r.setRate(int64(len(lat)), time.Since(start))
	r.OpsS = 0 // the cycle includes waiting for the worker to retire
	r.setLatency(lat)
	return r, nil
}

// A4: `runc run` of /bin/true in a busybox bundle, each a new container, pinned like the
// servers: the baseline a runc isolate's cold start is compared with (peers.md §2.6:
// 41.8 ms measured on a machine of this kind).
func runcRun(ctx context.Context, p Profile, cpus, dir string) (Result, error) {
	r := Result{ID: "A4", System: "runc", Topo: "-", Workload: "runc-run", Params: fmt.Sprintf("--total=%d /bin/true, busybox rootfs", p.RuncRuns)}
	runc, err := exec.LookPath("runc")
	if err != nil {
		r.Skipped = "runc not installed (Debian package runc)"
		return r, nil
	}
	busybox := ""
	for _, b := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if static(b) {
			busybox = b
			break
		}
	}
	if busybox == "" {
		r.Skipped = "no statically linked busybox for the rootfs (Debian package busybox-static)"
		return r, nil
	}
	bundle, err := mkdir(dir, "runc-bundle")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(bundle)
	rootfs, err := mkdir(bundle, "rootfs", "bin")
	if err != nil {
		return r, err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return r, err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "busybox"), bb, 0o755); err != nil {
		return r, err
	}
	if err := os.Symlink("busybox", filepath.Join(rootfs, "true")); err != nil {
		return r, err
	}
	spec := exec.CommandContext(ctx, runc, "spec")
	spec.Dir = bundle
	if out, err := spec.CombinedOutput(); err != nil {
		return r, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	cfgPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return r, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return r, err
	}
	proc, _ := cfg["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/true"}
	if raw, err = json.Marshal(cfg); err != nil {
		return r, err
	}
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		return r, err
	}
	var lat []time.Duration
	start := time.Now()
	for i := range p.RuncRuns {
		args := []string{"run", "--bundle", bundle, fmt.Sprintf("cocaine-bench-%d-%d", os.Getpid(), i)}
		bin := runc
		if cpus != "" {
			args = append([]string{"-c", cpus, runc}, args...)
			bin = "taskset"
		}
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
			return r, fmt.Errorf("runc run: %v: %s", err, out)
		}
		lat = append(lat, time.Since(t0))
	}
	r.setRate(int64(len(lat)), time.Since(start))
	r.setLatency(lat)
	return r, nil
}

// static reports whether path is an ELF executable without an interpreter (statically
// linked), so that it runs alone in a rootfs.
func static(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
