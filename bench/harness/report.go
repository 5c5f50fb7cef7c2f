package harness

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

var systemOrder = []string{Cocaine, Etcd, ZooKeeper, "cocaine-rpc", "grpc-go", "runc"}

// Markdown renders rows as one table, rows of one workload and parameters side by side
// (by topology, then system), followed by the targets of issue 9 with their ratios.
func Markdown(rows []Result) string {
	first := map[string]int{}
	for i, r := range rows {
		if _, ok := first[r.ID]; !ok {
			first[r.ID] = i
		}
	}
	sorted := slices.Clone(rows)
	slices.SortStableFunc(sorted, func(a, b Result) int {
		return cmp.Or(
			cmp.Compare(first[a.ID], first[b.ID]),
			cmp.Compare(a.Workload, b.Workload),
			cmp.Compare(a.Topo, b.Topo),
			cmp.Compare(paramsKey(a.Params), paramsKey(b.Params)),
			cmp.Compare(slices.Index(systemOrder, a.System), slices.Index(systemOrder, b.System)),
		)
	})
	var sb strings.Builder
	sb.WriteString("| id | workload | params | system | topo | ops/s | p50 ms | p99 ms | max ms | errors | srv CPU % | srv RSS MB | notes |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range sorted {
		if r.Skipped != "" {
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | — | — | — | — | — | — | — | skipped: %s |\n", r.ID, r.Workload, esc(r.Params), r.System, r.Topo, esc(r.Skipped))
			continue
		}
		var notes []string
		if r.Missed != nil {
			notes = append(notes, fmt.Sprintf("missed %d, duplicated %d", *r.Missed, *r.Duplicated))
		}
		if r.ConflictRatio != nil {
			notes = append(notes, fmt.Sprintf("conflicts %.0f%%", 100**r.ConflictRatio))
		}
		if r.Coalesced != nil && *r.Coalesced > 0 {
			notes = append(notes, fmt.Sprintf("%d changes coalesced", *r.Coalesced))
		}
		if r.Note != "" {
			notes = append(notes, r.Note)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %.0f | %.0f | %s |\n",
			r.ID, r.Workload, esc(r.Params), r.System, r.Topo, num(r.OpsS), lat(r.P50), lat(r.P99), lat(r.Max),
			r.Errors, r.SrvCPUPct, float64(r.SrvRSSMax)/(1<<20), esc(strings.Join(notes, "; ")))
	}
	if t := Targets(rows); t != "" {
		sb.WriteString("\n" + t)
	}
	return sb.String()
}

// paramsKey orders parameter strings by their numbers' size (--clients=10 before 100).
func paramsKey(p string) string {
	var sb, num strings.Builder
	for _, c := range p + " " {
		if c >= '0' && c <= '9' {
			num.WriteRune(c)
			continue
		}
		if num.Len() > 0 {
			fmt.Fprintf(&sb, "%012s", num.String())
			num.Reset()
		}
		sb.WriteRune(c)
	}
	return sb.String()
}

func esc(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func num(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func lat(v float64) string {
	switch {
	case v == 0:
		return "—"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// find returns the measured row matching system, topo, id and a params prefix.
func find(rows []Result, system, topo, id, params string) (Result, bool) {
	for _, r := range rows {
		if r.System == system && r.Topo == topo && r.ID == id && strings.HasPrefix(r.Params, params) && r.Skipped == "" && r.OpsS+r.Max > 0 {
			return r, true
		}
	}
	return Result{}, false
}

// Targets renders issue 9's targets with the measured ratios, for the rows present.
func Targets(rows []Result) string {
	type line struct{ target, ours, theirs, ratio, verdict string }
	var lines []line
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**not met**"
	}
	higher := func(target, system, topo, id, params string, want float64, other string) {
		o, ok1 := find(rows, system, topo, id, params)
		t, ok2 := find(rows, other, topo, id, params)
		if !ok1 || !ok2 || t.OpsS == 0 {
			return
		}
		ratio := o.OpsS / t.OpsS
		lines = append(lines, line{target, fmt.Sprintf("%.0f/s", o.OpsS), fmt.Sprintf("%.0f/s", t.OpsS), fmt.Sprintf("%.2f×", ratio), verdict(ratio >= want)})
	}
	// Put throughput and gets on 3 members, every client count measured.
	for _, r := range rows {
		if r.System == Cocaine && r.Topo == "T3" && r.Skipped == "" {
			switch r.ID {
			case "W2":
				higher("T3 put throughput ≥ etcd ("+short(r.Params)+")", Cocaine, "T3", "W2", r.Params, 1, Etcd)
			case "W3":
				higher("T3 gets ≥ etcd ("+short(r.Params)+")", Cocaine, "T3", "W3", r.Params, 1, Etcd)
			case "W6":
				if t, ok := find(rows, Etcd, "T3", "W6", r.Params); ok && t.P99 > 0 {
					lines = append(lines, line{"T3 watch notify p99 ≤ etcd (" + short(r.Params) + ")", fmt.Sprintf("%.2f ms", r.P99), fmt.Sprintf("%.2f ms", t.P99), fmt.Sprintf("%.2f×", r.P99/t.P99), verdict(r.P99 <= t.P99)})
				}
			case "W8":
				if r.Missed != nil {
					lines = append(lines, line{"T3 resume: zero missed or duplicated events", fmt.Sprintf("missed %d, duplicated %d", *r.Missed, *r.Duplicated), etcdResume(rows), "—", verdict(*r.Missed == 0 && *r.Duplicated == 0)})
				}
			}
		}
	}
	for _, id := range []string{"R1", "R2"} {
		if o, ok := find(rows, "cocaine-rpc", "-", id, "--conns=1 --concurrency=100 "); ok {
			if g, ok := find(rows, "grpc-go", "-", id, "--conns=1 --concurrency=100 "); ok && g.OpsS > 0 {
				ratio := o.OpsS / g.OpsS
				what := map[string]string{"R1": "unary", "R2": "streaming"}[id]
				lines = append(lines, line{"RPC echo ≥ 2× gRPC-go " + what + " at 100 concurrent calls", fmt.Sprintf("%.0f/s", o.OpsS), fmt.Sprintf("%.0f/s", g.OpsS), fmt.Sprintf("%.2f×", ratio), verdict(ratio >= 2)})
			}
		}
	}
	if len(lines) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("| target (issue 9) | cocaine | etcd / gRPC-go | ratio | |\n|---|---|---|---|---|\n")
	for _, l := range lines {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", l.target, l.ours, l.theirs, l.ratio, l.verdict)
	}
	return sb.String()
}

func etcdResume(rows []Result) string {
	if r, ok := find(rows, Etcd, "T3", "W8", ""); ok && r.Missed != nil {
		return fmt.Sprintf("missed %d, duplicated %d", *r.Missed, *r.Duplicated)
	}
	return "—"
}

// short keeps the flags that tell rows of one workload apart.
func short(params string) string {
	var keep []string
	for _, f := range strings.Fields(params) {
		for _, k := range []string{"--conns=", "--clients=", "--consistency=", "--watchers="} {
			if strings.HasPrefix(f, k) {
				keep = append(keep, f)
			}
		}
	}
	return strings.Join(keep, " ")
}
