package raft

import (
	"bytes"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchCluster is a 3-voter cluster with the daemon's default timeouts.
func benchCluster(b *testing.B) []*testNode {
	var nodes []*testNode
	for i := range 3 {
		cfg := DefaultConfig()
		cfg.ID = fmt.Sprintf("b%d", i)
		cfg.Dir = b.TempDir()
		cfg.Bind = "127.0.0.1:0"
		cfg.Bootstrap = i == 0
		cfg.LeaveOnShutdown = false
		tn := startB(b, cfg)
		nodes = append(nodes, tn)
		if i > 0 {
			deadline := time.Now().Add(20 * time.Second)
			for {
				err := nodes[0].n.Join(b.Context(), cfg.ID, tn.n.Addr())
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return nodes
}

// BenchmarkPropose measures committed proposals of 256-byte values through the leader of
// a 3-voter cluster (fsync on), for several numbers of concurrent clients. ns/op is per
// proposal; puts/s is the throughput.
func BenchmarkPropose(b *testing.B) {
	for _, via := range []string{"leader", "follower"} {
		for _, clients := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("%s/clients=%d", via, clients), func(b *testing.B) { benchPropose(b, via == "follower", clients) })
		}
	}
}

func benchPropose(b *testing.B, viaFollower bool, clients int) {
	{
		{
			nodes := benchCluster(b)
			var leader *testNode
			for leader == nil {
				for _, tn := range nodes {
					if ok, _ := tn.n.Leadership(); ok {
						leader = tn
					}
				}
				time.Sleep(10 * time.Millisecond)
			}
			target := leader
			if viaFollower {
				for _, tn := range nodes {
					if tn != leader {
						target = tn
					}
				}
			}
			val := bytes.Repeat([]byte("v"), 256)
			var next atomic.Int64
			lat := make([]time.Duration, b.N)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						t0 := time.Now()
						cmd := append(fmt.Appendf(nil, "set k%d ", i%1000), val...)
						if _, err := target.n.Propose(b.Context(), cmd); err != nil {
							b.Error(err)
							return
						}
						lat[i] = time.Since(t0)
					}
				})
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(b.N)/el.Seconds(), "puts/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		}
	}
}

func startB(b *testing.B, cfg Config) *testNode {
	tn := &testNode{cfg: cfg, kv: newKV()}
	n, err := New(cfg, tn.kv, nil)
	if err != nil {
		b.Fatal(err)
	}
	tn.n = n
	done := make(chan error, 1) // Run's result
	ctx, cancel := contextWithCancel()
	go func() { done <- n.Run(ctx) }()
	<-n.Started()
	b.Cleanup(func() { cancel(); <-done })
	return tn
}
