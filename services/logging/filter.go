package logging

import (
	"fmt"
	"math"
	"strings"
)

// Filter decides whether a record is logged. Implementations are immutable and safe
// for concurrent use.
type Filter interface {
	// Accept reports whether r passes the filter.
	Accept(r *Record) bool
	// Repr returns the filter's representation in the generic value shape
	// ParseFilter takes (what list_filters sends back). Each call returns a fresh
	// value the caller may keep.
	Repr() any
}

// MaxFilterDepth bounds how deeply "||", "&&" and "xor" may nest. Filters come from
// clients and from unicorn, and parsing and applying them recurse, so without a
// bound a hostile representation could exhaust the stack.
const MaxFilterDepth = 64

// Operator names, as they appear in the first element of a representation.
const (
	opEmpty    = "empty"
	opTraced   = "traced"
	opSeverity = "severity"
	opExists   = "e"
	opNotExist = "!e"
	opEq       = "=="
	opNe       = "!="
	opGt       = ">"
	opLt       = "<"
	opGe       = ">="
	opLe       = "<="
	opOr       = "||"
	opAnd      = "&&"
	opXor      = "xor"
)

// arity is the number of operands each operator takes. The original decides what an
// array means by its length first, so a known operator with the wrong length is an
// error rather than some other filter.
var arity = map[string]int{
	opEmpty: 0, opTraced: 0,
	opSeverity: 1, opExists: 1, opNotExist: 1,
	opEq: 2, opNe: 2, opGt: 2, opLt: 2, opGe: 2, opLe: 2,
	opOr: 2, opAnd: 2, opXor: 2,
}

// ParseFilter builds a Filter from its representation, a generic decoded msgpack
// value (nil, bool, int64, uint64, float64, string, []any, map[string]any). The
// forms are:
//
//	["empty"]                  accept everything
//	["traced"]                 accept records whose request was traced verbosely
//	["severity", N]            accept severity >= N (N a non-negative integer)
//	["e", attr] / ["!e", attr] accept if the attribute exists / does not exist
//	[op, attr, value]          op one of == != > < >= <=; value bool, number or string
//	["||", f1, f2] / ["&&", f1, f2] / ["xor", f1, f2]
//
// See compare for how mismatched types behave. Every error wraps ErrInvalidFilter.
func ParseFilter(v any) (Filter, error) {
	f, err := parse(v, 1)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFilter, err)
	}
	return f, nil
}

func parse(v any, depth int) (Filter, error) {
	if depth > MaxFilterDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", MaxFilterDepth)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("representation must be an array, got %s", typeName(v))
	}
	if len(arr) == 0 {
		return nil, fmt.Errorf("representation is an empty array")
	}
	op, ok := arr[0].(string)
	if !ok {
		return nil, fmt.Errorf("operator must be a string, got %s", typeName(arr[0]))
	}
	want, ok := arity[op]
	if !ok {
		return nil, fmt.Errorf("unknown operator %q", op)
	}
	if got := len(arr) - 1; got != want {
		return nil, fmt.Errorf("%q needs %d operand%s, got %d", op, want, plural(want), got)
	}

	switch op {
	case opEmpty:
		return emptyFilter{}, nil
	case opTraced:
		return tracedFilter{}, nil
	case opSeverity:
		// The original only takes an unsigned integer here; a non-negative int64 can
		// only come from a Go caller, not from msgpack, and means the same thing.
		switch n := arr[1].(type) {
		case uint64:
			return severityFilter{min: n}, nil
		case int64:
			if n >= 0 {
				return severityFilter{min: uint64(n)}, nil
			}
		}
		return nil, fmt.Errorf("%q needs a non-negative integer, got %s", op, describe(arr[1]))
	case opExists, opNotExist:
		name, ok := arr[1].(string)
		if !ok {
			return nil, fmt.Errorf("%q needs a string attribute name, got %s", op, typeName(arr[1]))
		}
		return existsFilter{attr: name, negate: op == opNotExist}, nil
	case opOr, opAnd, opXor:
		var sub [2]Filter
		for i := range sub {
			f, err := parse(arr[i+1], depth+1)
			if err != nil {
				return nil, fmt.Errorf("operand %d of %q: %w", i+1, op, err)
			}
			sub[i] = f
		}
		return logicFilter{op: op, a: sub[0], b: sub[1]}, nil
	default: // comparisons; arity already admitted only the six of them here
		name, ok := arr[1].(string)
		if !ok {
			return nil, fmt.Errorf("%q needs a string attribute name, got %s", op, typeName(arr[1]))
		}
		f := compareFilter{op: op, attr: name, value: arr[2]}
		switch x := arr[2].(type) {
		case string, bool:
		case int64:
			f.num = number{kind: kindInt, i: x}
		case uint64:
			f.num = number{kind: kindUint, u: x}
		case float64:
			f.num = number{kind: kindFloat, f: x}
		default:
			return nil, fmt.Errorf("%q needs a bool, number or string to compare with, got %s", op, typeName(arr[2]))
		}
		return f, nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// typeName names a generic value's type in error messages, in msgpack terms where
// the Go type would only confuse a client.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "bool"
	case int64:
		return "negative integer"
	case uint64:
		return "integer"
	case float64:
		return "float"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "map"
	}
	return fmt.Sprintf("%T", v)
}

// describe is typeName plus the value itself for scalars, where the value is what
// makes the operand wrong (a negative severity).
func describe(v any) string {
	switch v.(type) {
	case int64, float64:
		return fmt.Sprintf("%s %v", typeName(v), v)
	}
	return typeName(v)
}

type emptyFilter struct{}

func (emptyFilter) Accept(*Record) bool { return true }
func (emptyFilter) Repr() any           { return []any{opEmpty} }

// tracedFilter stands for the original's "is the current trace verbose", which the
// service records per request in Record.Verbose.
type tracedFilter struct{}

func (tracedFilter) Accept(r *Record) bool { return r.Verbose }
func (tracedFilter) Repr() any             { return []any{opTraced} }

// severityFilter keeps min as the unsigned value the client sent, so a threshold
// above MaxInt rejects everything instead of wrapping negative as the original's
// cast to int would.
type severityFilter struct{ min uint64 }

func (f severityFilter) Accept(r *Record) bool {
	return r.Severity >= 0 && uint64(r.Severity) >= f.min
}
func (f severityFilter) Repr() any { return []any{opSeverity, f.min} }

type existsFilter struct {
	attr   string
	negate bool
}

func (f existsFilter) Accept(r *Record) bool {
	_, ok := r.Lookup(f.attr)
	return ok != f.negate
}

func (f existsFilter) Repr() any {
	if f.negate {
		return []any{opNotExist, f.attr}
	}
	return []any{opExists, f.attr}
}

type logicFilter struct {
	op   string
	a, b Filter
}

func (f logicFilter) Accept(r *Record) bool {
	switch f.op {
	case opOr:
		return f.a.Accept(r) || f.b.Accept(r)
	case opAnd:
		return f.a.Accept(r) && f.b.Accept(r)
	}
	return f.a.Accept(r) != f.b.Accept(r)
}

func (f logicFilter) Repr() any { return []any{f.op, f.a.Repr(), f.b.Repr()} }

// compareFilter is [op, attr, value]. value is kept exactly as parsed for Repr; num
// is its numeric form when value is a number.
type compareFilter struct {
	op    string
	attr  string
	value any
	num   number
}

func (f compareFilter) Repr() any { return []any{f.op, f.attr, f.value} }

// Accept follows the original: a missing attribute, or one that cannot be compared
// with the value, rejects for every operator except "!=", which accepts.
func (f compareFilter) Accept(r *Record) bool {
	v, ok := r.Lookup(f.attr)
	if !ok {
		return f.op == opNe
	}
	c, ok := f.compare(v)
	if !ok {
		return f.op == opNe
	}
	switch f.op {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opGt:
		return c > 0
	case opLt:
		return c < 0
	case opGe:
		return c >= 0
	}
	return c <= 0 // opLe
}

// compare orders the attribute value a against the filter's value: -1, 0 or +1, and
// false when the two cannot be compared. The filter value's type decides how a is
// read, as in the original, which converts the attribute to the filter value's type:
//
//   - string value: a must be a string; nil reads as "". Order is bytewise.
//   - bool value: a bool as is; nil is false; an integer is true when non-zero; a
//     float is true when its integer part is non-zero (the original truncates to an
//     integer first, so 0.5 is false); NaN and strings do not compare. false < true.
//   - number value: a number compares by exact mathematical value across int64,
//     uint64 and float64; a bool reads as 0 or 1 and nil as 0; strings do not
//     compare; NaN compares with nothing.
//
// Deliberate departures from the original, which are overflow or truncation
// defects there: a uint64 attribute above MaxInt64 still compares with integers; a
// negative attribute is less than an unsigned value instead of wrapping to a huge
// one; a float attribute is not truncated before comparing with an integer value
// (2.5 == 2 is false); and strings compare bytewise without the original's
// prefix defect in ">" and "<=".
func (f compareFilter) compare(a any) (int, bool) {
	switch ref := f.value.(type) {
	case string:
		switch s := a.(type) {
		case string:
			return strings.Compare(s, ref), true
		case nil:
			return strings.Compare("", ref), true
		}
		return 0, false
	case bool:
		b, ok := truth(a)
		if !ok {
			return 0, false
		}
		switch {
		case b == ref:
			return 0, true
		case ref:
			return -1, true
		}
		return 1, true
	}
	n, ok := attrNumber(a)
	if !ok {
		return 0, false
	}
	return n.cmp(f.num)
}

// truth reads an attribute as a bool for comparison with a bool value.
func truth(a any) (bool, bool) {
	switch x := a.(type) {
	case nil:
		return false, true
	case bool:
		return x, true
	case int64:
		return x != 0, true
	case uint64:
		return x != 0, true
	case float64:
		if math.IsNaN(x) {
			return false, false
		}
		return math.Trunc(x) != 0, true
	}
	return false, false
}

// attrNumber reads an attribute as a number for comparison with a numeric value.
func attrNumber(a any) (number, bool) {
	switch x := a.(type) {
	case nil:
		return number{kind: kindInt}, true
	case bool:
		if x {
			return number{kind: kindInt, i: 1}, true
		}
		return number{kind: kindInt}, true
	case int64:
		return number{kind: kindInt, i: x}, true
	case uint64:
		return number{kind: kindUint, u: x}, true
	case float64:
		return number{kind: kindFloat, f: x}, true
	}
	return number{}, false
}

type numberKind uint8

const (
	kindInt numberKind = iota
	kindUint
	kindFloat
)

// number is one of int64, uint64 or float64, compared by exact value so that no
// conversion between them can overflow or round.
type number struct {
	kind numberKind
	i    int64
	u    uint64
	f    float64
}

// cmp orders n against m; false when either is NaN.
func (n number) cmp(m number) (int, bool) {
	switch {
	case n.kind == kindFloat && m.kind == kindFloat:
		if math.IsNaN(n.f) || math.IsNaN(m.f) {
			return 0, false
		}
		return cmpOrdered(n.f, m.f), true
	case n.kind == kindFloat:
		return cmpFloat(n.f, m)
	case m.kind == kindFloat:
		c, ok := cmpFloat(m.f, n)
		return -c, ok
	case n.kind == kindInt && m.kind == kindInt:
		return cmpOrdered(n.i, m.i), true
	case n.kind == kindUint && m.kind == kindUint:
		return cmpOrdered(n.u, m.u), true
	case n.kind == kindInt: // m is uint
		if n.i < 0 {
			return -1, true
		}
		return cmpOrdered(uint64(n.i), m.u), true
	}
	// n is uint, m is int
	if m.i < 0 {
		return 1, true
	}
	return cmpOrdered(n.u, uint64(m.i)), true
}

// cmpFloat orders the float f against the integer m (kindInt or kindUint) exactly:
// it compares integer parts in the integer domain, where they are exact, then the
// fraction breaks a tie.
func cmpFloat(f float64, m number) (int, bool) {
	if math.IsNaN(f) {
		return 0, false
	}
	t := math.Trunc(f)
	frac := cmpOrdered(f-t, 0) // f and t share a sign, so this is f's side of t
	if m.kind == kindInt {
		// ±2^63 are exact float64 values; beyond them f lies outside int64.
		if t < -(1 << 63) {
			return -1, true
		}
		if t >= 1<<63 {
			return 1, true
		}
		if c := cmpOrdered(int64(t), m.i); c != 0 {
			return c, true
		}
		return frac, true
	}
	if t < 0 {
		return -1, true
	}
	if t >= 1<<64 {
		return 1, true
	}
	if c := cmpOrdered(uint64(t), m.u); c != 0 {
		return c, true
	}
	return frac, true
}

func cmpOrdered[T int64 | uint64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
