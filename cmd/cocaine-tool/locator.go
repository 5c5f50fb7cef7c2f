package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// locatorCommands are the top-level commands of the locator and the node: info, locate
// (resolve), routing, uuid.
func locatorCommands() []*group {
	return []*group{
		single(&command{name: "info", summary: "show the node's apps: state, pool, queue, requests", run: info,
			help: `Without -n, every app of the node; -n is a pattern ("echo*") unless -w is given.
Apps that fail to answer are reported inline, with their error.`,
			opts: []option{
				{short: "n", long: "name", arg: "NAME", help: "app name or pattern"},
				{short: "m", long: "expand-manifest", help: "include the manifest"},
				{short: "p", long: "expand-profile", help: "include the profile"},
				{short: "b", long: "brief", help: "brief info only (uptime and state; disables -m and -p)"},
				{short: "w", long: "exact", help: "-n is an exact name, not a pattern"},
			}, example: "cocaine-tool info -n echo -p\ncocaine-tool info -o table"}, "i"),
		single(&command{name: "locate", summary: "show where a service is: endpoints, version, methods", nameArg: true,
			opts: []option{{short: "n", long: "name", arg: "NAME", help: "service name (or the first argument)"}}, run: locate,
			example: "cocaine-tool locate -n storage"}, "resolve"),
		single(&command{name: "routing", summary: "show routing groups as the locator's rings have them: app -> share", nameArg: true,
			opts: []option{{short: "n", long: "name", arg: "GROUP", help: "only this group"}}, run: routing,
			example: "cocaine-tool routing -n front"}),
		single(&command{name: "uuid", summary: "print the node's uuid", run: uuid, example: "cocaine-tool uuid"}),
	}
}

func info(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	flags := uint64(0)
	if !x.opts.has("brief") {
		flags = node.InfoOverseerReport
		if x.opts.has("expand-manifest") {
			flags |= node.InfoExpandManifest
		}
		if x.opts.has("expand-profile") {
			flags |= node.InfoExpandProfile
		}
	}
	name := x.str("name")
	var apps []string
	if name != "" && x.opts.has("exact") {
		apps = []string{name}
	} else {
		a, err := x.t.call(ctx, node.Name, "list")
		if err != nil {
			return err
		}
		var all []string
		if err := a.Scan(&all); err != nil {
			return err
		}
		for _, app := range all {
			if name == "" {
				apps = append(apps, app)
			} else if ok, err := path.Match(strings.ReplaceAll(name, "[!", "[^"), app); err != nil { // fnmatch's [!x] is [^x]
				return badf("info: pattern %q: %v", name, err)
			} else if ok {
				apps = append(apps, app)
			}
		}
	}
	infos := make(map[string]any, len(apps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 25) // at most 25 info calls at once, as the original
	for _, app := range apps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			v, err := x.t.value(ctx, node.Name, "info", app, flags)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				infos[app] = describe(err)
				return
			}
			infos[app] = v
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return wrapCtx(ctx, err)
	}
	tbl := &table{header: []string{"APP", "STATE", "UPTIME", "PROFILE", "ACTIVE", "IDLE", "ACCEPTED", "REJECTED", "QUEUED"}}
	for _, app := range sortedKeys(infos) {
		m, ok := infos[app].(map[string]any)
		if !ok {
			tbl.add(app, infos[app])
			continue
		}
		pool, _ := m["pool"].(map[string]any)
		reqs, _ := m["requests"].(map[string]any)
		queue, _ := m["queue"].(map[string]any)
		tbl.add(app, m["state"], m["uptime"], profileName(m), pool["active"], pool["idle"], reqs["accepted"], reqs["rejected"], queue["depth"])
	}
	return x.show(map[string]any{"apps": infos}, tbl)
}

func locate(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	r, err := resolve(ctx, x.t, name)
	if err != nil {
		return err
	}
	v := resolveJSON(r)
	tbl := &table{header: []string{"KEY", "VALUE"}}
	tbl.add("endpoints", v["endpoints"])
	tbl.add("version", r.Version)
	for _, m := range r.Graph.Methods() {
		if m.ID < rpc.ControlGoaway {
			tbl.add("method "+strconv.FormatUint(m.ID, 10), m.Name)
		}
	}
	return x.show(v, tbl)
}

// resolve asks the locator where name is.
func resolve(ctx context.Context, t *tool, name string) (rpc.ResolveResult, error) {
	lc, err := t.locatorConn(ctx)
	if err != nil {
		return rpc.ResolveResult{}, err
	}
	r, err := rpc.ResolveOn(ctx, lc.Conn, name, "")
	return r, wrapCtx(ctx, err)
}

// resolveJSON is the original's locate output: endpoints as "host:port", the version,
// and api {id: method name}.
func resolveJSON(r rpc.ResolveResult) map[string]any {
	eps := []string{}
	for _, ep := range r.Endpoints {
		eps = append(eps, fmt.Sprintf("%s:%d", ep.Host, ep.Port))
	}
	api := map[string]any{}
	for _, m := range r.Graph.Methods() {
		api[strconv.FormatUint(m.ID, 10)] = m.Name
	}
	return map[string]any{"endpoints": eps, "version": r.Version, "api": api}
}

func uuid(x *inv) error { return x.showValue("locator", "uuid") }

// routing attaches to the locator's routing stream, takes its first dump of the rings and
// turns each ring into the share of the hash space each app has, as the original.
func routing(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	lc, err := x.t.locatorConn(ctx)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s_%d_%f", host, os.Getpid(), float64(time.Now().UnixNano())/1e9)
	ch, err := lc.Call(ctx, "routing", id)
	if err != nil {
		return err
	}
	defer ch.SendName("discard")
	m, err := ch.Recv(ctx)
	if err != nil {
		return wrapCtx(ctx, err)
	}
	if err := m.Err(); err != nil {
		return err
	}
	var rings map[string]any
	if err := m.Args.Scan(&rings); err != nil {
		return err
	}
	groups := map[string]any{}
	for g, ring := range rings {
		shares, err := ringShares(ring)
		if err != nil {
			return toolErrorf("routing group %q: %v", g, err)
		}
		groups[g] = shares
	}
	if n := x.str("name"); n != "" {
		s, ok := groups[n]
		if !ok {
			return notFound("no such group %q in the routing (is it stored and active? try 'group refresh')", n)
		}
		groups = map[string]any{n: s}
	}
	tbl := &table{header: []string{"GROUP", "APP", "SHARE"}}
	for _, g := range sortedKeys(groups) {
		for _, app := range sortedKeys(groups[g].(map[string]any)) {
			tbl.add(g, app, groups[g].(map[string]any)[app])
		}
	}
	return x.show(groups, tbl)
}

// ringShares computes each app's share of a ring [[point, app], ...] sorted by point:
// the arc before each point belongs to that point's app.
func ringShares(ring any) (map[string]any, error) {
	points, ok := ring.([]any)
	if !ok {
		return nil, errors.New("a ring is a list")
	}
	out := map[string]any{}
	if len(points) == 0 {
		return out, nil
	}
	const extent = float64(1 << 32)
	point := func(e any) (float64, string, error) {
		p, ok := e.([]any)
		if !ok || len(p) < 2 {
			return 0, "", errors.New("a ring element is [point, app]")
		}
		v, ok1 := p[0].(uint64)
		app, ok2 := p[1].(string)
		if !ok1 || !ok2 {
			return 0, "", errors.New("a ring element is [point, app]")
		}
		return float64(v), app, nil
	}
	last, _, err := point(points[len(points)-1])
	if err != nil {
		return nil, err
	}
	prev := last - extent
	shares := map[string]float64{}
	for _, e := range points {
		v, app, err := point(e)
		if err != nil {
			return nil, err
		}
		shares[app] += v - prev
		prev = v
	}
	for app, s := range shares {
		out[app] = math.Round(s/extent*1e6) / 1e6
	}
	return out, nil
}

// clusterHosts is the original's `cluster`: the other hosts the locator knows,
// {uuid: [host, port]}, with addresses turned into host names unless --resolve says not
// to (the original's odd naming).
func clusterHosts(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	v, err := x.t.value(ctx, "locator", "cluster")
	if err != nil {
		return err
	}
	hosts, _ := jsonable(v).(map[string]any)
	if hosts == nil {
		hosts = map[string]any{}
	}
	// Any value but a false one keeps the IPs, as Python's truth of a click string.
	keepIPs := false
	switch s := x.str("resolve"); s {
	case "", "0", "false", "False", "no":
	default:
		keepIPs = true
	}
	tbl := &table{header: []string{"UUID", "HOST", "PORT"}}
	for _, id := range sortedKeys(hosts) {
		ep, _ := hosts[id].([]any)
		if len(ep) == 2 {
			if ip, ok := ep[0].(string); ok && !keepIPs {
				if names, err := net.DefaultResolver.LookupAddr(ctx, ip); err == nil && len(names) > 0 {
					ep[0] = names[0]
				}
			}
			tbl.add(id, ep[0], ep[1])
		}
	}
	sort.Slice(tbl.rows, func(i, j int) bool { return tbl.rows[i][0] < tbl.rows[j][0] })
	return x.show(hosts, tbl)
}
