package node

import (
	"errors"
	"fmt"
	"sort"

	"github.com/cocaine/cocaine/rpc"
)

// Manifest says how to run an app (plugins.md §2.3): the executable and its environment.
// It is stored msgpack-encoded in the "manifests" collection under the app's name.
type Manifest struct {
	// Slave is the executable, relative to the app's spool directory unless absolute.
	Slave string
	// Environment is added to the worker's environment.
	Environment map[string]string
	// Raw is the whole stored object, returned by info with the expand-manifest flag.
	Raw map[string]any
}

// DecodeManifest decodes and validates a stored manifest. Every problem is reported, each
// wrapping ErrInvalidManifest.
func DecodeManifest(b []byte) (Manifest, error) {
	v, err := rpc.Unmarshal(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w: not msgpack: %v", ErrInvalidManifest, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Manifest{}, fmt.Errorf("%w: a manifest is a map with string keys, got %s", ErrInvalidManifest, typeName(v))
	}
	m := Manifest{Raw: obj}
	var errs []error
	switch s := obj["slave"].(type) {
	case nil:
		errs = append(errs, fmt.Errorf("%w: runnable object has not been specified (\"slave\" is missing)", ErrInvalidManifest))
	case string:
		if s == "" {
			errs = append(errs, fmt.Errorf("%w: \"slave\" is empty", ErrInvalidManifest))
		}
		m.Slave = s
	default:
		errs = append(errs, fmt.Errorf("%w: \"slave\" must be a string, got %s", ErrInvalidManifest, typeName(s)))
	}
	switch env := obj["environment"].(type) {
	case nil:
	case map[string]any:
		m.Environment = make(map[string]string, len(env))
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s, ok := env[k].(string)
			if !ok {
				errs = append(errs, fmt.Errorf("%w: environment %q must be a string, got %s", ErrInvalidManifest, k, typeName(env[k])))
				continue
			}
			if k == "" || containsAny(k, "=\x00") || containsAny(s, "\x00") {
				errs = append(errs, fmt.Errorf("%w: environment %q: names must be non-empty without '=' or NUL, values without NUL", ErrInvalidManifest, k))
				continue
			}
			m.Environment[k] = s
		}
	default:
		errs = append(errs, fmt.Errorf("%w: \"environment\" must be a map of strings, got %s", ErrInvalidManifest, typeName(env)))
	}
	return m, errors.Join(errs...)
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// typeName names the msgpack shape of a decoded value for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "nil"
	case bool:
		return "a boolean"
	case uint64, int64:
		return "an integer"
	case float64:
		return "a float"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any, map[any]any:
		return "a map"
	}
	return fmt.Sprintf("%T", v)
}
