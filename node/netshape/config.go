package netshape

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// Config is the host side of container networking. The zero value is not usable: Range
// and LinkRate are required.
type Config struct {
	// Bridge names the host bridge every container's veth is attached to ("cocaine0").
	Bridge string `json:"bridge,omitempty"`
	// Range is the IPv4 range containers get their addresses from, as a prefix
	// ("10.213.0.0/16", /16 to /29). The bridge takes its first address and is the
	// containers' gateway.
	Range string `json:"range"`
	// LinkRate is what the bridge can carry each way, the root of both HTB trees: the
	// batch class's ceiling is LinkRate − 1.1 × the measured prod rate.
	LinkRate Rate `json:"link_rate"`
	// BatchRate is the rate guaranteed to batch and idle containers together, the floor
	// of their ceiling (1% of LinkRate when zero).
	BatchRate Rate `json:"batch_rate,omitempty"`
	// Netns is the network namespace the bridge lives in, as a path (/run/netns/NAME);
	// the daemon's own when empty. Tests give one of their own.
	Netns string `json:"netns,omitempty"`
	// NAT masquerades traffic from the range that leaves through another interface,
	// for a range the network does not route to this host. It needs the iptables
	// command; its rule is removed when the daemon stops.
	NAT bool `json:"nat,omitempty"`
}

// DefaultBridge is the bridge's name unless Config.Bridge says otherwise.
const DefaultBridge = "cocaine0"

// MaxIfName is the longest interface name Linux accepts (IFNAMSIZ less the NUL).
const MaxIfName = 15

// Validate reports every problem of c, with the key under prefix ("node.runc.network").
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(prefix+"."+format, args...))
	}
	if b := c.Bridge; b != "" && (len(b) > MaxIfName || strings.ContainsAny(b, "/ \t\n:") || b == "." || b == "..") {
		bad("bridge %q is not an interface name (at most %d characters, no '/', ':' or spaces)", b, MaxIfName)
	}
	if _, err := c.Prefix(); err != nil {
		bad("range: %v", err)
	}
	if c.LinkRate == 0 {
		bad("link_rate is required: what the bridge carries each way, e.g. \"1gbit\"")
	}
	if c.BatchRate != 0 && c.LinkRate != 0 && c.BatchRate >= c.LinkRate {
		bad("batch_rate (%s) must be below link_rate (%s)", c.BatchRate, c.LinkRate)
	}
	if c.Netns != "" && !strings.HasPrefix(c.Netns, "/") {
		bad("netns %q must be an absolute path such as /run/netns/NAME", c.Netns)
	}
	return errors.Join(errs...)
}

// Prefix parses Range.
func (c Config) Prefix() (netip.Prefix, error) {
	if c.Range == "" {
		return netip.Prefix{}, errors.New("is required: the IPv4 prefix containers get addresses from, e.g. \"10.213.0.0/16\"")
	}
	p, err := netip.ParsePrefix(c.Range)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix such as \"10.213.0.0/16\"", c.Range)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not IPv4: containers are classified by their IPv4 address", c.Range)
	}
	if p.Bits() < 16 || p.Bits() > 29 {
		return netip.Prefix{}, fmt.Errorf("%q: the prefix length must be between /16 and /29, got /%d", c.Range, p.Bits())
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set; did you mean %q?", c.Range, p.Masked())
	}
	return p, nil
}

// Rate is a rate in bits per second. In config files and profiles it is a number of
// bits per second or a string with tc's units: "100mbit", "1gbit", "500kbit", and the
// byte units "kbps", "mbps", "gbps" (tc's bytes per second).
type Rate uint64

// Bytes is r in bytes per second, as the kernel's HTB wants it.
func (r Rate) Bytes() uint64 { return uint64(r) / 8 }

// String writes r with the largest unit that keeps it whole.
func (r Rate) String() string {
	for _, u := range []struct {
		name string
		v    uint64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if uint64(r) >= u.v && uint64(r)%u.v == 0 {
			return strconv.FormatUint(uint64(r)/u.v, 10) + u.name
		}
	}
	return strconv.FormatUint(uint64(r), 10) + "bit"
}

// MarshalJSON writes r as its string.
func (r Rate) MarshalJSON() ([]byte, error) { return json.Marshal(r.String()) }

// UnmarshalJSON reads a number of bits per second or a string with a unit.
func (r *Rate) UnmarshalJSON(b []byte) error {
	var v any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("a rate is a string such as \"100mbit\" or a number of bits per second, got %s", b)
	}
	if n, ok := v.(json.Number); ok {
		f, err := n.Float64()
		if err != nil {
			return fmt.Errorf("rate %s: %v", n, err)
		}
		v = f
	}
	x, err := ParseRate(v)
	if err != nil {
		return err
	}
	*r = x
	return nil
}

// MaxRate bounds rates: HTB's 64-bit rates go far beyond, but no link does.
const MaxRate = Rate(10e12)

// rateUnits are tc's units, in bits per second.
var rateUnits = map[string]float64{
	"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9, "tbps": 8e12,
}

// ParseRate reads a rate from a decoded config or profile value: a number of bits per
// second (any msgpack or JSON number type), or a string "<number><unit>" with one of
// tc's units. Rates below 8 bit/s (one byte per second) or above MaxRate are refused.
func ParseRate(v any) (Rate, error) {
	var bits float64
	switch x := v.(type) {
	case uint64:
		bits = float64(x)
	case int64:
		bits = float64(x)
	case int:
		bits = float64(x)
	case float64:
		bits = x
	case string:
		s := strings.ToLower(strings.TrimSpace(x))
		i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i <= 0 {
			return 0, fmt.Errorf("rate %q must be a number with a unit such as \"100mbit\"", x)
		}
		mult, ok := rateUnits[s[i:]]
		if !ok {
			return 0, fmt.Errorf("rate %q has an unknown unit %q (known: bit, kbit, mbit, gbit, tbit, bps, kbps, mbps, gbps, tbps)", x, s[i:])
		}
		f, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, fmt.Errorf("rate %q: %q is not a number", x, s[:i])
		}
		bits = f * mult
	default:
		return 0, fmt.Errorf("a rate is a string such as \"100mbit\" or a number of bits per second, got %T", v)
	}
	if math.IsNaN(bits) || bits < 8 || bits > float64(MaxRate) {
		return 0, fmt.Errorf("rate %v is out of range: between 8bit (one byte per second) and %s", v, MaxRate)
	}
	return Rate(math.Round(bits)), nil
}
