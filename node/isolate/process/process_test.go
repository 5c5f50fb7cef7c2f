package process

import (
	"errors"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/node"
)

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs(map[string]any{"class": "batch", "cores": 1.5, "memory_limit": uint64(64 << 20), "pids_limit": uint64(10), "spool": "/var/spool/cocaine"})
	if err != nil || a.Class != ClassBatch || a.Cores != 1.5 || a.MemoryLimit != 64<<20 || a.PidsLimit != 10 {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := ParseArgs(nil); err != nil || a.Class != ClassProd {
		t.Fatalf("defaults: %+v %v", a, err)
	}
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"class": "gold"}, `class must be "prod", "batch" or "idle"`},
		{map[string]any{"cores": 0.0}, "cores must be a number of cores above 0"},
		{map[string]any{"memory_limit": uint64(100)}, "at least 1 MiB"},
		{map[string]any{"pids_limit": 1.5}, "pids_limit must be a positive whole number"},
		{map[string]any{"cpu": map[string]any{"cpu.shares": 512}}, `unknown argument "cpu"`},
	} {
		_, err := ParseArgs(tc.args)
		if !errors.Is(err, node.ErrInvalidArgs) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestCgroupName(t *testing.T) {
	if got := cgroupName("a/b", "u"); got != "a_b.u" {
		t.Fatalf("cgroupName: %q", got)
	}
}
