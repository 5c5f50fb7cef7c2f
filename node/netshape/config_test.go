package netshape

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want Rate
		err  string
	}{
		{"100mbit", 100e6, ""}, {"1gbit", 1e9, ""}, {"1.5Mbit", 1.5e6, ""}, {" 500kbit ", 500e3, ""},
		{"1mbps", 8e6, ""}, {uint64(8000), 8000, ""}, {float64(1e6), 1e6, ""}, {int64(64), 64, ""},
		{"100", 0, "must be a number with a unit"}, {"mbit", 0, "must be a number with a unit"},
		{"10furlongs", 0, `unknown unit "furlongs"`}, {"1..2mbit", 0, "is not a number"},
		{"1bit", 0, "out of range"}, {uint64(1) << 60, 0, "out of range"}, {true, 0, "got bool"},
	} {
		got, err := ParseRate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
	var r Rate
	if err := json.Unmarshal([]byte(`"20mbit"`), &r); err != nil || r != 20e6 {
		t.Fatalf("json: %v %v", r, err)
	}
	if b, _ := json.Marshal(Rate(20e6)); string(b) != `"20mbit"` {
		t.Fatalf("marshal: %s", b)
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{Range: "10.213.0.0/16", LinkRate: 1e9}).Validate("n"); err != nil {
		t.Fatal(err)
	}
	err := Config{Bridge: "a-much-too-long-name", Range: "10.213.0.1/16", BatchRate: 2e9, LinkRate: 1e9, Netns: "rel"}.Validate("node.runc.network")
	for _, want := range []string{
		`node.runc.network.bridge "a-much-too-long-name" is not an interface name`,
		`node.runc.network.range: "10.213.0.1/16" has host bits set; did you mean "10.213.0.0/16"?`,
		"node.runc.network.batch_rate (2gbit) must be below link_rate (1gbit)",
		`node.runc.network.netns "rel" must be an absolute path`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
	for _, r := range []string{"", "fd00::/64", "10.0.0.0/8", "10.0.0.0/30", "nonsense"} {
		if _, err := (Config{Range: r}).Prefix(); err == nil {
			t.Errorf("range %q accepted", r)
		}
	}
}

func TestPool(t *testing.T) {
	p := newPool(netip.MustParsePrefix("10.1.2.0/29")) // 8 addresses: slots 2..6
	if p.gateway().String() != "10.1.2.1" {
		t.Fatal(p.gateway())
	}
	var got []string
	for {
		s, ok := p.take(100)
		if !ok {
			break
		}
		got = append(got, p.addr(s).String())
	}
	if strings.Join(got, " ") != "10.1.2.2 10.1.2.3 10.1.2.4 10.1.2.5 10.1.2.6" {
		t.Fatalf("addresses %v", got)
	}
	p.release(3)
	if s, ok := p.take(100); !ok || s != 3 {
		t.Fatalf("the lowest free slot is 3, got %d %v", s, ok)
	}
	q := newPool(netip.MustParsePrefix("10.1.0.0/16"))
	if _, ok := q.take(1); ok {
		t.Fatal("a limit below the first slot gave a slot")
	}
	if s, _ := q.take(1 << 20); q.addr(s+254).String() != "10.1.1.0" {
		t.Fatalf("addr carries into the third byte: %s", q.addr(s+254))
	}
}

func TestBatchCeil(t *testing.T) {
	for _, tc := range []struct{ link, prod, floor, want uint64 }{
		{1000, 0, 10, 1000},
		{1000, 400, 10, 560},
		{1000, 900, 10, 10}, // 990 reserved leaves exactly the floor
		{1000, 950, 10, 10},
		{1000, 1 << 62, 10, 10},
	} {
		if got := batchCeil(tc.link, tc.prod, tc.floor); got != tc.want {
			t.Errorf("batchCeil(%d, %d, %d) = %d, want %d", tc.link, tc.prod, tc.floor, got, tc.want)
		}
	}
}

// FuzzParseRate: no input panics, and what it accepts is in range.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100mbit", "1.5gbit", "8bit", "1e3kbit", "", "mbit", "99999999999999tbit", "-5mbit", "NaNbit"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && (r < 8 || r > MaxRate) {
			t.Fatalf("%q: accepted %d, out of range", s, r)
		}
		var j Rate
		json.Unmarshal([]byte(s), &j)
	})
}
