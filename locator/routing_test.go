package locator_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/locator"
	"github.com/cocaine/cocaine/rpc"
)

// The ring vectors come from testdata/ring_vectors.py, an independent implementation of
// protocol.md §7.5 written from the original continuum_t (python3, standard library only).
// The JSON is committed so the tests need no python; TestRingVectorsRegenerate checks that
// it is still what the script produces.

type ringVectors struct {
	Groups []ringGroup `json:"groups"`
}

type ringGroup struct {
	Name       string            `json:"name"`
	Members    map[string]uint64 `json:"members"`
	Steps      map[string]int    `json:"steps"`
	Points     int               `json:"points"`
	RingSHA256 string            `json:"ring_sha256"`
	Ring       [][2]any          `json:"ring"` // [point, name]; only for the small groups
	Seeds      []struct {
		Seed   string  `json:"seed"`
		Point  uint32  `json:"point"`
		Member *string `json:"member"` // nil for "": an empty seed picks at random
	} `json:"seeds"`
	At []struct {
		Point  uint32 `json:"point"`
		Member string `json:"member"`
	} `json:"at"`
}

func loadRingVectors(t *testing.T) ringVectors {
	t.Helper()
	blob, err := os.ReadFile(filepath.Join("testdata", "ring_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v ringVectors
	if err := json.Unmarshal(blob, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Groups) < 5 {
		t.Fatalf("ring_vectors.json holds %d groups; regenerate it", len(v.Groups))
	}
	return v
}

// ringDigest hashes a ring the way ring_vectors.py does: "<point> <name>\n" per element.
func ringDigest(ps []locator.RingPoint) string {
	h := sha256.New()
	for _, p := range ps {
		fmt.Fprintf(h, "%d %s\n", p.Point, p.Name)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestRingVectors(t *testing.T) {
	for _, g := range loadRingVectors(t).Groups {
		t.Run(g.Name, func(t *testing.T) {
			r, err := locator.NewRing(g.Members)
			if err != nil {
				t.Fatal(err)
			}
			ps := r.Points()
			if len(ps) != g.Points {
				t.Fatalf("%d points, want %d", len(ps), g.Points)
			}
			// steps per member: each step gives four points
			got := map[string]int{}
			for _, p := range ps {
				got[p.Name]++
			}
			for name, steps := range g.Steps {
				if got[name] != 4*steps {
					t.Errorf("member %q has %d points, want %d (%d steps)", name, got[name], 4*steps, steps)
				}
			}
			if d := ringDigest(ps); d != g.RingSHA256 {
				t.Errorf("ring digest %s, want %s", d, g.RingSHA256)
			}
			if g.Ring != nil {
				if len(g.Ring) != len(ps) {
					t.Fatalf("ring has %d points, want %d", len(ps), len(g.Ring))
				}
				for i, want := range g.Ring {
					if p := ps[i]; float64(p.Point) != want[0].(float64) || p.Name != want[1].(string) {
						t.Fatalf("ring[%d] = %d %q, want %v %v", i, p.Point, p.Name, want[0], want[1])
					}
				}
			}
			for _, s := range g.Seeds {
				if p := locator.SeedPoint(s.Seed); p != s.Point {
					t.Errorf("SeedPoint(%q) = %d, want %d", s.Seed, p, s.Point)
				}
				if s.Member == nil {
					continue // "" is random: TestRingEmptySeedIsRandom
				}
				if m := r.Pick(s.Seed); m != *s.Member {
					t.Errorf("Pick(%q) = %q, want %q", s.Seed, m, *s.Member)
				}
			}
			for _, a := range g.At {
				if m := r.At(a.Point); m != a.Member {
					t.Errorf("At(%d) = %q, want %q", a.Point, m, a.Member)
				}
			}
		})
	}
}

// The committed vectors are what the script produces now.
func TestRingVectorsRegenerate(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH; testing against the committed vectors only")
	}
	cmd := exec.Command(py, "ring_vectors.py")
	cmd.Dir = "testdata"
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ring_vectors.py: %v\n%s", err, stderr.String())
	}
	want, err := os.ReadFile(filepath.Join("testdata", "ring_vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Fatal("testdata/ring_vectors.json is stale: run `python3 ring_vectors.py > ring_vectors.json` in locator/testdata")
	}
}

// Points are sorted, every lookup lands on the first point strictly above, and the last
// point wraps to the first.
func TestRingLookupBoundaries(t *testing.T) {
	r, err := locator.NewRing(map[string]uint64{"a": 1, "b": 2, "c": 7})
	if err != nil {
		t.Fatal(err)
	}
	ps := r.Points()
	if !slices.IsSortedFunc(ps, func(a, b locator.RingPoint) int { return cmp.Compare(a.Point, b.Point) }) {
		t.Fatal("points are not sorted")
	}
	last := ps[len(ps)-1]
	for _, tc := range []struct {
		name string
		p    uint32
		want string
	}{
		{"zero", 0, ps[0].Name},
		{"just below the first point", ps[0].Point - 1, ps[0].Name},
		{"on the first point", ps[0].Point, ps[1].Name},
		{"on the last point wraps", last.Point, ps[0].Name},
		{"max wraps", math.MaxUint32, ps[0].Name},
		{"just below the last point", last.Point - 1, last.Name},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.At(tc.p); got != tc.want {
				t.Fatalf("At(%d) = %q, want %q", tc.p, got, tc.want)
			}
		})
	}
}

// The routing stream exports the ring as [[point, name], ...] in ring order.
func TestRingAppendMsgpack(t *testing.T) {
	r, err := locator.NewRing(map[string]uint64{"x": 1, "y": 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.AppendMsgpack(nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rpc.Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != len(r.Points()) {
		t.Fatalf("decoded %T of %d elements, want %d points", v, len(arr), len(r.Points()))
	}
	for i, e := range arr {
		pair, ok := e.([]any)
		p := r.Points()[i]
		if !ok || len(pair) != 2 || pair[0] != uint64(p.Point) || pair[1] != p.Name {
			t.Fatalf("element %d = %#v, want [%d, %q]", i, e, p.Point, p.Name)
		}
	}
}

// An empty seed picks at random: always a member on the ring, and not always the same one.
func TestRingEmptySeedIsRandom(t *testing.T) {
	r, err := locator.NewRing(map[string]uint64{"a": 1, "b": 1, "c": 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 1000 {
		seen[r.Pick("")]++
	}
	for m := range seen {
		if !slices.Contains([]string{"a", "b", "c"}, m) {
			t.Fatalf("picked %q, not a member", m)
		}
	}
	// Each member owns about a third of the ring: the chance that 1000 uniform picks
	// miss one is below 1e-150.
	if len(seen) != 3 {
		t.Fatalf("1000 random picks hit only %v", seen)
	}
}

// ringShares computes, from the ring itself, the fraction of the 2^32 points each member
// owns: element i owns [point(i-1), point(i)), and the first element owns the wrap.
func ringShares(ps []locator.RingPoint) map[string]float64 {
	shares := map[string]float64{}
	const space = float64(1 << 32)
	for i, p := range ps {
		var width float64
		if i == 0 {
			width = space - float64(ps[len(ps)-1].Point) + float64(p.Point)
		} else {
			width = float64(p.Point) - float64(ps[i-1].Point)
		}
		shares[p.Name] += width / space
	}
	return shares
}

func TestRingRandomPicksFollowWeights(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members map[string]uint64
	}{
		{"1/2/7", map[string]uint64{"a": 1, "b": 2, "c": 7}},
		{"equal pair", map[string]uint64{"x": 5, "y": 5}},
		{"ten weighted", map[string]uint64{
			"n0": 1, "n1": 2, "n2": 3, "n3": 4, "n4": 5, "n5": 6, "n6": 7, "n7": 8, "n8": 9, "n9": 10,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := locator.NewRing(tc.members)
			if err != nil {
				t.Fatal(err)
			}
			const picks = 100_000
			counts := map[string]int{}
			for range picks {
				counts[r.Pick("")]++
			}
			shares := ringShares(r.Points())
			total := 0.0
			for name, p := range shares {
				total += p
				// Binomial: 7 standard deviations plus slack; the chance of a false alarm is
				// about 1e-11 per member.
				want := picks * p
				bound := 7*math.Sqrt(picks*p*(1-p)) + 10
				if got := float64(counts[name]); math.Abs(got-want) > bound {
					t.Errorf("%s: %v picks, expected %.0f ± %.0f (ring share %.4f)", name, got, want, bound, p)
				}
			}
			if math.Abs(total-1) > 1e-9 {
				t.Fatalf("ring shares add up to %v", total)
			}
			// The ring roughly follows the weights: a heavier member never owns less than
			// half of what a member with half its weight would.
			var sum uint64
			for _, w := range tc.members {
				sum += w
			}
			for name, w := range tc.members {
				if want := float64(w) / float64(sum); shares[name] < want/2 || shares[name] > want*2 {
					t.Errorf("%s: ring share %.4f for weight share %.4f", name, shares[name], want)
				}
			}
		})
	}
}

// The same seed gives the same member every time and on every ring built from the same
// group, whatever order the group's map iterates in.
func TestRingSeedStability(t *testing.T) {
	members := map[string]uint64{}
	for i := range 10 {
		members[fmt.Sprintf("node-%02d", i)] = uint64(i + 1)
	}
	first, err := locator.NewRing(members)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		r, err := locator.NewRing(members)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(r.Points(), first.Points()) {
			t.Fatalf("build %d differs from the first", i)
		}
		for s := range 200 {
			seed := fmt.Sprintf("user-%d", s)
			if a, b := first.Pick(seed), r.Pick(seed); a != b || a != r.Pick(seed) {
				t.Fatalf("seed %q: %q then %q", seed, a, b)
			}
		}
	}
}

func TestNewRingRejects(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members map[string]uint64
	}{
		{"nil", nil},
		{"empty", map[string]uint64{}},
		{"one member of weight 0", map[string]uint64{"a": 0}},
		{"every weight 0", map[string]uint64{"a": 0, "b": 0, "c": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := locator.NewRing(tc.members)
			if !errors.Is(err, locator.ErrInvalidGroup) {
				t.Fatalf("NewRing = %v, %v; want ErrInvalidGroup", r, err)
			}
		})
	}
}

// mp builds msgpack bytes from parts: a string is hex (spaces allowed) with "quoted" text
// taken literally, as protocol.md writes bytes; rpc.Raw is appended as is; any other
// value is encoded with rpc.AppendValue.
func mp(t testing.TB, parts ...any) []byte {
	t.Helper()
	var b []byte
	for _, p := range parts {
		switch x := p.(type) {
		case string:
			for x != "" {
				if x[0] == '"' {
					lit, rest, ok := strings.Cut(x[1:], `"`)
					if !ok {
						t.Fatalf("unterminated quote in %q", x)
					}
					b, x = append(b, lit...), rest
					continue
				}
				tok := x
				if i := strings.IndexByte(x, '"'); i >= 0 {
					tok, x = x[:i], x[i:]
				} else {
					x = ""
				}
				h, err := hex.DecodeString(strings.Join(strings.Fields(tok), ""))
				if err != nil {
					t.Fatalf("bad hex %q: %v", tok, err)
				}
				b = append(b, h...)
			}
		default:
			var err error
			if b, err = rpc.AppendValue(b, x); err != nil {
				t.Fatal(err)
			}
		}
	}
	return b
}

func TestDecodeGroup(t *testing.T) {
	ok := []struct {
		name string
		blob []any
		want map[string]uint64
	}{
		{"uints", []any{map[string]any{"a": uint64(1), "b": uint64(300), "c": uint64(70000)}},
			map[string]uint64{"a": 1, "b": 300, "c": 70000}},
		{"fixints and uint32", []any{"82", "a161", "07", "a162", "ce ffffffff"},
			map[string]uint64{"a": 7, "b": math.MaxUint32}},
		{"zero weight", []any{map[string]any{"a": uint64(0), "b": uint64(1)}},
			map[string]uint64{"a": 0, "b": 1}},
		{"integral double", []any{map[string]any{"a": 3.0, "b": 0.0}},
			map[string]uint64{"a": 3, "b": 0}},
		{"integral float32", []any{"81 a161 ca", fmt.Sprintf("%08x", math.Float32bits(5))},
			map[string]uint64{"a": 5}},
		{"str8 and bin keys", []any{"82 d901 61 01 c401 62 02"},
			map[string]uint64{"a": 1, "b": 2}},
		{"empty map (NewRing rejects it)", []any{"80"}, map[string]uint64{}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := locator.DecodeGroup(mp(t, tc.blob...))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if w, ok := got[k]; !ok || w != v {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
	bad := []struct {
		name string
		blob []any
	}{
		{"negative int", []any{"81 a161 ff"}},
		{"negative int16", []any{"81 a161 d1 ff00"}},
		{"fraction", []any{map[string]any{"a": 1.5}}},
		{"negative double", []any{map[string]any{"a": -2.0}}},
		{"NaN", []any{map[string]any{"a": math.NaN()}}},
		{"infinity", []any{map[string]any{"a": math.Inf(1)}}},
		{"double over uint32", []any{map[string]any{"a": float64(1 << 33)}}},
		{"uint over uint32", []any{map[string]any{"a": uint64(1) << 32}}},
		{"string weight", []any{map[string]any{"a": "3"}}},
		{"nil weight", []any{"81 a161 c0"}},
		{"bool weight", []any{"81 a161 c3"}},
		{"array weight", []any{"81 a161 91 01"}},
		{"map weight", []any{"81 a161 81 a162 01"}},
		{"integer keys", []any{"81 01 02"}},
		{"an array, not a map", []any{"92 a161 01"}},
		{"a string", []any{"a3 616263"}},
		{"nil", []any{"c0"}},
		{"empty input", nil},
		{"truncated", []any{"82 a161 01"}},
		{"trailing bytes", []any{"81 a161 01 00"}},
		{"invalid byte", []any{"c1"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := locator.DecodeGroup(mp(t, tc.blob...))
			if !errors.Is(err, locator.ErrInvalidGroup) {
				t.Fatalf("DecodeGroup = %v, %v; want ErrInvalidGroup", got, err)
			}
		})
	}
}
