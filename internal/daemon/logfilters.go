package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
	"github.com/cocaine/cocaine/unicorn"
)

// logFilters is the logging service's FilterStore: its cluster filters are nodes of a
// unicorn folder (services may not import unicorn). Errors carry the rpc.Error unicorn
// would send, so set_cluster_filter's caller sees unicorn's category and code
// (connection_loss when there is no leader).
type logFilters struct{ uni *unicorn.Service }

var _ logging.FilterStore = logFilters{}

// Create makes a persistent node; unicorn creates the folder with it.
func (f logFilters) Create(ctx context.Context, path string, value []byte) error {
	_, _, err := f.uni.Create(ctx, path, value, unicorn.CreateOptions{})
	return wireErr(err)
}

// Remove deletes the node whatever its version.
func (f logFilters) Remove(ctx context.Context, path string) (bool, error) {
	switch err := f.uni.Remove(ctx, path, -1); {
	case err == nil:
		return true, nil
	case errors.Is(err, unicorn.ErrNoNode):
		return false, nil
	default:
		return false, wireErr(err)
	}
}

// Watch opens a recursive watch of the folder first, then lists it: every change after
// the listing is in the stream, and the few between the watch's start and the listing
// come twice, which applied in order is harmless. Nodes below the folder's children
// (not filters) are left out.
func (f logFilters) Watch(ctx context.Context, folder string, apply func(logging.FilterEvent)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream's pump when Watch returns early
	_, stream, err := f.uni.Watch(ctx, folder, unicorn.WatchOptions{From: -1, Recursive: true})
	if err != nil {
		return wireErr(err)
	}
	nodes, err := f.list(ctx, folder)
	if err != nil {
		return err
	}
	apply(logging.FilterEvent{Kind: logging.FilterSync, Nodes: nodes})
	for resp := range stream {
		if resp.Err != nil {
			return wireErr(resp.Err)
		}
		for _, ev := range resp.Events {
			if !isChild(folder, ev.Path) {
				continue
			}
			switch ev.Kind {
			case unicorn.EventCreate, unicorn.EventPut:
				apply(logging.FilterEvent{Kind: logging.FilterPut, Path: ev.Path, Value: ev.Value})
			case unicorn.EventDelete:
				apply(logging.FilterEvent{Kind: logging.FilterDelete, Path: ev.Path})
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("unicorn: the watch stream ended")
}

// list reads every child of folder with its value. The children read through the read
// index, so the replica has caught up, and the values are then read from it as it is.
func (f logFilters) list(ctx context.Context, folder string) ([]logging.FilterNode, error) {
	_, names, err := f.uni.Children(ctx, folder, unicorn.Default)
	if errors.Is(err, unicorn.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, wireErr(err)
	}
	nodes := make([]logging.FilterNode, 0, len(names))
	for _, name := range names {
		path := folder + "/" + name
		value, version, err := f.uni.Get(ctx, path, unicorn.Serializable)
		switch {
		case errors.Is(err, unicorn.ErrChildNotAllowed):
			continue // a folder, not a filter
		case err != nil:
			return nil, wireErr(fmt.Errorf("get %s: %w", path, err))
		case version < 0:
			continue // removed since; its delete event follows
		}
		nodes = append(nodes, logging.FilterNode{Path: path, Value: value})
	}
	return nodes, nil
}

// isChild reports whether path is a direct child of folder.
func isChild(folder, path string) bool {
	name, ok := strings.CutPrefix(path, folder+"/")
	return ok && name != "" && !strings.Contains(name, "/")
}

// wireErr gives a unicorn error the wire code unicorn would send it with; errors.Is
// still finds unicorn's sentinels in it.
func wireErr(err error) error {
	if err == nil {
		return nil
	}
	return unicornError{err: err, wire: unicorn.ErrorTable().Wire(err)}
}

// unicornError is a unicorn error with its wire code, and the message of the error alone.
type unicornError struct {
	err  error
	wire *rpc.Error
}

func (e unicornError) Error() string   { return e.err.Error() }
func (e unicornError) Unwrap() []error { return []error{e.err, e.wire} }
