package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// System names, as they appear in the results.
const (
	Cocaine   = "cocaine"
	Etcd      = "etcd"
	ZooKeeper = "zookeeper"
)

// Servers says where the systems' binaries are and how to run them.
type Servers struct {
	Cocaine     string // the cocaine binary
	Etcd        string // etcd (Debian's etcd-server: /usr/bin/etcd)
	Java        string // java, for ZooKeeper
	ZKClasspath string // ZooKeeper's classpath (Debian's zookeeper: /usr/share/java/zookeeper.jar)
	ZKHeap      string // the JVM's -Xmx for each ZooKeeper server
	CPUs        string // taskset CPU list for every server; empty: not pinned
	StartWait   time.Duration
	// CocaineConfig, when set, is the JSON config file every cocaine member runs with
	// (`cocaine run --config`); the apps rows use it to turn on the runc isolate.
	CocaineConfig string
}

// Available reports why system cannot run with these servers, or "" if it can.
func (s Servers) Available(system string) string {
	look := func(bin, what string) string {
		if bin == "" {
			return what + " not configured"
		}
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("%s not found (%s)", what, bin)
		}
		return ""
	}
	switch system {
	case Cocaine:
		return look(s.Cocaine, "the cocaine binary")
	case Etcd:
		return look(s.Etcd, "etcd (Debian package etcd-server)")
	case ZooKeeper:
		if r := look(s.Java, "java (for ZooKeeper)"); r != "" {
			return r
		}
		jar, _, _ := strings.Cut(s.ZKClasspath, ":")
		if _, err := os.Stat(jar); err != nil {
			return fmt.Sprintf("ZooKeeper not found (%s; Debian package zookeeper)", jar)
		}
		return ""
	}
	return "unknown system " + system
}

// Cluster is one running system: its server processes and the client endpoint of each
// member, in member order.
type Cluster struct {
	System    string
	Procs     []*Proc
	Endpoints []string // host:port clients connect to, one per member

	dir     string
	unicorn []rpc.Endpoint // cocaine: each member's unicorn service
	graph   *rpc.Graph     // cocaine: unicorn's graph
	locator []rpc.Endpoint // cocaine: each member's locator
}

// Members is the number of members.
func (c *Cluster) Members() int { return len(c.Procs) }

// Topo names the topology: T1 or T3.
func (c *Cluster) Topo() string { return "T" + strconv.Itoa(len(c.Procs)) }

// Stop stops every member and removes the data dir. Idempotent.
func (c *Cluster) Stop() {
	for _, p := range c.Procs {
		p.Stop(15 * time.Second)
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
		c.dir = ""
	}
}

// alive returns an error naming a member that has exited.
func (c *Cluster) alive() error {
	for _, p := range c.Procs {
		if ok, _ := p.Exited(); ok {
			return p.exitedErr()
		}
	}
	return nil
}

// Start starts system with members members under a fresh directory in parent and waits
// until it serves clients (every member up, and for 3 members a quorum with a leader).
// On error everything it started is stopped and its directory removed.
func (s Servers) Start(ctx context.Context, system string, members int, parent string) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp(parent, system+"-T"+strconv.Itoa(members)+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{System: system, dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	wait := s.StartWait
	if wait == 0 {
		wait = 90 * time.Second
	}
	switch system {
	case Cocaine:
		err = s.startCocaine(ctx, c, members, wait)
	case Etcd:
		err = s.startEtcd(ctx, c, members, wait)
	case ZooKeeper:
		err = s.startZooKeeper(ctx, c, members, wait)
	default:
		err = fmt.Errorf("unknown system %q", system)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s with %d members: %w", system, members, err)
	}
	return c, nil
}

// startCocaine starts `cocaine run` processes on 127.0.0.1, each with its own locator and
// raft port (the other services get kernel-chosen ports); members after the first join
// through the first one's locator. It waits until the cluster service of the last member
// lists every member as a healthy voter with a leader, and resolves every member's
// unicorn.
func (s Servers) startCocaine(ctx context.Context, c *Cluster, members int, wait time.Duration) error {
	ports, err := freePorts(2 * members)
	if err != nil {
		return err
	}
	for i := range members {
		data, err := mkdir(c.dir, "m"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		args := []string{"run", "--data-dir", data, "--endpoint", "127.0.0.1",
			"--locator-port", strconv.Itoa(ports[2*i]), "--raft-port", strconv.Itoa(ports[2*i+1]),
			"--log-format", "json", "--log-level", "warn"}
		if s.CocaineConfig != "" {
			args = append(args, "--config", s.CocaineConfig)
		}
		if i > 0 {
			args = append(args, "--join", "127.0.0.1:"+strconv.Itoa(ports[0]))
		}
		p, err := startProc(fmt.Sprintf("cocaine member %d", i), filepath.Join(c.dir, fmt.Sprintf("m%d.log", i)), s.CPUs, nil, s.Cocaine, args...)
		if err != nil {
			return err
		}
		c.Procs = append(c.Procs, p)
		loc := rpc.Endpoint{Host: "127.0.0.1", Port: uint16(ports[2*i])}
		c.locator = append(c.locator, loc)
		c.Endpoints = append(c.Endpoints, loc.String())
		// Joins go one at a time, as an operator would start them.
		if err := waitUntil(ctx, fmt.Sprintf("cocaine member %d's unicorn", i), wait, c.Procs, func(ctx context.Context) error {
			r, err := rpc.Resolve(ctx, []rpc.Endpoint{loc}, "unicorn", "", rpc.DialConfig{})
			if err != nil {
				return err
			}
			own := r.Endpoints[0] // a host answers its own endpoints first
			conn, err := rpc.Dial(ctx, []rpc.Endpoint{own}, r.Graph, rpc.DialConfig{})
			if err != nil {
				return err
			}
			defer conn.Close()
			ch, err := conn.Call(ctx, "revision")
			if err != nil {
				return err
			}
			if _, err := ch.Get(ctx); err != nil {
				return err
			}
			c.unicorn = append(c.unicorn, own)
			c.graph = r.Graph
			return nil
		}); err != nil {
			return err
		}
	}
	return waitUntil(ctx, "every cocaine member to be a healthy voter", wait, c.Procs, func(ctx context.Context) error {
		conn, err := rpc.Service(ctx, c.locator[members-1:], "cluster", rpc.DialConfig{})
		if err != nil {
			return err
		}
		defer conn.Close()
		ch, err := conn.Call(ctx, "members")
		if err != nil {
			return err
		}
		a, err := ch.Get(ctx)
		if err != nil {
			return err
		}
		var list []any
		if err := a.Scan(&list); err != nil {
			return err
		}
		voters, leaders := 0, 0
		for _, m := range list {
			m, _ := m.(map[string]any)
			if m["voter"] == true && m["healthy"] == true {
				voters++
			}
			if m["leader"] == true {
				leaders++
			}
		}
		if voters != members || leaders != 1 {
			return fmt.Errorf("%d healthy voters and %d leaders of %d members", voters, leaders, members)
		}
		return nil
	})
}

// startEtcd starts etcd members on 127.0.0.1 with their own client and peer ports (etcd
// always fsyncs its WAL) and waits until each answers a linearizable read.
func (s Servers) startEtcd(ctx context.Context, c *Cluster, members int, wait time.Duration) error {
	ports, err := freePorts(2 * members)
	if err != nil {
		return err
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	for i := range members {
		data, err := mkdir(c.dir, "m"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		p, err := startProc(fmt.Sprintf("etcd member %d", i), filepath.Join(c.dir, fmt.Sprintf("m%d.log", i)), s.CPUs, nil, s.Etcd,
			"--name", "m"+strconv.Itoa(i), "--data-dir", data,
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(c.dir),
			"--logger", "zap", "--log-level", "warn")
		if err != nil {
			return err
		}
		c.Procs = append(c.Procs, p)
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
	}
	for i, ep := range c.Endpoints {
		if err := waitUntil(ctx, fmt.Sprintf("etcd member %d", i), wait, c.Procs, func(ctx context.Context) error {
			cl, err := dialEtcd(ep)
			if err != nil {
				return err
			}
			defer cl.Close()
			return cl.Get(ctx, "/health", Linearizable)
		}); err != nil {
			return err
		}
	}
	return nil
}

// startZooKeeper starts ZooKeeper servers (QuorumPeerMain) on 127.0.0.1 with forceSync=yes,
// no admin server and no per-IP connection limit, and waits until every server reports a
// mode (standalone, leader or follower) through the srvr four-letter word.
func (s Servers) startZooKeeper(ctx context.Context, c *Cluster, members int, wait time.Duration) error {
	ports, err := freePorts(3 * members)
	if err != nil {
		return err
	}
	var servers []string
	if members > 1 {
		for i := range members {
			servers = append(servers, fmt.Sprintf("server.%d=127.0.0.1:%d:%d", i+1, ports[3*i+1], ports[3*i+2]))
		}
	}
	for i := range members {
		dir, err := mkdir(c.dir, "m"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		data, err := mkdir(dir, "data")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(data, "myid"), []byte(strconv.Itoa(i+1)+"\n"), 0o644); err != nil {
			return err
		}
		cfg := strings.Join(append([]string{
			"tickTime=2000", "initLimit=10", "syncLimit=5",
			"dataDir=" + data,
			"clientPort=" + strconv.Itoa(ports[3*i]), "clientPortAddress=127.0.0.1",
			"forceSync=yes", "maxClientCnxns=0", "admin.enableServer=false",
			"4lw.commands.whitelist=srvr,ruok", "autopurge.purgeInterval=0",
		}, servers...), "\n") + "\n"
		cfgPath := filepath.Join(dir, "zoo.cfg")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return err
		}
		heap := s.ZKHeap
		if heap == "" {
			heap = "2g"
		}
		p, err := startProc(fmt.Sprintf("zookeeper member %d", i), filepath.Join(c.dir, fmt.Sprintf("m%d.log", i)), s.CPUs, nil, s.Java,
			"-Xmx"+heap, "-Dzookeeper.log.dir="+dir, "-Djava.net.preferIPv4Stack=true",
			"-cp", s.ZKClasspath, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfgPath)
		if err != nil {
			return err
		}
		c.Procs = append(c.Procs, p)
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("127.0.0.1:%d", ports[3*i]))
	}
	for i, ep := range c.Endpoints {
		if err := waitUntil(ctx, fmt.Sprintf("zookeeper member %d", i), wait, c.Procs, func(ctx context.Context) error {
			mode, err := zkMode(ctx, ep)
			if err != nil {
				return err
			}
			if mode == "" {
				return errors.New("no mode yet")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// zkMode asks a ZooKeeper server for its mode with the srvr four-letter word.
func zkMode(ctx context.Context, ep string) (string, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", ep)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return "", err
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(sc.Text(), "Mode: "); ok {
			return m, nil
		}
	}
	return "", sc.Err()
}
