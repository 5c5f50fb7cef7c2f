package testcluster

import (
	"bytes"
	"fmt"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"
)

// TestNoLeaksAfterClusterStops: three hosts that replicated, failed over and were
// restarted leave no goroutine behind once the cluster stops.
func TestNoLeaksAfterClusterStops(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		c := New(t, Options{Nodes: 3})
		defer c.Close()
		ld := c.WaitLeader(t)
		uc := c.Node(1).Dial(t, "unicorn")
		if _, err := ucall(t.Context(), uc, 10*time.Second, "create", "/leak/a", "x", true); err != nil {
			t.Fatal(err)
		}
		ch, err := uc.Call(t.Context(), "watch", "/leak", int64(-1), true)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.Recv(t.Context()); err != nil {
			t.Fatal(err)
		}
		ld.Kill()
		ld.Restart()
		c.WaitLeader(t)
		uc.Close()
	}()
	Eventually(t, 20*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > before {
			var buf bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&buf, 1)
			return fmt.Errorf("%d goroutines before, %d after:\n%s", before, n, buf.String())
		}
		return nil
	})
}
