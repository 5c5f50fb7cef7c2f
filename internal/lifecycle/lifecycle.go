// Package lifecycle holds the one way background work starts in this repository: a Group
// that refuses new goroutines once it is stopping and waits for the ones it started (the
// GoAttach pattern of etcd), so a component's Run can promise that every goroutine it
// started has exited when it returns.
package lifecycle

import (
	"context"
	"sync"
)

// Group runs goroutines under one context. The zero value is not usable; use NewGroup.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
}

// NewGroup returns a group whose goroutines see a context derived from parent.
func NewGroup(parent context.Context) *Group {
	ctx, cancel := context.WithCancel(parent)
	return &Group{ctx: ctx, cancel: cancel}
}

// Go runs fn in a new goroutine with the group's context, unless the group is stopping,
// in which case it returns false and fn never runs.
func (g *Group) Go(fn func(ctx context.Context)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	g.wg.Go(func() { fn(g.ctx) })
	return true
}

// Context is cancelled when the group stops.
func (g *Group) Context() context.Context { return g.ctx }

// Stop refuses new goroutines, cancels the context and waits for running ones. Safe to
// call more than once and from several goroutines.
func (g *Group) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
