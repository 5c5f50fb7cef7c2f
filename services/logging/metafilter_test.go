package logging

import (
	"math"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is the clock NewFilters gets, so deadlines are set without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var epoch = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestFilters(t *testing.T, defaults ...any) (*Filters, *fakeClock) {
	t.Helper()
	var fs []Filter
	for _, d := range defaults {
		fs = append(fs, mustParse(t, d))
	}
	clk := &fakeClock{t: epoch}
	return NewFilters(fs, clk.Now), clk
}

func from(backend string, sev int) *Record { return &Record{Backend: backend, Severity: sev} }

func TestFiltersSelection(t *testing.T) {
	// Default: errors only. "app/" wants warnings, "app/echo" wants debug but only
	// from one user, "apple" nothing at all (it only has an expired filter).
	fs, clk := newTestFilters(t, arr("severity", uint64(3)))
	fs.Add("app/", mustParse(t, arr("severity", uint64(2))), time.Hour, DispositionLocal)
	fs.Add("app/echo", mustParse(t, arr("==", "user", "bob")), time.Hour, DispositionLocal)
	fs.Add("apple", mustParse(t, arr("empty")), time.Second, DispositionLocal)
	clk.Advance(2 * time.Second)
	now := clk.Now()

	bob := from("app/echo", 0)
	bob.Attrs = []Attr{{"user", "bob"}}

	for _, tc := range []struct {
		name   string
		r      *Record
		logger string
		want   bool
	}{
		{"longest prefix accepts", bob, "app/echo", true},
		{"no fallback to shorter prefix", from("app/echo", 2), "app/echo", false},
		{"longest prefix matches a longer backend", from("app/echo2", 0), "app/echo", false},
		{"plain string prefix, not path segments", from("app/echoes/x", 2), "app/echo", false},
		{"shorter prefix", from("app/other", 2), "app/", true},
		{"shorter prefix rejects", from("app/other", 1), "app/", false},
		{"no prefix uses default", from("svc/x", 3), DefaultLogger, true},
		{"no prefix uses default and rejects", from("svc/x", 2), DefaultLogger, false},
		{"only expired filters use default", from("apple/pie", 3), DefaultLogger, true},
		{"only expired filters use default, not app", from("apple/pie", 2), DefaultLogger, false},
		{"exact name", from("app/", 2), "app/", true},
		{"prefix of a name is not a match", from("ap", 2), DefaultLogger, false},
		{"empty core falls to default", from("core", 3), DefaultLogger, true},
		{"default is itself a prefix", from("default/x", 3), DefaultLogger, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fs.Select(tc.r.Backend, now); got != tc.logger {
				t.Errorf("Select(%q) = %q, want %q", tc.r.Backend, got, tc.logger)
			}
			if got := fs.Accept(tc.r, now); got != tc.want {
				t.Errorf("Accept(%q, sev %d) = %v, want %v", tc.r.Backend, tc.r.Severity, got, tc.want)
			}
		})
	}
}

func TestFiltersEmptyPrefixMatchesAll(t *testing.T) {
	fs, clk := newTestFilters(t, arr("severity", uint64(3)))
	fs.Add("", mustParse(t, arr("empty")), time.Minute, DispositionLocal)
	if got := fs.Select("anything", clk.Now()); got != "" {
		t.Errorf("Select = %q, want the empty-named metafilter", got)
	}
	if !fs.Accept(from("anything", 0), clk.Now()) {
		t.Error("empty-named metafilter with [empty] rejected")
	}
}

func TestFiltersAnyAccepts(t *testing.T) {
	fs, clk := newTestFilters(t)
	fs.Add("app/x", mustParse(t, arr("==", "k", uint64(1))), time.Minute, DispositionLocal)
	fs.Add("app/x", mustParse(t, arr("==", "k", uint64(2))), time.Minute, DispositionCluster)
	for k, want := range map[uint64]bool{1: true, 2: true, 3: false} {
		r := from("app/x", 0)
		r.Attrs = []Attr{{"k", k}}
		if got := fs.Accept(r, clk.Now()); got != want {
			t.Errorf("k=%d: got %v, want %v", k, got, want)
		}
	}
}

func TestFiltersNoDefaultsRejects(t *testing.T) {
	fs, clk := newTestFilters(t)
	if fs.Accept(from("app/x", 3), clk.Now()) {
		t.Error("a default metafilter with no filters accepted")
	}
}

func TestFiltersTTL(t *testing.T) {
	fs, clk := newTestFilters(t)
	id := fs.Add("app/x", mustParse(t, arr("empty")), 10*time.Second, DispositionLocal)
	r := from("app/x", 0)

	clk.Advance(10 * time.Second)
	if !fs.Accept(r, clk.Now()) {
		t.Fatal("filter dropped at its deadline; it should live through it")
	}
	clk.Advance(time.Nanosecond)
	if fs.Accept(r, clk.Now()) {
		t.Fatal("expired filter still accepts")
	}
	// Until pruned, the expired filter is still registered and listed.
	if l := fs.List(); !slices.ContainsFunc(l, func(fi FilterInfo) bool { return fi.ID == id }) {
		t.Error("expired filter vanished before Prune")
	}
	if n := fs.Prune(clk.Now()); n != 1 {
		t.Errorf("Prune dropped %d filters, want 1", n)
	}
	if fs.Remove(id) {
		t.Error("Remove found a pruned filter")
	}
	if got, want := fs.Loggers(), []string{CoreLogger, DefaultLogger}; !reflect.DeepEqual(got, want) {
		t.Errorf("Loggers after Prune = %q, want %q", got, want)
	}
}

func TestFiltersNegativeTTL(t *testing.T) {
	fs, clk := newTestFilters(t)
	fs.Add("app/x", mustParse(t, arr("empty")), -time.Hour, DispositionLocal)
	if !fs.Accept(from("app/x", 0), clk.Now()) {
		t.Error("negative TTL should act as zero: live at the instant it was set")
	}
}

func TestFiltersDefaultsNeverExpire(t *testing.T) {
	fs, clk := newTestFilters(t, arr("empty"))
	clk.Advance(200 * 365 * 24 * time.Hour)
	fs.Prune(clk.Now())
	if !fs.Accept(from("x", 0), clk.Now()) {
		t.Error("default filter expired")
	}
	l := fs.List()
	if len(l) != 1 || l[0].Logger != DefaultLogger || !l[0].Deadline.IsZero() || l[0].DeadlineUnix() != math.MaxInt64 {
		t.Errorf("List = %+v", l)
	}
}

func TestFiltersRemoveAndList(t *testing.T) {
	fs, clk := newTestFilters(t, arr("severity", uint64(1)))
	a := fs.Add("b", mustParse(t, arr("e", "x")), time.Minute, DispositionLocal)
	b := fs.Add("a", mustParse(t, arr("e", "y")), 2*time.Minute, DispositionCluster)
	c := fs.Add("b", mustParse(t, arr("e", "z")), 3*time.Minute, DispositionLocal)

	l := fs.List()
	var got []string
	for _, fi := range l {
		got = append(got, fi.Logger)
	}
	if want := []string{"a", "b", "b", DefaultLogger}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List loggers = %q, want %q", got, want)
	}
	if l[0].ID != b || l[1].ID != a || l[2].ID != c {
		t.Errorf("List order by id wrong: %+v", l)
	}
	if l[0].Disposition != DispositionCluster || !l[0].Deadline.Equal(epoch.Add(2*time.Minute)) {
		t.Errorf("List[0] = %+v", l[0])
	}
	if l[0].DeadlineUnix() != uint64(epoch.Add(2*time.Minute).Unix()) {
		t.Errorf("DeadlineUnix = %d", l[0].DeadlineUnix())
	}
	if !reflect.DeepEqual(l[0].Filter.Repr(), arr("e", "y")) {
		t.Errorf("List[0].Filter = %#v", l[0].Filter.Repr())
	}
	if got, want := fs.Loggers(), []string{"a", "b", CoreLogger, DefaultLogger}; !reflect.DeepEqual(got, want) {
		t.Errorf("Loggers = %q, want %q", got, want)
	}

	if !fs.Remove(a) || fs.Remove(a) {
		t.Error("Remove should succeed once")
	}
	if fs.Remove(0) || fs.Remove(12345) {
		t.Error("Remove of an unknown id succeeded")
	}
	if !fs.Remove(b) {
		t.Error("Remove b failed")
	}
	// "a" is now empty: it is listed until Prune and then dropped, while "b" stays.
	fs.Prune(clk.Now())
	if got, want := fs.Loggers(), []string{"b", CoreLogger, DefaultLogger}; !reflect.DeepEqual(got, want) {
		t.Errorf("Loggers = %q, want %q", got, want)
	}
	// Default filters have ids too and can be removed, as in the original.
	def := fs.List()[1].ID
	if !fs.Remove(def) || fs.Accept(from("x", 3), clk.Now()) {
		t.Error("removing the only default filter should leave default rejecting")
	}
	if got, want := fs.Loggers(), []string{"b", CoreLogger, DefaultLogger}; !reflect.DeepEqual(got, want) {
		t.Errorf("default or core pruned: %q", got)
	}
	fs.Prune(clk.Now())
	if got, want := fs.Loggers(), []string{"b", CoreLogger, DefaultLogger}; !reflect.DeepEqual(got, want) {
		t.Errorf("default or core pruned: %q", got)
	}
}

func TestFiltersIDs(t *testing.T) {
	fs, _ := newTestFilters(t, arr("empty"), arr("traced"))
	seen := make(map[uint64]bool)
	for _, fi := range fs.List() {
		seen[fi.ID] = true
	}
	f := mustParse(t, arr("empty"))
	for range 10_000 {
		id := fs.Add("app/x", f, time.Minute, DispositionLocal)
		if id == 0 || seen[id] {
			t.Fatalf("id %d is zero or repeated", id)
		}
		seen[id] = true
	}
	if len(fs.List()) != 10_002 {
		t.Errorf("List has %d filters", len(fs.List()))
	}
}

func TestFiltersInsert(t *testing.T) {
	fs, clk := newTestFilters(t)
	f := mustParse(t, arr("empty"))
	info := FilterInfo{Logger: "app/x", Filter: f, ID: 42, Deadline: clk.Now().Add(time.Minute), Disposition: DispositionCluster}
	if !fs.Insert(info) {
		t.Fatal("Insert failed")
	}
	for _, bad := range []FilterInfo{
		info,                             // duplicate id
		{Logger: "y", Filter: f},         // zero id
		{Logger: "y", ID: 43},            // nil filter
		{Logger: "z", Filter: f, ID: 42}, // duplicate id under another name
	} {
		if fs.Insert(bad) {
			t.Errorf("Insert(%+v) succeeded", bad)
		}
	}
	if !fs.Accept(from("app/x", 0), clk.Now()) {
		t.Error("inserted filter not applied")
	}
	if !fs.Remove(42) {
		t.Error("Remove of inserted filter failed")
	}
}

func TestFiltersCounters(t *testing.T) {
	fs, clk := newTestFilters(t, arr("severity", uint64(2)))
	fs.Add("app/", mustParse(t, arr("severity", uint64(1))), time.Second, DispositionLocal)
	now := clk.Now()
	fs.Accept(from("app/a", 1), now) // app/ accepts
	fs.Accept(from("app/a", 0), now) // app/ rejects
	fs.Accept(from("app/a", 0), now) // app/ rejects
	fs.Accept(from("x", 2), now)     // default accepts
	clk.Advance(2 * time.Second)
	fs.Prune(clk.Now())
	fs.Accept(from("app/a", 0), clk.Now()) // app/ gone: default rejects

	got := fs.Counters()
	want := map[string]Counter{
		"app/":        {Accepted: 1, Rejected: 2}, // kept after its metafilter was pruned
		DefaultLogger: {Accepted: 1, Rejected: 1},
		CoreLogger:    {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Counters = %+v, want %+v", got, want)
	}
}

// TestFiltersConcurrent exercises every method at once; run it with -race.
func TestFiltersConcurrent(t *testing.T) {
	fs, clk := newTestFilters(t, arr("severity", uint64(2)))
	f := mustParse(t, arr("e", "k"))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				id := fs.Add("app/", f, time.Duration(i%3)*time.Second, w%2)
				r := from("app/x", i%4)
				fs.Accept(r, clk.Now())
				if i%2 == 0 {
					fs.Remove(id)
				}
			}
		})
	}
	wg.Go(func() {
		for range 500 {
			clk.Advance(time.Second)
			fs.Prune(clk.Now())
			fs.List()
			fs.Loggers()
			fs.Counters()
		}
	})
	wg.Wait()
	c := fs.Counters()
	if total := c["app/"].Accepted + c["app/"].Rejected + c[DefaultLogger].Accepted + c[DefaultLogger].Rejected; total != 2000 {
		t.Errorf("counted %d decisions, want 2000", total)
	}
}
