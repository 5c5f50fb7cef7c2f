//go:build linux

package main

import "github.com/cocaine/cocaine/node/isolate/runc"

// init hands the process to libcontainer when it was re-executed as a container's init
// (argv[1] == "init", which is why cocaine has no "init" command); the nsenter
// constructor linked with package runc has joined the container's namespaces by then.
// Otherwise it keeps the main thread for the main goroutine (see runc.Init) and
// returns.
func init() { runc.Init() }
