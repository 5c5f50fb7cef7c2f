package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/node/isolate/runc"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/logging"
	"github.com/cocaine/cocaine/services/storage"
	"github.com/cocaine/cocaine/unicorn"
)

// Config is everything the daemon needs. cmd/cocaine fills it from defaults, the config
// file and flags, in that order; nothing else reads files or the environment.
type Config struct {
	// DataDir holds the node's state: its uuid and the Raft log, stable store and
	// snapshots (raft/).
	DataDir string `json:"data_dir"`
	// UUID identifies the node. Empty: generated once and kept in DataDir/uuid.
	UUID    string         `json:"uuid,omitempty"`
	Network NetworkConfig  `json:"network"`
	Raft    RaftConfig     `json:"raft"`
	Locator LocatorConfig  `json:"locator"`
	Logging logging.Config `json:"logging"`
	Storage StorageConfig  `json:"storage"`
	Unicorn UnicornConfig  `json:"unicorn"`
	RPC     RPCConfig      `json:"rpc"`
	Node    NodeConfig     `json:"node"`
}

// NodeConfig is the node service's config with the runc isolate's beside it (the node
// knows no isolate: the daemon hands it their factories).
type NodeConfig struct {
	node.Config
	// Runc enables the runc isolate (runc.go); nil leaves it off.
	Runc *runc.Config `json:"runc,omitempty"`
}

// Validate reports every problem of both.
func (c NodeConfig) Validate() error {
	errs := []error{c.Config.Validate()}
	if c.Runc != nil {
		errs = append(errs, c.Runc.Validate())
	}
	return errors.Join(errs...)
}

// StorageConfig configures the replicated storage service.
type StorageConfig struct {
	// MaxValueSize bounds one value in the Raft log (1 MiB if zero, at most 4 MiB);
	// larger values go to the blob store (blobs.go).
	MaxValueSize int `json:"max_value_size,omitempty"`
	// MaxBlobSize bounds one value in the blob store (256 MiB if zero).
	MaxBlobSize int `json:"max_blob_size,omitempty"`
	// BlobGCInterval: how often blobs no key refers to are deleted (1m if zero).
	BlobGCInterval Duration `json:"blob_gc_interval,omitempty"`
	// BlobFetchTimeout: a host sending a blob that is silent this long is given up (30s).
	BlobFetchTimeout Duration `json:"blob_fetch_timeout,omitempty"`
}

// UnicornConfig configures the unicorn service; zero fields take unicorn's defaults.
type UnicornConfig struct {
	// MaxValueSize bounds one value, in bytes of its msgpack encoding (1 MiB).
	MaxValueSize int `json:"max_value_size,omitempty"`
	// HistorySize is how many recent changes are kept for watches to resume (10,000).
	HistorySize int `json:"history_size,omitempty"`
	// HostLeaseTTL: this host's ephemeral nodes vanish this long after it dies (10s).
	HostLeaseTTL Duration `json:"host_lease_ttl,omitempty"`
	// SessionLeaseTTL: a client connection's ephemeral nodes and locks outlive a host
	// that died under it by at most this (10s).
	SessionLeaseTTL Duration `json:"session_lease_ttl,omitempty"`
	// RequestTimeout bounds one consensus round trip of a request (10s).
	RequestTimeout Duration `json:"request_timeout,omitempty"`
}

func (c UnicornConfig) unicornConfig() unicorn.Config {
	return unicorn.Config{
		MaxValueSize: c.MaxValueSize, HistorySize: c.HistorySize,
		HostLeaseTTL: time.Duration(c.HostLeaseTTL), SessionLeaseTTL: time.Duration(c.SessionLeaseTTL),
		RequestTimeout: time.Duration(c.RequestTimeout),
	}
}

// NetworkConfig says where services listen and what they advertise (protocol.md §7.6).
type NetworkConfig struct {
	// Endpoint is the address every service binds. "::" or "0.0.0.0" binds all addresses
	// and advertises every address Hostname resolves to.
	Endpoint string `json:"endpoint"`
	// Hostname is resolved to advertise an unspecified Endpoint; the machine's name if
	// empty.
	Hostname string `json:"hostname,omitempty"`
	// Advertise overrides the advertised addresses (IP literals), e.g. behind NAT.
	Advertise []string `json:"advertise,omitempty"`
	// Pinned gives fixed ports by service name. The locator's is 10053 unless set.
	Pinned map[string]int `json:"pinned,omitempty"`
	// Shared is a [min, max) port range for the other services; empty means ports chosen
	// by the kernel.
	Shared []int `json:"shared,omitempty"`
}

// LocatorConfig configures the locator service.
type LocatorConfig struct {
	// Restrict lists services never announced to other hosts.
	Restrict []string `json:"restrict,omitempty"`
	// Extra is sent as the x-cocaine-locator-extra header on connect streams.
	Extra map[string]any `json:"extra,omitempty"`
	// Proxy: resolve answers a service that runs only on other hosts with an endpoint
	// of this host forwarding there, for clients that cannot reach the other hosts.
	Proxy bool `json:"proxy,omitempty"`
	// GroupRefresh is how often routing groups are reloaded from storage (5s).
	GroupRefresh Duration `json:"group_refresh,omitempty"`
}

// RPCConfig bounds the wire.
type RPCConfig struct {
	// MaxFrameSize bounds one incoming frame, in bytes.
	MaxFrameSize int `json:"max_frame_size,omitempty"`
}

// DefaultLocatorPort is the locator's conventional port.
const DefaultLocatorPort = 10053

// DefaultDataDir is /var/lib/cocaine for root and ~/.local/share/cocaine otherwise.
func DefaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/cocaine"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "cocaine")
	}
	return filepath.Join(os.TempDir(), "cocaine")
}

// DefaultConfig is a single node on 127.0.0.1 with the locator on 10053.
func DefaultConfig() Config {
	return Config{
		DataDir: DefaultDataDir(),
		Network: NetworkConfig{
			Endpoint: "127.0.0.1",
			Pinned:   map[string]int{"locator": DefaultLocatorPort, "raft": DefaultRaftPort},
		},
		Logging: logging.DefaultConfig(),
		RPC:     RPCConfig{MaxFrameSize: rpc.DefaultMaxFrameSize},
	}
}

// Validate reports every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is required"))
	}
	if c.UUID != "" && strings.ContainsAny(c.UUID, "/\x00") {
		errs = append(errs, fmt.Errorf("uuid %q must not contain '/' or NUL", c.UUID))
	}
	n := c.Network
	if net.ParseIP(n.Endpoint) == nil {
		errs = append(errs, fmt.Errorf("network.endpoint %q is not an IP address", n.Endpoint))
	}
	for _, a := range n.Advertise {
		if ip := net.ParseIP(a); ip == nil || ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("network.advertise: %q is not a usable IP address", a))
		}
	}
	ports := map[int]string{}
	for name, p := range n.Pinned {
		if p < 0 || p > 65535 {
			errs = append(errs, fmt.Errorf("network.pinned.%s: port %d is out of range", name, p))
		}
		if other, ok := ports[p]; ok && p != 0 {
			errs = append(errs, fmt.Errorf("network.pinned: %s and %s both use port %d", name, other, p))
		}
		ports[p] = name
	}
	switch {
	case len(n.Shared) == 0:
	case len(n.Shared) != 2:
		errs = append(errs, fmt.Errorf("network.shared must be [min, max], got %d numbers", len(n.Shared)))
	case n.Shared[0] < 1 || n.Shared[1] > 65536 || n.Shared[0] >= n.Shared[1]:
		errs = append(errs, fmt.Errorf("network.shared [%d, %d) is not a valid port range", n.Shared[0], n.Shared[1]))
	}
	if c.RPC.MaxFrameSize < 0 {
		errs = append(errs, fmt.Errorf("rpc.max_frame_size must not be negative, got %d", c.RPC.MaxFrameSize))
	}
	if err := c.Logging.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := (storage.ReplicatedConfig{MaxValueSize: c.Storage.MaxValueSize}).Validate(); err != nil {
		errs = append(errs, fmt.Errorf("storage.max_value_size: %w", err))
	}
	if err := c.Storage.validateBlobs(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Unicorn.unicornConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Node.Validate(); err != nil {
		errs = append(errs, err)
	}
	rc := c.Raft.raftConfig()
	rc.ID, rc.Dir, rc.Bind, rc.Advertise = "validate", "validate", "127.0.0.1:0", c.Raft.Advertise
	if err := rc.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, j := range c.Raft.Join {
		if _, err := joinEndpoint(j); err != nil {
			errs = append(errs, fmt.Errorf("raft.join: %w", err))
		}
	}
	return errors.Join(errs...)
}

// joinEndpoint parses a locator endpoint to join through: host[:port], port 10053 by
// default.
func joinEndpoint(s string) (rpc.Endpoint, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, strconv.Itoa(DefaultLocatorPort)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if host == "" || err != nil || p == 0 {
		return rpc.Endpoint{}, fmt.Errorf("%q is not a locator endpoint host[:port]", s)
	}
	return rpc.Endpoint{Host: host, Port: uint16(p)}, nil
}
