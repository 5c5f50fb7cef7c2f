package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func unicornGroup() *group {
	return &group{name: "unicorn", summary: "the replicated configuration store: read, write, watch, lock", commands: []*command{
		{name: "unicorn get", args: "PATH", minArgs: 1, maxArgs: 1, summary: "print a node's [value, version] ([null, -1] if absent)",
			run: unicornSimple("get"), example: "cocaine-tool unicorn get /config/answer"},
		{name: "unicorn children", args: "PATH", minArgs: 1, maxArgs: 1, summary: "print [cversion, [names]] of a node's children",
			run: unicornSimple("children"), example: "cocaine-tool unicorn children /config"},
		{name: "unicorn create", args: "PATH JSON", minArgs: 2, maxArgs: 2, summary: "create a node (and its parents) holding a JSON value",
			opts: []option{{short: "e", long: "ephemeral", help: "the node lives as long as this command's connection (i.e. not past it)"}},
			run:  unicornCreate, example: `cocaine-tool unicorn create /config/answer 42`},
		{name: "unicorn put", args: "PATH JSON VERSION", minArgs: 3, maxArgs: 3,
			summary: "set a node's value if its version is VERSION: [true, [value, version]], or [false, current]",
			run:     unicornPut, example: `cocaine-tool unicorn put /config/answer '"forty-two"' 0`},
		{name: "unicorn del", aliases: []string{"remove"}, args: "PATH [VERSION]", minArgs: 1, maxArgs: 2,
			summary: "remove a node (of any version unless VERSION is given)",
			run:     unicornDel, example: "cocaine-tool unicorn del /config/answer"},
		{name: "unicorn watch", args: "PATH [FROM_REVISION]", minArgs: 1, maxArgs: 2,
			summary: "print every change at or under PATH, one JSON line each, until interrupted",
			help: `The first line is [start_revision, "sync", PATH, null, -1]; then every event
[revision, "create"|"put"|"delete", path, value, version], in order, gap-free. With
FROM_REVISION the stream starts after that revision (a compacted one fails).
--timeout does not apply; -c stops after that many events.`,
			opts: []option{{short: "c", long: "count", arg: "N", help: "stop after N events (the sync line not counted)"}},
			run:  unicornWatch, example: "cocaine-tool unicorn watch /config\ncocaine-tool unicorn watch /config 1200 -c 1"},
		{name: "unicorn lock", args: "PATH [-- COMMAND [ARGS...]]", minArgs: 1, maxArgs: -1,
			summary: "take a lock under PATH; run COMMAND while holding it, or hold it until interrupted",
			help: `The lock is unicorn's lock(PATH): an ephemeral sequential node under PATH, held
as long as this command's connection lives. With a COMMAND, it runs once the lock is
taken and the lock is released when it exits; the exit status is the command's. If the
lock is lost meanwhile (the host lost its lease), the command is sent SIGTERM and the
tool exits 128. Without one, {"locked": PATH} is printed and the lock is held until
SIGINT or SIGTERM. --timeout bounds the wait for the lock.`,
			run: unicornLock, example: "cocaine-tool unicorn lock /locks/deploy -- ./deploy.sh"},
		{name: "unicorn edit", args: "PATH", minArgs: 1, maxArgs: 1,
			summary: "edit a node's value in $EDITOR (as JSON): create if absent, else put with its version",
			run:     unicornEdit, example: "cocaine-tool unicorn edit /config/answer"},
	}}
}

func unicornSimple(method string) func(x *inv) error {
	return func(x *inv) error { return x.showValue("unicorn", method, x.args[0]) }
}

func unicornCreate(x *inv) error {
	v, err := parseJSON(x.args[1])
	if err != nil {
		return err
	}
	return x.showValue("unicorn", "create", x.args[0], v)
}

func parseVersion(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, badf("version %q is not an integer", s)
	}
	return v, nil
}

func unicornPut(x *inv) error {
	v, err := parseJSON(x.args[1])
	if err != nil {
		return err
	}
	ver, err := parseVersion(x.args[2])
	if err != nil {
		return err
	}
	return x.showValue("unicorn", "put", x.args[0], v, ver)
}

func unicornDel(x *inv) error {
	ver := int64(-1)
	if len(x.args) == 2 {
		var err error
		if ver, err = parseVersion(x.args[1]); err != nil {
			return err
		}
	}
	return x.showValue("unicorn", "remove", x.args[0], ver)
}

func unicornWatch(x *inv) error {
	from := int64(-1)
	if len(x.args) == 2 {
		var err error
		if from, err = strconv.ParseInt(x.args[1], 10, 64); err != nil {
			return badf("revision %q is not an integer", x.args[1])
		}
	}
	count := -1
	if s := x.str("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return badf("--count %q is not a non-negative integer", s)
		}
		count = n
	}
	ctx := x.t.env.ctx // runs until interrupted
	c, err := x.t.conn(ctx, "unicorn")
	if err != nil {
		return err
	}
	ch, err := c.Call(ctx, "watch", x.args[0], from, true)
	if err != nil {
		return err
	}
	synced := false
	for !synced || count != 0 {
		m, err := ch.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
		if err := m.Err(); err != nil {
			return err
		}
		if m.Name == "close" {
			return nil
		}
		v, err := decodeArgs(m.Args)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintln(x.stdout(), compactJSON(v)); err != nil {
			return err
		}
		if synced && count > 0 {
			count--
		}
		synced = true
	}
	return nil
}

func unicornLock(x *inv) error {
	path, command := x.args[0], x.args[1:]
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	c, err := x.t.conn(ctx, "unicorn")
	if err != nil {
		return err
	}
	ch, err := c.Call(ctx, "lock", path)
	if err != nil {
		return err
	}
	m, err := ch.Recv(ctx)
	if err == nil {
		err = m.Err()
	}
	if err != nil {
		return wrapCtx(ctx, err)
	}
	cancel() // the lock is taken: --timeout bounded only the wait
	x.t.logf(1, "locked %s", path)

	// lost is closed when the lock ends on its own (an error, the connection lost).
	lost := make(chan struct{})
	var lostErr error
	var wg sync.WaitGroup
	watch, stopWatch := context.WithCancel(context.Background())
	wg.Go(func() {
		defer close(lost)
		m, err := ch.Recv(watch)
		switch {
		case watch.Err() != nil:
		case err != nil:
			lostErr = err
		case m.Err() != nil:
			lostErr = m.Err()
		default:
			lostErr = fmt.Errorf("unexpected %s on the lock channel", m.Name)
		}
	})
	release := func() {
		stopWatch()
		ch.SendName("close") // releases the lock; closing the connection would too
		wg.Wait()
	}

	if len(command) == 0 {
		if err := x.show(map[string]any{"locked": path}, nil); err != nil {
			release()
			return err
		}
		select {
		case <-x.t.env.ctx.Done():
			release()
			return nil
		case <-lost:
			release()
			return fmt.Errorf("lock %s lost: %w", path, lostErr)
		}
	}

	cmd := exec.Command(command[0], command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = x.t.env.stdin, x.t.env.stdout, x.t.env.stderr
	if err := cmd.Start(); err != nil {
		release()
		return toolErrorf("unicorn lock: %v", err)
	}
	exited := make(chan error, 1) // Wait's only result, read once
	wg.Go(func() { exited <- cmd.Wait() })
	var runErr error
	select {
	case runErr = <-exited:
	case <-lost:
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		release()
		return fmt.Errorf("lock %s lost while %s ran (sent SIGTERM): %w", path, command[0], lostErr)
	case <-x.t.env.ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		runErr = <-exited
	}
	release()
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		if code := ee.ExitCode(); code >= 0 {
			return exitCode(code)
		}
		return exitCode(exitService)
	}
	return runErr
}

func unicornEdit(x *inv) error {
	path := x.args[0]
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	a, err := x.t.call(ctx, "unicorn", "get", path)
	if err != nil {
		return err
	}
	var pair []any
	if err := a.Scan(&pair); err != nil || len(pair) != 2 {
		return toolErrorf("unicorn get %s: unexpected reply", path)
	}
	version, _ := pair[1].(int64)
	if u, ok := pair[1].(uint64); ok {
		version = int64(u)
	}
	cancel()
	edited, changed, err := editJSON(x.t.env, "unicorn"+path, jsonable(pair[0]))
	if err != nil || !changed {
		return err
	}
	ctx, cancel = x.t.ctx(0)
	defer cancel()
	var r any
	if version < 0 {
		r, err = x.t.value(ctx, "unicorn", "create", path, edited)
	} else {
		r, err = x.t.value(ctx, "unicorn", "put", path, edited, version)
		if l, ok := r.([]any); err == nil && ok && len(l) > 0 && l[0] == false {
			return toolErrorf("%s changed while it was edited (version %d is gone): now %s", path, version, compactJSON(l[1:]))
		}
	}
	if err != nil {
		return err
	}
	return x.done(map[string]any{"path": path, "value": edited, "result": r})
}
