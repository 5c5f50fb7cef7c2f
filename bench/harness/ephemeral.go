package harness

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/go-zookeeper/zk"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Ephemeral ownership modes.
const (
	// EphSession: the key lives as long as its owner's session: unicorn's ephemeral
	// create bound to the connection (revoked when it closes), ZooKeeper's session
	// (expires sessionTimeout after the last heartbeat), etcd has none (a lease is the
	// only way).
	EphSession = "session"
	// EphLease: the key is bound to a lease of TTL seconds that the owner keeps alive
	// (unicorn lease_grant + create_ex, etcd Grant + Put WithLease + KeepAlive).
	EphLease = "lease"
)

// OwnerSpec is what the owner process creates: Sessions sessions (connections, leases),
// each owning one ephemeral key Prefix/k<i>.
type OwnerSpec struct {
	System    string
	Endpoints []string // the cluster's client endpoints (cocaine: locators)
	Sessions  int
	Prefix    string
	TTL       time.Duration
	Mode      string
}

func (s OwnerSpec) args() []string {
	return []string{"owner", "-system", s.System, "-endpoints", strings.Join(s.Endpoints, ","),
		"-sessions", fmt.Sprint(s.Sessions), "-prefix", s.Prefix, "-ttl", s.TTL.String(), "-mode", s.Mode}
}

// ParseOwner parses the owner subcommand's flags.
func ParseOwner(args []string) (OwnerSpec, error) {
	var s OwnerSpec
	fs := flag.NewFlagSet("owner", flag.ContinueOnError)
	fs.StringVar(&s.System, "system", "", "system")
	eps := fs.String("endpoints", "", "client endpoints, comma-separated")
	fs.IntVar(&s.Sessions, "sessions", 1, "sessions, one ephemeral key each")
	fs.StringVar(&s.Prefix, "prefix", "/eph", "parent of the keys")
	fs.DurationVar(&s.TTL, "ttl", 5*time.Second, "session timeout or lease TTL")
	fs.StringVar(&s.Mode, "mode", EphLease, "session or lease")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	s.Endpoints = strings.Split(*eps, ",")
	return s, nil
}

// RunOwner creates the spec's sessions and keys, writes "ready" to out, keeps the
// sessions alive until ctx ends (the harness SIGKILLs the process instead: the owner
// dies without saying goodbye).
func RunOwner(ctx context.Context, s OwnerSpec, out io.Writer) error {
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	val := []byte("owned")
	key := func(i int) string { return fmt.Sprintf("%s/k%d", s.Prefix, i) }
	ep := func(i int) string { return s.Endpoints[i%len(s.Endpoints)] }
	switch {
	case s.System == Cocaine:
		if err := ownCocaine(ctx, s, key, &closers); err != nil {
			return err
		}
	case s.System == Etcd && s.Mode == EphLease:
		clients := make([]*clientv3.Client, min(10, s.Sessions))
		for i := range clients {
			c, err := dialEtcd(ep(i))
			if err != nil {
				return err
			}
			closers = append(closers, func() { c.Close() })
			clients[i] = c.cl
		}
		for i := range s.Sessions {
			cl := clients[i%len(clients)]
			l, err := cl.Grant(ctx, int64(s.TTL/time.Second))
			if err != nil {
				return err
			}
			if _, err := cl.Put(ctx, key(i), string(val), clientv3.WithLease(l.ID)); err != nil {
				return err
			}
			ka, err := cl.KeepAlive(ctx, l.ID)
			if err != nil {
				return err
			}
			go func() { // drains the keepalive answers, as the client requires
				for range ka {
				}
			}()
		}
	case s.System == ZooKeeper && s.Mode == EphSession:
		for i := range s.Sessions {
			c, err := dialZK(ctx, ep(i), s.TTL)
			if err != nil {
				return err
			}
			closers = append(closers, func() { c.Close() })
			if err := c.create(key(i), val, zk.FlagEphemeral); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("%s has no %s-bound ephemeral keys", s.System, s.Mode)
	}
	fmt.Fprintln(out, "ready")
	<-ctx.Done()
	return nil
}

// ownCocaine: session mode, one connection per session, create(path, value, ephemeral);
// lease mode, leases over up to 10 connections, create_ex with the lease, and one
// keepalive loop every TTL/3.
func ownCocaine(ctx context.Context, s OwnerSpec, key func(int) string, closers *[]func()) error {
	var conns []*rpc.Conn
	dial := func(i int) (*rpc.Conn, error) {
		loc, err := rpc.ParseEndpoint(s.Endpoints[i%len(s.Endpoints)])
		if err != nil {
			return nil, err
		}
		r, err := rpc.Resolve(ctx, []rpc.Endpoint{loc}, "unicorn", "", rpc.DialConfig{})
		if err != nil {
			return nil, err
		}
		c, err := rpc.Dial(ctx, r.Endpoints[:1], r.Graph, rpc.DialConfig{})
		if err != nil {
			return nil, err
		}
		*closers = append(*closers, func() { c.Close() })
		conns = append(conns, c)
		return c, nil
	}
	call := func(c *rpc.Conn, m string, args ...any) (rpc.Args, error) {
		ch, err := c.Call(ctx, m, args...)
		if err != nil {
			return nil, err
		}
		return ch.Get(ctx)
	}
	if s.Mode == EphSession {
		for i := range s.Sessions {
			c, err := dial(i)
			if err != nil {
				return err
			}
			if _, err := call(c, "create", key(i), "owned", true); err != nil {
				return fmt.Errorf("create %s: %w", key(i), err)
			}
		}
		return nil
	}
	for i := range min(10, s.Sessions) {
		if _, err := dial(i); err != nil {
			return err
		}
	}
	leases := make([]int64, s.Sessions)
	for i := range s.Sessions {
		c := conns[i%len(conns)]
		a, err := call(c, "lease_grant", int64(s.TTL/time.Second))
		if err != nil {
			return err
		}
		if err := a.Scan(&leases[i], new(int64)); err != nil {
			return err
		}
		if _, err := call(c, "create_ex", key(i), "owned", map[string]any{"lease": leases[i]}); err != nil {
			return fmt.Errorf("create_ex %s: %w", key(i), err)
		}
	}
	go func() { // the keepalive loop; ends with the process
		t := time.NewTicker(s.TTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for i, id := range leases {
				call(conns[i%len(conns)], "lease_keepalive", id)
			}
		}
	}()
	return nil
}

// ephemeralModes are the modes each system is measured in.
func ephemeralModes(system string) []string {
	switch system {
	case Cocaine:
		return []string{EphSession, EphLease}
	case Etcd:
		return []string{EphLease}
	case ZooKeeper:
		return []string{EphSession}
	}
	return nil
}

// W9: an owner process creates EphSessions sessions with one ephemeral key each; the
// harness SIGKILLs it and polls the count of keys every 10 ms until none is left. The
// latencies are each key's disappearance after the kill.
func (b *kvBench) ephemeralExpiry(ctx context.Context, id, mode, self string) (Result, error) {
	p := b.p
	prefix := "/eph-" + mode
	r := b.row(id, "ephemeral-expiry", fmt.Sprintf("--sessions=%d --ttl=%s --mode=%s (owner SIGKILLed)", p.EphSessions, p.EphTTL, mode))
	watcher, err := b.c.Dial(ctx, 0)
	if err != nil {
		return r, err
	}
	defer watcher.Close()
	if n, err := watcher.Count(ctx, prefix+"-absent"); err != nil || n != 0 {
		return r, fmt.Errorf("count under an absent prefix: %d, %v", n, err)
	}
	if err := watcher.Create(ctx, prefix, nil); err != nil {
		return r, err
	}
	spec := OwnerSpec{System: b.c.System, Endpoints: b.c.Endpoints, Sessions: p.EphSessions, Prefix: prefix, TTL: p.EphTTL, Mode: mode}
	cmd := exec.CommandContext(ctx, self, spec.args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logPath := filepath.Join(b.c.dir, "owner-"+mode+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		return r, err
	}
	defer lf.Close()
	cmd.Stderr = lf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start the owner: %w", err)
	}
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	ready := make(chan error, 1) // the reader's one verdict
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("owner said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			b, _ := os.ReadFile(logPath)
			return r, fmt.Errorf("owner: %v: %s", err, b)
		}
	case <-ctx.Done():
		return r, fmt.Errorf("owner not ready: %w", ctx.Err())
	}
	if n, err := watcher.Count(ctx, prefix); err != nil || n != p.EphSessions {
		return r, fmt.Errorf("the owner's keys: %d of %d (%v)", n, p.EphSessions, err)
	}
	m := meter(b.c.Procs)
	cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	cmd.Wait()
	waited = true
	deadline := killed.Add(p.EphTTL + 30*time.Second)
	var lat []time.Duration
	left := p.EphSessions
	var pollErrs int64
	for left > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		n, err := watcher.Count(ctx, prefix)
		at := time.Since(killed)
		if err != nil {
			pollErrs++
		} else {
			for ; left > n; left-- {
				lat = append(lat, at)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.fill(&r)
	r.setRate(int64(len(lat)), time.Since(killed))
	r.OpsS = 0 // not a rate: the row is about the time until every key is gone
	r.setLatency(lat)
	r.Errors = int64(left) + pollErrs
	notes := map[string]string{
		Cocaine + EphSession:   "keys bound to the owner's connection: revoked when the server sees it close",
		Cocaine + EphLease:     "keys bound to leases kept alive every TTL/3: expire at the leader",
		Etcd + EphLease:        "keys bound to leases kept alive by clientv3: expire at the leader",
		ZooKeeper + EphSession: "ephemeral znodes: the session expires sessionTimeout after the owner's last heartbeat",
	}
	r.Note = notes[b.c.System+mode]
	if b.c.System == ZooKeeper && p.EphTTL < 4*time.Second {
		r.Note += " (ZooKeeper raises timeouts below 2×tickTime, 4 s)"
	}
	if left > 0 {
		r.Note += fmt.Sprintf("; %d keys still there after %s", left, time.Since(killed).Round(time.Millisecond))
	}
	if pollErrs > 0 {
		r.Note += fmt.Sprintf("; %d polls failed", pollErrs)
	}
	return r, nil
}
