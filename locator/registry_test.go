package locator_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cocaine/cocaine/locator"
	"github.com/cocaine/cocaine/rpc"
)

func entry(name string, port uint16) locator.Entry {
	return locator.Entry{
		Name:      name,
		Endpoints: []rpc.Endpoint{{Host: "127.0.0.1", Port: port}},
		Version:   1,
		Graph:     rpc.ServiceGraph(1, rpc.Method{Name: "ping", Dispatch: rpc.Terminal, Upstream: rpc.Primitive}),
	}
}

func mustExpose(t *testing.T, r *locator.Registry, e locator.Entry) func() {
	t.Helper()
	withdraw, err := r.Expose(e)
	if err != nil {
		t.Fatalf("expose %q: %v", e.Name, err)
	}
	return withdraw
}

func names(es []*locator.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name
	}
	return out
}

func TestRegistryExposeLookupWithdraw(t *testing.T) {
	r := locator.NewRegistry()
	if _, ok := r.Lookup("echo"); ok {
		t.Fatal("an empty registry has echo")
	}
	wEcho := mustExpose(t, r, entry("echo", 1000))
	mustExpose(t, r, entry("alpha", 1001))
	restricted := entry("zeta", 1002)
	restricted.Restricted = true
	mustExpose(t, r, restricted)

	for _, tc := range []struct {
		name       string
		port       uint16
		restricted bool
	}{
		{"echo", 1000, false},
		{"alpha", 1001, false},
		{"zeta", 1002, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, ok := r.Lookup(tc.name)
			if !ok {
				t.Fatal("not found")
			}
			if e.Name != tc.name || len(e.Endpoints) != 1 || e.Endpoints[0].Port != tc.port || e.Restricted != tc.restricted {
				t.Fatalf("got %+v", e)
			}
		})
	}
	if got := names(r.Entries()); !slices.Equal(got, []string{"alpha", "echo", "zeta"}) {
		t.Fatalf("Entries = %v, want sorted names", got)
	}

	wEcho()
	if _, ok := r.Lookup("echo"); ok {
		t.Fatal("echo is still there after withdraw")
	}
	wEcho() // harmless
	if got := names(r.Entries()); !slices.Equal(got, []string{"alpha", "zeta"}) {
		t.Fatalf("Entries = %v", got)
	}
}

func TestRegistryRejects(t *testing.T) {
	r := locator.NewRegistry()
	mustExpose(t, r, entry("echo", 1000))
	for _, tc := range []struct {
		name string
		e    locator.Entry
		want error
	}{
		{"duplicate", entry("echo", 2000), locator.ErrDuplicate},
		{"no name", entry("", 2000), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := r.Expose(tc.e)
			if err == nil || w != nil {
				t.Fatalf("Expose = (withdraw %t, %v); want an error", w != nil, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("Expose: %v, want %v", err, tc.want)
			}
		})
	}
	// The duplicate left the first registration alone.
	if e, _ := r.Lookup("echo"); e.Endpoints[0].Port != 1000 {
		t.Fatalf("echo is now %+v", e)
	}
}

// A stale withdraw function does not remove a later registration of the same name.
func TestRegistryStaleWithdraw(t *testing.T) {
	r := locator.NewRegistry()
	w1 := mustExpose(t, r, entry("echo", 1000))
	w1()
	w2 := mustExpose(t, r, entry("echo", 2000))
	_, watch := r.Watch(8)
	defer watch.Stop()
	w1()
	if e, ok := r.Lookup("echo"); !ok || e.Endpoints[0].Port != 2000 {
		t.Fatalf("after a stale withdraw: %+v, %v", e, ok)
	}
	w2()
	if _, ok := r.Lookup("echo"); ok {
		t.Fatal("echo still exposed")
	}
	// The watcher saw only the real removal.
	u := <-watch.C
	if !u.Removed || u.Entry.Endpoints[0].Port != 2000 {
		t.Fatalf("update %+v", u)
	}
	if len(watch.C) != 0 {
		t.Fatalf("%d more updates", len(watch.C))
	}
}

type seen struct {
	name    string
	removed bool
}

func TestRegistryWatchSnapshotThenChanges(t *testing.T) {
	r := locator.NewRegistry()
	wA := mustExpose(t, r, entry("a", 1))
	mustExpose(t, r, entry("b", 2))

	snapshot, w := r.Watch(16)
	defer w.Stop()
	if got := names(snapshot); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("snapshot %v", got)
	}
	wC := mustExpose(t, r, entry("c", 3))
	wA()
	wC()
	mustExpose(t, r, entry("a", 4))
	wA() // stale: no update
	if _, err := r.Expose(entry("b", 5)); !errors.Is(err, locator.ErrDuplicate) {
		t.Fatalf("duplicate: %v", err) // no update either
	}

	want := []seen{{"c", false}, {"a", true}, {"c", true}, {"a", false}}
	for i, wnt := range want {
		u, ok := <-w.C
		if !ok {
			t.Fatalf("channel closed after %d updates", i)
		}
		if got := (seen{u.Entry.Name, u.Removed}); got != wnt {
			t.Fatalf("update %d = %+v, want %+v", i, got, wnt)
		}
	}
	if len(w.C) != 0 {
		t.Fatalf("%d unexpected updates", len(w.C))
	}
	if e, ok := r.Lookup("a"); !ok || e.Endpoints[0].Port != 4 {
		t.Fatalf("a is %+v, %v; want the second registration", e, ok)
	}
}

// Two watchers see the same order.
func TestRegistryWatchersAgree(t *testing.T) {
	r := locator.NewRegistry()
	_, w1 := r.Watch(64)
	defer w1.Stop()
	_, w2 := r.Watch(64)
	defer w2.Stop()
	var ws []func()
	for i := range 10 {
		ws = append(ws, mustExpose(t, r, entry(fmt.Sprintf("s%d", i), uint16(i))))
	}
	for i := 9; i >= 0; i -= 2 {
		ws[i]()
	}
	for i := range 15 {
		a, b := <-w1.C, <-w2.C
		if a.Entry != b.Entry || a.Removed != b.Removed {
			t.Fatalf("update %d: %s/%v vs %s/%v", i, a.Entry.Name, a.Removed, b.Entry.Name, b.Removed)
		}
	}
}

func TestRegistryWatcherOverflow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		buffer  int
		changes int
	}{
		{"unbuffered, one change", 0, 1},
		{"buffer 1, two changes", 1, 2},
		{"buffer 3, ten changes", 3, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := locator.NewRegistry()
			_, slow := r.Watch(tc.buffer)
			_, fast := r.Watch(tc.changes + 1)
			defer fast.Stop()
			for i := range tc.changes {
				mustExpose(t, r, entry(fmt.Sprintf("s%02d", i), uint16(i)))
			}
			// The slow watcher got what fit, then its channel was closed.
			var got []string
			for u := range slow.C {
				got = append(got, u.Entry.Name)
			}
			if len(got) != tc.buffer {
				t.Fatalf("slow watcher got %v, want the first %d", got, tc.buffer)
			}
			for i, n := range got {
				if want := fmt.Sprintf("s%02d", i); n != want {
					t.Fatalf("slow update %d = %s, want %s", i, n, want)
				}
			}
			if !slow.Overflowed() {
				t.Fatal("Overflowed() = false after the drop")
			}
			slow.Stop() // harmless after the drop
			slow.Stop()
			// Later changes do not reach it, and do not disturb the others.
			mustExpose(t, r, entry("later", 1))
			if fast.Overflowed() || len(fast.C) != tc.changes+1 {
				t.Fatalf("fast watcher: overflowed %v, %d buffered", fast.Overflowed(), len(fast.C))
			}
		})
	}
}

func TestRegistryWatcherStop(t *testing.T) {
	r := locator.NewRegistry()
	_, w := r.Watch(4)
	mustExpose(t, r, entry("a", 1))
	w.Stop()
	w.Stop()
	// Stop closes C; what was buffered may still be read.
	var n int
	for range w.C {
		n++
	}
	if n != 1 {
		t.Fatalf("read %d updates after Stop, want the 1 buffered", n)
	}
	if w.Overflowed() {
		t.Fatal("a stopped watcher reports an overflow")
	}
	mustExpose(t, r, entry("b", 2)) // must not send on the closed channel
	var wg sync.WaitGroup
	_, w2 := r.Watch(1)
	for range 8 {
		wg.Go(w2.Stop)
	}
	wg.Wait()
	if _, ok := <-w2.C; ok {
		t.Fatal("C still open after concurrent Stops")
	}
}

// Many goroutines expose, withdraw, look up and watch at once (run with -race). Every
// watcher sees, per name, a strict alternation of expose and withdraw that ends in the
// registry's final state.
func TestRegistryConcurrent(t *testing.T) {
	r := locator.NewRegistry()
	const workers, rounds = 8, 200
	type result struct {
		last map[string]seen
		err  error
	}
	watch := func(w *locator.Watcher, out chan<- result) {
		last := map[string]seen{}
		var err error
		for u := range w.C {
			prev, ok := last[u.Entry.Name]
			if err == nil && ok && prev.removed == u.Removed {
				err = fmt.Errorf("%s: two updates with removed=%v in a row", u.Entry.Name, u.Removed)
			}
			if err == nil && !ok && u.Removed {
				err = fmt.Errorf("%s: withdrawn before exposed", u.Entry.Name)
			}
			last[u.Entry.Name] = seen{u.Entry.Name, u.Removed}
		}
		if err == nil && w.Overflowed() {
			err = errors.New("watcher overflowed")
		}
		out <- result{last, err}
	}
	results := make(chan result, 2)
	_, w1 := r.Watch(workers * rounds * 2)
	go watch(w1, results)
	_, w2 := r.Watch(workers * rounds * 2)
	go watch(w2, results)

	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			name := fmt.Sprintf("svc-%d", i%4) // two workers per name: duplicates happen
			for j := range rounds {
				withdraw, err := r.Expose(entry(name, uint16(j)))
				if err != nil {
					if !errors.Is(err, locator.ErrDuplicate) {
						t.Errorf("expose: %v", err)
					}
					r.Lookup(name)
					continue
				}
				r.Entries()
				if j%3 != 0 {
					withdraw()
				}
			}
		})
		wg.Go(func() {
			for range rounds {
				_, w := r.Watch(1)
				w.Stop()
			}
		})
	}
	wg.Wait()
	w1.Stop()
	w2.Stop()

	final := map[string]bool{}
	for _, e := range r.Entries() {
		final[e.Name] = true
	}
	for range 2 {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		for name, s := range res.last {
			if s.removed == final[name] {
				t.Errorf("%s: watcher ends with removed=%v, registry has it: %v", name, s.removed, final[name])
			}
		}
		for name := range final {
			if _, ok := res.last[name]; !ok {
				t.Errorf("%s is exposed but the watcher never saw it", name)
			}
		}
	}
}
