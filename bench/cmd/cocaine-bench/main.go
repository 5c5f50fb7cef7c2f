// Command cocaine-bench runs cocaine side by side with etcd and ZooKeeper on this
// machine (peers.md §3, issue 9), and our RPC side by side with gRPC-go, and prints JSON
// lines (one per row, as measured) and a markdown table. scripts/bench installs the
// peers, builds the binaries and runs it.
//
//	cocaine-bench [-profile quick|full] [-short] [-systems cocaine,etcd,zookeeper]
//	              [-topos 1,3] [-groups kv,rpc,apps] [-only W1,W6,R1] -cocaine BIN -echo-bin BIN
//
// The servers run pinned to -server-cpus and the harness re-executes itself pinned to
// -client-cpus (0 and 1 when the machine has two cores or more), one system at a time.
// Every process it starts is stopped, and every data dir removed, before it exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/bench/harness"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		switch args[0] {
		case "owner": // internal: the W9 owner process, SIGKILLed by the harness
			spec, err := harness.ParseOwner(args[1:])
			if err == nil {
				err = harness.RunOwner(ctx, spec, stdout)
			}
			return report(stderr, err)
		case "serve-echo": // internal: the R1/R2 echo server
			fs := flag.NewFlagSet("serve-echo", flag.ContinueOnError)
			proto := fs.String("proto", harness.ProtoCocaine, "cocaine or grpc")
			if err := fs.Parse(args[1:]); err != nil {
				return 2
			}
			return report(stderr, harness.ServeEcho(ctx, *proto, stdout))
		}
	}
	return run(ctx, args, stdout, stderr)
}

func report(stderr io.Writer, err error) int {
	if err != nil {
		fmt.Fprintf(stderr, "cocaine-bench: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	twoCores := runtime.NumCPU() >= 2
	defServer, defClient := "", ""
	if twoCores {
		defServer, defClient = "0", "1"
	}
	fs := flag.NewFlagSet("cocaine-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	profile := fs.String("profile", "quick", "workload sizes: quick (whole run under 15 min), full (under 45), short (seconds)")
	short := fs.Bool("short", false, "the test suite's mode: -profile short -topos 1")
	systems := fs.String("systems", "cocaine,etcd,zookeeper", "systems to run, comma-separated")
	topos := fs.String("topos", "1,3", "members per cluster, comma-separated")
	groups := fs.String("groups", "kv,rpc,apps", "workload groups: kv (W*), rpc (R*), apps (A*)")
	only := fs.String("only", "", "run only these workload ids (W1,W6,R1,A3,...)")
	cocaine := fs.String("cocaine", "cocaine", "the cocaine `binary`")
	echoBin := fs.String("echo-bin", "", "the examples/echo `binary` (the apps rows need it)")
	etcd := fs.String("etcd", "/usr/bin/etcd", "the etcd server `binary`")
	java := fs.String("java", "java", "java, for ZooKeeper")
	zkcp := fs.String("zk-classpath", "/usr/share/java/zookeeper.jar", "ZooKeeper's classpath")
	zkHeap := fs.String("zk-heap", "2g", "ZooKeeper's -Xmx")
	serverCPUs := fs.String("server-cpus", defServer, "taskset CPU list for every server (empty: not pinned)")
	clientCPUs := fs.String("client-cpus", defClient, "taskset CPU list for the harness (empty: not pinned)")
	stepTimeout := fs.Duration("step-timeout", 0, "bound on each step (default: the profile's)")
	tmp := fs.String("tmp", os.TempDir(), "parent `directory` of the data dirs")
	jsonOut := fs.String("json", "", "also write the JSON lines to this `file`")
	mdOut := fs.String("markdown", "", "also write the markdown table to this `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *short {
		*profile = "short"
		*topos = "1"
	}
	p, ok := harness.Profiles[*profile]
	if !ok {
		fmt.Fprintf(stderr, "cocaine-bench: unknown profile %q (quick, full, short)\n", *profile)
		return 2
	}
	if *stepTimeout > 0 {
		p.StepTimeout = *stepTimeout
	}
	if code, pinned := pinSelf(*clientCPUs, stderr); pinned {
		return code
	}
	self, err := os.Executable()
	if err != nil {
		return report(stderr, err)
	}
	var members []int
	for _, t := range splitList(*topos) {
		n, err := strconv.Atoi(t)
		if err != nil || (n != 1 && n != 3) {
			fmt.Fprintf(stderr, "cocaine-bench: -topos: %q is not 1 or 3\n", t)
			return 2
		}
		members = append(members, n)
	}
	var jsonFile *os.File
	if *jsonOut != "" {
		if jsonFile, err = os.Create(*jsonOut); err != nil {
			return report(stderr, err)
		}
		defer jsonFile.Close()
	}
	enc := json.NewEncoder(stdout)
	start := time.Now()
	cfg := harness.Config{
		Profile: p,
		Servers: harness.Servers{Cocaine: *cocaine, Etcd: *etcd, Java: *java, ZKClasspath: *zkcp, ZKHeap: *zkHeap, CPUs: *serverCPUs},
		Systems: splitList(*systems),
		Topos:   members,
		Groups:  splitList(*groups),
		Only:    splitList(*only),
		Self:    self,
		EchoBin: *echoBin,
		TmpDir:  *tmp,
		Emit: func(r harness.Result, err error) {
			enc.Encode(r)
			if jsonFile != nil {
				json.NewEncoder(jsonFile).Encode(r)
			}
			if err != nil {
				fmt.Fprintf(stderr, "  %s %s %s %s failed: %v\n", r.ID, r.System, r.Topo, r.Workload, err)
			}
		},
		Progress: func(format string, args ...any) {
			fmt.Fprintf(stderr, "[%5.0fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
		},
	}
	rows, err := harness.Run(ctx, cfg)
	md := harness.Markdown(rows)
	fmt.Fprintf(stdout, "\n%s", md)
	if *mdOut != "" {
		if werr := os.WriteFile(*mdOut, []byte(md), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	fmt.Fprintf(stderr, "cocaine-bench: %d rows in %s\n", len(rows), time.Since(start).Round(time.Second))
	return report(stderr, err)
}

// pinSelf re-executes the harness under taskset -c cpus unless it already runs so (the
// Go runtime sizes itself from the affinity it starts with). It returns the child's exit
// code and true when it did.
func pinSelf(cpus string, stderr io.Writer) (int, bool) {
	if cpus == "" || os.Getenv("COCAINE_BENCH_PINNED") == cpus {
		return 0, false
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		fmt.Fprintf(stderr, "cocaine-bench: not pinning the harness to CPUs %s: %v\n", cpus, err)
		return 0, false
	}
	self, err := os.Executable()
	if err != nil {
		return report(stderr, err), true
	}
	cmd := exec.Command(ts, append([]string{"-c", cpus, self}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, stderr
	cmd.Env = append(os.Environ(), "COCAINE_BENCH_PINNED="+cpus)
	sigs := make(chan os.Signal, 2) // forwarded to the child, which cleans up and exits
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return report(stderr, err), true
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), true
		}
		return report(stderr, err), true
	}
	return 0, true
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
