package locator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// proxies are the forwarding endpoints of proxy mode: one listener on this host per
// service that runs only on other hosts. Each accepted connection is forwarded, byte for
// byte (so every channel, both directions, headers included), to one of the hosts
// running the service, chosen by weight. A proxy closes when its service is gone from
// the cluster.
type proxies struct {
	host  string
	index *index
	log   *slog.Logger

	mu     sync.Mutex
	byName map[string]*proxy
	ctx    context.Context // set by run; nil until then, and proxies refuse to open
	wg     *sync.WaitGroup
}

type proxy struct {
	name string
	ln   net.Listener
	ep   rpc.Endpoint

	mu    sync.Mutex
	conns map[net.Conn]struct{} // open client and upstream connections, closed with the proxy
}

func newProxies(host string, x *index, log *slog.Logger) *proxies {
	return &proxies{host: host, index: x, log: log, byName: map[string]*proxy{}}
}

// run serves the proxies until ctx ends, closing those whose service vanished.
func (ps *proxies) run(ctx context.Context) {
	var wg sync.WaitGroup
	ps.mu.Lock()
	ps.ctx, ps.wg = ctx, &wg
	ps.mu.Unlock()
	for {
		ch := ps.index.watchChan()
		ps.reap()
		select {
		case <-ch:
		case <-ctx.Done():
			ps.mu.Lock()
			for name, p := range ps.byName {
				p.close()
				delete(ps.byName, name)
			}
			ps.mu.Unlock()
			wg.Wait()
			return
		}
	}
}

// reap closes the proxies of services no other host runs any more.
func (ps *proxies) reap() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for name, p := range ps.byName {
		if len(ps.index.lookup(name)) == 0 {
			p.close()
			delete(ps.byName, name)
		}
	}
}

var errProxyStopped = errors.New("locator: proxy mode is not running")

// endpoint returns the proxy endpoint of name, opening it if needed.
func (ps *proxies) endpoint(name string) (rpc.Endpoint, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.byName[name]; ok {
		return p.ep, nil
	}
	if ps.ctx == nil || ps.ctx.Err() != nil {
		return rpc.Endpoint{}, errProxyStopped
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ps.host, "0"))
	if err != nil {
		return rpc.Endpoint{}, fmt.Errorf("locator: proxy for %s: %w", name, err)
	}
	p := &proxy{name: name, ln: ln, ep: rpc.Endpoint{Host: ps.host, Port: uint16(ln.Addr().(*net.TCPAddr).Port)}, conns: map[net.Conn]struct{}{}}
	ps.byName[name] = p
	ctx, wg := ps.ctx, ps.wg
	wg.Go(func() { ps.accept(ctx, wg, p) })
	ps.log.Info("proxying a remote service", "service", name, "endpoint", p.ep.String())
	return p.ep, nil
}

func (ps *proxies) accept(ctx context.Context, wg *sync.WaitGroup, p *proxy) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(c) {
			c.Close()
			return
		}
		wg.Go(func() { ps.forward(ctx, p, c) })
	}
}

// forward connects c to one of the service's hosts and copies both ways until either
// side closes.
func (ps *proxies) forward(ctx context.Context, p *proxy, c net.Conn) {
	defer p.untrack(c)
	var up net.Conn
	for _, r := range weightedOrder(ps.index.lookup(p.name)) {
		for _, ep := range r.endpoints {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var d net.Dialer
			conn, err := d.DialContext(dctx, "tcp", ep.String())
			cancel()
			if err == nil {
				up = conn
				break
			}
		}
		if up != nil {
			break
		}
	}
	if up == nil || !p.track(up) {
		if up != nil {
			up.Close()
		}
		ps.log.Debug("no host of a proxied service answers", "service", p.name)
		return
	}
	defer p.untrack(up)
	var copies sync.WaitGroup
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite() // half-close: the other direction may still flow
		}
	}
	copies.Go(func() { cp(up, c) })
	copies.Go(func() { cp(c, up) })
	copies.Wait()
}

func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	if p.conns != nil {
		delete(p.conns, c)
	}
	p.mu.Unlock()
	c.Close()
}

// close stops the listener and cuts every connection through the proxy.
func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}
