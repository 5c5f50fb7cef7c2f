package locator

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// BenchmarkResolveCluster: resolve through the wire on one host that knows 1,000
// registrations: 100 services on each of 10 simulated hosts (every name on every host,
// so each answer merges 10 hosts' endpoints by weight). One client at a time gives the
// latency, 64 concurrent calls on 4 connections the throughput.
//
//	go test ./locator -run '^$' -bench ResolveCluster -benchtime 20000x
func BenchmarkResolveCluster(b *testing.B) {
	store := newMemStore()
	reg := NewRegistry()
	s, err := New(Config{UUID: "self"}, reg, nil, nil, WithCluster(store, func() []rpc.Endpoint { return nil }))
	if err != nil {
		b.Fatal(err)
	}
	var nodes []ClusterNode
	for h := range 10 {
		for svc := range 100 {
			e := &Entry{Name: fmt.Sprintf("svc%d", svc), Version: 1, Graph: graph, Weight: uint32(1 + h)}
			e.graphRaw, _ = graph.AppendMsgpack(nil)
			eps := []rpc.Endpoint{{Host: fmt.Sprintf("10.0.%d.1", h), Port: uint16(2000 + svc)}}
			path := fmt.Sprintf("%s/%s/%s/host%d", DefaultPrefix, servicesDir, e.Name, h)
			nodes = append(nodes, ClusterNode{Path: path, Value: encodeAnnounce(e, eps)})
		}
	}
	s.index.apply(ClusterEvent{Sync: true, Nodes: nodes}, func(p string, err error) { b.Fatal(p, err) })
	if n := len(s.index.lookup("svc42")); n != 10 {
		b.Fatalf("index has %d hosts for svc42", n)
	}
	ep := rpctest.Serve(b, s.Dispatcher(), rpc.SessionConfig{})
	conns := make([]*rpc.Conn, 4)
	for i := range conns {
		c, err := rpc.Dial(b.Context(), []rpc.Endpoint{ep}, rpc.LocatorGraph, rpc.DialConfig{})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			total := max(b.N, 5000)
			lat := make([]time.Duration, total)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := range clients {
				wg.Go(func() {
					conn := conns[c%len(conns)]
					for {
						i := next.Add(1) - 1
						if i >= int64(total) {
							return
						}
						t0 := time.Now()
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						r, err := rpc.ResolveOn(ctx, conn, fmt.Sprintf("svc%d", i%100), "")
						cancel()
						if err != nil || len(r.Endpoints) != 10 {
							b.Errorf("resolve: %v (%d endpoints)", err, len(r.Endpoints))
							return
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(total)/el.Seconds(), "resolves/s")
			b.ReportMetric(float64(lat[total/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[total*99/100].Microseconds()), "p99-µs")
		})
	}
}
