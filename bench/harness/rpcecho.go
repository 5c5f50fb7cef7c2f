package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Echo server protocols.
const (
	ProtoCocaine = "cocaine" // our wire: rpctest's echo service (ping, stream), as rpc's benchmarks
	ProtoGRPC    = "grpc"    // gRPC-go: bench.Echo/Unary and bench.Echo/Stream of BytesValue
)

// echoService is the gRPC service's handler type: the handlers below need no state.
type echoService interface{}

// grpcEcho is the gRPC echo service, declared by hand (what protoc-gen-go-grpc would
// generate for `service Echo { rpc Unary(BytesValue) returns (BytesValue); rpc
// Stream(stream BytesValue) returns (stream BytesValue); }`), with protobuf's
// BytesValue as the message.
var grpcEcho = grpc.ServiceDesc{
	ServiceName: "bench.Echo",
	HandlerType: (*echoService)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			for {
				m := new(wrapperspb.BytesValue)
				if err := stream.RecvMsg(m); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				if err := stream.SendMsg(m); err != nil {
					return err
				}
			}
		},
	}},
}

// ServeEcho serves proto's echo on a fresh 127.0.0.1 port, writes "listening ADDR" to
// out, and serves until ctx ends.
func ServeEcho(ctx context.Context, proto string, out io.Writer) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	switch proto {
	case ProtoCocaine:
		srv := rpc.NewServer(rpctest.EchoDispatcher(), rpc.SessionConfig{})
		fmt.Fprintln(out, "listening", ln.Addr())
		return srv.Serve(ctx, ln)
	case ProtoGRPC:
		srv := grpc.NewServer()
		srv.RegisterService(&grpcEcho, struct{}{})
		fmt.Fprintln(out, "listening", ln.Addr())
		go func() { // stops the server with ctx
			<-ctx.Done()
			srv.Stop()
		}()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	}
	return fmt.Errorf("unknown echo protocol %q", proto)
}

// startEcho starts `self serve-echo -proto proto` pinned to the servers' CPUs and
// returns it with its address.
func startEcho(ctx context.Context, self, cpus, dir, proto string) (*Proc, string, error) {
	logPath := filepath.Join(dir, "echo-"+proto+".log")
	p, err := startProc("echo server "+proto, logPath, cpus, nil, self, "serve-echo", "-proto", proto)
	if err != nil {
		return nil, "", err
	}
	var addr string
	err = waitUntil(ctx, "the "+proto+" echo server", 20*time.Second, []*Proc{p}, func(context.Context) error {
		f, err := os.Open(logPath)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				addr = a
				return nil
			}
		}
		return errors.New("not listening yet")
	})
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

// echoCaller makes one echo call (unary) or one ping-pong on a stream it owns.
type echoCaller interface {
	call(ctx context.Context) error
	close()
}

// echoClient is one connection to an echo server that hands out callers.
type echoClient interface {
	unary() echoCaller
	stream(ctx context.Context) (echoCaller, error)
	close()
}

type cocaineEcho struct {
	conn       *rpc.Conn
	ping, strm rpc.Method
	args       rpc.Raw // [payload]
}

func dialCocaineEcho(ctx context.Context, addr string, payload []byte) (*cocaineEcho, error) {
	ep, err := rpc.ParseEndpoint(addr)
	if err != nil {
		return nil, err
	}
	conn, err := rpc.Dial(ctx, []rpc.Endpoint{ep}, rpctest.EchoGraph, rpc.DialConfig{})
	if err != nil {
		return nil, err
	}
	ping, _ := rpctest.EchoGraph.MethodByName("ping")
	strm, _ := rpctest.EchoGraph.MethodByName("stream")
	args, _ := rpc.AppendArgs(nil, payload)
	return &cocaineEcho{conn: conn, ping: ping, strm: strm, args: args}, nil
}

func (c *cocaineEcho) close()            { c.conn.Close() }
func (c *cocaineEcho) unary() echoCaller { return cocaineUnary{c} }

type cocaineUnary struct{ c *cocaineEcho }

func (u cocaineUnary) call(ctx context.Context) error {
	ch, err := u.c.conn.CallRaw(ctx, u.c.ping, u.c.args)
	if err != nil {
		return err
	}
	_, err = ch.Get(ctx)
	return err
}

func (cocaineUnary) close() {}

type cocaineStream struct {
	ch   *rpc.Channel
	args rpc.Raw
}

func (c *cocaineEcho) stream(ctx context.Context) (echoCaller, error) {
	ch, err := c.conn.CallRaw(ctx, c.strm, rpc.Raw{0x90})
	if err != nil {
		return nil, err
	}
	return &cocaineStream{ch: ch, args: c.args}, nil
}

func (s *cocaineStream) call(ctx context.Context) error {
	if err := s.ch.SendRaw(rpc.Write, s.args); err != nil {
		return err
	}
	m, err := s.ch.Recv(ctx)
	if err != nil {
		return err
	}
	return m.Err()
}

func (s *cocaineStream) close() { s.ch.Close() }

type grpcEchoClient struct {
	cc      *grpc.ClientConn
	payload *wrapperspb.BytesValue
}

func dialGRPCEcho(addr string, payload []byte) (*grpcEchoClient, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &grpcEchoClient{cc: cc, payload: wrapperspb.Bytes(payload)}, nil
}

func (g *grpcEchoClient) close()            { g.cc.Close() }
func (g *grpcEchoClient) unary() echoCaller { return grpcUnary{g} }

type grpcUnary struct{ g *grpcEchoClient }

func (u grpcUnary) call(ctx context.Context) error {
	return u.g.cc.Invoke(ctx, "/bench.Echo/Unary", u.g.payload, new(wrapperspb.BytesValue))
}

func (grpcUnary) close() {}

type grpcStream struct {
	s       grpc.ClientStream
	payload *wrapperspb.BytesValue
	cancel  context.CancelFunc
}

func (g *grpcEchoClient) stream(ctx context.Context) (echoCaller, error) {
	ctx, cancel := context.WithCancel(ctx)
	s, err := g.cc.NewStream(ctx, &grpcEcho.Streams[0], "/bench.Echo/Stream")
	if err != nil {
		cancel()
		return nil, err
	}
	return &grpcStream{s: s, payload: g.payload, cancel: cancel}, nil
}

func (s *grpcStream) call(context.Context) error {
	if err := s.s.SendMsg(s.payload); err != nil {
		return err
	}
	return s.s.RecvMsg(new(wrapperspb.BytesValue))
}

func (s *grpcStream) close() {
	s.s.CloseSend()
	s.cancel()
}

// rpcEcho runs one case: total calls from concurrency goroutines over one connection,
// unary or on one stream per goroutine.
func rpcEcho(ctx context.Context, cl echoClient, streaming bool, concurrency, total int) ([]time.Duration, int64, error, time.Duration) {
	callers := make([]echoCaller, concurrency)
	for i := range callers {
		if !streaming {
			callers[i] = cl.unary()
			continue
		}
		s, err := cl.stream(ctx)
		if err != nil {
			for _, c := range callers[:i] {
				c.close()
			}
			return nil, 0, fmt.Errorf("open stream %d: %w", i, err), 0
		}
		callers[i] = s
	}
	defer func() {
		for _, c := range callers {
			c.close()
		}
	}()
	lat := make([][]time.Duration, concurrency)
	var failed firstError
	var nfailed int64
	var mu sync.Mutex
	per := total / concurrency
	var wg sync.WaitGroup
	start := time.Now()
	for i := range concurrency {
		lat[i] = make([]time.Duration, 0, per)
		wg.Go(func() {
			for range per {
				if ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if err := callers[i].call(ctx); err != nil {
					failed.set(err)
					mu.Lock()
					nfailed++
					mu.Unlock()
					return // a broken stream stays broken
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return all, nfailed, failed.get(), el
}
