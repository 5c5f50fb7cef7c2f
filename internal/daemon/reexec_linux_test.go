//go:build linux

package daemon_test

import "github.com/cocaine/cocaine/node/isolate/runc"

// init makes the test binary a container's init when libcontainer re-executed it as
// one (the daemons these tests run start containers with their own binary), and keeps
// its main thread out of the containers' namespaces (see runc.Init).
func init() { runc.Init() }
