// Command stream is the streaming example app: a Go worker whose answers are streams.
//
//   - "count" reads a number N (the whole request) and answers N chunks, "1\n" to "N\n",
//     each sent as soon as it is ready;
//   - "words" answers every word of the request as its own chunk, as the request's chunks
//     arrive: the client sees the first words before it has finished sending.
//
// Upload it with its manifest {"slave": "stream"} and start it with any profile:
//
//	cocaine-tool call stream enqueue count -w 3 --raw          # 1 2 3, one per line
//	cocaine-tool call stream enqueue words -w "to be" -w " or not"
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
)

// Error codes of this app's answers (the worker category, 42; 1 there means "no such
// event", so the app's own codes keep clear of it).
const (
	codeBadRequest = 400 // the request is not what the event wants
	codeRead       = 500 // reading the request failed
)

// maxCount bounds "count", so one request cannot keep a worker busy for ever.
const maxCount = 100000

func main() {
	w, err := cocaine.NewWorker()
	if err != nil {
		log.Fatal(err)
	}
	w.On("count", count)
	w.On("words", words)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

func count(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
	body, err := req.ReadAll(ctx)
	if err != nil {
		resp.ErrorMsg(codeRead, err.Error())
		return
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil || n < 0 || n > maxCount {
		resp.ErrorMsg(codeBadRequest, fmt.Sprintf("count wants a number from 0 to %d, got %q", maxCount, body))
		return
	}
	for i := 1; i <= n; i++ {
		if ctx.Err() != nil {
			return
		}
		if _, err := fmt.Fprintf(resp, "%d\n", i); err != nil {
			return // the client has gone
		}
	}
}

func words(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
	var partial string // a word cut between two chunks
	for {
		chunk, err := req.Read(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			resp.ErrorMsg(codeRead, err.Error())
			return
		}
		text := partial + string(chunk)
		partial = ""
		fields := strings.Fields(text)
		if len(fields) > 0 && !strings.ContainsAny(text[len(text)-1:], " \t\n") {
			partial, fields = fields[len(fields)-1], fields[:len(fields)-1]
		}
		for _, f := range fields {
			if _, err := resp.Write([]byte(f)); err != nil {
				return
			}
		}
	}
	if partial != "" {
		resp.Write([]byte(partial))
	}
}
