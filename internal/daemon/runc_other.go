//go:build !linux

package daemon

import "github.com/cocaine/cocaine/node"

// newRunc: containers need Linux; the factory says so to every runc profile.
func (d *Daemon) newRunc(string) (node.IsolateFactory, runner, error) {
	return refusedRunc("the runc isolate needs Linux"), nil, nil
}
