package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is one server process the harness started: pinned with taskset when CPUs is set,
// in its own process group, its output in a log file. Stop ends it (and anything it
// started); the harness stops every Proc it starts, on every path.
type Proc struct {
	Name string
	Log  string // path of the file holding its stdout and stderr
	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
	err  error         // Wait's result, set before done is closed
}

// startProc starts bin with args. cpus, if not empty, is a taskset CPU list the process
// is pinned to. The process gets SIGKILL if the harness dies first (Pdeathsig).
func startProc(name, logPath, cpus string, env []string, bin string, args ...string) (*Proc, error) {
	if cpus != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("start %s: pinning to CPUs %s needs taskset: %w", name, cpus, err)
		}
		args = append([]string{"-c", cpus, bin}, args...)
		bin = ts
	}
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer lf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { // the only waiter of cmd; Stop and Exited read its result
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (taskset execs the program, so it is the server's own).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs the group.
// It is idempotent and returns once the process has been reaped.
func (p *Proc) Stop(grace time.Duration) {
	if ok, _ := p.Exited(); !ok {
		syscall.Kill(-p.Pid(), syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	// The group may hold children that outlived the leader (an app's workers): kill them.
	syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() {
	syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// tail returns the last lines of the process's log, for error messages.
func (p *Proc) tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitedErr is the error for a server that ended while the harness needed it.
func (p *Proc) exitedErr() error {
	_, err := p.Exited()
	return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.Name, err, p.Log, p.tail(15))
}

// procStats is what the harness reads of a server process from /proc.
type procStats struct {
	cpu        time.Duration // user + system time so far
	writeBytes int64         // bytes this process caused to be written to storage
}

// clockTick is the kernel's USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux the harness runs on (getconf CLK_TCK).
const clockTick = 100

func readStats(pid int) (procStats, error) {
	var s procStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name is in parentheses and may hold spaces: fields start after ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = time.Duration(ut+st) * time.Second / clockTick
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(io), "\n") {
			if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
				s.writeBytes, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return s, nil
}

// resetPeakRSS resets VmHWM so that the next readPeakRSS gives the peak since now
// (clear_refs "5", Linux 4.0+, needs the right to write the process's /proc files).
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// readPeakRSS returns VmHWM in bytes.
func readPeakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// freePorts reserves n distinct free TCP ports on 127.0.0.1 by binding them all at
// once, then releases them for the servers to bind. Another process could take one in
// between; the servers' start then fails with a clear "address in use".
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a port: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// waitUntil polls check every interval until it returns nil, ctx ends, timeout passes,
// or one of procs exits; the error says which, with check's last error.
func waitUntil(ctx context.Context, what string, timeout time.Duration, procs []*Proc, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range procs {
			if ok, _ := p.Exited(); ok {
				return fmt.Errorf("waiting for %s: %w", what, p.exitedErr())
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: not ready after %s: %w", what, timeout, errors.Join(ctx.Err(), last))
		case <-tick.C:
		}
	}
}

// mkdir makes dir/name and returns its path.
func mkdir(dir string, name ...string) (string, error) {
	p := filepath.Join(append([]string{dir}, name...)...)
	return p, os.MkdirAll(p, 0o755)
}
