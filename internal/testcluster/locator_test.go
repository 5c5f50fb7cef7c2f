package testcluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// publishOn registers service at host n's locator with the endpoint of an echo server
// the test runs; the registration lives as long as the returned connection.
func publishOn(t *testing.T, n *Node, service string) (rpc.Endpoint, *rpc.Conn) {
	t.Helper()
	ep := rpctest.Serve(t, rpctest.EchoDispatcher(), rpc.SessionConfig{})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := rpc.Dial(ctx, n.Locator(), rpc.LocatorGraph, rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Call(ctx, "publish", service, []rpc.Endpoint{ep}, []any{rpctest.EchoGraph.Version, rpctest.EchoGraph})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Get(ctx); err != nil {
		t.Fatalf("publish %s on %s: %v", service, n.Name, err)
	}
	return ep, conn
}

// resolveOn asks host n's locator for service.
func resolveOn(t *testing.T, n *Node, service string) ([]rpc.Endpoint, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	r, err := rpc.Resolve(ctx, n.Locator(), service, "", rpc.DialConfig{})
	if err != nil {
		return nil, err
	}
	return r.Endpoints, nil
}

// echoThrough calls ping on service, resolved through host n's locator.
func echoThrough(t *testing.T, n *Node, service string) error {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := rpc.Service(ctx, n.Locator(), service, rpc.DialConfig{})
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "ping", "hello")
	if err != nil {
		return err
	}
	a, err := ch.Get(ctx)
	if err != nil {
		return err
	}
	var s string
	if err := a.Scan(&s); err != nil || s != "hello" {
		return fmt.Errorf("ping answered %q (%v)", s, err)
	}
	return nil
}

// TestLocatorAcrossHosts: a service published on host 2 is resolved and called through
// host 1; with the same service on host 3 too, killing host 2 leaves only host 3 in the
// answers (within the lease TTL) and calls go there; host 1's own services come first.
func TestLocatorAcrossHosts(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.WaitLeader(t)
	h1, h2, h3 := c.Node(0), c.Node(1), c.Node(2)
	ep2, _ := publishOn(t, h2, "echo")
	Eventually(t, 10*time.Second, func() error {
		eps, err := resolveOn(t, h1, "echo")
		if err != nil {
			return err
		}
		if !slices.Equal(eps, []rpc.Endpoint{ep2}) {
			return fmt.Errorf("resolve on h1: %v, want %v", eps, ep2)
		}
		return nil
	})
	if err := echoThrough(t, h1, "echo"); err != nil {
		t.Fatal(err)
	}
	ep3, _ := publishOn(t, h3, "echo")
	Eventually(t, 10*time.Second, func() error {
		eps, err := resolveOn(t, h1, "echo")
		if err != nil {
			return err
		}
		if len(eps) != 2 || !slices.Contains(eps, ep2) || !slices.Contains(eps, ep3) {
			return fmt.Errorf("resolve on h1: %v, want both hosts", eps)
		}
		return nil
	})
	// cluster() lists the two other hosts from h1.
	loc := h1.Dial(t, "locator")
	a, err := ucall(t.Context(), loc, 5*time.Second, "cluster")
	if err != nil {
		t.Fatal(err)
	}
	var hosts map[string]any
	if err := a.Scan(&hosts); err != nil || len(hosts) != 2 {
		t.Fatalf("cluster() on h1 = %v (%v), want two hosts", hosts, err)
	}

	start := time.Now()
	h2.Kill()
	Eventually(t, 20*time.Second, func() error {
		eps, err := resolveOn(t, h1, "echo")
		if err != nil {
			return err
		}
		if !slices.Equal(eps, []rpc.Endpoint{ep3}) {
			return fmt.Errorf("resolve on h1 after h2 died: %v, want only %v", eps, ep3)
		}
		return nil
	})
	t.Logf("h2 left resolve %s after its death (host lease TTL 2s)", time.Since(start).Round(10*time.Millisecond))
	if err := echoThrough(t, h1, "echo"); err != nil {
		t.Fatal(err)
	}

	// Local first: with echo on h1 as well, h1 answers its own endpoint first.
	ep1, _ := publishOn(t, h1, "echo")
	Eventually(t, 10*time.Second, func() error {
		eps, err := resolveOn(t, h1, "echo")
		if err != nil {
			return err
		}
		if len(eps) != 2 || eps[0] != ep1 {
			return fmt.Errorf("resolve on h1: %v, want %v first", eps, ep1)
		}
		return nil
	})

	// h2 comes back: its services are announced again (it re-publishes nothing: its
	// publish channel died with it), and it resolves the others.
	h2.Restart()
	Eventually(t, 20*time.Second, func() error {
		eps, err := resolveOn(t, h2, "echo")
		if err != nil {
			return err
		}
		if len(eps) != 2 {
			return fmt.Errorf("resolve on the restarted h2: %v, want h1's and h3's", eps)
		}
		return nil
	})
}

// TestLocatorPartitionHeals: a host cut off from the others vanishes from their
// answers once its lease expires and comes back when the partition heals.
func TestLocatorPartitionHeals(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	ld := c.WaitLeader(t)
	var victim *Node
	for _, n := range c.Nodes() {
		if n != ld {
			victim = n
			break
		}
	}
	ep, _ := publishOn(t, victim, "svc")
	Eventually(t, 10*time.Second, func() error {
		eps, err := resolveOn(t, ld, "svc")
		if err != nil || !slices.Equal(eps, []rpc.Endpoint{ep}) {
			return fmt.Errorf("resolve on the leader: %v %v", eps, err)
		}
		return nil
	})
	c.Net.Isolate(victim.Name)
	Eventually(t, 20*time.Second, func() error {
		if eps, err := resolveOn(t, ld, "svc"); err == nil {
			return fmt.Errorf("the cut-off host's service still resolves: %v", eps)
		}
		return nil
	})
	c.Net.Heal()
	Eventually(t, 30*time.Second, func() error {
		eps, err := resolveOn(t, ld, "svc")
		if err != nil || !slices.Equal(eps, []rpc.Endpoint{ep}) {
			return fmt.Errorf("after the heal: %v %v", eps, err)
		}
		return nil
	})
}

// TestLocatorProxyMode: a host in proxy mode answers a service of another host with an
// endpoint of its own that forwards the connection.
func TestLocatorProxyMode(t *testing.T) {
	c := New(t, Options{Nodes: 2, Configure: func(i int, cfg *daemon.Config) {
		cfg.Locator.Proxy = i == 0
	}})
	c.WaitLeader(t)
	ep, _ := publishOn(t, c.Node(1), "far")
	Eventually(t, 10*time.Second, func() error {
		eps, err := resolveOn(t, c.Node(0), "far")
		if err != nil {
			return err
		}
		if len(eps) != 1 || eps[0] == ep || eps[0].Host != c.Node(0).IP {
			return fmt.Errorf("resolve through the proxying host: %v, want an endpoint of %s", eps, c.Node(0).IP)
		}
		return nil
	})
	if err := echoThrough(t, c.Node(0), "far"); err != nil {
		t.Fatal(err)
	}
	// Streams go both ways through the proxy.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := rpc.Service(ctx, c.Node(0).Locator(), "far", rpc.DialConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Call(ctx, "stream")
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []string{"a", "b"} {
		if err := ch.Write(chunk); err != nil {
			t.Fatal(err)
		}
		m, err := ch.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := m.Args.Scan(&got); err != nil || got != chunk {
			t.Fatalf("stream echo %q (%v), want %q", got, err, chunk)
		}
	}
}

// TestRoutingGroupsAcrossHosts: a routing group written through one host's storage, as
// cocaine-tool group does, reaches another host's routing stream without a refresh, and
// resolves there.
func TestRoutingGroupsAcrossHosts(t *testing.T) {
	c := New(t, Options{Nodes: 3, Configure: func(i int, cfg *daemon.Config) {
		cfg.Locator.GroupRefresh = daemon.Duration(200 * time.Millisecond)
	}})
	c.WaitLeader(t)
	ep, _ := publishOn(t, c.Node(1), "echo-v2")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	loc := c.Node(2).Dial(t, "locator")
	router, err := loc.Call(ctx, "routing", "test-router")
	if err != nil {
		t.Fatal(err)
	}
	first, err := router.Recv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var dump map[string]any
	if err := first.Args.Scan(&dump); err != nil || len(dump) != 0 {
		t.Fatalf("first dump %v (%v), want no group", dump, err)
	}
	group, _ := rpc.Marshal(map[string]any{"echo-v2": uint64(1)})
	st := c.Node(0).Dial(t, "storage")
	if _, err := ucall(ctx, st, 10*time.Second, "write", "groups", "echo", group, []string{"group", "active"}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := router.Recv(ctx)
		if err != nil {
			t.Fatalf("no dump with the new group: %v", err)
		}
		if err := m.Args.Scan(&dump); err != nil {
			t.Fatal(err)
		}
		if _, ok := dump["echo"]; ok {
			break
		}
	}
	Eventually(t, 10*time.Second, func() error {
		eps, err := resolveOn(t, c.Node(2), "echo")
		if err != nil || !slices.Equal(eps, []rpc.Endpoint{ep}) {
			return fmt.Errorf("resolve of the group on h2: %v %v", eps, err)
		}
		return nil
	})
}
