package cocaine_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
	"github.com/cocaine/cocaine/rpc"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
		want cocaine.WorkerConfig
	}{
		{"as the node passes them", []string{"--app", "echo", "--endpoint", "/run/echo.1", "--locator", "127.0.0.1:10053,[::1]:10054", "--protocol", "1", "--uuid", "u-1"}, true,
			cocaine.WorkerConfig{App: "echo", UUID: "u-1", Endpoint: "/run/echo.1", Protocol: 1,
				Locator: []rpc.Endpoint{{Host: "127.0.0.1", Port: 10053}, {Host: "::1", Port: 10054}}}},
		{"any order and flag styles", []string{"-uuid=u", "--protocol=1", "--endpoint", "/s"}, true,
			cocaine.WorkerConfig{App: "gostandalone", UUID: "u", Endpoint: "/s", Protocol: 1, Locator: []rpc.Endpoint{{Host: "localhost", Port: 10053}}}},
		{"protocol 0", []string{"--uuid", "u", "--endpoint", "/s"}, false, cocaine.WorkerConfig{}},
		{"no uuid", []string{"--endpoint", "/s", "--protocol", "1"}, false, cocaine.WorkerConfig{}},
		{"unknown flag", []string{"--uuid", "u", "--endpoint", "/s", "--protocol", "1", "--bogus", "x"}, false, cocaine.WorkerConfig{}},
		{"bad locator", []string{"--uuid", "u", "--endpoint", "/s", "--protocol", "1", "--locator", "nowhere"}, false, cocaine.WorkerConfig{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cocaine.ParseArgs(tc.args)
			if !tc.ok {
				if !errors.Is(err, cocaine.ErrBadArgs) {
					t.Fatalf("want ErrBadArgs, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.App != tc.want.App || got.UUID != tc.want.UUID || got.Endpoint != tc.want.Endpoint ||
				got.Protocol != tc.want.Protocol || len(got.Locator) != len(tc.want.Locator) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got.Locator {
				if got.Locator[i] != tc.want.Locator[i] {
					t.Fatalf("locator %d: %v, want %v", i, got.Locator[i], tc.want.Locator[i])
				}
			}
		})
	}
}

// runWorker starts a worker against n with the handlers installed by setup; the result
// of Run arrives on the returned channel.
func runWorker(t *testing.T, n *fakeNode, hb time.Duration, setup func(w *cocaine.Worker)) <-chan error {
	t.Helper()
	w, err := cocaine.NewWorkerConfig(cocaine.WorkerConfig{UUID: "worker-1", Endpoint: n.Endpoint, Protocol: 1,
		HeartbeatInterval: hb, DisownTimeout: 200 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	setup(w)
	done := make(chan error, 1) // Run's one result
	go func() { done <- w.Run(context.Background()) }()
	return done
}

func TestWorkerEvents(t *testing.T) {
	n := startFakeNode(t, t.TempDir(), false)
	defer n.Close()
	terminated := make(chan struct{})
	done := runWorker(t, n, time.Second, func(w *cocaine.Worker) {
		w.On("echo", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
			for {
				c, err := req.Read(ctx)
				if err != nil {
					return
				}
				resp.Write(c)
			}
		})
		w.On("whole", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
			b, _ := req.ReadAll(ctx)
			resp.Write([]byte(req.Event() + ":" + string(b)))
		})
		w.On("fail", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
			resp.ErrorMsg(7, "no luck")
		})
		w.On("panic", func(ctx context.Context, req cocaine.Request, resp cocaine.Response) { panic("oops") })
		w.SetTerminationHandler(func(ctx context.Context) { close(terminated) })
	})
	ctx := testCtx(t)
	if got, err := n.invoke(ctx, "echo", "a", "b", "c"); err != nil || got != "abc" {
		t.Fatalf("echo: %q %v", got, err)
	}
	if got, err := n.invoke(ctx, "whole", "x", "y"); err != nil || got != "whole:xy" {
		t.Fatalf("whole: %q %v", got, err)
	}
	for _, tc := range []struct {
		event string
		code  int
	}{{"fail", 7}, {"panic", cocaine.CodePanic}, {"missing", cocaine.CodeEventNotFound}} {
		_, err := n.invoke(ctx, tc.event)
		var e *rpc.Error
		if !errors.As(err, &e) || e.Category != rpc.CategoryWorker || e.Code != tc.code {
			t.Fatalf("%s: %v, want [42, %d]", tc.event, err, tc.code)
		}
	}
	if err := n.sendTerminate(14, "slave is sealing"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after terminate: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Run did not return after terminate")
	}
	<-terminated
	// The echo went out before Run returned; the node reads it on its own time.
	for {
		n.mu.Lock()
		echo := n.terminate
		n.mu.Unlock()
		if len(echo) == 2 {
			if echo[0] != int64(14) || echo[1] != "slave is sealing" {
				t.Fatalf("the worker's terminate echo: %v", echo)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("no terminate echo")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestWorkerDisowned(t *testing.T) {
	n := startFakeNode(t, t.TempDir(), true)
	defer n.Close()
	done := runWorker(t, n, 20*time.Millisecond, func(*cocaine.Worker) {})
	select {
	case err := <-done:
		if !errors.Is(err, cocaine.ErrDisowned) {
			t.Fatalf("Run without heartbeat echoes: %v", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("a disowned worker kept running")
	}
}

func TestWorkerNodeGone(t *testing.T) {
	n := startFakeNode(t, t.TempDir(), false)
	done := runWorker(t, n, time.Second, func(*cocaine.Worker) {})
	<-n.ready
	n.Close()
	select {
	case err := <-done:
		if !errors.Is(err, cocaine.ErrDisconnected) {
			t.Fatalf("Run after the node left: %v", err)
		}
	case <-testCtx(t).Done():
		t.Fatal("Run did not notice the node left")
	}
}

func TestNewWorkerNoNode(t *testing.T) {
	_, err := cocaine.NewWorkerConfig(cocaine.WorkerConfig{UUID: "u", Endpoint: t.TempDir() + "/none", Protocol: 1}, nil)
	if err == nil {
		t.Fatal("connected to nothing")
	}
	os.Args = os.Args[:1]
	if _, err := cocaine.NewWorker(); !errors.Is(err, cocaine.ErrBadArgs) {
		t.Fatalf("NewWorker without arguments: %v", err)
	}
}
