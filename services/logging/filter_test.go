package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// rec builds a record with backend "app/test" and the given name, value pairs.
func rec(sev int, kv ...any) *Record {
	r := &Record{Severity: sev, Backend: "app/test"}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Attrs = append(r.Attrs, Attr{Name: kv[i].(string), Value: kv[i+1]})
	}
	return r
}

func arr(v ...any) []any { return v }

func mustParse(t *testing.T, v any) Filter {
	t.Helper()
	f, err := ParseFilter(v)
	if err != nil {
		t.Fatalf("ParseFilter(%#v): %v", v, err)
	}
	return f
}

func TestFilterForms(t *testing.T) {
	traced := rec(0)
	traced.Verbose = true
	for _, tc := range []struct {
		name string
		repr any
		r    *Record
		want bool
	}{
		{"empty accepts", arr("empty"), rec(0), true},
		{"traced verbose", arr("traced"), traced, true},
		{"traced quiet", arr("traced"), rec(3), false},
		{"severity equal", arr("severity", uint64(2)), rec(2), true},
		{"severity above", arr("severity", uint64(2)), rec(3), true},
		{"severity below", arr("severity", uint64(2)), rec(1), false},
		{"severity 0 rejects negative", arr("severity", uint64(0)), rec(-1), false},
		{"severity huge", arr("severity", uint64(math.MaxUint64)), rec(math.MaxInt), false},
		{"severity int64", arr("severity", int64(1)), rec(1), true},
		{"exists", arr("e", "user"), rec(0, "user", "bob"), true},
		{"exists nil value", arr("e", "user"), rec(0, "user", nil), true},
		{"exists missing", arr("e", "user"), rec(0), false},
		{"not exists", arr("!e", "user"), rec(0), true},
		{"not exists present", arr("!e", "user"), rec(0, "user", "x"), false},
		{"exists source", arr("e", "source"), rec(0), true},
		{"exists message is not an attribute", arr("e", "message"), &Record{Message: "hi"}, false},
		{"exists severity is not an attribute", arr("e", "severity"), rec(3), false},

		{"== string", arr("==", "user", "bob"), rec(0, "user", "bob"), true},
		{"== string differs", arr("==", "user", "bob"), rec(0, "user", "alice"), false},
		{"!= string", arr("!=", "user", "bob"), rec(0, "user", "alice"), true},
		{"!= string same", arr("!=", "user", "bob"), rec(0, "user", "bob"), false},
		{"> string", arr(">", "s", "abc"), rec(0, "s", "abd"), true},
		{"> string prefix longer", arr(">", "s", "ab"), rec(0, "s", "abc"), true},
		{"> string prefix shorter", arr(">", "s", "abc"), rec(0, "s", "ab"), false},
		{"< string", arr("<", "s", "b"), rec(0, "s", "a"), true},
		{"<= string equal", arr("<=", "s", "b"), rec(0, "s", "b"), true},
		{"<= string longer", arr("<=", "s", "ab"), rec(0, "s", "abc"), false},
		{">= string", arr(">=", "s", "b"), rec(0, "s", "c"), true},
		{"string bytewise high bit", arr(">", "s", "z"), rec(0, "s", "\xff"), true},
		{"== source", arr("==", "source", "app/test"), rec(0), true},
		{"client source shadows backend", arr("==", "source", "mine"), rec(0, "source", "mine"), true},
		{"first duplicate wins", arr("==", "k", uint64(1)), rec(0, "k", uint64(1), "k", uint64(2)), true},
		{"second duplicate ignored", arr("==", "k", uint64(2)), rec(0, "k", uint64(1), "k", uint64(2)), false},

		{"== uint", arr("==", "n", uint64(5)), rec(0, "n", uint64(5)), true},
		{"== uint vs int attr", arr("==", "n", uint64(5)), rec(0, "n", int64(5)), true},
		{"== uint vs float attr", arr("==", "n", uint64(5)), rec(0, "n", 5.0), true},
		{"== uint vs fractional float", arr("==", "n", uint64(2)), rec(0, "n", 2.5), false},
		{"> uint vs fractional float", arr(">", "n", uint64(2)), rec(0, "n", 2.5), true},
		{"< uint vs negative attr", arr("<", "n", uint64(5)), rec(0, "n", int64(-1)), true},
		{"> int vs huge uint attr", arr(">", "n", int64(-1)), rec(0, "n", uint64(math.MaxUint64)), true},
		{"== max uint", arr("==", "n", uint64(math.MaxUint64)), rec(0, "n", uint64(math.MaxUint64)), true},
		{"!= max uint vs max-1", arr("!=", "n", uint64(math.MaxUint64)), rec(0, "n", uint64(math.MaxUint64-1)), true},
		{"float precision: 2^53+1 > 2^53 float", arr(">", "n", float64(1<<53)), rec(0, "n", uint64(1<<53+1)), true},
		{"float precision: 2^53+1 != 2^53 float", arr("==", "n", float64(1<<53)), rec(0, "n", uint64(1<<53+1)), false},
		{"< float", arr("<", "n", 1.5), rec(0, "n", int64(1)), true},
		{">= float", arr(">=", "n", 1.5), rec(0, "n", 1.5), true},
		{"<= negative int", arr("<=", "n", int64(-3)), rec(0, "n", int64(-4)), true},
		{"> negative float vs int", arr(">", "n", int64(-3)), rec(0, "n", -2.5), true},
		{"< negative float vs int", arr("<", "n", int64(-2)), rec(0, "n", -2.5), true},
		{"inf > max uint", arr(">", "n", uint64(math.MaxUint64)), rec(0, "n", math.Inf(1)), true},
		{"-inf < min int", arr("<", "n", int64(math.MinInt64)), rec(0, "n", math.Inf(-1)), true},
		{"NaN == rejects", arr("==", "n", 1.0), rec(0, "n", math.NaN()), false},
		{"NaN < rejects", arr("<", "n", uint64(1)), rec(0, "n", math.NaN()), false},
		{"NaN != accepts", arr("!=", "n", 1.0), rec(0, "n", math.NaN()), true},

		{"== bool", arr("==", "b", true), rec(0, "b", true), true},
		{"== bool false", arr("==", "b", false), rec(0, "b", true), false},
		{"!= bool", arr("!=", "b", false), rec(0, "b", true), true},
		{"> bool", arr(">", "b", false), rec(0, "b", true), true},

		{"missing == rejects", arr("==", "x", "a"), rec(0), false},
		{"missing > rejects", arr(">", "x", uint64(1)), rec(0), false},
		{"missing <= rejects", arr("<=", "x", uint64(1)), rec(0), false},
		{"missing != accepts", arr("!=", "x", "a"), rec(0), true},

		{"|| first", arr("||", arr("e", "a"), arr("e", "b")), rec(0, "a", nil), true},
		{"|| second", arr("||", arr("e", "a"), arr("e", "b")), rec(0, "b", nil), true},
		{"|| neither", arr("||", arr("e", "a"), arr("e", "b")), rec(0), false},
		{"&& both", arr("&&", arr("e", "a"), arr("e", "b")), rec(0, "a", nil, "b", nil), true},
		{"&& one", arr("&&", arr("e", "a"), arr("e", "b")), rec(0, "a", nil), false},
		{"xor one", arr("xor", arr("e", "a"), arr("e", "b")), rec(0, "a", nil), true},
		{"xor both", arr("xor", arr("e", "a"), arr("e", "b")), rec(0, "a", nil, "b", nil), false},
		{"xor neither", arr("xor", arr("e", "a"), arr("e", "b")), rec(0), false},
		{"nested", arr("&&", arr("severity", uint64(2)), arr("||", arr("==", "source", "app/test"), arr("traced"))), rec(2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustParse(t, tc.repr)
			if got := f.Accept(tc.r); got != tc.want {
				t.Errorf("%v.Accept = %v, want %v", tc.repr, got, tc.want)
			}
		})
	}
}

// TestFilterTypeMismatch pins what happens when the attribute's type differs from
// the filter value's: the original converts the attribute to the value's type where
// it can (nil -> zero, bool <-> number) and rejects (accepts for !=) where it can't.
func TestFilterTypeMismatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		repr any
		val  any
		want bool
	}{
		{"string value, int attr", arr("==", "a", "5"), uint64(5), false},
		{"string value, int attr, !=", arr("!=", "a", "5"), uint64(5), true},
		{"string value, bool attr", arr("==", "a", "true"), true, false},
		{"string value, nil attr reads empty", arr("==", "a", ""), nil, true},
		{"string value, nil attr <", arr("<", "a", "x"), nil, true},
		{"number value, string attr", arr("==", "a", uint64(5)), "5", false},
		{"number value, string attr, !=", arr("!=", "a", uint64(5)), "5", true},
		{"number value, string attr, <", arr("<", "a", uint64(5)), "1", false},
		{"number value, nil attr reads 0", arr("==", "a", uint64(0)), nil, true},
		{"number value, true reads 1", arr("==", "a", uint64(1)), true, true},
		{"number value, false reads 0", arr("<", "a", 0.5), false, true},
		{"bool value, nonzero int", arr("==", "a", true), int64(-7), true},
		{"bool value, zero uint", arr("==", "a", false), uint64(0), true},
		{"bool value, huge uint", arr("==", "a", true), uint64(math.MaxUint64), true},
		{"bool value, float truncates", arr("==", "a", false), 0.5, true},
		{"bool value, float 1.5", arr("==", "a", true), 1.5, true},
		{"bool value, NaN", arr("==", "a", true), math.NaN(), false},
		{"bool value, NaN !=", arr("!=", "a", true), math.NaN(), true},
		{"bool value, nil reads false", arr("==", "a", false), nil, true},
		{"bool value, string", arr("==", "a", true), "true", false},
		{"bool value, string !=", arr("!=", "a", true), "true", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustParse(t, tc.repr)
			if got := f.Accept(rec(0, "a", tc.val)); got != tc.want {
				t.Errorf("%v on a=%#v: got %v, want %v", tc.repr, tc.val, got, tc.want)
			}
		})
	}
}

func TestParseFilterErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		repr any
		msg  string // the whole error message
	}{
		{"nil", nil, "representation must be an array, got nil"},
		{"string", "empty", "representation must be an array, got string"},
		{"map", map[string]any{"op": "empty"}, "representation must be an array, got map"},
		{"empty array", arr(), "representation is an empty array"},
		{"operator not string", arr(uint64(1)), "operator must be a string, got integer"},
		{"operator nil", arr(nil, "a"), "operator must be a string, got nil"},
		{"unknown operator", arr("like", "a", "b"), `unknown operator "like"`},
		{"unknown single", arr("all"), `unknown operator "all"`},
		{"empty with operand", arr("empty", "x"), `"empty" needs 0 operands, got 1`},
		{"traced with operand", arr("traced", true), `"traced" needs 0 operands, got 1`},
		{"severity bare", arr("severity"), `"severity" needs 1 operand, got 0`},
		{"severity string", arr("severity", "2"), `"severity" needs a non-negative integer, got string`},
		{"severity negative", arr("severity", int64(-1)), `"severity" needs a non-negative integer, got negative integer -1`},
		{"severity float", arr("severity", 2.5), `"severity" needs a non-negative integer, got float 2.5`},
		{"e three", arr("e", "a", "b"), `"e" needs 1 operand, got 2`},
		{"e number", arr("e", uint64(1)), `"e" needs a string attribute name, got integer`},
		{"!e array", arr("!e", arr("a")), `"!e" needs a string attribute name, got array`},
		{"== two", arr("==", "a"), `"==" needs 2 operands, got 1`},
		{"== four", arr("==", "a", "b", "c"), `"==" needs 2 operands, got 3`},
		{"== attr not string", arr("==", uint64(1), uint64(1)), `"==" needs a string attribute name, got integer`},
		{"== nil value", arr("==", "a", nil), `"==" needs a bool, number or string to compare with, got nil`},
		{"< array value", arr("<", "a", arr()), `"<" needs a bool, number or string to compare with, got array`},
		{">= map value", arr(">=", "a", map[string]any{}), `">=" needs a bool, number or string to compare with, got map`},
		{"|| one", arr("||", arr("empty")), `"||" needs 2 operands, got 1`},
		{"&& none", arr("&&"), `"&&" needs 2 operands, got 0`},
		{"xor three", arr("xor", arr("empty"), arr("empty"), arr("empty")), `"xor" needs 2 operands, got 3`},
		{"|| scalar operand", arr("||", "empty", arr("empty")), `operand 1 of "||": representation must be an array, got string`},
		{"&& bad nested", arr("&&", arr("empty"), arr("e", uint64(3))), `operand 2 of "&&": "e" needs a string attribute name, got integer`},
		{"foreign go type", arr("==", "a", 5), `"==" needs a bool, number or string to compare with, got int`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := ParseFilter(tc.repr)
			if err == nil {
				t.Fatalf("ParseFilter(%#v) = %v, want error", tc.repr, f.Repr())
			}
			if !errors.Is(err, ErrInvalidFilter) {
				t.Errorf("error %v does not wrap ErrInvalidFilter", err)
			}
			if want := "logging: invalid filter: " + tc.msg; err.Error() != want {
				t.Errorf("error = %q\nwant    %q", err, want)
			}
		})
	}
}

// nest wraps leaf in depth-1 levels of ["&&", x, ["empty"]].
func nest(depth int, leaf any) any {
	v := leaf
	for range depth - 1 {
		v = arr("&&", v, arr("empty"))
	}
	return v
}

func TestFilterNestingLimit(t *testing.T) {
	f := mustParse(t, nest(MaxFilterDepth, arr("empty")))
	if !f.Accept(rec(0)) {
		t.Error("deepest allowed filter rejected")
	}
	for _, depth := range []int{MaxFilterDepth + 1, 1_000_000} {
		_, err := ParseFilter(nest(depth, arr("empty")))
		if !errors.Is(err, ErrInvalidFilter) || !strings.Contains(err.Error(), "nested deeper than 64 levels") {
			t.Errorf("depth %d: err = %v", depth, err)
		}
	}
	// Depth counts filters, not arrays: the second operand nests too.
	deepRight := arr("empty")
	for range MaxFilterDepth {
		deepRight = arr("||", arr("empty"), deepRight)
	}
	if _, err := ParseFilter(deepRight); !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("right-nested depth %d accepted", MaxFilterDepth+1)
	}
}

func TestFilterReprRoundTrip(t *testing.T) {
	for _, repr := range []any{
		arr("empty"),
		arr("traced"),
		arr("severity", uint64(3)),
		arr("e", "a"),
		arr("!e", ""),
		arr("==", "a", "b"),
		arr("!=", "a", int64(-5)),
		arr(">", "a", uint64(math.MaxUint64)),
		arr("<", "a", 2.5),
		arr(">=", "a", true),
		arr("<=", "a", false),
		arr("||", arr("e", "a"), arr("&&", arr("traced"), arr("xor", arr("empty"), arr("severity", uint64(0))))),
	} {
		f := mustParse(t, repr)
		got := f.Repr()
		if !reflect.DeepEqual(got, repr) {
			t.Errorf("Repr = %#v, want %#v", got, repr)
		}
		// Repr must be a fresh value: mutating it must not change the filter.
		got.([]any)[0] = "mutated"
		if !reflect.DeepEqual(f.Repr(), repr) {
			t.Errorf("Repr shares memory with the filter: %#v", f.Repr())
		}
	}
	// A non-negative int64 severity (a Go caller, not msgpack) normalizes to uint64.
	if got := mustParse(t, arr("severity", int64(2))).Repr(); !reflect.DeepEqual(got, arr("severity", uint64(2))) {
		t.Errorf("severity int64 Repr = %#v", got)
	}
}

// genericJSON decodes a JSON document into the generic value shape a msgpack decoder
// produces: non-negative integers as uint64, negative ones as int64, other numbers
// as float64.
func genericJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return fromJSON(v), nil
}

func fromJSON(v any) any {
	switch x := v.(type) {
	case json.Number:
		if u, err := strconv.ParseUint(x.String(), 10, 64); err == nil {
			return u
		}
		if i, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(x.String(), 64) // ±Inf on overflow, fine here
		return f
	case []any:
		for i := range x {
			x[i] = fromJSON(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = fromJSON(x[k])
		}
	}
	return v
}

// FuzzParseFilter feeds JSON-encoded representations to ParseFilter. Properties: no
// panic; every error wraps ErrInvalidFilter; an accepted filter's Repr parses again
// to a filter with the same Repr; applying it to a few records does not panic.
func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{
		`["empty"]`,
		`["severity", 2]`,
		`["==", "source", "app/echo"]`,
		`["||", ["&&", ["e", "user"], [">=", "latency", 1.5]], ["xor", ["traced"], ["!=", "n", -3]]]`,
		`["<", "a", true]`,
		`["||", ["empty"]]`,
	} {
		f.Add(seed)
	}
	records := []*Record{
		rec(0),
		rec(3, "user", "bob", "latency", 2.0, "n", int64(-3), "a", nil),
		rec(1, "user", uint64(1), "latency", "slow", "n", math.NaN(), "a", true),
	}
	f.Fuzz(func(t *testing.T, input string) {
		v, err := genericJSON([]byte(input))
		if err != nil {
			t.Skip()
		}
		flt, err := ParseFilter(v)
		if err != nil {
			if !errors.Is(err, ErrInvalidFilter) {
				t.Fatalf("error %v does not wrap ErrInvalidFilter", err)
			}
			return
		}
		repr := flt.Repr()
		again, err := ParseFilter(repr)
		if err != nil {
			t.Fatalf("Repr %#v does not parse: %v", repr, err)
		}
		if !reflect.DeepEqual(again.Repr(), repr) {
			t.Fatalf("Repr changed across a round trip: %#v -> %#v", repr, again.Repr())
		}
		for _, r := range records {
			flt.Accept(r)
		}
	})
}
