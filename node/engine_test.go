package node

import (
	"testing"
	"time"
)

func TestAutoTarget(t *testing.T) {
	p := DefaultProfile("p") // queue-limit 100, pool-limit 10, concurrency 10, grow-threshold 5
	q0 := DefaultProfile("q0")
	q0.QueueLimit, q0.PoolLimit, q0.Concurrency = 0, 4, 2
	for _, tc := range []struct {
		name               string
		p                  Profile
		queued, pool, load int
		want               int
	}{
		{"no traffic, no workers", p, 0, 0, 0, 0},
		{"the first event spawns one", p, 1, 0, 0, 1},
		{"one per grow-threshold", p, 12, 1, 10, 2},
		{"clamped to pool-limit", p, 1000, 3, 30, 10},
		{"queue-limit 0: fits the free slots", q0, 1, 1, 0, 1},
		{"queue-limit 0: one more for two more events", q0, 3, 1, 1, 2},
		{"queue-limit 0: clamped", q0, 50, 1, 2, 4},
	} {
		if got := autoTarget(tc.p, tc.queued, tc.pool, tc.load); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := nextBackoff(0, time.Time{}, t0)
	var got []time.Duration
	last := t0
	for i := 0; i < 8; i++ {
		got = append(got, b)
		now := last.Add(b + time.Second) // each crash shortly after the respawn
		b = nextBackoff(b, last, now)
		last = now
	}
	// Doubling while crashes come less than 32 s apart: after a 32 s back-off the next
	// crash is always more than 32 s after the last, so it starts over (plugins.md §2.12).
	want := []time.Duration{1, 2, 4, 8, 16, 32, 1, 2}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("back-offs %v, want %v (seconds)", got, want)
		}
	}
	if b := nextBackoff(32*time.Second, t0, t0.Add(time.Minute)); b != time.Second {
		t.Fatalf("a crash long after the last one: %v, want 1s", b)
	}
}
