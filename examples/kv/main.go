// Command kv is the example app that uses other services from inside its worker: it
// keeps values in the storage service and counts the writes in unicorn, through the Go
// framework's client (services resolved through the locator the node gave the worker).
//
//   - "put" takes "KEY=VALUE": stores VALUE in storage, collection "kv", under KEY (tag
//     "kv"), increments the unicorn node /kv/<app>/writes, and answers the new count;
//   - "get" takes KEY and answers the stored value (an error if there is none);
//   - "keys" answers the stored keys, as a JSON list;
//   - "writes" answers the count of writes so far, from unicorn.
//
// Upload it with its manifest {"slave": "kv"} and start it with any profile:
//
//	cocaine-tool call kv enqueue put -w answer=42 --raw      # 1
//	cocaine-tool call kv enqueue get -w answer --raw         # 42
//	cocaine-tool storage read kv answer --raw                 # 42, straight from storage
//	cocaine-tool unicorn get /kv/kv/writes                    # [1, 0]
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	cocaine "github.com/cocaine/cocaine/frameworks/go"
)

// Error codes of this app's answers (the worker category, 42; 1 there means "no such
// event", so the app's own codes keep clear of it).
const (
	codeBadRequest = 400 // the request is not what the event wants
	codeNotFound   = 404 // no such key
	codeRead       = 500 // reading the request failed
	codeService    = 502 // storage or unicorn failed
)

// collection is where the values live; every key carries the tag "kv".
const collection = "kv"

func main() {
	w, err := cocaine.NewWorker()
	if err != nil {
		log.Fatal(err)
	}
	var locator []string
	for _, ep := range w.Config().Locator {
		locator = append(locator, ep.String())
	}
	a := &app{services: &services{locator: locator, conns: map[string]*cocaine.Service{}},
		counter: "/kv/" + w.Config().App + "/writes"}
	w.On("put", a.put)
	w.On("get", a.get)
	w.On("keys", a.keys)
	w.On("writes", a.writes)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = w.Run(ctx)
	a.services.close()
	if err != nil {
		log.Fatal(err)
	}
}

// services keeps one connection per service, made on first use and shared by every
// request (a connection carries many calls at once). After a failed call the connection
// is dropped and the next request makes a new one: the framework's errors do not tell a
// lost connection from an error reply (a missing key) without importing the wire
// package, and a fresh connection is cheap.
type services struct {
	locator []string

	mu    sync.Mutex
	conns map[string]*cocaine.Service
}

func (s *services) get(ctx context.Context, name string) (*cocaine.Service, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[name]; c != nil {
		return c, nil
	}
	c, err := cocaine.NewService(ctx, name, s.locator)
	if err != nil {
		return nil, err
	}
	s.conns[name] = c
	return c, nil
}

func (s *services) drop(name string, c *cocaine.Service) {
	s.mu.Lock()
	if s.conns[name] == c {
		delete(s.conns, name)
	}
	s.mu.Unlock()
	c.Close()
}

func (s *services) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// call makes one call with a single reply and scans its arguments into dst.
func (s *services) call(ctx context.Context, service, method string, dst []any, args ...any) error {
	c, err := s.get(ctx, service)
	if err != nil {
		return err
	}
	ch, err := c.Call(ctx, method, args...)
	if err == nil {
		var r cocaine.Result
		if r, err = ch.Get(ctx); err == nil {
			return r.Scan(dst...)
		}
	}
	s.drop(service, c)
	return fmt.Errorf("%s.%s: %w", service, method, err)
}

type app struct {
	services *services
	counter  string // the unicorn node counting writes
}

func (a *app) put(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
	body, err := req.ReadAll(ctx)
	if err != nil {
		resp.ErrorMsg(codeRead, err.Error())
		return
	}
	key, value, ok := strings.Cut(string(body), "=")
	if !ok || key == "" {
		resp.ErrorMsg(codeBadRequest, fmt.Sprintf("put wants KEY=VALUE, got %q", body))
		return
	}
	if err := a.services.call(ctx, "storage", "write", nil, collection, key, []byte(value), []string{"kv"}); err != nil {
		resp.ErrorMsg(codeService, err.Error())
		return
	}
	var node []any // [value, version]
	if err := a.services.call(ctx, "unicorn", "increment", []any{&node}, a.counter, 1); err != nil {
		resp.ErrorMsg(codeService, err.Error())
		return
	}
	fmt.Fprint(resp, node[0])
}

func (a *app) get(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
	key, err := req.ReadAll(ctx)
	if err != nil {
		resp.ErrorMsg(codeRead, err.Error())
		return
	}
	var value []byte
	if err := a.services.call(ctx, "storage", "read", []any{&value}, collection, string(key)); err != nil {
		resp.ErrorMsg(codeNotFound, err.Error())
		return
	}
	resp.Write(value)
}

func (a *app) keys(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
	if _, err := req.ReadAll(ctx); err != nil {
		resp.ErrorMsg(codeRead, err.Error())
		return
	}
	var keys []string
	if err := a.services.call(ctx, "storage", "find", []any{&keys}, collection, []string{"kv"}); err != nil {
		resp.ErrorMsg(codeService, err.Error())
		return
	}
	if keys == nil {
		keys = []string{}
	}
	b, _ := json.Marshal(keys)
	resp.Write(b)
}

func (a *app) writes(ctx context.Context, req cocaine.Request, resp cocaine.Response) {
	if _, err := req.ReadAll(ctx); err != nil {
		resp.ErrorMsg(codeRead, err.Error())
		return
	}
	var node []any // [value, version]: [nil, -1] before the first write
	if err := a.services.call(ctx, "unicorn", "get", []any{&node}, a.counter); err != nil {
		resp.ErrorMsg(codeService, err.Error())
		return
	}
	n := node[0]
	if n == nil {
		n = 0
	}
	fmt.Fprint(resp, n)
}
