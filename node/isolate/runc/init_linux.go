//go:build linux

package runc

import (
	"os"
	"runtime"

	"github.com/opencontainers/runc/libcontainer"
	// Applies the v1 device rules of a container's cgroup; without it they cannot be set.
	_ "github.com/opencontainers/cgroups/devices"
	// Its C constructor joins a container's namespaces before the Go runtime starts
	// threads, when the binary is re-executed as a container's init; otherwise it does
	// nothing.
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// Init makes the process a container's init when libcontainer re-executed the binary
// as one (argv[1] == "init"), and then never returns. Call it from an init function of
// the main package (or of the tests that start containers): the re-executed binary is
// the whole program, so nothing else may run before it.
//
// Otherwise it locks the main goroutine to the main thread and returns. libcontainer
// and netshape switch namespaces on locked threads that they never unlock, so that Go
// ends those threads with their goroutines; but Go cannot end the main thread and
// parks it instead, in the foreign namespace, where it would keep a dead container's
// mounts alive and make /proc/self (which shows the main thread) show the container's.
// A main thread kept by the main goroutine never runs their goroutines.
func Init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
	runtime.LockOSThread()
}
