//go:build linux

package daemon

import (
	"fmt"
	"path/filepath"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/runc"
)

// newRunc builds the runc isolate from node.runc: its factory for the node and the host
// to run beside it. Without node.runc the factory refuses every runc profile, saying
// how to turn the isolate on, and there is nothing to run.
func (d *Daemon) newRunc(cgroupRoot string) (node.IsolateFactory, runner, error) {
	rc := d.cfg.Node.Runc
	if rc == nil {
		return refusedRunc("the runc isolate is off on this host: add a node.runc section to the config"), nil, nil
	}
	cfg := *rc
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(d.cfg.DataDir, "runc")
	}
	h, err := runc.New(runc.Options{Config: cfg, CgroupRoot: cgroupRoot, Log: d.log})
	if err != nil {
		return node.IsolateFactory{}, nil, fmt.Errorf("node.runc: %w", err)
	}
	return h.Factory(), h, nil
}
