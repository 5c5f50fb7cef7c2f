package rpc

import (
	"errors"
	"fmt"
)

// Args is the encoded args array of a message.
type Args Raw

// Len reports the number of arguments (0 for malformed args).
func (a Args) Len() int {
	n, err := NewDecoder(a).ArrayLen()
	if err != nil {
		return 0
	}
	return n
}

// Decoder returns a decoder positioned at the first argument, and the argument count.
func (a Args) Decoder() (*Decoder, int, error) {
	d := NewDecoder(a)
	n, err := d.ArrayLen()
	return d, n, err
}

// optional marks a Scan destination as an optional trailing argument.
type optional struct{ dst any }

// Optional marks dst as optional: it keeps its value when the args array is too short to
// reach it. As in the original (protocol.md §4.4), a present optional argument must have
// the right type, and nil is not "absent": it is a type error.
func Optional(dst any) any { return optional{dst} }

// ArgDecoder is implemented by types that decode themselves from one argument.
type ArgDecoder interface {
	DecodeMsgpack(d *Decoder) error
}

// Scan decodes the arguments into dst, which are pointers: *string, *[]byte, *bool,
// *int, *int64, *uint64, *uint32, *float64, *[]string, *any (a generic value, see
// Decoder.Value), *Raw (the encoded argument), *[]any, *map[string]any, or an ArgDecoder.
// Wrap trailing ones with Optional. Extra arguments are ignored, as the core ignores
// them.
//
// A failure is a protocol violation (the original closes the connection on it): the
// error wraps ErrInvalidArgument and is Fatal.
func (a Args) Scan(dst ...any) error {
	d, n, err := a.Decoder()
	if err != nil {
		return Fatal(fmt.Errorf("%w: args: %v", ErrInvalidArgument, err))
	}
	required := len(dst)
	for required > 0 {
		if _, ok := dst[required-1].(optional); !ok {
			break
		}
		required--
	}
	if n < required {
		return Fatal(fmt.Errorf("%w: %d arguments, need at least %d", ErrInvalidArgument, n, required))
	}
	for i, p := range dst {
		if i >= n {
			break
		}
		if o, ok := p.(optional); ok {
			p = o.dst
		}
		if err := scanOne(d, p); err != nil {
			return Fatal(fmt.Errorf("%w: argument %d: %v", ErrInvalidArgument, i, err))
		}
	}
	return nil
}

func scanOne(d *Decoder, p any) error {
	var err error
	switch x := p.(type) {
	case *string:
		*x, err = d.String()
	case *[]byte:
		var b []byte
		b, err = d.Bytes()
		*x = append([]byte(nil), b...)
	case *bool:
		*x, err = d.Bool()
	case *int:
		var v int64
		v, err = d.Int()
		*x = int(v)
	case *int64:
		*x, err = d.Int()
	case *uint64:
		*x, err = d.Uint()
	case *uint32:
		var v uint64
		if v, err = d.Uint(); err == nil && v > 1<<32-1 {
			err = fmt.Errorf("%d overflows uint32", v)
		}
		*x = uint32(v)
	case *float64:
		*x, err = d.Float()
	case *[]string:
		var n int
		if n, err = d.ArrayLen(); err != nil {
			return err
		}
		out := make([]string, n)
		for i := range out {
			if out[i], err = d.String(); err != nil {
				return err
			}
		}
		*x = out
	case *any:
		*x, err = d.Value()
	case *Raw:
		var r Raw
		r, err = d.Raw()
		*x = append(Raw(nil), r...)
	case *[]any:
		if d.Peek() != KindArray {
			return fmt.Errorf("expected array, got %s", d.Peek())
		}
		var v any
		v, err = d.Value()
		*x, _ = v.([]any)
	case *map[string]any:
		if d.Peek() != KindMap {
			return fmt.Errorf("expected map, got %s", d.Peek())
		}
		var v any
		if v, err = d.Value(); err != nil {
			return err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("map keys must be strings")
		}
		*x = m
	case ArgDecoder:
		err = x.DecodeMsgpack(d)
	default:
		return fmt.Errorf("rpc: Scan cannot decode into %T", p)
	}
	return err
}

// fatalError marks an error as a protocol violation that closes the connection.
type fatalError struct{ err error }

func (f fatalError) Error() string { return f.err.Error() }
func (f fatalError) Unwrap() error { return f.err }

// Fatal marks err as a protocol violation: returned from a handler, it closes the whole
// connection without a reply, as the original does for undecodable arguments.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return fatalError{err}
}

// IsFatal reports whether err was marked with Fatal.
func IsFatal(err error) bool {
	var f fatalError
	return errors.As(err, &f)
}
