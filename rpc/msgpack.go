package rpc

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sort"
)

// This file holds the MessagePack dialect of the wire (protocol.md §1.2).
//
// Output is old-spec only: strings and blobs are "raw" (fixraw 0xa0-0xbf, raw16 0xda,
// raw32 0xdb), never str8, bin or ext, because a core built with msgpack-c <= 0.5.7 drops
// the connection on those. Integers use the smallest encoding. Input accepts everything the
// newer spec allows (str8, bin8/16/32, any integer width) and treats str and bin alike.

// Raw is an already encoded MessagePack object. AppendValue copies it verbatim, which lets
// callers pass pre-encoded arguments (a cached graph, a forwarded payload) without decoding.
type Raw []byte

// AppendNil appends nil.
func AppendNil(b []byte) []byte { return append(b, 0xc0) }

// AppendBool appends a boolean.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

// AppendUint appends a non-negative integer in its smallest encoding.
func AppendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= math.MaxUint32:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

// AppendInt appends an integer in its smallest encoding; non-negative values are encoded
// as unsigned, as msgpack-c does.
func AppendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return AppendUint(b, uint64(v))
	}
	switch {
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return append(b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32:
		return append(b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

// AppendFloat64 appends a double.
func AppendFloat64(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(v))
}

// AppendRawHeader appends the header of an old-spec raw of length n.
func AppendRawHeader(b []byte, n int) []byte {
	switch {
	case n < 32:
		return append(b, 0xa0|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xda, byte(n>>8), byte(n))
	}
	return append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendString appends s as an old-spec raw.
func AppendString(b []byte, s string) []byte {
	return append(AppendRawHeader(b, len(s)), s...)
}

// AppendBytes appends p as an old-spec raw (never bin).
func AppendBytes(b []byte, p []byte) []byte {
	return append(AppendRawHeader(b, len(p)), p...)
}

// AppendArrayHeader appends the header of an array of n elements.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// AppendMapHeader appends the header of a map of n pairs.
func AppendMapHeader(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xde, byte(n>>8), byte(n))
	}
	return append(b, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// Marshaler is implemented by types that encode themselves on the wire.
type Marshaler interface {
	AppendMsgpack(b []byte) ([]byte, error)
}

// AppendValue appends v. It handles nil, booleans, every integer and float kind, string,
// []byte, Raw, Marshaler (an *Error encodes as the error args [[category, code], message]),
// slices, arrays, maps (keys sorted so the output is deterministic) and pointers to
// those. Other types are an error.
func AppendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return AppendNil(b), nil
	case bool:
		return AppendBool(b, x), nil
	case int:
		return AppendInt(b, int64(x)), nil
	case int64:
		return AppendInt(b, x), nil
	case int32:
		return AppendInt(b, int64(x)), nil
	case uint:
		return AppendUint(b, uint64(x)), nil
	case uint64:
		return AppendUint(b, x), nil
	case uint32:
		return AppendUint(b, uint64(x)), nil
	case uint16:
		return AppendUint(b, uint64(x)), nil
	case float64:
		return AppendFloat64(b, x), nil
	case string:
		return AppendString(b, x), nil
	case []byte:
		return AppendBytes(b, x), nil
	case Raw:
		return append(b, x...), nil
	case Marshaler:
		return x.AppendMsgpack(b)
	case []string:
		b = AppendArrayHeader(b, len(x))
		for _, s := range x {
			b = AppendString(b, s)
		}
		return b, nil
	case []any:
		b = AppendArrayHeader(b, len(x))
		for _, e := range x {
			var err error
			if b, err = AppendValue(b, e); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = AppendMapHeader(b, len(x))
		for _, k := range keys {
			b = AppendString(b, k)
			var err error
			if b, err = AppendValue(b, x[k]); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return appendReflect(b, reflect.ValueOf(v))
}

func appendReflect(b []byte, v reflect.Value) ([]byte, error) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return AppendNil(b), nil
		}
		return AppendValue(b, v.Elem().Interface())
	case reflect.Bool:
		return AppendBool(b, v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return AppendInt(b, v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return AppendUint(b, v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return AppendFloat64(b, v.Float()), nil
	case reflect.String:
		return AppendString(b, v.String()), nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return AppendBytes(b, v.Bytes()), nil
		}
		b = AppendArrayHeader(b, v.Len())
		for i := 0; i < v.Len(); i++ {
			var err error
			if b, err = AppendValue(b, v.Index(i).Interface()); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return lessKey(keys[i], keys[j]) })
		b = AppendMapHeader(b, len(keys))
		for _, k := range keys {
			var err error
			if b, err = AppendValue(b, k.Interface()); err != nil {
				return b, err
			}
			if b, err = AppendValue(b, v.MapIndex(k).Interface()); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return b, fmt.Errorf("rpc: cannot encode %s as msgpack", v.Type())
}

// lessKey orders map keys as C++ std::map would: numbers numerically, strings bytewise.
func lessKey(a, c reflect.Value) bool {
	switch a.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() < c.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a.Uint() < c.Uint()
	case reflect.String:
		return a.String() < c.String()
	}
	return fmt.Sprint(a.Interface()) < fmt.Sprint(c.Interface())
}

// Marshal encodes v as one MessagePack object.
func Marshal(v any) ([]byte, error) { return AppendValue(nil, v) }
