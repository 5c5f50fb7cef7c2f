// Command echo is the example app: a Go worker with two events. "echo" streams every
// chunk of the request back as it arrives; "ping" reads the whole request and answers
// it in one chunk. Upload it with its manifest {"slave": "echo"} and start it with any
// profile; then call enqueue("echo") on the service named after the app.
package main

import (
	"context"
	"errors"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
)

func main() {
	w, err := cocaine.NewWorker()
	if err != nil {
		log.Fatal(err)
	}
	w.On("echo", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		for {
			chunk, err := req.Read(ctx)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				resp.ErrorMsg(2, err.Error())
				return
			}
			if _, err := resp.Write(chunk); err != nil {
				return
			}
		}
	})
	w.On("ping", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		body, err := req.ReadAll(ctx)
		if err != nil {
			resp.ErrorMsg(2, err.Error())
			return
		}
		resp.Write(body)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log.Printf("echo worker %s started", w.UUID())
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
