package harness

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestValueRoundTrip(t *testing.T) {
	for _, n := range []int64{0, 1, 42, 99999} {
		v := value(n, 32)
		if len(v) != 32 {
			t.Errorf("value(%d) has %d bytes", n, len(v))
		}
		if got, ok := valueSeq(v); !ok || got != n {
			t.Errorf("valueSeq(value(%d)) = %d, %v", n, got, ok)
		}
	}
	if _, ok := valueSeq([]byte("owned")); ok {
		t.Error("valueSeq accepted a non-number")
	}
}

func TestKeySize(t *testing.T) {
	p := Profile{KeySize: 8, KeySpace: 3}
	for i, want := range []string{"/kv/0000", "/kv/0001", "/kv/0002", "/kv/0000"} {
		if got := p.key(i); got != want {
			t.Errorf("key(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestSetLatency(t *testing.T) {
	var r Result
	var s []time.Duration
	for i := 100; i >= 1; i-- {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	r.setLatency(s)
	if r.P50 != 51 || r.P99 != 100 || r.Max != 100 || r.P90 != 91 {
		t.Errorf("percentiles of 1..100 ms: %+v", r)
	}
	r.setRate(200, 2*time.Second)
	if r.OpsS != 100 {
		t.Errorf("ops/s = %v", r.OpsS)
	}
}

func TestParamsKey(t *testing.T) {
	if !(paramsKey("--clients=10 --total=5") < paramsKey("--clients=100 --total=5")) {
		t.Error("10 clients must sort before 100")
	}
}

func TestReadOwnStats(t *testing.T) {
	pid := os.Getpid()
	if _, err := readStats(pid); err != nil {
		t.Fatal(err)
	}
	rss, err := readPeakRSS(pid)
	if err != nil || rss <= 0 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
}

func TestMarkdownTargets(t *testing.T) {
	put := "--conns=10 --clients=100 --total=100"
	rows := []Result{
		{ID: "W2", System: Cocaine, Topo: "T3", Workload: "put", Params: put, OpsS: 3000, Max: 9},
		{ID: "W2", System: Etcd, Topo: "T3", Workload: "put", Params: put, OpsS: 2000, Max: 9},
		{ID: "W8", System: Cocaine, Topo: "T3", Workload: "watch-resume", Missed: ptr(int64(0)), Duplicated: ptr(int64(0)), Max: 1},
		{ID: "R1", System: "cocaine-rpc", Topo: "-", Params: "--conns=1 --concurrency=100 --total=5", OpsS: 100, Max: 1},
		{ID: "R1", System: "grpc-go", Topo: "-", Params: "--conns=1 --concurrency=100 --total=5", OpsS: 60, Max: 1},
		{ID: "W*", System: ZooKeeper, Topo: "T1", Workload: "all", Skipped: "java not found"},
	}
	md := Markdown(rows)
	for _, want := range []string{
		"| T3 put throughput ≥ etcd (--conns=10 --clients=100) | 3000/s | 2000/s | 1.50× | met |",
		"| T3 resume: zero missed or duplicated events | missed 0, duplicated 0 | — | — | met |",
		"| RPC echo ≥ 2× gRPC-go unary at 100 concurrent calls | 100/s | 60/s | 1.67× | **not met** |",
		"skipped: java not found",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
