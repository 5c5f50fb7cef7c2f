package testcluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

func call(t *testing.T, c *rpc.Conn, method string, args ...any) (rpc.Args, error) {
	t.Helper()
	ctx, cancel := t.Context(), func() {}
	_ = cancel
	ch, err := c.Call(ctx, method, args...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return ch.Get(ctx)
}

func TestReplicatedStorageAndUnicorn(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	c.WaitLeader(t)
	// A write on host 2 is read on hosts 0 and 1.
	st := c.Node(2).Dial(t, "storage")
	if _, err := call(t, st, "write", "c", "k", []byte("v"), []string{"t"}); err != nil {
		t.Fatal(err)
	}
	uc := c.Node(2).Dial(t, "unicorn")
	if _, err := call(t, uc, "create", "/a/b", "hello"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes()[:2] {
		var v []byte
		a, err := call(t, n.Dial(t, "storage"), "read", "c", "k")
		if err != nil {
			t.Fatalf("%s: read: %v", n.Name, err)
		}
		if err := a.Scan(&v); err != nil || string(v) != "v" {
			t.Fatalf("%s: read %q %v", n.Name, v, err)
		}
		a, err = call(t, n.Dial(t, "unicorn"), "get", "/a/b")
		if err != nil {
			t.Fatalf("%s: get: %v", n.Name, err)
		}
		var got []any
		if err := a.Scan(&got); err != nil || len(got) != 2 || got[0] != "hello" {
			t.Fatalf("%s: get = %v %v", n.Name, got, err)
		}
	}
}

func TestClusterMembersAndFailover(t *testing.T) {
	c := New(t, Options{Nodes: 3})
	ld := c.WaitLeader(t)
	a, err := call(t, c.Node(1).Dial(t, "cluster"), "members")
	if err != nil {
		t.Fatal(err)
	}
	var ms []any
	if err := a.Scan(&ms); err != nil || len(ms) != 3 {
		t.Fatalf("members = %v %v", ms, err)
	}
	ld.Kill()
	var rest *Node
	for _, n := range c.Nodes() {
		if n != ld {
			rest = n
		}
	}
	next := c.WaitLeader(t)
	if next == ld {
		t.Fatal("stopped host leads")
	}
	Eventually(t, 20*time.Second, func() error {
		_, err := call(t, rest.Dial(t, "storage"), "write", "c", "after", []byte("x"))
		return err
	})
	ld.Restart()
	Eventually(t, 20*time.Second, func() error {
		a, err := call(t, ld.Dial(t, "storage"), "read", "c", "after")
		if err != nil {
			return err
		}
		var v []byte
		a.Scan(&v)
		if string(v) != "x" {
			return fmt.Errorf("read %q", v)
		}
		return nil
	})
}
