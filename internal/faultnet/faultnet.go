// Package faultnet is a fault-injecting network for tests: the connections hosts open to
// each other go through it (the raft Config.Dial hook), and a test cuts links, delays
// them or makes them drop, between named hosts. Faults apply to new connections and to
// the ones already open: a partition closes every connection across it at once, so no
// read blocks past it.
//
//	n := faultnet.New()
//	n.Register("h1", "127.0.0.1:4001") // which host owns which listening address
//	cfg.Dial = n.Dialer("h1")          // connections h1 opens
//	n.Partition([]string{"h1"}, []string{"h2", "h3"})
//	n.Heal()
//
// Only the side that dials is wrapped; it enforces the link's faults for both
// directions of the connection.
package faultnet

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// ErrPartitioned is what a dial or an I/O across a cut link fails with.
var ErrPartitioned = errors.New("faultnet: link cut")

// Network holds the hosts, their links' faults and the open connections.
type Network struct {
	mu    sync.Mutex
	owner map[string]string // listening address → host
	links map[link]fault
	conns map[*conn]struct{}
}

type link struct{ a, b string } // a < b

func mkLink(a, b string) link {
	if b < a {
		a, b = b, a
	}
	return link{a, b}
}

type fault struct {
	cut   bool
	delay time.Duration
	drop  float64 // probability that one write fails and closes the connection
}

// New returns a network with no faults.
func New() *Network {
	return &Network{owner: map[string]string{}, links: map[link]fault{}, conns: map[*conn]struct{}{}}
}

// Register says host listens on addr. Connections to unregistered addresses never fail.
func (n *Network) Register(host, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.owner[addr] = host
}

// Dialer returns the dial function of host.
func (n *Network) Dialer(host string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		to := n.owner[addr]
		f := n.links[mkLink(host, to)]
		n.mu.Unlock()
		if to != "" && f.cut {
			return nil, fmt.Errorf("dial %s (%s → %s): %w", addr, host, to, ErrPartitioned)
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || to == "" {
			return c, err
		}
		fc := &conn{Conn: c, n: n, l: mkLink(host, to)}
		n.mu.Lock()
		if n.links[fc.l].cut { // cut while we dialled
			n.mu.Unlock()
			c.Close()
			return nil, fmt.Errorf("dial %s (%s → %s): %w", addr, host, to, ErrPartitioned)
		}
		n.conns[fc] = struct{}{}
		n.mu.Unlock()
		return fc, nil
	}
}

// Partition cuts every link between a host of a and a host of b.
func (n *Network) Partition(a, b []string) {
	n.mu.Lock()
	for _, x := range a {
		for _, y := range b {
			if x == y {
				continue
			}
			l := mkLink(x, y)
			f := n.links[l]
			f.cut = true
			n.links[l] = f
		}
	}
	victims := n.victimsLocked()
	n.mu.Unlock()
	for _, c := range victims {
		c.Conn.Close()
	}
}

// Isolate cuts host from every other registered host.
func (n *Network) Isolate(host string) {
	n.mu.Lock()
	var others []string
	seen := map[string]bool{host: true}
	for _, h := range n.owner {
		if !seen[h] {
			seen[h] = true
			others = append(others, h)
		}
	}
	n.mu.Unlock()
	n.Partition([]string{host}, others)
}

// victimsLocked returns (and forgets) the open connections over cut links.
func (n *Network) victimsLocked() []*conn {
	var out []*conn
	for c := range n.conns {
		if n.links[c.l].cut {
			out = append(out, c)
			delete(n.conns, c)
		}
	}
	return out
}

// Delay makes every write between a and b wait d first.
func (n *Network) Delay(a, b string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := mkLink(a, b)
	f := n.links[l]
	f.delay = d
	n.links[l] = f
}

// Drop makes each write between a and b fail with probability p, closing its
// connection (TCP does not lose single messages; the peer sees a reset).
func (n *Network) Drop(a, b string, p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := mkLink(a, b)
	f := n.links[l]
	f.drop = p
	n.links[l] = f
}

// Reconnect removes every fault of host's links.
func (n *Network) Reconnect(host string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.links {
		if l.a == host || l.b == host {
			delete(n.links, l)
		}
	}
}

// Heal removes every fault.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.links)
}

func (n *Network) fault(l link) fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[l]
}

func (n *Network) forget(c *conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.conns, c)
}

// conn is a connection a host dialled to another registered host.
type conn struct {
	net.Conn
	n *Network
	l link
}

func (c *conn) Read(p []byte) (int, error) {
	if c.n.fault(c.l).cut {
		c.Close()
		return 0, ErrPartitioned
	}
	k, err := c.Conn.Read(p)
	if err != nil && c.n.fault(c.l).cut {
		return k, ErrPartitioned
	}
	return k, err
}

func (c *conn) Write(p []byte) (int, error) {
	f := c.n.fault(c.l)
	if f.cut {
		c.Close()
		return 0, ErrPartitioned
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	if f.drop > 0 && rand.Float64() < f.drop {
		c.Close()
		return 0, fmt.Errorf("faultnet: dropped (%s ↔ %s)", c.l.a, c.l.b)
	}
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.n.forget(c)
	return c.Conn.Close()
}
