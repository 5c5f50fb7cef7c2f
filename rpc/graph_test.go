package rpc_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// The reply protocols and the control entries in the notation of protocol.md §3.5.
const (
	grP = `82 00 92 a5 "value" 80 01 92 a5 "error" 80`
	grS = `83 00 92 a5 "write" c0 01 92 a5 "error" 80 02 92 a5 "close" 80`
	grX = `cd ff fc 92 a6 "goaway" 80 cd ff fd 92 a4 "ping" 80 cd ff fe 92 a8 "settings" 80 cd ff ff 92 a6 "revoke" 80`
	// the control methods as root entries: [name, {}, P]
	grControlRoots = `cd ff fc 93 a6 "goaway" 80 ` + grP + ` cd ff fd 93 a4 "ping" 80 ` + grP +
		` cd ff fe 93 a8 "settings" 80 ` + grP + ` cd ff ff 93 a6 "revoke" 80 ` + grP
)

func grEncode(t *testing.T, g *rpc.Graph) []byte {
	t.Helper()
	b, err := g.AppendMsgpack(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func grDecode(b []byte, version uint64) (*rpc.Graph, error) {
	d := rpc.NewDecoder(b)
	g, err := rpc.DecodeGraph(d, version)
	if err == nil && d.Remaining() != 0 {
		return nil, errors.New("bytes left after the graph")
	}
	return g, err
}

// The byte examples of protocol.md §3.5.
func TestGraphSpecExamples(t *testing.T) {
	for _, tc := range []struct {
		name  string
		graph *rpc.Graph
		want  string
	}{
		{"logging verbosity root entry",
			rpc.MustGraph(2, rpc.Method{ID: 1, Name: "verbosity", Dispatch: rpc.Terminal, Upstream: rpc.Primitive}),
			`81 01 93 a9 "verbosity" 80 82 00 92 a5 "value" 80 01 92 a5 "error" 80`},
		{"streaming node",
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "s", Dispatch: rpc.Terminal, Upstream: rpc.Streaming}),
			`81 00 93 a1 "s" 80 83 00 92 a5 "write" c0 01 92 a5 "error" 80 02 92 a5 "close" 80`},
		{"control entry",
			rpc.MustGraph(1, rpc.Method{ID: rpc.ControlRevoke, Name: "revoke", Dispatch: rpc.Terminal, Upstream: rpc.Primitive}),
			`81 cd ff ff 93 a6 "revoke" 80 82 00 92 a5 "value" 80 01 92 a5 "error" 80`},
		{"mute method", // logging.emit: upstream {}
			rpc.MustGraph(2, rpc.Method{ID: 0, Name: "emit", Dispatch: rpc.Terminal, Upstream: rpc.Terminal}),
			`81 00 93 a4 "emit" 80 80`},
		{"recursive dispatch", // nil: stay in the same state
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "r", Dispatch: nil, Upstream: rpc.Primitive}),
			`81 00 93 a1 "r" c0 ` + grP},
		{"logging",
			rpc.ServiceGraph(2,
				rpc.Method{Name: "emit", Dispatch: rpc.Terminal, Upstream: rpc.Terminal},
				rpc.Method{Name: "verbosity", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
				rpc.Method{Name: "set_verbosity", Dispatch: rpc.Terminal, Upstream: rpc.Primitive}),
			`87 00 93 a4 "emit" 80 80 01 93 a9 "verbosity" 80 ` + grP + ` 02 93 ad "set_verbosity" 80 ` + grP + ` ` + grControlRoots},
		{"storage",
			rpc.ServiceGraph(1,
				rpc.Method{Name: "read", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
				rpc.Method{Name: "write", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
				rpc.Method{Name: "remove", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
				rpc.Method{Name: "find", Dispatch: rpc.Terminal, Upstream: rpc.Primitive}),
			`88 00 93 a4 "read" 80 ` + grP + ` 01 93 a5 "write" 80 ` + grP + ` 02 93 a6 "remove" 80 ` + grP +
				` 03 93 a4 "find" 80 ` + grP + ` ` + grControlRoots},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := specBytes(tc.want)
			got := grEncode(t, tc.graph)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n% x\nwant\n% x", got, want)
			}
			back, err := grDecode(want, tc.graph.Version)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, tc.graph) {
				t.Fatalf("decoded %+v, want %+v", back.Methods(), tc.graph.Methods())
			}
		})
	}
}

// rpc.LocatorGraph is the locator graph of §3.5, control entries in publish and routing
// included.
func TestLocatorGraph(t *testing.T) {
	want := specBytes(`8b` +
		` 00 93 a7 "resolve" 80 ` + grP +
		` 01 93 a7 "connect" 80 ` + grS +
		` 02 93 a7 "refresh" 80 ` + grP +
		` 03 93 a7 "cluster" 80 ` + grP +
		` 04 93 a7 "publish" 85 00 92 a7 "discard" 80 ` + grX + ` ` + grP +
		` 05 93 a7 "routing" 85 00 92 a7 "discard" 80 ` + grX + ` ` + grS +
		` 06 93 a4 "uuid" 80 ` + grP +
		` ` + grControlRoots)
	got := grEncode(t, rpc.LocatorGraph)
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n% x\nwant\n% x", got, want)
	}
	g, err := grDecode(want, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, rpc.LocatorGraph) {
		t.Fatalf("decoded %+v", g.Methods())
	}
	if again := grEncode(t, g); !bytes.Equal(again, want) {
		t.Fatal("re-encoding the decoded graph changed it")
	}
	if g.Version != 3 {
		t.Fatalf("version %d", g.Version)
	}

	// Walk it as a client would.
	publish, ok := g.MethodByName("publish")
	if !ok || publish.ID != 4 {
		t.Fatalf("publish: %+v", publish)
	}
	discard, ok := publish.Dispatch.Lookup(0)
	if !ok || discard.Name != "discard" || !discard.Next.IsTerminal() {
		t.Fatalf("discard: %+v", discard)
	}
	if tr, ok := publish.Dispatch.Lookup(rpc.ControlPing); !ok || tr.Name != "ping" {
		t.Fatalf("ping inside publish: %+v", tr)
	}
	if _, ok := publish.Dispatch.Lookup(1); ok {
		t.Fatal("publish dispatch has message 1")
	}
	routing, _ := g.Method(5)
	if w, ok := routing.Upstream.LookupName("write"); !ok || w.Next != nil {
		t.Fatalf("routing write: %+v", w)
	}
	if m, ok := g.Method(rpc.ControlRevoke); !ok || m.Name != "revoke" {
		t.Fatalf("revoke: %+v", m)
	}
	if _, ok := g.Method(7); ok {
		t.Fatal("method 7 exists")
	}
}

// The shape rules of §3.2: extra tuple elements are ignored, malformed shapes are not.
func TestDecodeGraph(t *testing.T) {
	ok := []struct {
		name string
		in   string
		want *rpc.Graph
	}{
		{"empty", `80`, rpc.MustGraph(1)},
		{"4-element root entry", `81 00 94 a1 "m" 80 ` + grP + ` c0`,
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "m", Dispatch: rpc.Terminal, Upstream: rpc.Primitive})},
		{"5-element root entry", `81 00 95 a1 "m" 80 ` + grP + ` 92 01 02 a1 "x"`,
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "m", Dispatch: rpc.Terminal, Upstream: rpc.Primitive})},
		{"3-element nested entry", `81 00 93 a1 "m" 80 81 00 93 a5 "value" 80 c3`,
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "m", Dispatch: rpc.Terminal, Upstream: rpc.NewState(rpc.Transition{ID: 0, Name: "value", Next: rpc.Terminal})})},
		{"nil upstream is mute", `81 00 93 a1 "m" 80 c0`,
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "m", Dispatch: rpc.Terminal, Upstream: rpc.Terminal})},
		{"keys in any order and width", `82 cd 00 01 93 a1 "b" 80 80 d0 00 93 a1 "a" 80 80`,
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "a", Dispatch: rpc.Terminal, Upstream: rpc.Terminal},
				rpc.Method{ID: 1, Name: "b", Dispatch: rpc.Terminal, Upstream: rpc.Terminal})},
		{"str8 and bin names", `81 00 93 d9 01 "m" 80 81 00 92 c4 01 "v" 80`,
			rpc.MustGraph(1, rpc.Method{ID: 0, Name: "m", Dispatch: rpc.Terminal, Upstream: rpc.NewState(rpc.Transition{ID: 0, Name: "v", Next: rpc.Terminal})})},
		{"depth 64", grNested(64), nil},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			g, err := grDecode(specBytes(tc.in), 1)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(g, tc.want) {
				t.Fatalf("got %+v, want %+v", g.Methods(), tc.want.Methods())
			}
		})
	}
	for _, tc := range []struct{ name, in string }{
		{"array root", `90`},
		{"nil root", `c0`},
		{"integer root", `01`},
		{"string key", `81 a1 "0" 93 a1 "m" 80 80`},
		{"negative key", `81 ff 93 a1 "m" 80 80`},
		{"2-element root entry", `81 00 92 a1 "m" 80`},
		{"map root entry", `81 00 80`},
		{"nil root entry", `81 00 c0`},
		{"integer name", `81 00 93 01 80 80`},
		{"empty name", `81 00 93 a0 80 80`},
		{"duplicate id", `82 00 93 a1 "a" 80 80 00 93 a1 "b" 80 80`},
		{"array dispatch", `81 00 93 a1 "m" 90 80`},
		{"integer upstream", `81 00 93 a1 "m" 80 00`},
		{"1-element nested entry", `81 00 93 a1 "m" 81 00 91 a1 "x" 80`},
		{"nested entry not an array", `81 00 93 a1 "m" 81 00 a1 "x" 80`},
		{"nested string key", `81 00 93 a1 "m" 81 a1 "0" 92 a1 "x" 80 80`},
		{"nested name not a string", `81 00 93 a1 "m" 81 00 92 c0 80 80`},
		{"truncated", `82 00 93 a1 "m" 80 80`},
		{"depth 65", grNested(65)},
		{"depth 1000", grNested(1000)},
	} {
		t.Run("reject/"+tc.name, func(t *testing.T) {
			if g, err := grDecode(specBytes(tc.in), 1); err == nil {
				t.Fatalf("accepted %+v", g.Methods())
			}
		})
	}
}

// grNested is a one-method graph whose dispatch nests states depth deep: the dispatch
// state is depth 0 and the innermost {} is at depth.
func grNested(depth int) string {
	var b strings.Builder
	b.WriteString(`81 00 93 a1 "m" `)
	for i := 0; i < depth; i++ {
		b.WriteString(`81 00 92 a1 "n" `)
	}
	b.WriteString(`80 80`)
	return b.String()
}

func TestNewGraphRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ms   []rpc.Method
	}{
		{"duplicate id", []rpc.Method{{ID: 1, Name: "a", Upstream: rpc.Primitive}, {ID: 1, Name: "b", Upstream: rpc.Primitive}}},
		{"no name", []rpc.Method{{ID: 1, Upstream: rpc.Primitive}}},
		{"no upstream", []rpc.Method{{ID: 1, Name: "a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := rpc.NewGraph(1, tc.ms...); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestStates(t *testing.T) {
	for _, tc := range []struct {
		name     string
		s        *rpc.State
		terminal bool
		ids      []uint64
		names    []string
	}{
		{"primitive", rpc.Primitive, false, []uint64{0, 1}, []string{"value", "error"}},
		{"streaming", rpc.Streaming, false, []uint64{0, 1, 2}, []string{"write", "error", "close"}},
		{"terminal", rpc.Terminal, true, nil, nil},
		{"nil (stay)", nil, false, nil, nil},
		{"sorted on build", rpc.NewState(rpc.Transition{ID: 9, Name: "b"}, rpc.Transition{ID: 2, Name: "a"}), false, []uint64{2, 9}, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.s.IsTerminal() != tc.terminal {
				t.Fatalf("IsTerminal = %v", tc.s.IsTerminal())
			}
			ts := tc.s.Transitions()
			if len(ts) != len(tc.ids) {
				t.Fatalf("transitions %+v", ts)
			}
			for i, tr := range ts {
				if tr.ID != tc.ids[i] || tr.Name != tc.names[i] {
					t.Fatalf("transition %d: %+v", i, tr)
				}
				if got, ok := tc.s.Lookup(tr.ID); !ok || got.Name != tr.Name {
					t.Fatalf("Lookup(%d) = %+v", tr.ID, got)
				}
				if got, ok := tc.s.LookupName(tr.Name); !ok || got.ID != tr.ID {
					t.Fatalf("LookupName(%q) = %+v", tr.Name, got)
				}
			}
			if _, ok := tc.s.Lookup(5); ok {
				t.Fatal("Lookup(5) found something")
			}
			if _, ok := tc.s.LookupName("nope"); ok {
				t.Fatal("LookupName found something")
			}
		})
	}
	if w, _ := rpc.Streaming.Lookup(rpc.Write); w.Next != nil {
		t.Error("write must stay in the streaming state")
	}
	for _, id := range []uint64{rpc.Fail, rpc.Close} {
		if tr, _ := rpc.Streaming.Lookup(id); !tr.Next.IsTerminal() {
			t.Errorf("streaming %d must be terminal", id)
		}
	}
	if rpc.ControlGoaway != 65532 || rpc.ControlPing != 65533 || rpc.ControlSettings != 65534 || rpc.ControlRevoke != 65535 {
		t.Error("control ids must count down from 65535")
	}
}

// ServiceGraph numbers methods from 0 and appends the control methods.
func TestServiceGraph(t *testing.T) {
	g := rpc.ServiceGraph(7,
		rpc.Method{ID: 99, Name: "first", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
		rpc.Method{Name: "second", Dispatch: rpc.Streaming, Upstream: rpc.Streaming})
	var got []string
	for _, m := range g.Methods() {
		got = append(got, m.Name)
	}
	if strings.Join(got, ",") != "first,second,goaway,ping,settings,revoke" || g.Version != 7 {
		t.Fatalf("methods %v, version %d", got, g.Version)
	}
	if m, ok := g.MethodByName("second"); !ok || m.ID != 1 {
		t.Fatalf("second: %+v", m)
	}
	if m, ok := g.Method(rpc.ControlPing); !ok || m.Name != "ping" || !m.Dispatch.IsTerminal() || m.Upstream != rpc.Primitive {
		t.Fatalf("ping: %+v", m)
	}
}
