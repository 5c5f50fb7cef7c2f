package runc

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/process"
	"github.com/cocaine/cocaine/node/netshape"
)

// Network modes of a container.
const (
	NetworkNone   = "none"   // a loopback interface only
	NetworkBridge = "bridge" // a veth on the host's bridge, with an address and a class
)

// Args are a profile's runc isolate args, validated.
type Args struct {
	// CPU class, cores, memory and pids limits, as the process isolate reads them.
	process.Args
	Base        string // the base layer under the app's files
	Network     string // NetworkNone, NetworkBridge, or "" for the host's default
	NetRate     netshape.Rate
	NetCeil     netshape.Rate
	ScratchSize int64 // bytes of /tmp, the only writable place
}

// DefaultScratchSize is /tmp's size unless scratch_size says otherwise.
const DefaultScratchSize = 16 << 20

// argKeys are every key ParseArgs knows, for its error message.
const argKeys = "base, class, cores, memory_limit, net_ceil, net_rate, network, pids_limit, scratch_size"

// ParseArgs validates a profile's isolate args. Errors wrap node.ErrInvalidArgs and
// name every problem.
func ParseArgs(m map[string]any) (Args, error) {
	a := Args{Base: EmptyBase, ScratchSize: DefaultScratchSize}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s", node.ErrInvalidArgs, fmt.Sprintf(format, args...)))
	}
	common := map[string]any{}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "class", "cores", "memory_limit", "pids_limit":
			common[k] = v
		case "base":
			s, ok := v.(string)
			if !ok || !baseName.MatchString(s) {
				bad("base must name a base layer (lowercase letters, digits, '.', '_', '-'), got %v", v)
				continue
			}
			a.Base = s
		case "network":
			s, ok := v.(string)
			if !ok || (s != NetworkNone && s != NetworkBridge) {
				bad("network must be %q or %q, got %v", NetworkNone, NetworkBridge, v)
				continue
			}
			a.Network = s
		case "net_rate", "net_ceil":
			r, err := netshape.ParseRate(v)
			if err != nil {
				bad("%s: %v", k, err)
				continue
			}
			if k == "net_rate" {
				a.NetRate = r
			} else {
				a.NetCeil = r
			}
		case "scratch_size":
			f, ok := node.Number(v)
			if !ok || f < 1<<20 || f != math.Trunc(f) || f > 1<<40 {
				bad("scratch_size must be a whole number of bytes, at least 1 MiB, got %v", v)
				continue
			}
			a.ScratchSize = int64(f)
		default:
			bad("unknown argument %q (known: %s)", k, argKeys)
		}
	}
	pa, err := process.ParseArgs(common)
	if err != nil {
		errs = append(errs, err)
	}
	a.Args = pa
	if a.NetRate != 0 || a.NetCeil != 0 {
		switch {
		case a.Class != process.ClassProd:
			bad("net_rate and net_ceil are for prod containers: %s containers share the batch network class", a.Class)
		case a.Network == NetworkNone:
			bad("net_rate and net_ceil need network %q", NetworkBridge)
		case a.NetCeil != 0 && a.NetRate > a.NetCeil:
			bad("net_rate (%s) must not exceed net_ceil (%s)", a.NetRate, a.NetCeil)
		}
	}
	return a, errors.Join(errs...)
}
