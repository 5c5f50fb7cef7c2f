package node

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// Profile is how the node runs an app's pool (plugins.md §2.4). It is stored
// msgpack-encoded in the "profiles" collection. Timeouts are seconds (floats) on the wire.
type Profile struct {
	Name string

	LogOutput        bool          // log-output: also log every output line through the node's log
	SpawnTimeout     time.Duration // spawn-timeout: the isolate must start the worker within this
	HandshakeTimeout time.Duration // handshake-timeout: the worker must handshake within this after spawning
	HeartbeatTimeout time.Duration // heartbeat-timeout: the longest gap between heartbeats (> 0)
	SealTimeout      time.Duration // seal-timeout: time a sealing worker has to drain its channels
	TerminateTimeout time.Duration // terminate-timeout: time after terminate before the kill
	IdleTimeout      time.Duration // idle-timeout: an idle worker is retired after this (automatic mode)
	RequestTimeout   time.Duration // request-timeout: lifetime of a request, from its arrival
	Concurrency      int           // concurrency: channels per worker at once (> 0)
	CrashlogLimit    int           // crashlog-limit: output lines kept per worker for crash logs
	PoolLimit        int           // pool-limit: most workers (> 0)
	QueueLimit       int           // queue-limit: most queued events; 0 bounds by free capacity
	GrowThreshold    int           // grow-threshold: queued events per extra worker
	PublishOn        int           // publish-on: publish the app once this many workers are active
	UnpublishUnder   int           // unpublish-under: withdraw it when fewer are active

	Isolate IsolateSpec // isolate: {type, args}

	// Raw is the stored object, returned by info with the expand-profile flag.
	Raw map[string]any
}

// IsolateSpec selects the isolate that runs the workers.
type IsolateSpec struct {
	Type string         // "process" unless set; "legacy_process" is a synonym
	Args map[string]any // given to the isolate, which validates them
}

// DefaultProfile is the profile with every default of the original.
func DefaultProfile(name string) Profile {
	p := Profile{
		Name:             name,
		SpawnTimeout:     time.Second,
		HandshakeTimeout: 5 * time.Second,
		HeartbeatTimeout: 30 * time.Second,
		SealTimeout:      60 * time.Second,
		TerminateTimeout: 10 * time.Second,
		IdleTimeout:      600 * time.Second,
		RequestTimeout:   86400 * time.Second,
		Concurrency:      10,
		CrashlogLimit:    50,
		PoolLimit:        10,
		QueueLimit:       100,
		Isolate:          IsolateSpec{Type: "process", Args: map[string]any{}},
	}
	p.GrowThreshold = defaultGrowThreshold(p.QueueLimit, p.PoolLimit)
	return p
}

func defaultGrowThreshold(queue, pool int) int { return max(1, queue/pool/2) }

// maxTimeout bounds timeouts so that seconds convert to a Duration without overflow
// (about 292 years).
const maxTimeout = float64(math.MaxInt64 / int64(time.Second))

// maxCount bounds the integer fields.
const maxCount = 1 << 30

// DecodeProfile decodes a stored profile over the defaults and validates it. Unknown keys
// are ignored, as the original ignores them. Every problem is reported, each wrapping
// ErrInvalidProfile.
func DecodeProfile(name string, b []byte) (Profile, error) {
	v, err := rpc.Unmarshal(b)
	if err != nil {
		return Profile{}, fmt.Errorf("%w %q: not msgpack: %v", ErrInvalidProfile, name, err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Profile{}, fmt.Errorf("%w %q: a profile is a map with string keys, got %s", ErrInvalidProfile, name, typeName(v))
	}
	return ParseProfile(name, obj)
}

// ParseProfile applies a decoded profile object over the defaults and validates it.
func ParseProfile(name string, obj map[string]any) (Profile, error) {
	p := DefaultProfile(name)
	p.Raw = obj
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w %q: %s %s", ErrInvalidProfile, name, key, fmt.Sprintf(format, args...)))
	}
	seconds := func(key string, dst *time.Duration) {
		v, ok := obj[key]
		if !ok {
			return
		}
		f, ok := Number(v)
		switch {
		case !ok:
			bad(key, "must be a number of seconds, got %s", typeName(v))
		case f < 0 || math.IsNaN(f) || f > maxTimeout:
			bad(key, "must be between 0 and %.0f seconds, got %v", maxTimeout, f)
		default:
			*dst = time.Duration(f * float64(time.Second))
		}
	}
	count := func(key string, dst *int) bool {
		v, ok := obj[key]
		if !ok {
			return false
		}
		f, ok := Number(v)
		switch {
		case !ok:
			bad(key, "must be a non-negative integer, got %s", typeName(v))
		case f != math.Trunc(f) || f < 0 || f > maxCount:
			bad(key, "must be an integer between 0 and %d, got %v", maxCount, f)
		default:
			*dst = int(f)
			return true
		}
		return false
	}
	if v, ok := obj["log-output"]; ok {
		if b, ok := v.(bool); ok {
			p.LogOutput = b
		} else {
			bad("log-output", "must be a boolean, got %s", typeName(v))
		}
	}
	seconds("spawn-timeout", &p.SpawnTimeout)
	seconds("handshake-timeout", &p.HandshakeTimeout)
	seconds("heartbeat-timeout", &p.HeartbeatTimeout)
	seconds("seal-timeout", &p.SealTimeout)
	seconds("terminate-timeout", &p.TerminateTimeout)
	seconds("idle-timeout", &p.IdleTimeout)
	seconds("request-timeout", &p.RequestTimeout)
	count("concurrency", &p.Concurrency)
	count("crashlog-limit", &p.CrashlogLimit)
	count("pool-limit", &p.PoolLimit)
	count("queue-limit", &p.QueueLimit)
	grow := count("grow-threshold", &p.GrowThreshold)
	count("publish-on", &p.PublishOn)
	count("unpublish-under", &p.UnpublishUnder)
	if v, ok := obj["isolate"]; ok {
		iso, ok := v.(map[string]any)
		if !ok {
			bad("isolate", "must be a map {type, args}, got %s", typeName(v))
		} else {
			switch t := iso["type"].(type) {
			case nil:
			case string:
				p.Isolate.Type = t
			default:
				bad("isolate.type", "must be a string, got %s", typeName(t))
			}
			switch a := iso["args"].(type) {
			case nil:
			case map[string]any:
				p.Isolate.Args = a
			default:
				bad("isolate.args", "must be a map, got %s", typeName(a))
			}
		}
	}
	if p.HeartbeatTimeout == 0 {
		bad("heartbeat-timeout", "must be greater than 0")
	}
	if p.Concurrency == 0 {
		bad("concurrency", "must be greater than 0")
	}
	if p.PoolLimit == 0 {
		bad("pool-limit", "must be greater than 0")
	}
	if p.PublishOn > p.PoolLimit && p.PoolLimit > 0 {
		bad("publish-on", "(%d) must not exceed pool-limit (%d)", p.PublishOn, p.PoolLimit)
	}
	if p.PublishOn < p.UnpublishUnder {
		bad("publish-on", "(%d) must not be less than unpublish-under (%d)", p.PublishOn, p.UnpublishUnder)
	}
	if !grow && p.PoolLimit > 0 {
		p.GrowThreshold = defaultGrowThreshold(p.QueueLimit, p.PoolLimit)
	}
	if grow && p.GrowThreshold == 0 {
		bad("grow-threshold", "must be greater than 0")
	}
	if err := errors.Join(errs...); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Number reads a number from a decoded profile value, accepting the numeric shapes
// msgpack decodes to; isolates read their args with it. It is a pure function.
func Number(v any) (float64, bool) {
	switch x := v.(type) {
	case uint64:
		return float64(x), true
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}
