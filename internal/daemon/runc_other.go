//go:build !linux

package daemon

import (
	"fmt"

	"github.com/cocaine/cocaine/node"
)

// newRunc: containers need Linux; the factory says so to every runc profile.
func (d *Daemon) newRunc(string) (node.IsolateFactory, runner, error) {
	return node.IsolateFactory{Type: "runc", New: func(map[string]any) (node.Isolate, error) {
		return nil, fmt.Errorf("%w: the runc isolate needs Linux", node.ErrUnknownIsolate)
	}}, nil, nil
}
