package runc

import (
	"errors"
	"strings"
	"testing"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/netshape"
)

func TestParseArgs(t *testing.T) {
	a, err := ParseArgs(map[string]any{"base": "busybox", "class": "prod", "cores": 1.5, "memory_limit": uint64(64 << 20),
		"network": "bridge", "net_rate": "10mbit", "net_ceil": uint64(50e6), "scratch_size": uint64(8 << 20)})
	if err != nil || a.Base != "busybox" || a.Cores != 1.5 || a.MemoryLimit != 64<<20 || a.Network != NetworkBridge ||
		a.NetRate != 10e6 || a.NetCeil != netshape.Rate(50e6) || a.ScratchSize != 8<<20 {
		t.Fatalf("%+v %v", a, err)
	}
	if a, err := ParseArgs(nil); err != nil || a.Base != EmptyBase || a.Class != "prod" || a.ScratchSize != DefaultScratchSize || a.Network != "" {
		t.Fatalf("defaults: %+v %v", a, err)
	}
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"base": "../etc"}, "base must name a base layer"},
		{map[string]any{"network": "host"}, `network must be "none" or "bridge"`},
		{map[string]any{"net_rate": "fast"}, "net_rate: rate \"fast\""},
		{map[string]any{"net_rate": "10mbit", "net_ceil": "1mbit"}, "net_rate (10mbit) must not exceed net_ceil (1mbit)"},
		{map[string]any{"class": "idle", "net_ceil": "1mbit"}, "net_rate and net_ceil are for prod containers"},
		{map[string]any{"network": "none", "net_rate": "1mbit"}, `net_rate and net_ceil need network "bridge"`},
		{map[string]any{"scratch_size": 10.0}, "scratch_size must be a whole number of bytes, at least 1 MiB"},
		{map[string]any{"class": "gold"}, `class must be "prod", "batch" or "idle"`},
		{map[string]any{"spool": "/x"}, `unknown argument "spool" (known: base, class`},
	} {
		_, err := ParseArgs(tc.args)
		if !errors.Is(err, node.ErrInvalidArgs) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{StateDir: "/var/lib/cocaine/runc", HostBases: map[string][]string{"host": {"/usr", "/lib"}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	err := Config{StateDir: "rel", HostBases: map[string][]string{"empty": {"/usr"}, "x": {"/proc/self"}, "y": {}, "z": {"/usr/../etc"}},
		Network: &netshape.Config{}}.Validate()
	for _, want := range []string{
		`node.runc.state_dir "rel" must be an absolute path`,
		`node.runc.host_bases: "empty" is not a base name`,
		`node.runc.host_bases.x: "/proc/self" is under /proc`,
		"node.runc.host_bases.y lists no directory",
		`node.runc.host_bases.z: "/usr/../etc" must be a clean absolute directory`,
		"node.runc.network.range: is required",
		"node.runc.network.link_rate is required",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: want %q", err, want)
		}
	}
}

// FuzzParseArgs: profile args from the wire never panic, and accepted args are sane.
func FuzzParseArgs(f *testing.F) {
	f.Add("busybox", "prod", 1.5, "bridge", "10mbit", "20mbit", uint64(1<<20))
	f.Add("", "batch", -1.0, "none", "", "x", uint64(0))
	f.Fuzz(func(t *testing.T, base, class string, cores float64, network, rate, ceil string, scratch uint64) {
		m := map[string]any{"base": base, "class": class, "cores": cores, "network": network, "scratch_size": scratch}
		if rate != "" {
			m["net_rate"] = rate
		}
		if ceil != "" {
			m["net_ceil"] = ceil
		}
		a, err := ParseArgs(m)
		if err != nil {
			if !errors.Is(err, node.ErrInvalidArgs) {
				t.Fatalf("%v: an error that is not ErrInvalidArgs: %v", m, err)
			}
			return
		}
		if a.ScratchSize < 1<<20 || (a.NetCeil != 0 && a.NetRate > a.NetCeil) || !baseName.MatchString(a.Base) {
			t.Fatalf("%v: accepted %+v", m, a)
		}
	})
}
