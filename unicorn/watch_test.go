package unicorn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkStream verifies the watch properties on evs: revisions never decrease, and no
// event appears twice.
func checkStream(t *testing.T, evs []Event) {
	t.Helper()
	seen := map[string]bool{}
	for i, ev := range evs {
		if i > 0 && ev.Revision < evs[i-1].Revision {
			t.Fatalf("event %d: revision %d after %d", i, ev.Revision, evs[i-1].Revision)
		}
		key := fmt.Sprintf("%d %s %s %d", ev.Revision, ev.Kind, ev.Path, ev.Version)
		if seen[key] {
			t.Fatalf("event %d delivered twice: %s", i, key)
		}
		seen[key] = true
	}
}

// historyOf returns the retained events matching w's filter, as the store has them.
func historyOf(s *Store, path string, mode WatchMode, from Revision) []Event {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w := &Watcher{path: path, mode: mode}
	var out []Event
	for i := 0; i < s.hist.len(); i++ {
		if ev := s.hist.at(i); ev.Revision > from && w.matches(ev.Path) {
			out = append(out, *ev)
		}
	}
	return out
}

func sameEvents(t *testing.T, got, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Revision != w.Revision || g.Kind != w.Kind || g.Path != w.Path || g.Version != w.Version || string(g.Value) != string(w.Value) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestWatchGapFreeUnderConcurrentWriters(t *testing.T) {
	c := newCluster(t, Config{HistorySize: 100_000})
	h, _ := c.addHost(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start, all, err := h.svc.Watch(ctx, "/w", WatchOptions{From: -1, Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	_, one, err := h.svc.Watch(ctx, "/w/k3", WatchOptions{From: -1})
	if err != nil {
		t.Fatal(err)
	}
	const writers, writes = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range writes {
				key := fmt.Sprintf("/w/k%d", (i+j)%5)
				switch j % 3 {
				case 0:
					h.svc.Increment(ctx, key, []byte{0x01})
				case 1:
					h.svc.Create(ctx, key+"/seq", []byte{0xc0}, CreateOptions{Sequence: true})
				default:
					h.svc.Txn(ctx, Txn{Then: []Op{{Kind: OpCreate, Path: fmt.Sprintf("/w/t%d-%d", i, j), Value: []byte{0x02}}, {Kind: OpCreate, Path: fmt.Sprintf("/x/t%d-%d", i, j), Value: []byte{0x02}}}})
				}
			}
		})
	}
	wg.Wait()
	collect := func(ch <-chan WatchResponse, want int) []Event {
		var out []Event
		for len(out) < want {
			r, ok := <-ch
			if !ok || r.Err != nil {
				t.Fatalf("watch ended: %v", r.Err)
			}
			out = append(out, r.Events...)
		}
		return out
	}
	want := historyOf(c.store, "/w", WatchPrefix, start)
	got := collect(all, len(want))
	checkStream(t, got)
	sameEvents(t, got, want)
	wantOne := historyOf(c.store, "/w/k3", WatchExact, start)
	gotOne := collect(one, len(wantOne))
	checkStream(t, gotOne)
	sameEvents(t, gotOne, wantOne)
	// versions of a key go up by one per put
	last := map[string]int64{}
	for _, ev := range got {
		if ev.Kind == EventPut && ev.Version != last[ev.Path]+1 {
			t.Fatalf("%s: version %d after %d", ev.Path, ev.Version, last[ev.Path])
		}
		last[ev.Path] = ev.Version
	}
}

func TestWatchResume(t *testing.T) {
	a := newApplier(t, Config{})
	w, err := a.s.Watch("/r", WatchPrefix, -1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		a.mustCreate(fmt.Sprintf("/r/%02d", i), i)
	}
	first, _ := w.Poll()
	w.Close()
	full := historyOf(a.s, "/r", WatchPrefix, 0)
	sameEvents(t, first, full)
	// a client that saw up to revision 10 resumes from it: exactly the rest follows
	w2, err := a.s.Watch("/r", WatchPrefix, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	rest, _ := w2.Poll()
	sameEvents(t, rest, historyOf(a.s, "/r", WatchPrefix, 10))
	if rest[0].Revision != 11 {
		t.Fatalf("resumed at %d", rest[0].Revision)
	}
	// a watch from the future waits for it
	w3, _ := a.s.Watch("/r", WatchPrefix, a.s.Revision()+2)
	defer w3.Close()
	a.mustCreate("/r/a", 1)
	if evs, _ := w3.Poll(); len(evs) != 0 {
		t.Fatalf("events before the start revision: %+v", evs)
	}
	a.mustCreate("/r/b", 1)
	a.mustCreate("/r/c", 1)
	if evs, _ := w3.Poll(); len(evs) != 1 || evs[0].Path != "/r/c" {
		t.Fatalf("events from the future start: %+v", evs)
	}
}

func TestWatchCompacted(t *testing.T) {
	a := newApplier(t, Config{HistorySize: 16})
	idle, _ := a.s.Watch("/c", WatchExact, -1)
	defer idle.Close()
	busy, _ := a.s.Watch("/c", WatchExact, -1)
	defer busy.Close()
	a.mustCreate("/c", 0)
	var got []Event
	for range 100 { // the idle watcher never reads: Apply goes on regardless
		a.increment("/c", 1)
		evs, err := busy.Poll()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, evs...)
	}
	if len(got) != 101 {
		t.Fatalf("the reading watcher got %d events, want 101", len(got))
	}
	_, err := idle.Poll()
	if !errors.Is(err, ErrCompacted) {
		t.Fatalf("idle watcher: %v", err)
	}
	want := fmt.Sprintf("compacted, current revision is %d, oldest available is %d", a.s.Revision(), a.s.Compacted())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("%q does not say %q", err, want)
	}
	if _, err := a.s.Watch("/c", WatchExact, 3); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from before the history: %v", err)
	}
	w, err := a.s.Watch("/c", WatchExact, a.s.Compacted())
	if err != nil {
		t.Fatalf("watch from the compacted revision: %v", err)
	}
	w.Close()
	// an idle watcher whose key did not change is not compacted by others' traffic
	quiet, _ := a.s.Watch("/quiet", WatchExact, -1)
	defer quiet.Close()
	for range 100 {
		a.increment("/c", 1)
	}
	a.mustCreate("/quiet", 1)
	if evs, err := quiet.Poll(); err != nil || len(evs) != 1 {
		t.Fatalf("quiet watcher: %v, %v", evs, err)
	}
}

func TestManyIdleWatchers(t *testing.T) {
	a := newApplier(t, Config{HistorySize: 64})
	var ws []*Watcher
	for range 2000 {
		w, _ := a.s.Watch("/hot", WatchExact, -1)
		ws = append(ws, w)
	}
	a.mustCreate("/hot", 0)
	for range 500 {
		a.increment("/hot", 1)
	}
	if a.s.Revision() != 501 {
		t.Fatalf("revision %d", a.s.Revision())
	}
	for _, w := range ws {
		if _, err := w.Poll(); !errors.Is(err, ErrCompacted) {
			t.Fatalf("idle watcher: %v", err)
		}
		w.Close()
	}
	if n := len(a.s.hub.all); n != 0 {
		t.Fatalf("%d watchers left registered", n)
	}
}

func TestWatchAcrossRestore(t *testing.T) {
	src := newApplier(t, Config{})
	dst := newApplier(t, Config{})
	for i := range 10 {
		src.mustCreate(fmt.Sprintf("/z/%d", i), i)
	}
	for _, cmd := range src.cmds[:4] {
		dst.apply(cmd)
	}
	w, _ := dst.s.Watch("/z", WatchPrefix, -1)
	defer w.Close()
	if evs, _ := w.Poll(); len(evs) != 0 {
		t.Fatal(evs)
	}
	// dst falls behind and catches up from src's snapshot: the watcher goes on from
	// where it was
	if err := dst.s.Restore(strings.NewReader(string(snapshotBytes(t, src.s))), 10); err != nil {
		t.Fatal(err)
	}
	evs, err := w.Poll()
	if err != nil {
		t.Fatal(err)
	}
	sameEvents(t, evs, historyOf(src.s, "/z", WatchPrefix, 4))
	if dst.s.AppliedIndex() != 10 {
		t.Fatalf("applied index %d", dst.s.AppliedIndex())
	}
}

func TestHistoryBytes(t *testing.T) {
	a := newApplier(t, Config{HistorySize: 1000, HistoryBytes: 10 << 10})
	big := strings.Repeat("x", 1000)
	for i := range 100 {
		a.mustCreate(fmt.Sprintf("/b/%03d", i), big)
	}
	n := a.s.hist.len()
	if n > 10 || n < 5 || a.s.hist.bytes > 10<<10 {
		t.Fatalf("%d events, %d bytes retained", n, a.s.hist.bytes)
	}
	if c := a.s.Compacted(); c != a.s.Revision()-Revision(n) {
		t.Fatalf("compacted %d with %d events retained at revision %d", c, n, a.s.Revision())
	}
	// the history survives its own compaction of the queue
	for i := range 3000 {
		a.increment("/b/n", 1)
		if i%500 == 0 && a.s.hist.len() == 0 {
			t.Fatal("empty history")
		}
	}
	if ev := a.s.hist.at(a.s.hist.len() - 1); ev.Path != "/b/n" || ev.Version != 2999 {
		t.Fatalf("newest event %+v", ev)
	}
}

func TestServiceWatchCompacted(t *testing.T) {
	c := newCluster(t, Config{HistorySize: 4})
	h, _ := c.addHost(t, Config{})
	ctx := context.Background()
	for range 10 {
		if _, _, err := h.svc.Increment(ctx, "/k", []byte{0x01}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := h.svc.Watch(ctx, "/k", WatchOptions{From: 1}); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Watch from a compacted revision: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	start, ch, err := h.svc.Watch(wctx, "/k", WatchOptions{From: c.store.Compacted()})
	if err != nil || start != c.store.Compacted() {
		t.Fatalf("Watch from the compacted revision: %d, %v", start, err)
	}
	if r := <-ch; r.Err != nil || len(r.Events) != int(c.store.Revision()-start) {
		t.Fatalf("resumed watch got %+v", r)
	}
	cancel()
	for range ch { // closed when ctx is done
	}
}
