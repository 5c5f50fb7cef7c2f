package node

import (
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	var s stats
	for _, d := range []time.Duration{500 * time.Microsecond, 3 * time.Millisecond, 30 * time.Millisecond, 2 * time.Second} {
		s.observe(d)
	}
	r := s.reversed()
	if r["1ms"] != 25.0 || r["5ms"] != 50.0 || r["50ms"] != 75.0 || r["1000ms"] != 75.0 {
		t.Fatalf("timings_reversed: %v", r)
	}
	p := s.percentiles()
	if p["50.00%"] != 3.0 || p["99.95%"] != 2000.0 {
		t.Fatalf("timings: %v", p)
	}
	s.accepted = 50
	s.tick(4)
	if s.rates[0] != 10 || s.rates[2] != 10 {
		t.Fatalf("first tick: rates %v", s.rates)
	}
	s.tick(4) // no events in the last 5 s: every rate decays, the 1-minute one fastest
	if !(s.rates[0] < s.rates[1] && s.rates[1] < s.rates[2] && s.rates[2] < 10) || s.depthAvg <= 0 || s.depthAvg >= 4 {
		t.Fatalf("second tick: rates %v, depth %v", s.rates, s.depthAvg)
	}
}
