//go:build !linux

package process

import (
	"context"
	"fmt"
	"os/exec"
	"sync"

	"github.com/cocaine/cocaine/node"
)

type host struct{ opts Options }

func newHost(opts Options) *host {
	opts.Log.Info("cgroups need Linux: workers run as plain processes, without CPU classes or limits")
	return &host{opts: opts}
}

// Spawn implements node.Isolate.
func (iso *Isolate) Spawn(ctx context.Context, spec node.SpawnSpec) (node.Process, error) {
	cmd := command(spec)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("process: start %s: %w", spec.Executable, err)
	}
	return &proc{cmd: cmd}, nil
}

type proc struct {
	cmd  *exec.Cmd
	once sync.Once
}

func (p *proc) Pid() int { return p.cmd.Process.Pid }
func (p *proc) Kill()    { killGroup(p.cmd.Process.Pid); p.cmd.Process.Kill() }
func (p *proc) Wait() error {
	return ExitReason(p.cmd.Wait(), false, 0)
}

// RemoveHierarchy does nothing without cgroups.
func RemoveHierarchy(root string) {}
