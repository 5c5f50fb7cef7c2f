package unicorn

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxValueSize    = 1 << 20
	DefaultHistorySize     = 10_000
	DefaultHistoryBytes    = 64 << 20
	DefaultHostLeaseTTL    = 10 * time.Second
	DefaultSessionLeaseTTL = 10 * time.Second
	DefaultRequestTimeout  = 10 * time.Second
	DefaultExpiryInterval  = 250 * time.Millisecond
)

// Bounds of lease TTLs. A TTL below MinLeaseTTL is raised to it (as etcd does), one above
// MaxLeaseTTL lowered to it; lease_grant answers with the TTL granted.
const (
	MinLeaseTTL = 2 * time.Second
	MaxLeaseTTL = 24 * time.Hour
)

// Config configures a Store (HistorySize, HistoryBytes) and a Service (all of it). Zero
// fields take their defaults. Every replica must use the same HistorySize and
// HistoryBytes for their snapshots to be byte-identical (they change nothing else).
type Config struct {
	// MaxValueSize bounds one value, in bytes of its msgpack encoding. It is checked
	// where a command is proposed, not in Apply, so replicas may differ without diverging.
	MaxValueSize int `json:"max_value_size,omitempty"`
	// HistorySize is how many recent events the store retains for watches to resume.
	HistorySize int `json:"history_size,omitempty"`
	// HistoryBytes bounds the bytes of paths and values the history retains (old values
	// stay in memory as long as their events do); the oldest events go first.
	HistoryBytes int `json:"history_bytes,omitempty"`
	// HostLeaseTTL is the TTL of this host's lease (see Service.HostLease).
	HostLeaseTTL time.Duration `json:"host_lease_ttl,omitempty"`
	// SessionLeaseTTL is the TTL of the lease of each client connection that creates
	// ephemeral nodes or takes locks.
	SessionLeaseTTL time.Duration `json:"session_lease_ttl,omitempty"`
	// RequestTimeout bounds one consensus round trip of a request (a proposal, a read
	// index, a keepalive).
	RequestTimeout time.Duration `json:"request_timeout,omitempty"`
	// ExpiryInterval is how often the leader looks for expired leases.
	ExpiryInterval time.Duration `json:"expiry_interval,omitempty"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.MaxValueSize == 0 {
		c.MaxValueSize = DefaultMaxValueSize
	}
	if c.HistorySize == 0 {
		c.HistorySize = DefaultHistorySize
	}
	if c.HistoryBytes == 0 {
		c.HistoryBytes = DefaultHistoryBytes
	}
	def(&c.HostLeaseTTL, DefaultHostLeaseTTL)
	def(&c.SessionLeaseTTL, DefaultSessionLeaseTTL)
	def(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.ExpiryInterval, DefaultExpiryInterval)
	return c
}

// Validate reports every problem of c (zero fields are valid: they take defaults).
func (c Config) Validate() error {
	var errs []error
	if c.MaxValueSize < 0 {
		errs = append(errs, fmt.Errorf("unicorn: max_value_size must not be negative, got %d", c.MaxValueSize))
	}
	if c.HistorySize < 0 {
		errs = append(errs, fmt.Errorf("unicorn: history_size must not be negative, got %d", c.HistorySize))
	}
	if c.HistoryBytes < 0 {
		errs = append(errs, fmt.Errorf("unicorn: history_bytes must not be negative, got %d", c.HistoryBytes))
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"host_lease_ttl", c.HostLeaseTTL}, {"session_lease_ttl", c.SessionLeaseTTL}} {
		if f.v != 0 && (f.v < MinLeaseTTL || f.v > MaxLeaseTTL) {
			errs = append(errs, fmt.Errorf("unicorn: %s (%s) must be between %s and %s", f.name, f.v, MinLeaseTTL, MaxLeaseTTL))
		}
	}
	if c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("unicorn: request_timeout must not be negative, got %s", c.RequestTimeout))
	}
	if c.ExpiryInterval < 0 {
		errs = append(errs, fmt.Errorf("unicorn: expiry_interval must not be negative, got %s", c.ExpiryInterval))
	}
	if c.ExpiryInterval > 0 && c.ExpiryInterval > MinLeaseTTL/4 {
		errs = append(errs, fmt.Errorf("unicorn: expiry_interval (%s) must be at most a quarter of the minimum lease TTL (%s)", c.ExpiryInterval, MinLeaseTTL))
	}
	return errors.Join(errs...)
}

// clampTTL brings a TTL within the bounds and rounds it up to whole seconds (the unit of
// the store).
func clampTTL(ttl time.Duration) time.Duration {
	ttl = min(max(ttl, MinLeaseTTL), MaxLeaseTTL)
	return (ttl + time.Second - 1).Truncate(time.Second)
}
