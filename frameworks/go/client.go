package cocaine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/cocaine/cocaine/rpc"
)

// ServiceInfo is what the locator says about a service.
type ServiceInfo struct {
	Endpoints []rpc.Endpoint
	Version   uint64
	Graph     *rpc.Graph
}

// Locator resolves service names.
type Locator struct {
	endpoints []rpc.Endpoint
}

// NewLocator parses "host:port" endpoints of the locator; none means 127.0.0.1:10053.
func NewLocator(endpoints []string) (*Locator, error) {
	l := &Locator{}
	for _, s := range endpoints {
		ep, err := rpc.ParseEndpoint(s)
		if err != nil {
			return nil, fmt.Errorf("cocaine: locator: %w", err)
		}
		l.endpoints = append(l.endpoints, ep)
	}
	return l, nil
}

// Resolve asks the locator where name lives and how to speak to it. An unknown service
// is an error matching rpc.ErrServiceUnavailable.
func (l *Locator) Resolve(ctx context.Context, name string) (*ServiceInfo, error) {
	r, err := rpc.Resolve(ctx, l.endpoints, name, "", rpc.DialConfig{})
	if err != nil {
		return nil, err
	}
	return &ServiceInfo{Endpoints: r.Endpoints, Version: r.Version, Graph: r.Graph}, nil
}

// Service is a connection to one service. Safe for concurrent use: many channels share
// the connection.
type Service struct {
	name string
	info *ServiceInfo
	conn *rpc.Conn
}

// NewService resolves name through the locator at locator ("host:port"; none means
// 127.0.0.1:10053) and connects to it.
func NewService(ctx context.Context, name string, locator []string) (*Service, error) {
	l, err := NewLocator(locator)
	if err != nil {
		return nil, err
	}
	info, err := l.Resolve(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("cocaine: resolve %q: %w", name, err)
	}
	conn, err := rpc.Dial(ctx, info.Endpoints, info.Graph, rpc.DialConfig{})
	if err != nil {
		return nil, fmt.Errorf("cocaine: connect to %q: %w", name, err)
	}
	return &Service{name: name, info: info, conn: conn}, nil
}

// Info is what the locator said about the service.
func (s *Service) Info() *ServiceInfo { return s.info }

// Methods lists the service's methods, from its graph.
func (s *Service) Methods() []string {
	var out []string
	for _, m := range s.info.Graph.Methods() {
		if m.ID < rpc.ControlGoaway {
			out = append(out, m.Name)
		}
	}
	return out
}

// Call opens a channel on the method named method. Headers and a trace in ctx
// (rpc.WithHeaders, rpc.WithTrace) go with every frame of the channel.
func (s *Service) Call(ctx context.Context, method string, args ...any) (*Channel, error) {
	if _, ok := s.info.Graph.MethodByName(method); !ok {
		return nil, fmt.Errorf("cocaine: %s has no method %q (it has %s)", s.name, method, strings.Join(s.Methods(), ", "))
	}
	ch, err := s.conn.Call(ctx, method, args...)
	if err != nil {
		return nil, err
	}
	return &Channel{ch: ch}, nil
}

// Close closes the connection; open channels end with rpc.ErrNotConnected.
func (s *Service) Close() error { return s.conn.Close() }

// Channel is one call: send on it by message name, receive its replies.
type Channel struct {
	ch *rpc.Channel
}

// Call sends the message named name ("write", "close", "error", ...) on the channel,
// following the method's graph.
func (c *Channel) Call(ctx context.Context, name string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.ch.SendName(name, args...)
}

// Write sends a chunk (streaming methods).
func (c *Channel) Write(chunk []byte) error { return c.ch.Write(chunk) }

// CloseSend ends the caller's direction (streaming methods).
func (c *Channel) CloseSend() error { return c.ch.Close() }

// Result is one reply.
type Result struct {
	Name string   // the message's name in the graph: "value", "write", ...
	Args rpc.Args // its arguments
}

// Scan decodes the reply's arguments (see rpc.Args.Scan).
func (r Result) Scan(dst ...any) error { return r.Args.Scan(dst...) }

// Get returns the next reply. An error reply is returned as its *rpc.Error; after the
// last reply (close, or a primitive value) Get returns io.EOF.
func (c *Channel) Get(ctx context.Context) (Result, error) {
	m, err := c.ch.Recv(ctx)
	if errors.Is(err, rpc.ErrChannelClosed) {
		return Result{}, io.EOF
	}
	if err != nil {
		return Result{}, err
	}
	if err := m.Err(); err != nil {
		return Result{}, err
	}
	if m.Name == "close" {
		return Result{}, io.EOF
	}
	return Result{Name: m.Name, Args: m.Args}, nil
}

// ReadAll reads a stream of single-chunk writes until close and joins them.
func (c *Channel) ReadAll(ctx context.Context) ([]byte, error) {
	var out []byte
	for {
		r, err := c.Get(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		var chunk []byte
		if err := r.Scan(&chunk); err != nil {
			return out, err
		}
		out = append(out, chunk...)
	}
}
