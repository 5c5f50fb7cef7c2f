package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/bench/harness"
)

// TestShort runs the harness's short mode as scripts/bench would run the quick profile:
// it builds cocaine, the echo example and cocaine-bench, runs `cocaine-bench -short`
// (T1 only, tiny counts; etcd and ZooKeeper when their Debian packages are installed,
// else their rows say they are skipped), and checks every row, then that nothing it
// started is left running or on disk.
func TestShort(t *testing.T) {
	if !testing.Short() {
		t.Skip("the harness's test is its -short mode (go test -short); the real runs are scripts/bench")
	}
	bin := t.TempDir()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	// cocaine and the example are built in the main module, with its own dependencies.
	for _, b := range []struct{ out, dir, pkg string }{
		{"cocaine", "../../..", "./cmd/cocaine"},
		{"echo", "../../..", "./examples/echo"},
		{"cocaine-bench", ".", "."},
	} {
		cmd := exec.Command(gobin, "build", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if b.out == "echo" {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the runc row runs it in a container
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "cocaine-bench"), "-short",
		"-cocaine", filepath.Join(bin, "cocaine"), "-echo-bin", filepath.Join(bin, "echo"), "-tmp", tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("stderr:\n%s", stderr.String())
	if runErr != nil {
		t.Fatalf("cocaine-bench -short: %v\n%s", runErr, stdout.String())
	}

	out := stdout.String()
	var rows []harness.Result
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var r harness.Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		rows = append(rows, r)
	}
	if !strings.Contains(out, "| id | workload |") {
		t.Errorf("no markdown table in the output:\n%s", out)
	}
	got := map[string][]harness.Result{}
	for _, r := range rows {
		got[r.System+" "+r.ID] = append(got[r.System+" "+r.ID], r)
		if r.Skipped == "" && r.Errors != 0 {
			t.Errorf("%s %s %s %s: %d errors: %s", r.ID, r.System, r.Topo, r.Params, r.Errors, r.Note)
		}
	}
	// Our system runs every workload.
	for _, id := range []string{"W1", "W2", "W3", "W5", "W6", "W8", "W9"} {
		rs := got[harness.Cocaine+" "+id]
		if len(rs) == 0 {
			t.Errorf("no %s row for cocaine", id)
		}
		for _, r := range rs {
			if r.Skipped != "" || r.Max <= 0 {
				t.Errorf("cocaine %s %s: not measured: %+v", id, r.Params, r)
			}
		}
	}
	if rs := got[harness.Cocaine+" W8"]; len(rs) == 1 && (rs[0].Missed == nil || *rs[0].Missed != 0 || *rs[0].Duplicated != 0) {
		t.Errorf("cocaine's resumed watch missed or duplicated events: %+v", rs[0])
	}
	// The peers run when installed, else one row says why not.
	for _, sys := range []string{harness.Etcd, harness.ZooKeeper} {
		if rs := got[sys+" W*"]; len(rs) > 0 {
			if rs[0].Skipped == "" {
				t.Errorf("%s: a W* row that is not a skip: %+v", sys, rs[0])
			}
			t.Logf("%s skipped: %s", sys, rs[0].Skipped)
			continue
		}
		for _, id := range []string{"W1", "W3", "W6", "W8", "W9"} {
			if len(got[sys+" "+id]) == 0 {
				t.Errorf("no %s row for %s", id, sys)
			}
		}
	}
	for _, sys := range []string{"cocaine-rpc", "grpc-go"} {
		for _, id := range []string{"R1", "R2"} {
			if rs := got[sys+" "+id]; len(rs) != len(harness.Profiles["short"].RPCConcurrency) || rs[0].OpsS <= 0 {
				t.Errorf("%s %s: %+v", sys, id, rs)
			}
		}
	}
	for _, id := range []string{"A1", "A2"} {
		if rs := got[harness.Cocaine+" "+id]; len(rs) != 1 || rs[0].OpsS <= 0 {
			t.Errorf("%s: %+v", id, rs)
		}
	}
	for _, r := range got[harness.Cocaine+" A3"] {
		// As root on a host with what containers need (as CI's), the runc row runs.
		if strings.Contains(r.Params, "isolate=runc") && r.Skipped != "" && os.Geteuid() == 0 && !strings.Contains(r.Skipped, "lacks") {
			t.Errorf("runc cold start skipped as root: %s", r.Skipped)
		}
		if r.Skipped == "" && (r.P50 <= 0 || r.Errors != 0) {
			t.Errorf("A3: %+v", r)
		}
	}

	// Nothing left behind: no process mentions the run's directory, and it is empty.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(tmp)) {
			t.Errorf("still running after the harness exited: %s", bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in %s: %v", tmp, left)
	}
}
