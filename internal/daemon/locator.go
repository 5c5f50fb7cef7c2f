package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/cocaine/cocaine/locator"
	"github.com/cocaine/cocaine/unicorn"
)

// clusterLocator is the locator's ClusterStore: hosts announce their services as
// ephemeral unicorn nodes bound to their host lease (locator may not import unicorn).
type clusterLocator struct{ uni *unicorn.Service }

var _ locator.ClusterStore = clusterLocator{}

func (c clusterLocator) HostLease(ctx context.Context) (int64, <-chan struct{}, error) {
	id, lost, err := c.uni.HostLease(ctx)
	return int64(id), lost, wireErr(err)
}

// Publish replaces path by an ephemeral node bound to lease. A node left by an earlier
// lease of this host (a restart within the TTL) is removed first.
func (c clusterLocator) Publish(ctx context.Context, path string, value []byte, lease int64) error {
	for attempt := 0; ; attempt++ {
		if err := c.Unpublish(ctx, path); err != nil {
			return err
		}
		_, _, err := c.uni.Create(ctx, path, value, unicorn.CreateOptions{Ephemeral: true, Lease: unicorn.LeaseID(lease)})
		if errors.Is(err, unicorn.ErrNodeExists) && attempt < 3 {
			continue // another writer of the same path (this host, an earlier lease) raced us
		}
		return wireErr(err)
	}
}

func (c clusterLocator) Unpublish(ctx context.Context, path string) error {
	err := c.uni.Remove(ctx, path, -1)
	if errors.Is(err, unicorn.ErrNoNode) {
		return nil
	}
	return wireErr(err)
}

// Watch opens a recursive watch of prefix from now, then lists the tree under it (two
// levels: hosts/<uuid>, services/<name>/<uuid>): every change after the listing is in the
// stream; the few between the watch's start and the listing come again, which applied in
// order ends in the same state.
func (c clusterLocator) Watch(ctx context.Context, prefix string, apply func(locator.ClusterEvent)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream's pump when Watch returns early
	_, stream, err := c.uni.Watch(ctx, prefix, unicorn.WatchOptions{From: -1, Recursive: true})
	if err != nil {
		return wireErr(err)
	}
	nodes, err := c.list(ctx, prefix, 3)
	if err != nil {
		return err
	}
	apply(locator.ClusterEvent{Sync: true, Nodes: nodes})
	for resp := range stream {
		if resp.Err != nil {
			return wireErr(resp.Err)
		}
		for _, ev := range resp.Events {
			switch ev.Kind {
			case unicorn.EventCreate, unicorn.EventPut:
				apply(locator.ClusterEvent{Path: ev.Path, Value: ev.Value})
			case unicorn.EventDelete:
				apply(locator.ClusterEvent{Path: ev.Path, Deleted: true})
			}
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return errors.New("unicorn: the watch stream ended")
}

// list reads the leaves under dir, down to depth levels, with their values.
func (c clusterLocator) list(ctx context.Context, dir string, depth int) ([]locator.ClusterNode, error) {
	_, names, err := c.uni.Children(ctx, dir, unicorn.Default)
	if errors.Is(err, unicorn.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, wireErr(err)
	}
	var out []locator.ClusterNode
	for _, name := range names {
		path := dir + "/" + name
		value, version, err := c.uni.Get(ctx, path, unicorn.Serializable)
		switch {
		case errors.Is(err, unicorn.ErrChildNotAllowed):
			if depth > 1 {
				sub, err := c.list(ctx, path, depth-1)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			}
		case err != nil:
			return nil, wireErr(fmt.Errorf("get %s: %w", path, err))
		case version >= 0:
			out = append(out, locator.ClusterNode{Path: path, Value: value})
		}
	}
	return out, nil
}

// announceLoopback: loopback endpoints may be announced when the cluster lives on this
// machine, which the raft address tells.
func announceLoopback(raftAddr string) bool {
	host, _, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
