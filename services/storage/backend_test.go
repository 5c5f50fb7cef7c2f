package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name            string
		collection, key string
		ok              bool
	}{
		{"plain", "apps", "echo", true},
		{"crashlog key", "crashlogs", "1500000000000000:8a1c-uuid", true},
		{"slash in collection", "tvm/public_keys", "k", true},
		{"all non-NUL bytes", string(allBytesButNUL()), string(allBytesButNUL()), true},
		{"invalid utf-8", "\xff\xfe", "\xc3", true},
		{"names at the limit", strings.Repeat("c", MaxNameSize), strings.Repeat("k", MaxNameSize), true},
		{"empty collection", "", "k", false},
		{"empty key", "apps", "", false},
		{"NUL in collection", "ap\x00ps", "k", false},
		{"NUL in key", "apps", "\x00", false},
		{"meta bucket name", "\x00meta", "version", false},
		{"collection too long", strings.Repeat("c", MaxNameSize+1), "k", false},
		{"key too long", "apps", strings.Repeat("k", MaxNameSize+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.collection, tc.key)
			if tc.ok && err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("Validate = %v, want ErrInvalidName", err)
			}
		})
	}
}

func TestValidateTags(t *testing.T) {
	many := make([]string, MaxTags+1)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	dup := make([]string, 2*MaxTags)
	for i := range dup {
		dup[i] = fmt.Sprint("t", i%MaxTags)
	}
	for _, tc := range []struct {
		name string
		tags []string
		ok   bool
	}{
		{"none", nil, true},
		{"group tags", []string{"group", "active"}, true},
		{"duplicates", []string{"app", "app"}, true},
		{"MaxTags distinct among duplicates", dup, true},
		{"MaxTags+1 distinct", many, false},
		{"empty tag", []string{"app", ""}, false},
		{"NUL in tag", []string{"a\x00b"}, false},
		{"tag too long", []string{strings.Repeat("t", MaxNameSize+1)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateTags(tc.tags)
			if tc.ok && err != nil {
				t.Fatalf("ValidateTags: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ValidateTags = %v, want ErrInvalidName", err)
			}
		})
	}
}

func TestCheckValueSize(t *testing.T) {
	if err := checkValueSize(make([]byte, 10), 10); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	err := checkValueSize(make([]byte, 11), 10)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v, want ErrTooLarge", err)
	}
	if want := "storage: value too large: 11 bytes, the limit is 10"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
}

// allBytesButNUL returns the bytes 1 through 255, each once.
func allBytesButNUL() []byte {
	b := make([]byte, 255)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}
