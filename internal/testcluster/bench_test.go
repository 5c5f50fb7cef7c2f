package testcluster

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocaine/cocaine/internal/daemon"
	"github.com/cocaine/cocaine/rpc"
)

// The benchmarks run a 3-host cluster in this process (the daemon's default Raft
// timeouts, fsync on) and talk to it through the wire, as clients would. Clients and
// the three hosts share the machine's cores, so the figures are lower bounds.
//
//	go test ./internal/testcluster -run '^$' -bench . -benchtime 1x

func benchCluster(b *testing.B) *Cluster {
	c := New(b, Options{Nodes: 3, Configure: func(i int, cfg *daemon.Config) {
		cfg.Raft.HeartbeatTimeout = daemon.Duration(time.Second)
		cfg.Raft.ElectionTimeout = daemon.Duration(time.Second)
		cfg.Raft.LeaderLeaseTimeout = daemon.Duration(500 * time.Millisecond)
	}})
	c.WaitLeader(b)
	return c
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

func reportLatency(b *testing.B, lat []time.Duration) {
	b.ReportMetric(float64(percentile(lat, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(lat, 0.99).Microseconds()), "p99-µs")
}

// unicornConns opens n connections to the unicorn services of the cluster's hosts,
// round robin.
func unicornConns(b *testing.B, c *Cluster, n int) []*rpc.Conn {
	conns := make([]*rpc.Conn, n)
	for i := range conns {
		conns[i] = c.Node(i%len(c.Nodes())).Dial(b, "unicorn")
	}
	return conns
}

// BenchmarkUnicornPut: concurrent CAS puts of 256-byte values, each client on its own
// key, through connections spread over the three hosts (followers forward to the
// leader). The target is ≥ 10,000 puts/s.
func BenchmarkUnicornPut(b *testing.B) {
	for _, clients := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := benchCluster(b)
			conns := unicornConns(b, c, min(clients, 12))
			val := strings.Repeat("v", 256)
			for i := range clients {
				if _, err := ucall(b.Context(), conns[i%len(conns)], 10*time.Second, "create", fmt.Sprintf("/bench/put/%d", i), val); err != nil {
					b.Fatal(err)
				}
			}
			total := max(b.N, 2000, 100*clients)
			var next atomic.Int64
			lat := make([]time.Duration, total)
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for i := range clients {
				wg.Go(func() {
					conn := conns[i%len(conns)]
					key := fmt.Sprintf("/bench/put/%d", i)
					var version int64
					for {
						n := next.Add(1) - 1
						if n >= int64(total) {
							return
						}
						t0 := time.Now()
						a, err := ucall(b.Context(), conn, 30*time.Second, "put", key, val, version)
						if err != nil {
							b.Error(err)
							return
						}
						lat[n] = time.Since(t0)
						var ok bool
						var pair []any
						if err := a.Scan(&ok, &pair); err != nil || !ok {
							b.Errorf("put: ok=%v %v", ok, err)
							return
						}
						version++
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(total)/el.Seconds(), "puts/s")
			reportLatency(b, lat)
		})
	}
}

// BenchmarkUnicornGet: gets of one 256-byte value on a follower, one at a time (latency)
// and 64 at once (throughput), at each consistency level.
func BenchmarkUnicornGet(b *testing.B) {
	c := benchCluster(b)
	ld := c.WaitLeader(b)
	var follower *Node
	for _, n := range c.Nodes() {
		if n != ld {
			follower = n
		}
	}
	setup := follower.Dial(b, "unicorn")
	if _, err := ucall(b.Context(), setup, 10*time.Second, "create", "/bench/get", strings.Repeat("v", 256)); err != nil {
		b.Fatal(err)
	}
	conns := make([]*rpc.Conn, 4)
	for i := range conns {
		conns[i] = follower.Dial(b, "unicorn")
	}
	for _, level := range []string{"serializable", "default", "linearizable"} {
		for _, clients := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/clients=%d", level, clients), func(b *testing.B) {
				total := max(b.N, 2000)
				var next atomic.Int64
				lat := make([]time.Duration, total)
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for i := range clients {
					wg.Go(func() {
						conn := conns[i%len(conns)]
						for {
							n := next.Add(1) - 1
							if n >= int64(total) {
								return
							}
							t0 := time.Now()
							if _, err := ucall(b.Context(), conn, 30*time.Second, "get", "/bench/get", level); err != nil {
								b.Error(err)
								return
							}
							lat[n] = time.Since(t0)
						}
					})
				}
				wg.Wait()
				el := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(total)/el.Seconds(), "gets/s")
				reportLatency(b, lat)
			})
		}
	}
}

// BenchmarkUnicornWatchNotify: 1,000 subscribers of one key, spread over the three
// hosts; each put's latency is measured from the put to every subscriber's update.
// Also reports the heap one subscription takes, client and server side together (they
// share the process): the client's channel and reader goroutine, the server's channel,
// watcher and pump goroutine.
func BenchmarkUnicornWatchNotify(b *testing.B) {
	const subs = 1000
	c := benchCluster(b)
	conns := unicornConns(b, c, 12)
	if _, err := ucall(b.Context(), conns[0], 10*time.Second, "create", "/bench/watched", int64(0)); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	type delivery struct {
		version int64
		at      time.Time
	}
	got := make([]chan delivery, subs)
	var ready sync.WaitGroup
	var wg sync.WaitGroup
	for i := range subs {
		// The benchmark waits for every subscriber after each put, so one update per
		// subscriber is in flight at a time; a few slots keep the reader from blocking.
		got[i] = make(chan delivery, 4)
		ready.Add(1)
		ch, err := conns[i%len(conns)].Call(ctx, "subscribe", "/bench/watched")
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			first := true
			for {
				m, err := ch.Recv(ctx)
				if err != nil || m.Err() != nil {
					return
				}
				at := time.Now()
				var pair []any
				if err := m.Args.Scan(&pair); err != nil {
					return
				}
				_, ver, _ := versioned(pair)
				if first {
					first = false
					ready.Done()
					continue
				}
				got[i] <- delivery{ver, at}
			}
		})
	}
	ready.Wait()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perSub := (float64(after.HeapInuse) - float64(before.HeapInuse)) / subs

	puts := max(b.N, 50)
	var lat []time.Duration
	b.ResetTimer()
	for n := range puts {
		t0 := time.Now()
		if _, err := ucall(b.Context(), conns[n%len(conns)], 10*time.Second, "put", "/bench/watched", int64(n+1), int64(n)); err != nil {
			b.Fatal(err)
		}
		for i := range subs {
			for {
				d := <-got[i]
				if d.version == int64(n+1) {
					lat = append(lat, d.at.Sub(t0))
					break
				}
			}
		}
	}
	b.StopTimer()
	reportLatency(b, lat)
	b.ReportMetric(perSub, "heap-B/sub")
	cancel()
	wg.Wait()
}
