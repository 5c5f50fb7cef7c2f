package cocaine

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cocaine/cocaine/rpc"
)

// WorkerConfig is how a worker finds its node.
type WorkerConfig struct {
	App      string         // --app
	UUID     string         // --uuid: the worker's id, sent in the handshake
	Endpoint string         // --endpoint: the node's unix socket
	Locator  []rpc.Endpoint // --locator: comma-separated host:port ([v6]:port allowed)
	Protocol int            // --protocol: must be 1

	// HeartbeatInterval is how often the worker says it is alive (10 s if zero).
	HeartbeatInterval time.Duration
	// DisownTimeout is how long the worker waits for the node's echo of a heartbeat
	// before it gives up (5 s if zero).
	DisownTimeout time.Duration
}

// ErrBadArgs reports a command line the worker cannot run with.
var ErrBadArgs = errors.New("cocaine: bad worker arguments")

// ParseArgs reads the standard worker arguments (as flag does: -x, --x v, --x=v), in any
// order. Unknown flags are errors, so a typo is not silently ignored.
func ParseArgs(args []string) (WorkerConfig, error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var c WorkerConfig
	var locator string
	fs.StringVar(&c.App, "app", "gostandalone", "app name")
	fs.StringVar(&c.UUID, "uuid", "", "worker uuid")
	fs.StringVar(&c.Endpoint, "endpoint", "", "node's unix socket")
	fs.StringVar(&locator, "locator", "localhost:10053", "locator endpoints")
	fs.IntVar(&c.Protocol, "protocol", 0, "worker protocol version")
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadArgs, err)
	}
	var errs []error
	if c.UUID == "" {
		errs = append(errs, fmt.Errorf("%w: --uuid is required", ErrBadArgs))
	}
	if c.Endpoint == "" {
		errs = append(errs, fmt.Errorf("%w: --endpoint is required", ErrBadArgs))
	}
	if c.Protocol != 1 {
		errs = append(errs, fmt.Errorf("%w: unsupported protocol version %d (the node passes --protocol 1)", ErrBadArgs, c.Protocol))
	}
	for _, l := range strings.Split(locator, ",") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		ep, err := parseHostPort(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: --locator: %v", ErrBadArgs, err))
			continue
		}
		c.Locator = append(c.Locator, ep)
	}
	return c, errors.Join(errs...)
}

// parseHostPort accepts host names as well as IPs ("localhost:10053").
func parseHostPort(s string) (rpc.Endpoint, error) {
	return rpc.ParseEndpoint(s)
}
