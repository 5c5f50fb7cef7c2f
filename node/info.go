package node

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Info flags of node.info (plugins.md §2.5).
const (
	InfoBrief          = 0
	InfoOverseerReport = 1
	InfoExpandManifest = 2
	InfoExpandProfile  = 4
)

// stats are the engine's counters, meters and a window of recent request times.
type stats struct {
	accepted, rejected, spawned, crashed uint64
	// times is a ring of the last completed requests' durations, for the percentiles.
	times [1024]time.Duration
	n     int

	ticked     uint64     // accepted at the last tick
	rates      [3]float64 // events/s, exponentially weighted over 1, 5 and 15 minutes
	depthAvg   float64    // queue depth, exponentially weighted over a minute
	ratesReady bool
}

// tickEvery is how often the meters are updated, as the original's meters (5 s).
const tickEvery = 5 * time.Second

// tick updates the meters with the events accepted since the last tick and the queue
// depth now.
func (s *stats) tick(depth int) {
	instant := float64(s.accepted-s.ticked) / tickEvery.Seconds()
	s.ticked = s.accepted
	for i, minutes := range []float64{1, 5, 15} {
		alpha := 1 - math.Exp(-tickEvery.Seconds()/60/minutes)
		if !s.ratesReady {
			s.rates[i] = instant
		} else {
			s.rates[i] += alpha * (instant - s.rates[i])
		}
	}
	alpha := 1 - math.Exp(-tickEvery.Seconds()/60)
	s.depthAvg += alpha * (float64(depth) - s.depthAvg)
	s.ratesReady = true
}

// reversed reports, for each threshold, the percentage of recent requests faster than it.
func (s *stats) reversed() map[string]any {
	n := min(s.n, len(s.times))
	out := map[string]any{}
	for _, ms := range []int{1, 2, 5, 10, 20, 50, 100, 500, 1000} {
		faster := 0
		for _, d := range s.times[:n] {
			if d < time.Duration(ms)*time.Millisecond {
				faster++
			}
		}
		pct := 0.0
		if n > 0 {
			pct = math.Round(float64(faster)/float64(n)*10000) / 100
		}
		out[fmt.Sprintf("%dms", ms)] = pct
	}
	return out
}

func (s *stats) observe(d time.Duration) {
	s.times[s.n%len(s.times)] = d
	s.n++
}

// percentiles returns the request time percentiles the original reports, in ms.
func (s *stats) percentiles() map[string]any {
	n := min(s.n, len(s.times))
	out := map[string]any{}
	if n == 0 {
		return out
	}
	ts := append([]time.Duration(nil), s.times[:n]...)
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	for _, p := range []float64{50, 75, 90, 95, 98, 99, 99.95} {
		i := min(int(math.Ceil(p/100*float64(n)))-1, n-1)
		out[fmt.Sprintf("%.2f%%", p)] = float64(ts[max(i, 0)].Microseconds()) / 1000
	}
	return out
}

// report builds the overseer report (plugins.md §2.15). It runs on the loop.
func (e *engine) report(flags uint32) map[string]any {
	now := e.now()
	slaves := map[string]any{}
	active, load := 0, 0
	for _, w := range e.workers {
		if w.state == stateActive && w.load > 0 {
			active++
		}
		load += w.load
		oldest := time.Duration(0)
		for r := range w.channels {
			oldest = max(oldest, now.Sub(r.birth))
		}
		slaves[w.uuid] = map[string]any{
			"accepted":           w.accepted,
			"load:tx":            w.load,
			"load:rx":            w.load,
			"load:total":         w.load,
			"state":              w.state.String(),
			"uptime":             int64(now.Sub(w.born).Seconds()),
			"oldest_channel_age": oldest.Milliseconds(),
			"profile":            e.profileInfo(flags),
		}
	}
	oldest := int64(0)
	if len(e.queue) > 0 {
		oldest = now.Sub(e.queue[0].birth).Milliseconds()
	}
	out := map[string]any{
		"uptime":   int64(now.Sub(e.born).Seconds()),
		"requests": map[string]any{"accepted": e.stats.accepted, "rejected": e.stats.rejected},
		"queue": map[string]any{
			"capacity": e.profile.QueueLimit, "depth": len(e.queue), "oldest_event_age": oldest,
			"depth_average": math.Round(e.stats.depthAvg*1000) / 1000,
		},
		"rate":             []any{e.stats.rates[0], e.stats.rates[1], e.stats.rates[2]},
		"rate_mean":        float64(e.stats.accepted) / max(now.Sub(e.born).Seconds(), 1e-3),
		"timings":          e.stats.percentiles(),
		"timings_reversed": e.stats.reversed(),
		"load":             load,
		"pool": map[string]any{
			"active":        active,
			"idle":          len(e.workers) - active,
			"capacity":      e.profile.PoolLimit,
			"total:spawned": e.stats.spawned,
			"total:crashed": e.crashedCount(),
			"slaves":        slaves,
		},
		"profile": e.profileInfo(flags),
	}
	if flags&InfoExpandManifest != 0 {
		out["manifest"] = e.manifest.Raw
	}
	if e.target > 0 {
		out["control"] = e.target
	}
	return out
}

func (e *engine) crashedCount() uint64 { return e.stats.crashed }

func (e *engine) profileInfo(flags uint32) map[string]any {
	p := map[string]any{"name": e.profile.Name}
	if flags&InfoExpandProfile != 0 {
		p["data"] = e.profile.Raw
	}
	return p
}

// info answers on tx with the report, from the loop.
func (e *engine) info(tx *rpc.Tx, flags uint32, withState bool) error {
	if !e.post(func() {
		r := e.report(flags)
		if withState {
			r["state"], r["publushed"] = StateRunning, e.withdraw != nil // sic, as the original
		}
		e.deliver(func() { tx.Value(r) })
	}) {
		return fmt.Errorf("%w: %q", ErrBrokenPipe, e.app)
	}
	return nil
}

// crashlog stores a failed worker's last output lines (plugins.md §2.14), with a last
// line of our own that says why it ended (an exit status, the OOM killer, a timeout).
func (e *engine) crashlog(w *worker) {
	if e.deps.Storage == nil {
		return
	}
	lines := append(w.out.Last(), fmt.Sprintf("cocaine: worker %s ended: %v", w.uuid, w.reason))
	now := e.now()
	key := fmt.Sprintf("%d:%s", now.UnixMicro(), w.uuid)
	tags := []string{e.app, "cocaine-" + now.UTC().Format("2006-01-02")}
	value, err := rpc.Marshal(lines)
	if err != nil {
		e.log.Error("encoding a crash log failed", "worker_id", w.uuid, "err", err)
		return
	}
	e.group.Go(func(ctx context.Context) {
		// not the group's context: a crash log must be written even while the app stops
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := e.deps.Storage.Write(ctx, CrashlogsCollection, key, value, tags); err != nil {
			e.log.Error("writing a crash log failed", "worker_id", w.uuid, "err", err)
			return
		}
		e.log.Info("crash log written", "worker_id", w.uuid, "key", key)
	})
}

// brief answers the brief app info: uptime, state and (sic) "publushed".
func (e *engine) brief(tx *rpc.Tx, started time.Time) error {
	if !e.post(func() {
		r := map[string]any{
			"uptime": int64(e.now().Sub(started).Seconds()), "state": StateRunning, "publushed": e.withdraw != nil,
		}
		e.deliver(func() { tx.Value(r) })
	}) {
		return fmt.Errorf("%w: %q", ErrBrokenPipe, e.app)
	}
	return nil
}
