package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestThreeProcessCluster runs three real `cocaine run` processes on 127.0.0.21-23 (the
// default ports, on addresses of their own) and drives them with cocaine-tool: join,
// replication, a leader killed with SIGKILL, its restart from its data dir, a backup
// and its restore, a graceful leave, and bad arguments.
func TestThreeProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	bin := t.TempDir()
	for _, pkg := range []string{"../cocaine", "."} {
		out := filepath.Join(bin, filepath.Base(pkg))
		if pkg == "." {
			out = filepath.Join(bin, "cocaine-tool")
		}
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	hosts := []string{"127.0.0.21", "127.0.0.22", "127.0.0.23"}
	procs := make([]*proc, len(hosts))
	for i, h := range hosts {
		args := []string{"run", "--data-dir", filepath.Join(t.TempDir(), "node"), "--endpoint", h, "--log-format", "json"}
		if i > 0 {
			args = append(args, "--join", hosts[0]) // port 10053 by default
		}
		procs[i] = startProc(t, filepath.Join(bin, "cocaine"), args...)
		waitFor(t, 60*time.Second, func() error {
			_, err := runTool(t, bin, h, "cluster", "status")
			return err
		})
	}
	var members []map[string]any
	waitFor(t, 30*time.Second, func() error {
		out, err := runTool(t, bin, hosts[2], "cluster", "members")
		if err != nil {
			return err
		}
		members = nil
		if err := json.Unmarshal(out, &members); err != nil {
			return err
		}
		voters := 0
		for _, m := range members {
			if m["voter"] == true {
				voters++
			}
		}
		if len(members) != 3 || voters != 3 {
			return fmt.Errorf("members: %s", out)
		}
		return nil
	})

	// A node created through host 3 is read on host 1.
	if _, err := runTool(t, bin, hosts[2], "unicorn", "create", "/demo/key", `{"a": 1}`); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, bin, hosts[0], "unicorn", "get", "/demo/key")
	if err != nil || !bytes.Contains(out, []byte(`"a": 1`)) {
		t.Fatalf("get on host 1: %s %v", out, err)
	}

	// Kill the leader with SIGKILL; the others elect a new one and keep writing.
	leader := -1
	for i, h := range hosts {
		out, err := runTool(t, bin, h, "cluster", "status")
		if err == nil && bytes.Contains(out, []byte(`"leader": true`)) {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatal("no host says it leads")
	}
	procs[leader].kill(t)
	other := hosts[(leader+1)%3]
	waitFor(t, 30*time.Second, func() error {
		_, err := runTool(t, bin, other, "unicorn", "put", "/demo/key", `"after the kill"`, "0")
		return err
	})
	procs[leader] = startProc(t, filepath.Join(bin, "cocaine"), procs[leader].args...)
	waitFor(t, 60*time.Second, func() error {
		out, err := runTool(t, bin, hosts[leader], "unicorn", "get", "/demo/key")
		if err != nil {
			return err
		}
		if !bytes.Contains(out, []byte("after the kill")) {
			return fmt.Errorf("restarted host reads %s", out)
		}
		return nil
	})

	// Backup, change, restore.
	backup := filepath.Join(t.TempDir(), "backup.snap")
	if _, err := runTool(t, bin, hosts[1], "cluster", "snapshot", "save", backup); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, bin, hosts[1], "unicorn", "create", "/demo/later", `1`); err != nil {
		t.Fatal(err)
	}
	if _, err := runTool(t, bin, hosts[2], "cluster", "snapshot", "restore", backup); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		out, err := runTool(t, bin, hosts[0], "unicorn", "get", "/demo/later")
		if err != nil {
			return err
		}
		if !bytes.Contains(out, []byte("-1")) {
			return fmt.Errorf("after the restore /demo/later is %s", out)
		}
		return nil
	})

	// Bad arguments exit 22, service errors 128 with the category and code.
	if _, code, _ := toolCode(t, bin, hosts[0], "unicorn", "put", "/x"); code != exitBadArgs {
		t.Errorf("put without a value exited %d, want 22", code)
	}
	if _, code, stderr := toolCode(t, bin, hosts[0], "unicorn", "create", "/demo/key", "1"); code != exitService || !strings.Contains(stderr, "[11, 9]") {
		t.Errorf("create of an existing node exited %d (%s), want 128 with [11, 9]", code, stderr)
	}

	// A graceful leave: host 3 leaves and stops; two members remain.
	if _, err := runTool(t, bin, hosts[2], "cluster", "leave"); err != nil {
		t.Fatal(err)
	}
	procs[2].wait(t, 30*time.Second)
	waitFor(t, 30*time.Second, func() error {
		out, err := runTool(t, bin, hosts[0], "cluster", "members")
		if err != nil {
			return err
		}
		var ms []map[string]any
		json.Unmarshal(out, &ms)
		if len(ms) != 2 {
			return fmt.Errorf("members after a leave: %s", out)
		}
		return nil
	})
	for _, p := range procs[:2] {
		p.term(t)
	}
}

type proc struct {
	args   []string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	mu     sync.Mutex
	done   chan struct{}
	result error
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{args: args, log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = (*lockedWriter)(p)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.result = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("cocaine %v:\n%s", p.args, p.log.String())
			p.mu.Unlock()
		}
	})
	return p
}

type lockedWriter proc

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.Write(b)
}

func (p *proc) kill(t *testing.T) {
	p.cmd.Process.Kill()
	<-p.done
}

func (p *proc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-p.done:
		if p.result != nil {
			t.Errorf("cocaine %v exited with %v", p.args, p.result)
		}
	case <-time.After(d):
		t.Fatalf("cocaine %v did not exit", p.args)
	}
}

func (p *proc) term(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t, 60*time.Second)
}

func toolCode(t *testing.T, bin, host string, args ...string) ([]byte, int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "cocaine-tool"), append([]string{"--host", host, "--timeout", "10s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(os.Environ(), "COCAINE_LOCATOR=")
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), code, errb.String()
}

func runTool(t *testing.T, bin, host string, args ...string) ([]byte, error) {
	t.Helper()
	out, code, stderr := toolCode(t, bin, host, args...)
	if code != 0 {
		return out, fmt.Errorf("cocaine-tool %v exited %d: %s", args, code, stderr)
	}
	return out, nil
}

func waitFor(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not after %s: %v", d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
