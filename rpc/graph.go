package rpc

import (
	"fmt"
	"sort"
)

// Dispatch graphs (protocol.md §3): a protocol describes itself at run time as a state
// machine whose states name every message id.
//
//	graph_root = { method_id: [name, dispatch, upstream] }   3-tuples
//	graph_node = { message_id: [name, next] }                2-tuples
//	next       = nil   stay in the same state (e.g. more write chunks)
//	           | {}    terminal: nothing more in this direction
//	           | {..}  move to that state
//
// In Go a *State of nil means "stay"; a State with no messages means "terminal".

// State is one protocol state of one direction of a channel. States are immutable once
// built; share them freely.
type State struct {
	msgs []Transition // sorted by ID
}

// Transition is one message allowed in a state and the state that follows it.
type Transition struct {
	ID   uint64
	Name string
	Next *State // nil: stay in this state
}

// NewState builds a state from its transitions.
func NewState(ts ...Transition) *State {
	s := &State{msgs: append([]Transition(nil), ts...)}
	sort.Slice(s.msgs, func(i, j int) bool { return s.msgs[i].ID < s.msgs[j].ID })
	return s
}

// Terminal is the state after which nothing more may be sent: {} on the wire.
var Terminal = &State{}

// IsTerminal reports whether nothing may be sent in s.
func (s *State) IsTerminal() bool { return s != nil && len(s.msgs) == 0 }

// Transitions returns the messages of s in id order. Do not modify the result.
func (s *State) Transitions() []Transition {
	if s == nil {
		return nil
	}
	return s.msgs
}

// Lookup returns the transition for message id.
func (s *State) Lookup(id uint64) (Transition, bool) {
	if s == nil {
		return Transition{}, false
	}
	for _, t := range s.msgs { // states have a handful of messages: a scan beats a map
		if t.ID == id {
			return t, true
		}
		if t.ID > id {
			break
		}
	}
	return Transition{}, false
}

// LookupName returns the transition named name.
func (s *State) LookupName(name string) (Transition, bool) {
	if s == nil {
		return Transition{}, false
	}
	for _, t := range s.msgs {
		if t.Name == name {
			return t, true
		}
	}
	return Transition{}, false
}

// Standard reply protocols (protocol.md §3.3, §3.4).
var (
	// Primitive is a single answer: value or error.
	Primitive = NewState(Transition{0, "value", Terminal}, Transition{1, "error", Terminal})
	// Streaming is any number of writes ended by error or close.
	Streaming = NewState(Transition{0, "write", nil}, Transition{1, "error", Terminal}, Transition{2, "close", Terminal})
)

// Message ids of the reply protocols.
const (
	Value = 0 // primitive value
	Write = 0 // streaming write (chunk)
	Fail  = 1 // error, in both
	Close = 2 // streaming close (choke)
)

// Control message ids (protocol.md §3.6): they count down from 65535.
const (
	ControlGoaway   = 65532
	ControlPing     = 65533
	ControlSettings = 65534
	ControlRevoke   = 65535
)

// Method is one root entry of a graph: [name, dispatch, upstream].
type Method struct {
	ID       uint64
	Name     string
	Dispatch *State // what the caller may send after the first message; nil: stay
	Upstream *State // what the service sends back; Terminal for mute methods
}

// Graph is a service's protocol: its root methods by id, and its version.
type Graph struct {
	Version uint64
	methods []Method // sorted by ID
	nsvc    int      // methods below the control ids
}

// NewGraph builds a graph. Method ids must be unique.
func NewGraph(version uint64, ms ...Method) (*Graph, error) {
	g := &Graph{Version: version, methods: append([]Method(nil), ms...)}
	sort.Slice(g.methods, func(i, j int) bool { return g.methods[i].ID < g.methods[j].ID })
	for i, m := range g.methods {
		if i > 0 && g.methods[i-1].ID == m.ID {
			return nil, fmt.Errorf("rpc: graph: method id %d is used twice (%q, %q)", m.ID, g.methods[i-1].Name, m.Name)
		}
		if m.Name == "" {
			return nil, fmt.Errorf("rpc: graph: method %d has no name", m.ID)
		}
		if m.Upstream == nil {
			return nil, fmt.Errorf("rpc: graph: method %q has no upstream (use Terminal for mute methods)", m.Name)
		}
		if m.ID < ControlGoaway {
			g.nsvc++
		}
	}
	return g, nil
}

// MustGraph is NewGraph for graphs written in code; it panics on a malformed one.
func MustGraph(version uint64, ms ...Method) *Graph {
	g, err := NewGraph(version, ms...)
	if err != nil {
		panic(err)
	}
	return g
}

// Methods returns the root entries in id order. Do not modify the result.
func (g *Graph) Methods() []Method { return g.methods }

// Method returns the root entry with the given id.
func (g *Graph) Method(id uint64) (Method, bool) {
	i := sort.Search(len(g.methods), func(i int) bool { return g.methods[i].ID >= id })
	if i < len(g.methods) && g.methods[i].ID == id {
		return g.methods[i], true
	}
	return Method{}, false
}

// MethodByName returns the root entry named name.
func (g *Graph) MethodByName(name string) (Method, bool) {
	for _, m := range g.methods {
		if m.Name == name {
			return m, true
		}
	}
	return Method{}, false
}

// Methods of the control protocol, present in every service's root graph since 0.12.13.
var controlMethods = []Method{
	{ControlGoaway, "goaway", Terminal, Primitive},
	{ControlPing, "ping", Terminal, Primitive},
	{ControlSettings, "settings", Terminal, Primitive},
	{ControlRevoke, "revoke", Terminal, Primitive},
}

// ControlTransitions are the control entries that the original also lists inside the
// transition states of locator publish and routing, where nothing handles them.
var ControlTransitions = []Transition{
	{ControlGoaway, "goaway", Terminal},
	{ControlPing, "ping", Terminal},
	{ControlSettings, "settings", Terminal},
	{ControlRevoke, "revoke", Terminal},
}

// ServiceGraph builds a service graph with the control methods appended, as every 0.12.14
// service publishes it. Methods are numbered 0..n-1 in the order given.
func ServiceGraph(version uint64, ms ...Method) *Graph {
	all := make([]Method, 0, len(ms)+len(controlMethods))
	for i, m := range ms {
		m.ID = uint64(i)
		all = append(all, m)
	}
	all = append(all, controlMethods...)
	return MustGraph(version, all...)
}

// AppendMsgpack encodes the graph root exactly as the core does: a map from method id to
// [name, dispatch, upstream], keys ascending.
func (g *Graph) AppendMsgpack(b []byte) ([]byte, error) {
	b = AppendMapHeader(b, len(g.methods))
	for _, m := range g.methods {
		b = AppendUint(b, m.ID)
		b = append(b, 0x93)
		b = AppendString(b, m.Name)
		b = appendState(b, m.Dispatch)
		b = appendState(b, m.Upstream)
	}
	return b, nil
}

func appendState(b []byte, s *State) []byte {
	if s == nil {
		return AppendNil(b)
	}
	b = AppendMapHeader(b, len(s.msgs))
	for _, t := range s.msgs {
		b = AppendUint(b, t.ID)
		b = append(b, 0x92)
		b = AppendString(b, t.Name)
		b = appendState(b, t.Next)
	}
	return b
}

// maxGraphDepth bounds the nesting of decoded states.
const maxGraphDepth = 64

// DecodeGraph reads a graph root. Root entries must be [name, dispatch, upstream] (extra
// elements are ignored); nested entries [name, next].
func DecodeGraph(d *Decoder, version uint64) (*Graph, error) {
	n, err := d.MapLen()
	if err != nil {
		return nil, fmt.Errorf("rpc: graph: %w", err)
	}
	ms := make([]Method, 0, n)
	for i := 0; i < n; i++ {
		id, err := d.Uint()
		if err != nil {
			return nil, fmt.Errorf("rpc: graph: method id: %w", err)
		}
		k, err := d.ArrayLen()
		if err != nil {
			return nil, fmt.Errorf("rpc: graph: method %d: %w", id, err)
		}
		if k < 3 {
			return nil, fmt.Errorf("rpc: graph: method %d: %w: a root entry has 3 elements, got %d", id, ErrInvalidArgument, k)
		}
		m := Method{ID: id}
		if m.Name, err = d.String(); err != nil {
			return nil, fmt.Errorf("rpc: graph: method %d name: %w", id, err)
		}
		if m.Dispatch, err = decodeState(d, 0); err != nil {
			return nil, fmt.Errorf("rpc: graph: method %q dispatch: %w", m.Name, err)
		}
		if m.Upstream, err = decodeState(d, 0); err != nil {
			return nil, fmt.Errorf("rpc: graph: method %q upstream: %w", m.Name, err)
		}
		if m.Upstream == nil {
			m.Upstream = Terminal // a root upstream is always a map; treat nil as mute
		}
		for j := 3; j < k; j++ {
			if err := d.Skip(); err != nil {
				return nil, err
			}
		}
		ms = append(ms, m)
	}
	return NewGraph(version, ms...)
}

func decodeState(d *Decoder, depth int) (*State, error) {
	if d.IsNil() {
		return nil, nil
	}
	if depth > maxGraphDepth {
		return nil, fmt.Errorf("%w: states nested deeper than %d", ErrInvalidArgument, maxGraphDepth)
	}
	n, err := d.MapLen()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return Terminal, nil
	}
	ts := make([]Transition, 0, n)
	for i := 0; i < n; i++ {
		var t Transition
		if t.ID, err = d.Uint(); err != nil {
			return nil, err
		}
		k, err := d.ArrayLen()
		if err != nil {
			return nil, err
		}
		if k < 2 {
			return nil, fmt.Errorf("%w: a nested entry has 2 elements, got %d", ErrInvalidArgument, k)
		}
		if t.Name, err = d.String(); err != nil {
			return nil, err
		}
		if t.Next, err = decodeState(d, depth+1); err != nil {
			return nil, err
		}
		for j := 2; j < k; j++ {
			if err := d.Skip(); err != nil {
				return nil, err
			}
		}
		ts = append(ts, t)
	}
	return NewState(ts...), nil
}
