package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestOpErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{
			"not found",
			&opError{op: "read", name: keyName("apps", "echo"), err: ErrNotFound},
			"storage: read apps/echo: no such key",
		},
		{
			"locked",
			&opError{op: "open", name: "/var/lib/cocaine/storage.db", err: ErrLocked},
			"storage: open /var/lib/cocaine/storage.db: database is locked by another process",
		},
		{
			"wrapped sentinel with detail",
			&opError{op: "write", name: keyName("apps", ""), err: fmt.Errorf("%w: empty key", ErrInvalidName)},
			`storage: write apps/"": invalid name: empty key`,
		},
		{
			"foreign error kept whole",
			&opError{op: "close", name: "f", err: errors.New("bad file descriptor")},
			"storage: close f: bad file descriptor",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Fatalf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOpErrorUnwrap(t *testing.T) {
	err := &opError{op: "write", name: "a/b", err: fmt.Errorf("%w: 2 bytes, the limit is 1", ErrTooLarge)}
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("errors.Is(%v, ErrTooLarge) = false", err)
	}
	if errors.Is(err, ErrNotFound) {
		t.Fatalf("errors.Is(%v, ErrNotFound) = true", err)
	}
}

func TestSentinelsArePrefixedAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for _, err := range []error{ErrNotFound, ErrInvalidName, ErrTooLarge, ErrClosed, ErrLocked, ErrUnsupportedVersion, ErrCorrupt, ErrBlobUnavailable} {
		msg := err.Error()
		if !strings.HasPrefix(msg, "storage: ") {
			t.Errorf("%q lacks the package prefix", msg)
		}
		if seen[msg] {
			t.Errorf("%q used twice", msg)
		}
		seen[msg] = true
	}
}

func TestDisplayName(t *testing.T) {
	long := strings.Repeat("x", maxDisplayName+10)
	for _, tc := range []struct {
		in, want string
	}{
		{"echo", "echo"},
		{"tvm/public_keys", "tvm/public_keys"},
		{"приложение", "приложение"},
		{"", `""`},
		{"a\nb", `"a\nb"`},
		{"\xff", `"\xff"`},
		{long, `"` + long[:maxDisplayName] + `"...`},
	} {
		if got := displayName(tc.in); got != tc.want {
			t.Errorf("displayName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
