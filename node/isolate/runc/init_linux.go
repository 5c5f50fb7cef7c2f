//go:build linux

package runc

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// Applies the v1 device rules of a container's cgroup; without it they cannot be set.
	_ "github.com/opencontainers/cgroups/devices"
	// Its C constructor joins a container's namespaces before the Go runtime starts
	// threads, when the binary is re-executed as a container's init; otherwise it does
	// nothing.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init makes the process a container's init when libcontainer re-executed the binary
// as one (argv[1] == "init"), and then never returns. Otherwise it returns at once.
// Call it first thing, from the main package's init (and from TestMain of tests that
// start containers): the re-executed binary is the whole program, so nothing else may
// run before it.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}
