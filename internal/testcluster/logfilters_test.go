package testcluster

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
)

// logCall makes one logging call through host n and scans its value into dst.
func logCall(t *testing.T, n *Node, method string, args []any, dst ...any) error {
	t.Helper()
	a, err := ucall(t.Context(), n.Dial(t, "logging"), 10*time.Second, method, args...)
	if err != nil {
		return err
	}
	return a.Scan(dst...)
}

// accepts reports whether host n logs an info record from backend.
func accepts(t *testing.T, n *Node, backend string) bool {
	t.Helper()
	var ok bool
	if err := logCall(t, n, "emit_ack", []any{1, backend, "m"}, &ok); err != nil {
		t.Fatalf("%s: emit_ack: %v", n.Name, err)
	}
	return ok
}

// clusterFilters returns the ids of the cluster filters host n lists.
func clusterFilters(t *testing.T, n *Node) map[uint64]bool {
	t.Helper()
	var list []any
	if err := logCall(t, n, "list_filters", nil, &list); err != nil {
		t.Fatalf("%s: list_filters: %v", n.Name, err)
	}
	out := map[uint64]bool{}
	for _, e := range list {
		if f := e.([]any); f[4] == uint64(logging.DispositionCluster) {
			out[f[2].(uint64)] = true
		}
	}
	return out
}

// everywhere polls until check holds on every running host.
func everywhere(t *testing.T, c *Cluster, what string, check func(n *Node) bool) {
	t.Helper()
	Eventually(t, 30*time.Second, func() error {
		for _, n := range c.Nodes() {
			if n.Running() && !check(n) {
				return fmt.Errorf("%s: not yet %s", n.Name, what)
			}
		}
		return nil
	})
}

// TestClusterLoggingFilters: a cluster filter set through host 0 acts on host 2, and is
// gone from every host after remove_filter through another host, or after it expires;
// with no quorum set_cluster_filter fails and logging goes on; a host that was down
// picks up, when it comes back, what was set meanwhile.
func TestClusterLoggingFilters(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.WaitLeader(t)
	h0, h1, h2 := c.Node(0), c.Node(1), c.Node(2)
	// The default metafilter accepts everything; a live app/ metafilter decides for app/.
	if !accepts(t, h2, "app/x") {
		t.Fatal("host 2 rejects before any filter")
	}
	set := func(t *testing.T, n *Node, ttl uint64) uint64 {
		t.Helper()
		var id uint64
		if err := logCall(t, n, "set_cluster_filter", []any{"app/", []any{"severity", 2}, ttl}, &id); err != nil {
			t.Fatalf("%s: set_cluster_filter: %v", n.Name, err)
		}
		return id
	}
	gone := func(id uint64) func(n *Node) bool {
		return func(n *Node) bool { return !clusterFilters(t, n)[id] && accepts(t, n, "app/x") }
	}

	t.Run("set through host 0, acts on host 2", func(t *testing.T) {
		id := set(t, h0, 600)
		Eventually(t, 30*time.Second, func() error {
			if accepts(t, h2, "app/x") || !clusterFilters(t, h2)[id] {
				return fmt.Errorf("host 2 does not apply filter %d", id)
			}
			return nil
		})
		var ok bool
		if err := logCall(t, h2, "remove_filter", []any{id}, &ok); err != nil || !ok {
			t.Fatalf("remove_filter through host 2 = %v, %v; want true", ok, err)
		}
		everywhere(t, c, "rid of the removed filter", gone(id))
		if exists, err := exists(t, h1, logging.DefaultUnicornPath+"/"+strconv.FormatUint(id, 10)); err != nil || exists {
			t.Errorf("the removed filter's node: exists %v, %v", exists, err)
		}
	})

	t.Run("expires everywhere", func(t *testing.T) {
		id := set(t, h1, 2)
		everywhere(t, c, "rid of the expired filter", gone(id))
		path := logging.DefaultUnicornPath + "/" + strconv.FormatUint(id, 10)
		Eventually(t, 30*time.Second, func() error {
			if ok, err := exists(t, h0, path); err != nil || ok {
				return fmt.Errorf("the expired node %s: exists %v, %v", path, ok, err)
			}
			return nil
		})
	})

	t.Run("no quorum, then back", func(t *testing.T) {
		h1.Kill()
		h2.Kill()
		var id uint64
		err := logCall(t, h0, "set_cluster_filter", []any{"app/", []any{"severity", 2}, 600}, &id)
		var e *rpc.Error
		if !errors.As(err, &e) || e.Category != rpc.CategoryUnicorn || e.Code != 10 {
			t.Errorf("set_cluster_filter without quorum = %d, %v; want unicorn's connection_loss [11, 10]", id, err)
		}
		t.Logf("set_cluster_filter without quorum: %v", err)
		if !accepts(t, h0, "app/x") {
			t.Error("host 0 stopped logging without quorum")
		}
		h1.Restart()
		c.WaitLeader(t)
		id = set(t, h0, 600) // host 2 is still down
		h2.Restart()
		Eventually(t, 30*time.Second, func() error {
			if accepts(t, h2, "app/x") {
				return fmt.Errorf("host 2 did not pick up filter %d set while it was down", id)
			}
			return nil
		})
	})
}
