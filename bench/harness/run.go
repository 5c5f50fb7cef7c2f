package harness

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Groups of workloads.
const (
	GroupKV   = "kv"   // W1-W9 against cocaine, etcd, ZooKeeper
	GroupRPC  = "rpc"  // R1-R2: our echo vs gRPC-go
	GroupApps = "apps" // A1-A4: the node service and containers
)

// Config is one run of the harness.
type Config struct {
	Profile Profile
	Servers Servers
	Systems []string // of Cocaine, Etcd, ZooKeeper
	Topos   []int    // members: 1, 3
	Groups  []string // of GroupKV, GroupRPC, GroupApps
	Only    []string // workload ids to run (W1, R2, ...); empty: all
	Self    string   // this executable: the ephemeral owner and the echo servers run it
	EchoBin string   // the examples/echo binary, for the apps
	TmpDir  string   // parent of every data dir (removed at the end)
	// Emit receives every row as soon as it is measured (a failed step comes with its
	// error; its row says so too).
	Emit func(Result, error)
	// Progress receives one line per step, for the operator.
	Progress func(format string, args ...any)
}

func (c *Config) wants(id string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, id)
}

// Run runs every configured workload, one system at a time, and returns the rows. Every
// process it starts is stopped and every directory removed before it returns, on every
// path (ctx cancelled included). The error says how many steps failed.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if cfg.Progress == nil {
		cfg.Progress = func(string, ...any) {}
	}
	var rows []Result
	failures := 0
	emit := func(r Result, err error) {
		if err != nil {
			failures++
			r.Errors++
			r.Note = strings.TrimPrefix(r.Note+"; failed: "+err.Error(), "; ")
		}
		rows = append(rows, r)
		if cfg.Emit != nil {
			cfg.Emit(r, err)
		}
	}
	dir, err := os.MkdirTemp(cfg.TmpDir, "cb-") // short: worker socket paths under it must fit in 107 bytes
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if slices.Contains(cfg.Groups, GroupKV) {
		for _, members := range cfg.Topos {
			for _, system := range cfg.Systems {
				if ctx.Err() != nil {
					break
				}
				runKV(ctx, &cfg, system, members, dir, emit)
			}
		}
	}
	if slices.Contains(cfg.Groups, GroupRPC) && ctx.Err() == nil {
		runRPC(ctx, &cfg, dir, emit)
	}
	if slices.Contains(cfg.Groups, GroupApps) && ctx.Err() == nil {
		runApps(ctx, &cfg, dir, emit)
	}
	if err := ctx.Err(); err != nil {
		return rows, fmt.Errorf("interrupted: %w", err)
	}
	if failures > 0 {
		return rows, fmt.Errorf("%d steps failed (their rows say why)", failures)
	}
	return rows, nil
}

// step runs f with the profile's step timeout.
func step[T any](ctx context.Context, cfg *Config, what string, f func(context.Context) (T, error)) (T, error) {
	cfg.Progress("%s", what)
	ctx, cancel := context.WithTimeout(ctx, cfg.Profile.StepTimeout)
	defer cancel()
	return f(ctx)
}

func runKV(ctx context.Context, cfg *Config, system string, members int, dir string, emit func(Result, error)) {
	p := cfg.Profile
	topo := "T" + strconv.Itoa(members)
	if why := cfg.Servers.Available(system); why != "" {
		emit(Result{ID: "W*", System: system, Topo: topo, Workload: "all", Skipped: why}, nil)
		return
	}
	c, err := step(ctx, cfg, fmt.Sprintf("start %s %s", system, topo), func(ctx context.Context) (*Cluster, error) {
		return cfg.Servers.Start(ctx, system, members, dir)
	})
	if err != nil {
		emit(Result{ID: "W*", System: system, Topo: topo, Workload: "start"}, err)
		return
	}
	defer c.Stop()
	b := &kvBench{c: c, p: p}
	if _, err := step(ctx, cfg, fmt.Sprintf("warm up %s %s", system, topo), func(ctx context.Context) (struct{}, error) {
		return struct{}{}, b.warmup(ctx)
	}); err != nil {
		emit(Result{ID: "W*", System: system, Topo: topo, Workload: "warmup"}, err)
		return
	}
	type kvStep struct {
		id   string
		name string
		f    func(context.Context) (Result, error)
	}
	steps := []kvStep{{"W1", "sequential puts", func(ctx context.Context) (Result, error) {
		return b.put(ctx, "W1", ConnClients{1, 1}, p.SeqPuts)
	}}}
	for _, cc := range p.PutRuns {
		steps = append(steps, kvStep{"W2", fmt.Sprintf("puts %d×%d", cc.Conns, cc.Clients), func(ctx context.Context) (Result, error) {
			return b.put(ctx, "W2", cc, p.PutTotal)
		}})
	}
	for _, cons := range []Consistency{Linearizable, Serializable} {
		steps = append(steps,
			kvStep{"W3", "gets " + cons.String() + " 1×1", func(ctx context.Context) (Result, error) {
				return b.rangeGet(ctx, "W3", cons, ConnClients{1, 1}, p.SeqGets)
			}},
			kvStep{"W3", fmt.Sprintf("gets %s %d×%d", cons, p.GetRun.Conns, p.GetRun.Clients), func(ctx context.Context) (Result, error) {
				return b.rangeGet(ctx, "W3", cons, p.GetRun, p.GetTotal)
			}})
	}
	steps = append(steps, kvStep{"W5", "contended CAS", func(ctx context.Context) (Result, error) { return b.casIncrement(ctx, "W5") }})
	for _, n := range p.Watchers {
		steps = append(steps, kvStep{"W6", fmt.Sprintf("watch latency, %d watchers", n), func(ctx context.Context) (Result, error) {
			return b.watchLatency(ctx, "W6", n)
		}})
	}
	steps = append(steps, kvStep{"W8", "watch resume", func(ctx context.Context) (Result, error) { return b.watchResume(ctx, "W8") }})
	for _, mode := range ephemeralModes(system) {
		steps = append(steps, kvStep{"W9", "ephemeral expiry, " + mode, func(ctx context.Context) (Result, error) {
			return b.ephemeralExpiry(ctx, "W9", mode, cfg.Self)
		}})
	}
	for _, s := range steps {
		if !cfg.wants(s.id) || ctx.Err() != nil {
			continue
		}
		r, err := step(ctx, cfg, fmt.Sprintf("%s %s %s: %s", s.id, system, topo, s.name), s.f)
		if r.System == "" {
			r = b.row(s.id, s.name, "")
		}
		if err == nil {
			err = c.alive()
		}
		emit(r, err)
		if c.alive() != nil {
			return // a dead member would fail every later step the same way
		}
	}
}

func runRPC(ctx context.Context, cfg *Config, dir string, emit func(Result, error)) {
	p := cfg.Profile
	payload := make([]byte, p.RPCPayload)
	rand.Read(payload)
	for _, proto := range []string{ProtoCocaine, ProtoGRPC} {
		system := map[string]string{ProtoCocaine: "cocaine-rpc", ProtoGRPC: "grpc-go"}[proto]
		srv, addr, err := startEcho(ctx, cfg.Self, cfg.Servers.CPUs, dir, proto)
		if err != nil {
			emit(Result{ID: "R*", System: system, Topo: "-", Workload: "echo"}, err)
			continue
		}
		var cl echoClient
		if proto == ProtoCocaine {
			cl, err = dialCocaineEcho(ctx, addr, payload)
		} else {
			cl, err = dialGRPCEcho(addr, payload)
		}
		if err != nil {
			srv.Stop(5 * time.Second)
			emit(Result{ID: "R*", System: system, Topo: "-", Workload: "echo"}, err)
			continue
		}
		for _, streaming := range []bool{false, true} {
			id, workload := "R1", "echo-unary"
			if streaming {
				id, workload = "R2", "echo-stream"
			}
			if !cfg.wants(id) {
				continue
			}
			for _, conc := range p.RPCConcurrency {
				r := Result{ID: id, System: system, Topo: "-", Workload: workload,
					Params: fmt.Sprintf("--conns=1 --concurrency=%d --total=%d --payload=%d", conc, p.RPCCalls, p.RPCPayload)}
				_, err := step(ctx, cfg, fmt.Sprintf("%s %s %s", id, system, r.Params), func(ctx context.Context) (struct{}, error) {
					m := meter([]*Proc{srv})
					lat, failed, err, el := rpcEcho(ctx, cl, streaming, conc, p.RPCCalls)
					m.fill(&r)
					r.setRate(int64(len(lat)), el)
					r.setLatency(lat)
					r.Errors = failed
					return struct{}{}, err
				})
				emit(r, err)
			}
		}
		cl.close()
		srv.Stop(5 * time.Second)
	}
}

func runApps(ctx context.Context, cfg *Config, dir string, emit func(Result, error)) {
	want := func(ids ...string) bool { return slices.ContainsFunc(ids, cfg.wants) }
	if want("A1", "A2", "A3") {
		runNode(ctx, cfg, dir, emit)
	}
	if want("A4") {
		r, err := step(ctx, cfg, "A4 runc run", func(ctx context.Context) (Result, error) {
			return runcRun(ctx, cfg.Profile, cfg.Servers.CPUs, dir)
		})
		emit(r, err)
	}
}

func runNode(ctx context.Context, cfg *Config, dir string, emit func(Result, error)) {
	fail := func(err error) {
		emit(Result{ID: "A*", System: Cocaine, Topo: "T1", Workload: "apps"}, err)
	}
	if why := cfg.Servers.Available(Cocaine); why != "" {
		emit(Result{ID: "A*", System: Cocaine, Topo: "T1", Workload: "apps", Skipped: why}, nil)
		return
	}
	if cfg.EchoBin == "" {
		emit(Result{ID: "A*", System: Cocaine, Topo: "T1", Workload: "apps", Skipped: "no examples/echo binary given (-echo-bin)"}, nil)
		return
	}
	adir, err := os.MkdirTemp(dir, "apps-")
	if err != nil {
		fail(err)
		return
	}
	defer os.RemoveAll(adir)
	servers, err := appServers(cfg.Servers, adir)
	if err != nil {
		fail(err)
		return
	}
	c, err := step(ctx, cfg, "start cocaine T1 for the apps", func(ctx context.Context) (*Cluster, error) {
		return servers.Start(ctx, Cocaine, 1, dir)
	})
	if err != nil {
		fail(err)
		return
	}
	defer c.Stop()
	a := &appBench{c: c, p: cfg.Profile, echoBin: cfg.EchoBin, loc: []rpc.Endpoint{c.locator[0]}}
	if cfg.wants("A1") || cfg.wants("A2") {
		step(ctx, cfg, "A1-A2 app round trips", func(ctx context.Context) (struct{}, error) {
			a.roundTrip(ctx, emit)
			return struct{}{}, nil
		})
	}
	if cfg.wants("A3") {
		for _, iso := range cfg.Profile.ColdIsolates {
			r, err := step(ctx, cfg, "A3 worker cold start, isolate "+iso, func(ctx context.Context) (Result, error) {
				return a.coldStart(ctx, iso)
			})
			if err == nil {
				err = c.alive()
			}
			emit(r, err)
		}
	}
}
