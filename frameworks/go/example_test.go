package cocaine_test

import (
	"context"
	"fmt"
	"net"
	"os"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/rpc/rpctest"
)

// A worker serving one event. In production the node starts the program with the
// arguments NewWorker parses; here a stand-in for the node listens on a unix socket and
// invokes the event once.
func ExampleWorker() {
	dir, _ := os.MkdirTemp("", "cocaine-example-")
	defer os.RemoveAll(dir)
	node, err := newFakeNode(dir, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()

	w, err := cocaine.NewWorkerConfig(cocaine.WorkerConfig{UUID: "worker-1", Endpoint: node.Endpoint, Protocol: 1}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	w.On("hello", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		name, err := req.ReadAll(ctx) // every chunk until the client closes
		if err != nil {
			resp.ErrorMsg(1, err.Error())
			return
		}
		fmt.Fprintf(resp, "hello, %s", name) // each Write is one chunk back
	})
	done := make(chan error, 1) // Run's result
	go func() { done <- w.Run(context.Background()) }()

	reply, err := node.invoke(context.Background(), "hello", "wor", "ld")
	fmt.Println(reply, err)
	node.sendTerminate(0, "example is over") // the node's terminate ends Run cleanly
	fmt.Println(<-done)
	// Output:
	// hello, world <nil>
	// <nil>
}

// A client: resolve a service through the locator, call a method by name, stream.
func ExampleNewService() {
	locator, stop, err := exampleCluster()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()

	svc, err := cocaine.NewService(ctx, "echo", []string{locator})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer svc.Close()
	fmt.Println(svc.Methods())

	ch, _ := svc.Call(ctx, "ping", "hello") // a primitive call: one value back
	res, _ := ch.Get(ctx)
	var s string
	res.Scan(&s)
	fmt.Println(res.Name, s)

	st, _ := svc.Call(ctx, "stream") // a stream both ways
	st.Write([]byte("chunk 1, "))
	st.Call(ctx, "write", []byte("chunk 2")) // the same, by the message's name in the graph
	st.CloseSend()
	all, err := st.ReadAll(ctx)
	fmt.Println(string(all), err)

	_, err = svc.Call(ctx, "nope")
	fmt.Println(err)
	// Output:
	// [ping stream mute fail]
	// value hello
	// chunk 1, chunk 2 <nil>
	// cocaine: echo has no method "nope" (it has ping, stream, mute, fail)
}

// exampleCluster serves a locator that knows one service, rpctest's echo, as the daemon
// would serve them, and returns the locator's address.
func exampleCluster() (string, func(), error) {
	ctx, cancel := context.WithCancel(context.Background())
	echoLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return "", nil, err
	}
	locLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		echoLn.Close()
		cancel()
		return "", nil, err
	}
	addr := echoLn.Addr().(*net.TCPAddr)
	echoEP := rpc.Endpoint{Host: addr.IP.String(), Port: uint16(addr.Port)}
	loc := rpc.NewDispatcher(rpc.LocatorGraph, nil, nil)
	loc.MustHandle("resolve", func(ctx context.Context, req *rpc.Request) error {
		var name string
		if err := req.Args.Scan(&name); err != nil {
			return err
		}
		if name != "echo" {
			return rpc.ErrServiceUnavailable
		}
		return req.Tx.Value(rpc.Endpoints{echoEP}, rpctest.EchoGraph.Version, rpctest.EchoGraph)
	})
	done := make(chan struct{}, 2) // one token per server
	for _, s := range []struct {
		d  *rpc.Dispatcher
		ln net.Listener
	}{{rpctest.EchoDispatcher(), echoLn}, {loc, locLn}} {
		go func() {
			rpc.NewServer(s.d, rpc.SessionConfig{}).Serve(ctx, s.ln)
			done <- struct{}{}
		}()
	}
	return locLn.Addr().String(), func() { cancel(); <-done; <-done }, nil
}
