// Package cocaine is the Go framework for Cocaine apps: a worker that runs under the
// node (handshake, heartbeats, events, streaming responses, terminate; plugins.md §2.9)
// and a client that resolves services through the locator and calls their methods by
// name from the graph the locator returns. It depends on the wire package rpc only.
//
// A worker is a program the node starts with --app, --endpoint, --locator, --protocol 1
// and --uuid:
//
//	func main() {
//		w, err := cocaine.NewWorker() // parses the arguments, connects to the node
//		if err != nil {
//			log.Fatal(err)
//		}
//		w.On("ping", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
//			body, err := req.ReadAll(ctx) // or req.Read(ctx), chunk by chunk, until io.EOF
//			if err != nil {
//				resp.ErrorMsg(1, err.Error())
//				return
//			}
//			resp.Write(body) // the response is closed when the handler returns
//		})
//		if err := w.Run(context.Background()); err != nil { // until the node says terminate
//			log.Fatal(err)
//		}
//	}
//
// A client:
//
//	svc, err := cocaine.NewService(ctx, "echo", nil) // the locator on 127.0.0.1:10053
//	ch, err := svc.Call(ctx, "enqueue", "ping")
//	ch.Call(ctx, "write", []byte("hello"))
//	ch.Call(ctx, "close")
//	res, err := ch.Get(ctx) // res.Scan(&chunk); io.EOF after the reply stream's close
//
// Handlers run on their own goroutines, many at once (up to the profile's concurrency);
// Request and Response are safe to use from the handler's goroutine and any it starts.
package cocaine
