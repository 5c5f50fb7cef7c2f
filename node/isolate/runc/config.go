package runc

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/cocaine/cocaine/node/netshape"
)

// Config is the host side of the runc isolate: the daemon's node.runc section.
type Config struct {
	// StateDir holds the containers' state: libcontainer's, their rootfs mounts
	// (upper, work and merged directories), their network namespaces. Everything in it
	// belongs to this daemon: what a killed daemon left there is removed at start.
	StateDir string `json:"state_dir,omitempty"`
	// BasesDir holds the named base layers: <bases_dir>/<name> is a read-only tree
	// ("busybox") under every app that names it.
	BasesDir string `json:"bases_dir,omitempty"`
	// HostBases are bases made of host directories: each is bind-mounted read-only at
	// the same path in the container ({"host": ["/usr", "/lib", "/lib64", "/bin"]}).
	HostBases map[string][]string `json:"host_bases,omitempty"`
	// Network gives containers a veth on a bridge with an address and network classes;
	// without it they have only a loopback interface.
	Network *netshape.Config `json:"network,omitempty"`
}

// EmptyBase is the base every host has: nothing below the app's files.
const EmptyBase = "empty"

var baseName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// reserved are the container paths the isolate mounts itself.
var reserved = []string{"/proc", "/dev", "/sys", "/tmp"}

// Validate reports every problem of c, keys named under node.runc.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("node.runc."+format, args...)) }
	for _, d := range []struct{ key, dir string }{{"state_dir", c.StateDir}, {"bases_dir", c.BasesDir}} {
		if d.dir != "" && !filepath.IsAbs(d.dir) {
			bad("%s %q must be an absolute path", d.key, d.dir)
		}
	}
	// <state_dir>/rootfs/<id>/merged must fit comfortably in the kernel's overlay
	// options (one page) with the lower directories.
	if len(c.StateDir) > 512 {
		bad("state_dir %q is too long (at most 512 bytes)", c.StateDir)
	}
	names := make([]string, 0, len(c.HostBases))
	for n := range c.HostBases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !baseName.MatchString(n) || n == EmptyBase {
			bad("host_bases: %q is not a base name (lowercase letters, digits, '.', '_', '-'; not %q)", n, EmptyBase)
		}
		if len(c.HostBases[n]) == 0 {
			bad("host_bases.%s lists no directory", n)
		}
		for _, d := range c.HostBases[n] {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
				bad("host_bases.%s: %q must be a clean absolute directory other than /", n, d)
				continue
			}
			for _, r := range reserved {
				if d == r || strings.HasPrefix(d, r+"/") {
					bad("host_bases.%s: %q is under %s, which the isolate mounts itself", n, d, r)
				}
			}
		}
	}
	if c.Network != nil {
		if err := c.Network.Validate("node.runc.network"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
