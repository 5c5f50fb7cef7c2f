package daemon_test

import (
	"bytes"
	"crypto/rand"
	"slices"
	"strconv"
	"testing"

	"github.com/cocaine/cocaine/rpc"
)

// storageError is the [category, code] of an error reply, or [0, 0] for success.
type storageError [2]int

func errorCode(t *testing.T, err error) storageError {
	t.Helper()
	if err == nil {
		return storageError{}
	}
	e := wireError(t, err)
	return storageError{e.Category, e.Code}
}

var (
	noError  = storageError{}
	enoent   = storageError{rpc.CategoryGeneric, 2}
	einval   = storageError{rpc.CategoryGeneric, 22}
	emptyStr = []string{}
)

// TestStorageRoundTrip runs a script of storage calls over one connection; each step
// checks the reply.
func TestStorageRoundTrip(t *testing.T) {
	n := startNode(t, testConfig(t))
	st := connect(t, n, "storage")
	for _, tc := range []struct {
		name   string
		method string
		args   []any
		err    storageError
		value  any // []byte for read, []string for find
	}{
		{"write k1 tagged a b", "write", []any{"c", "k1", []byte("one"), []string{"a", "b"}}, noError, nil},
		{"write k2 tagged a", "write", []any{"c", "k2", []byte("two"), []string{"a"}}, noError, nil},
		{"write k3 untagged", "write", []any{"c", "k3", []byte("three")}, noError, nil},
		{"write k4 in another collection", "write", []any{"d", "k4", []byte("four"), []string{"a", "b"}}, noError, nil},
		{"read k1", "read", []any{"c", "k1"}, noError, []byte("one")},
		{"read k3", "read", []any{"c", "k3"}, noError, []byte("three")},
		{"find a", "find", []any{"c", []string{"a"}}, noError, []string{"k1", "k2"}},
		{"find a and b", "find", []any{"c", []string{"b", "a"}}, noError, []string{"k1"}},
		{"find an unknown tag", "find", []any{"c", []string{"a", "zzz"}}, noError, emptyStr},
		{"find no tags", "find", []any{"c", []string{}}, noError, emptyStr},
		{"find in an unknown collection", "find", []any{"nope", []string{"a"}}, noError, emptyStr},
		{"rewrite k1 drops its tags", "write", []any{"c", "k1", []byte("uno"), []string{"b"}}, noError, nil},
		{"find a after the rewrite", "find", []any{"c", []string{"a"}}, noError, []string{"k2"}},
		{"read the rewrite", "read", []any{"c", "k1"}, noError, []byte("uno")},
		{"remove k1", "remove", []any{"c", "k1"}, noError, nil},
		{"read the removed key", "read", []any{"c", "k1"}, enoent, nil},
		{"find after remove", "find", []any{"c", []string{"b"}}, noError, emptyStr},
		{"remove a missing key", "remove", []any{"c", "never"}, noError, nil},
		{"read a missing collection", "read", []any{"never", "k"}, enoent, nil},
		{"write with an empty key", "write", []any{"c", "", []byte("x")}, einval, nil},
		{"write an empty value", "write", []any{"c", "empty", []byte{}}, noError, nil},
		{"read an empty value", "read", []any{"c", "empty"}, noError, []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := call(t, st, tc.method, tc.args...)
			if got := errorCode(t, err); got != tc.err {
				t.Fatalf("error %v (%v), want %v", got, err, tc.err)
			}
			if err != nil {
				return
			}
			switch want := tc.value.(type) {
			case nil:
				if a.Len() != 0 {
					t.Errorf("value has %d args, want none", a.Len())
				}
			case []byte:
				var got []byte
				if err := a.Scan(&got); err != nil || !bytes.Equal(got, want) {
					t.Errorf("read = %q, %v; want %q", got, err, want)
				}
			case []string:
				var got []string
				if err := a.Scan(&got); err != nil || !slices.Equal(got, want) || got == nil {
					t.Errorf("find = %q, %v; want %q", got, err, want)
				}
			}
		})
	}
}

func TestStorageMissingKeyError(t *testing.T) {
	n := startNode(t, testConfig(t))
	_, err := call(t, connect(t, n, "storage"), "read", "apps", "echo")
	e := wireError(t, err)
	if e.Category != 12 || e.Code != 2 || e.Message == "" {
		t.Errorf("got [%d, %d] %q, want [12, 2] with a message", e.Category, e.Code, e.Message)
	}
}

// TestStorageLargeValuesPersist writes 1 MiB values, restarts the node on the same data
// dir and reads them back.
func TestStorageLargeValuesPersist(t *testing.T) {
	cfg := testConfig(t)
	values := map[string][]byte{}
	for _, k := range []string{"a", "b", "c"} {
		v := make([]byte, 1<<20)
		rand.Read(v)
		values[k] = v
	}
	first := startNode(t, cfg)
	st := connect(t, first, "storage")
	for k, v := range values {
		mustCall(t, st, "write", []any{"apps", k, v, []string{"app"}})
		var got []byte
		mustCall(t, st, "read", []any{"apps", k}, &got)
		if !bytes.Equal(got, v) {
			t.Fatalf("read %s before the restart: %d bytes differ from the %d written", k, len(got), len(v))
		}
	}
	st.Close()
	if err := first.stop(t); err != nil {
		t.Fatal(err)
	}

	second := startNode(t, cfg)
	st = connect(t, second, "storage")
	for k, v := range values {
		var got []byte
		mustCall(t, st, "read", []any{"apps", k}, &got)
		if !bytes.Equal(got, v) {
			t.Errorf("read %s after the restart: got %d bytes, not the %d written", k, len(got), len(v))
		}
	}
	var keys []string
	mustCall(t, st, "find", []any{"apps", []string{"app"}}, &keys)
	if !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Errorf("find after the restart = %q", keys)
	}
}

// TestStoragePipelinedWritesApplyInOrder sends writes of one key back to back on one
// connection, without waiting for replies, as cocaine-tool does: they are applied in the
// order sent, so the last one wins. Replies come back for every write.
func TestStoragePipelinedWritesApplyInOrder(t *testing.T) {
	n := startNode(t, testConfig(t))
	for _, tc := range []struct {
		name   string
		writes int
		size   int
	}{
		{"small", 200, 16},
		{"64 KiB", 40, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := connect(t, n, "storage")
			ctx := ctxT(t)
			chans := make([]*rpc.Channel, tc.writes)
			for i := range chans {
				v := bytes.Repeat([]byte{byte(i)}, tc.size)
				v = append(v, strconv.Itoa(i)...)
				ch, err := st.Call(ctx, "write", "pipeline", tc.name, v)
				if err != nil {
					t.Fatal(err)
				}
				chans[i] = ch
			}
			for i, ch := range chans {
				if _, err := ch.Get(ctx); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
			last := tc.writes - 1
			want := append(bytes.Repeat([]byte{byte(last)}, tc.size), strconv.Itoa(last)...)
			var got []byte
			mustCall(t, connect(t, n, "storage"), "read", []any{"pipeline", tc.name}, &got)
			if !bytes.Equal(got, want) {
				t.Errorf("after %d pipelined writes the value ends in %q, want the last write", tc.writes, tail(got))
			}
		})
	}
}

// TestStorageWriteOutlivesClient sends a write and hangs up at once: the write is applied
// anyway.
func TestStorageWriteOutlivesClient(t *testing.T) {
	n := startNode(t, testConfig(t))
	ep := resolve(t, n, "storage").Endpoints[0]
	raw := dialRaw(t, ep)
	raw.send(t, frame(1, 1, "c", "gone", []byte("still here")))
	raw.Close()
	st := connect(t, n, "storage")
	ctx := ctxT(t)
	eventually(t, callTimeout, func() error {
		ch, err := st.Call(ctx, "read", "c", "gone")
		if err != nil {
			return err
		}
		_, err = ch.Get(ctx)
		return err
	})
}

func tail(b []byte) []byte {
	if len(b) > 8 {
		return b[len(b)-8:]
	}
	return b
}
