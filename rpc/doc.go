// Package rpc is Cocaine 0.12's wire: the MessagePack frame codec, the HPACK-like header
// tables, dispatch graphs, multiplexed sessions, the Dispatcher that binds handlers to a
// service's methods, and a client. Every other package that talks to a peer uses it; it
// imports only the standard library.
//
// # The wire in one paragraph
//
// A connection carries MessagePack arrays [channel, type, args, headers?] with no framing
// of their own. Many channels are multiplexed on one connection; the side that opens a
// channel picks its id, and ids strictly increase per connection. A channel starts with a
// root method of the service and then follows the service's dispatch graph, which the
// locator hands out at run time: each message moves the channel's state along the graph,
// and each direction ends on its own ("half-close"). Protocol violations close the whole
// connection without a reply; errors inside a handler come back as an error message on
// the channel: [[category, code], message].
//
// # Serving
//
// A service declares its graph, binds a handler to each method and serves it on its own
// listener:
//
//	graph := rpc.ServiceGraph(1,
//		rpc.Method{Name: "read", Dispatch: rpc.Terminal, Upstream: rpc.Primitive},
//		rpc.Method{Name: "watch", Dispatch: rpc.Streaming, Upstream: rpc.Streaming},
//	)
//	d := rpc.NewDispatcher(graph, errorTable, log)
//	d.MustHandle("read", func(ctx context.Context, req *rpc.Request) error {
//		var key string
//		if err := req.Args.Scan(&key); err != nil {
//			return err // Fatal: the connection is closed, as the original does
//		}
//		return req.Tx.Value(lookup(key)) // or return an error: it becomes the error reply
//	})
//	srv := rpc.NewServer(d, rpc.SessionConfig{Log: log})
//	err := srv.Serve(ctx, listener) // returns when ctx is done and every session has ended
//
// Handlers run on the connection's reader goroutine, in message order, and must not
// block. A handler that waits on I/O hands the request to a goroutine owned by its service
// and replies later through req.Tx, which is safe for concurrent use. Later messages of a
// channel (stream chunks, discard, close) go to the Receiver the handler registers with
// req.Receive; Receiver.Discard tells it when the peer went away or revoked the channel.
//
// # Calling
//
//	conn, err := rpc.Service(ctx, nil, "storage", rpc.DialConfig{}) // resolve + connect
//	ch, err := conn.Call(ctx, "read", "manifests", "echo")
//	args, err := ch.Get(ctx) // a primitive reply; error replies come back as *rpc.Error
//	var blob []byte
//	err = args.Scan(&blob)
//
// For streams, ch.Write/ch.Close send on the channel's upstream and ch.Recv reads replies
// until ErrChannelClosed.
//
// # Concurrency
//
// A Session owns one reader goroutine (which decodes frames, applies the header table and
// runs handlers) and one writer goroutine (which batches queued frames into few writes). Tx,
// Conn and Channel are safe for concurrent use; a Receiver is only ever called from the
// reader goroutine. Session.Run and Server.Serve return only after every goroutine they
// started has exited.
//
// # Errors
//
// Error{Category, Code, Message} is a Cocaine error; errors.Is matches on category and
// code, so a sentinel declared on one side matches the error decoded on the other. Each
// package that sends errors maps its sentinels with an ErrorTable.
package rpc
