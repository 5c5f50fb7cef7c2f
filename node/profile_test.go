package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

func TestProfileDefaults(t *testing.T) {
	p, err := ParseProfile("default", map[string]any{"unknown-key": "ignored, as the original"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"log-output", p.LogOutput, false},
		{"spawn-timeout", p.SpawnTimeout, time.Second},
		{"handshake-timeout", p.HandshakeTimeout, 5 * time.Second},
		{"heartbeat-timeout", p.HeartbeatTimeout, 30 * time.Second},
		{"seal-timeout", p.SealTimeout, 60 * time.Second},
		{"terminate-timeout", p.TerminateTimeout, 10 * time.Second},
		{"idle-timeout", p.IdleTimeout, 600 * time.Second},
		{"request-timeout", p.RequestTimeout, 86400 * time.Second},
		{"concurrency", p.Concurrency, 10},
		{"crashlog-limit", p.CrashlogLimit, 50},
		{"pool-limit", p.PoolLimit, 10},
		{"queue-limit", p.QueueLimit, 100},
		{"grow-threshold", p.GrowThreshold, 5}, // max(1, 100/10/2)
		{"publish-on", p.PublishOn, 0},
		{"unpublish-under", p.UnpublishUnder, 0},
		{"isolate.type", p.Isolate.Type, "process"},
		{"isolate.args", len(p.Isolate.Args), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestProfileFields(t *testing.T) {
	p, err := ParseProfile("p", map[string]any{
		"log-output": true, "spawn-timeout": 0.25, "handshake-timeout": uint64(2), "heartbeat-timeout": 1.5,
		"seal-timeout": int64(3), "terminate-timeout": 0.0, "idle-timeout": 7.0, "request-timeout": 0.001,
		"concurrency": uint64(3), "crashlog-limit": uint64(0), "pool-limit": uint64(4), "queue-limit": uint64(40),
		"publish-on": uint64(2), "unpublish-under": uint64(1),
		"isolate": map[string]any{"type": "legacy_process", "args": map[string]any{"class": "idle"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !p.LogOutput || p.SpawnTimeout != 250*time.Millisecond || p.HandshakeTimeout != 2*time.Second ||
		p.HeartbeatTimeout != 1500*time.Millisecond || p.SealTimeout != 3*time.Second || p.TerminateTimeout != 0 ||
		p.IdleTimeout != 7*time.Second || p.RequestTimeout != time.Millisecond || p.Concurrency != 3 ||
		p.CrashlogLimit != 0 || p.PoolLimit != 4 || p.QueueLimit != 40 || p.GrowThreshold != 5 ||
		p.PublishOn != 2 || p.UnpublishUnder != 1 || p.Isolate.Type != "legacy_process" || p.Isolate.Args["class"] != "idle" {
		t.Fatalf("%+v", p)
	}
	if p, _ := ParseProfile("q", map[string]any{"queue-limit": uint64(0), "pool-limit": uint64(3)}); p.GrowThreshold != 1 {
		t.Fatalf("grow-threshold with queue-limit 0: %d, want 1", p.GrowThreshold)
	}
}

func TestProfileErrors(t *testing.T) {
	for _, tc := range []struct {
		obj  map[string]any
		want []string // each must appear in the error
	}{
		{map[string]any{"heartbeat-timeout": 0.0}, []string{"heartbeat-timeout must be greater than 0"}},
		{map[string]any{"concurrency": uint64(0)}, []string{"concurrency must be greater than 0"}},
		{map[string]any{"pool-limit": uint64(0)}, []string{"pool-limit must be greater than 0"}},
		{map[string]any{"publish-on": uint64(11)}, []string{"publish-on (11) must not exceed pool-limit (10)"}},
		{map[string]any{"publish-on": uint64(1), "unpublish-under": uint64(2)}, []string{"must not be less than unpublish-under"}},
		{map[string]any{"spawn-timeout": "1"}, []string{"spawn-timeout must be a number of seconds, got a string"}},
		{map[string]any{"seal-timeout": int64(-1)}, []string{"seal-timeout must be between 0"}},
		{map[string]any{"concurrency": 1.5}, []string{"concurrency must be an integer"}},
		{map[string]any{"queue-limit": int64(-5)}, []string{"queue-limit must be an integer between 0"}},
		{map[string]any{"grow-threshold": uint64(0)}, []string{"grow-threshold must be greater than 0"}},
		{map[string]any{"log-output": "yes"}, []string{"log-output must be a boolean"}},
		{map[string]any{"isolate": "process"}, []string{"isolate must be a map"}},
		{map[string]any{"isolate": map[string]any{"type": uint64(1), "args": []any{}}}, []string{"isolate.type must be a string", "isolate.args must be a map"}},
		{map[string]any{"pool-limit": "x", "concurrency": uint64(0)}, []string{"pool-limit must be", "concurrency must be greater"}},
	} {
		_, err := ParseProfile("bad", tc.obj)
		if !errors.Is(err, ErrInvalidProfile) {
			t.Errorf("%v: want ErrInvalidProfile, got %v", tc.obj, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", tc.obj, err, w)
			}
		}
		if e := wire(err); e.Category != rpc.CategoryGeneric || e.Code != 22 {
			t.Errorf("on the wire: %v", e)
		}
	}
	for _, b := range [][]byte{{0xc1}, {0x91, 0x01}, {0x81, 0x01, 0x02}} {
		if _, err := DecodeProfile("raw", b); !errors.Is(err, ErrInvalidProfile) {
			t.Errorf("DecodeProfile(%x): %v", b, err)
		}
	}
}

func TestManifest(t *testing.T) {
	enc := func(v any) []byte { b, _ := rpc.Marshal(v); return b }
	m, err := DecodeManifest(enc(map[string]any{"slave": "bin/echo", "environment": map[string]any{"A": "1", "B": "two"}, "extra": true}))
	if err != nil || m.Slave != "bin/echo" || m.Environment["B"] != "two" || m.Raw["extra"] != true {
		t.Fatalf("%+v %v", m, err)
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{map[string]any{}, "runnable object has not been specified"},
		{map[string]any{"slave": ""}, `"slave" is empty`},
		{map[string]any{"slave": uint64(1)}, `"slave" must be a string`},
		{map[string]any{"slave": "x", "environment": []any{}}, `"environment" must be a map`},
		{map[string]any{"slave": "x", "environment": map[string]any{"A": uint64(1)}}, `environment "A" must be a string`},
		{map[string]any{"slave": "x", "environment": map[string]any{"A=B": "c"}}, `without '='`},
		{[]any{"slave"}, "a manifest is a map"},
	} {
		_, err := DecodeManifest(enc(tc.v))
		if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.v, err, tc.want)
		}
	}
}

func TestRequestTimeoutHeader(t *testing.T) {
	for _, tc := range []struct {
		value []byte
		want  time.Duration
		ok    bool
	}{
		{[]byte{0xe8, 0x03, 0, 0, 0, 0, 0, 0}, time.Second, true},
		{[]byte("250"), 250 * time.Millisecond, true},
		{[]byte("soon"), 0, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, time.Duration(maxTimeout) * time.Second, true},
	} {
		got, ok := requestTimeout([]rpc.Header{{Name: "other", Value: []byte("1")}, {Name: HeaderRequestTimeout, Value: tc.value}})
		if ok != tc.ok || got != tc.want {
			t.Errorf("%x: %v %v, want %v %v", tc.value, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := requestTimeout(nil); ok {
		t.Error("a timeout without the header")
	}
}

func TestOutputRing(t *testing.T) {
	var got []string
	o := newOutput("app", "u", 3, sinkFunc(func(app, uuid, line string) { got = append(got, app+"/"+uuid+":"+line) }), nil)
	o.Write([]byte("one\ntwo\r\nthr"))
	o.Write([]byte("ee\nfour\nfive\npart"))
	if l := o.Last(); strings.Join(l, "|") != "three|four|five|part" {
		t.Fatalf("last lines: %q", l)
	}
	if len(got) != 5 || got[1] != "app/u:two" {
		t.Fatalf("sink got %q", got)
	}
	long := strings.Repeat("x", maxLine+10)
	o.Write([]byte(long))
	if l := o.Last(); len(l[len(l)-2]) != maxLine {
		t.Fatalf("a long line is not split at %d bytes", maxLine)
	}
}

type sinkFunc func(app, uuid, line string)

func (f sinkFunc) WorkerOutput(app, uuid, line string) { f(app, uuid, line) }

func TestErrorCodes(t *testing.T) {
	seen := map[[2]int]error{}
	for _, err := range []error{ErrDeadline, ErrResource, ErrTimeout, ErrAlreadyStarted, ErrNotRunning, ErrSpool, ErrPublish,
		ErrQueueFull, ErrPoolFull, ErrSpawnTimeout, ErrLocatorNotFound, ErrEmptyLocator, ErrHandshakeTimeout, ErrActivate,
		ErrSealTimeout, ErrTerminateTimeout, ErrHeartbeatTimeout, ErrInvalidState, ErrControlIPC, ErrShuttingDown,
		ErrCommittedSuicide, ErrIdle, ErrSealing, ErrEventNotFound} {
		e := wire(err)
		k := [2]int{e.Category, e.Code}
		if prev, ok := seen[k]; ok {
			t.Errorf("%v and %v share %v", prev, err, k)
		}
		seen[k] = err
		// Wrapped with context, the code survives the wire.
		wrapped := wire(errorsJoin(err))
		if !errors.Is(wrapped, err) {
			t.Errorf("%v lost its code when wrapped: %v", err, wrapped)
		}
	}
	for _, c := range []struct {
		err       error
		cat, code int
	}{{ErrNotRunning, 0x51FF, 6}, {ErrQueueFull, 0x52FF, 1}, {ErrHeartbeatTimeout, 0x53FF, 8}, {ErrSealing, 0x53FF, 14},
		{ErrNotFound, 12, 2}, {ErrUnknownIsolate, 8, 1}} {
		if e := wire(c.err); e.Category != c.cat || e.Code != c.code {
			t.Errorf("%v on the wire: [%d, %d], want [%d, %d]", c.err, e.Category, e.Code, c.cat, c.code)
		}
	}
}

func errorsJoin(err error) error { return errors.Join(errors.New("context"), err) }

func TestValidateAppName(t *testing.T) {
	for _, ok := range []string{"echo", "my-app_2", "app.v1"} {
		if err := ValidateAppName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/b", "a\\b", "a\x00", strings.Repeat("x", 65)} {
		if err := ValidateAppName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
