package unicorn

import (
	"fmt"

	"github.com/cocaine/cocaine/rpc"
)

// Decoders of the results Apply returns, one per command (see command.go for the
// shapes). A result carrying an error returns it as a *codedError that matches its
// sentinel; a result that does not decode is ErrBackend.

func badResult(op string, err error) error {
	return fmt.Errorf("%w: malformed %s result: %v", ErrBackend, op, err)
}

func decodePutResult(res []byte) (ok bool, value []byte, version int64, err error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return false, nil, 0, err
	}
	if err := decodeAll(d, boolean(&ok), raw(&value), i64(&version)); err != nil {
		return false, nil, 0, badResult("put", err)
	}
	return ok, value, version, nil
}

func decodeCreateResult(res []byte) (path string, rev Revision, err error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return "", 0, err
	}
	if err := decodeAll(d, str(&path), revision(&rev)); err != nil {
		return "", 0, badResult("create", err)
	}
	return path, rev, nil
}

func decodeRemoveResult(res []byte) (rev Revision, err error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return 0, err
	}
	if err := revision(&rev)(d); err != nil {
		return 0, badResult("remove", err)
	}
	return rev, nil
}

func decodeIncrementResult(res []byte) (value []byte, version int64, err error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return nil, 0, err
	}
	if err := decodeAll(d, raw(&value), i64(&version)); err != nil {
		return nil, 0, badResult("increment", err)
	}
	return value, version, nil
}

func decodeGrantResult(res []byte) (id LeaseID, ttl int64, err error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return 0, 0, err
	}
	if err := decodeAll(d, lease(&id), i64(&ttl)); err != nil {
		return 0, 0, badResult("grant", err)
	}
	return id, ttl, nil
}

func decodeRevokeResult(res []byte) (rev Revision, found int64, err error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return 0, 0, err
	}
	if err := decodeAll(d, revision(&rev), i64(&found)); err != nil {
		return 0, 0, badResult("revoke", err)
	}
	return rev, found, nil
}

func decodeTxnResultBytes(res []byte) (TxnResult, error) {
	d, _, err := decodeResult(res)
	if err != nil {
		return TxnResult{}, err
	}
	r, err := decodeTxnResult(d)
	if err != nil {
		return TxnResult{}, badResult("txn", err)
	}
	return r, nil
}

// validateValue is the proposer's check of a value: at most max bytes, exactly one
// msgpack object, and a dynamic value as the original accepts them (no ext types, string
// map keys only). The size error is ErrInvalidValue with both sizes; the others are
// protocol violations in the original (its argument decoding fails), so the caller
// decides whether they are fatal.
func validateValue(v []byte, limit int) (sizeErr, shapeErr error) {
	if len(v) > limit {
		return errorf(ErrInvalidValue, "value of %d bytes exceeds the limit of %d bytes", len(v), limit), nil
	}
	x, err := rpc.Unmarshal(v)
	if err != nil {
		return nil, errorf(ErrInvalidValue, "value is not one msgpack object: %v", err)
	}
	if !dynamic(x) {
		return nil, errorf(ErrInvalidValue, "value has a map with keys that are not strings")
	}
	return nil, nil
}

// dynamic reports whether every map in x has string keys.
func dynamic(x any) bool {
	switch v := x.(type) {
	case []any:
		for _, e := range v {
			if !dynamic(e) {
				return false
			}
		}
	case map[string]any:
		for _, e := range v {
			if !dynamic(e) {
				return false
			}
		}
	case map[any]any:
		return len(v) == 0
	}
	return true
}
