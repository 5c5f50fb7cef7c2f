// Command badworker is a worker that misbehaves on purpose, for the node's tests. Its
// manifest environment picks the behaviour with MODE:
//
//	silent   never connects or handshakes (prints a line and sleeps)
//	nobeat   handshakes, then never heartbeats
//	crash    serves "crash" by printing lines and exiting with status 3
//	hang     serves "hang" by never answering (heartbeats go on)
//	memory   serves "grow" by allocating until the memory limit kills it
//	sleep    serves "sleep" by echoing the request after SLEEP_MS milliseconds
//	info     serves "info" by answering its pid (in every mode that handshakes)
//	headers  answers the trace ids and the x-custom header it was invoked with
//	args     answers its arguments, working directory and $GREETING
//	peak     answers the most "sleep" requests it served at once
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
	"github.com/cocaine/cocaine/rpc"
)

func main() {
	mode := os.Getenv("MODE")
	fmt.Println("badworker starting in mode", mode)
	cfg, err := cocaine.ParseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch mode {
	case "silent":
		time.Sleep(time.Hour)
		return
	case "nobeat":
		conn, err := net.Dial("unix", cfg.Endpoint)
		if err != nil {
			os.Exit(2)
		}
		args, _ := rpc.AppendArgs(nil, cfg.UUID)
		var enc rpc.HeaderEncoder
		conn.Write(rpc.AppendFrame(nil, &rpc.Frame{Channel: 1, Type: 0, Args: args}, &enc))
		time.Sleep(time.Hour)
		return
	}
	if ms, _ := strconv.Atoi(os.Getenv("HEARTBEAT_MS")); ms > 0 {
		cfg.HeartbeatInterval = time.Duration(ms) * time.Millisecond
	}
	w, err := cocaine.NewWorkerConfig(cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w.On("crash", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		for i := 0; i < 5; i++ {
			fmt.Printf("line %d before the crash\n", i)
		}
		fmt.Fprintln(os.Stderr, "crashing now")
		os.Exit(3)
	})
	w.On("hang", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		select {}
	})
	w.On("grow", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		var hoard [][]byte
		for {
			b := make([]byte, 1<<20)
			for i := range b {
				b[i] = byte(i)
			}
			hoard = append(hoard, b)
		}
	})
	var inflight, peak atomic.Int64
	w.On("sleep", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		body, _ := req.ReadAll(ctx)
		ms, _ := strconv.Atoi(os.Getenv("SLEEP_MS"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		resp.Write(body)
	})
	w.On("peak", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		resp.Write([]byte(strconv.Itoa(int(peak.Load()))))
	})
	w.On("headers", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		tr, _ := rpc.TraceFrom(ctx)
		custom := ""
		for _, h := range req.Headers() {
			if h.Name == "x-custom" {
				custom = string(h.Value)
			}
		}
		fmt.Fprintf(resp, "trace=%d span=%d custom=%s", tr.TraceID, tr.SpanID, custom)
	})
	w.On("args", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		cwd, _ := os.Getwd()
		fmt.Fprintf(resp, "%q cwd=%s env=%s", os.Args[1:], cwd, os.Getenv("GREETING"))
	})
	w.On("info", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
		resp.Write([]byte(strconv.Itoa(os.Getpid())))
	})
	if err := w.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
