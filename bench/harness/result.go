package harness

import (
	"slices"
	"time"
)

// Result is one row: one workload against one system in one topology. It is written as
// one JSON line; latencies are in milliseconds, srv_* are summed (CPU, disk) or the
// largest (RSS) over the system's server processes during the workload, from /proc.
type Result struct {
	ID       string  `json:"id"`       // W1..W9, R1.., A1.. (peers.md §3.2)
	System   string  `json:"system"`   // cocaine, etcd, zookeeper, cocaine-rpc, grpc-go, runc
	Topo     string  `json:"topo"`     // T1, T3, or "-" for the micro-benchmarks
	Workload string  `json:"workload"` // after etcd's benchmark tool: put, range, watch-latency, ...
	Params   string  `json:"params"`   // the workload's flags
	Ops      int64   `json:"ops"`
	Secs     float64 `json:"secs"`
	OpsS     float64 `json:"ops_s"`
	P50      float64 `json:"p50"`
	P90      float64 `json:"p90"`
	P99      float64 `json:"p99"`
	P999     float64 `json:"p999"`
	Max      float64 `json:"max"`
	Errors   int64   `json:"errors"`

	SrvCPUPct         float64 `json:"srv_cpu_pct"` // 100 = one core busy for the whole run
	SrvRSSMax         int64   `json:"srv_rss_max"` // bytes: the largest member's peak RSS
	SrvDiskWriteBytes int64   `json:"srv_disk_write_bytes"`

	// Watch resume (W8): events of the disconnected period never delivered, and events
	// delivered twice or from before the disconnect.
	Missed     *int64 `json:"missed,omitempty"`
	Duplicated *int64 `json:"duplicated,omitempty"`
	// Contended CAS (W5): failed attempts / all attempts. Watch latency (W6): changes
	// coalesced into a later notification.
	ConflictRatio *float64 `json:"conflict_ratio,omitempty"`
	Coalesced     *int64   `json:"coalesced,omitempty"`

	Note    string `json:"note,omitempty"`
	Skipped string `json:"skipped,omitempty"` // why the row was not measured
}

func ptr[T any](v T) *T { return &v }

// setLatency fills the latency fields from samples (which it sorts).
func (r *Result) setLatency(samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(p float64) float64 {
		i := min(len(samples)-1, int(float64(len(samples))*p))
		return ms(samples[i])
	}
	r.P50, r.P90, r.P99, r.P999 = at(0.50), at(0.90), at(0.99), at(0.999)
	r.Max = ms(samples[len(samples)-1])
}

// setRate sets Ops, Secs and OpsS.
func (r *Result) setRate(ops int64, elapsed time.Duration) {
	r.Ops, r.Secs = ops, elapsed.Seconds()
	if elapsed > 0 {
		r.OpsS = float64(ops) / elapsed.Seconds()
	}
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// serverMeter measures a set of server processes over one workload.
type serverMeter struct {
	procs  []*Proc
	start  time.Time
	before []procStats
}

// meter resets the processes' peak RSS and records their CPU and disk counters.
func meter(procs []*Proc) *serverMeter {
	m := &serverMeter{procs: procs, start: time.Now(), before: make([]procStats, len(procs))}
	for i, p := range procs {
		resetPeakRSS(p.Pid())
		m.before[i], _ = readStats(p.Pid())
	}
	return m
}

// fill sets r's srv_* fields from the processes' counters since meter.
func (m *serverMeter) fill(r *Result) {
	el := time.Since(m.start)
	var cpu time.Duration
	for i, p := range m.procs {
		s, err := readStats(p.Pid())
		if err != nil {
			continue
		}
		cpu += s.cpu - m.before[i].cpu
		r.SrvDiskWriteBytes += s.writeBytes - m.before[i].writeBytes
		if rss, err := readPeakRSS(p.Pid()); err == nil {
			r.SrvRSSMax = max(r.SrvRSSMax, rss)
		}
	}
	if el > 0 {
		r.SrvCPUPct = 100 * cpu.Seconds() / el.Seconds()
	}
}
