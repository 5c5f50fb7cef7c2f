package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// Crash logs (plugins.md §2.14): crashlogs/"<µs since epoch>:<worker uuid>", tagged
// [app, "cocaine-YYYY-MM-DD"] (the UTC day), each a msgpack list of output lines.

func crashlogGroup() *group {
	n := nameOpt("app")
	ts := option{short: "t", long: "timestamp", arg: "TS", help: "the crash log's timestamp (µs, the part of its key before ':')"}
	return &group{name: "crashlog", summary: "read and remove the crash logs of failed workers", commands: []*command{
		{name: "crashlog status", summary: "per app: how many crash logs, and the latest", run: crashlogStatus,
			example: "cocaine-tool crashlog status"},
		{name: "crashlog list", summary: "list an app's crash logs (timestamp, time, worker uuid)", nameArg: true,
			opts: []option{n, {short: "d", long: "day", arg: "DAY",
				help: "only that UTC day: today, yesterday, DD, DD-MM or DD-MM-YYYY"}},
			run: crashlogList, example: "cocaine-tool crashlog list -n echo --day today"},
		{name: "crashlog view", summary: "print a crash log (the latest unless -t is given)", nameArg: true,
			opts: []option{n, ts}, run: crashlogView, example: "cocaine-tool crashlog view -n echo"},
		{name: "crashlog remove", summary: "remove an app's crash log (every one unless -t is given)", nameArg: true,
			opts: []option{n, ts}, run: func(x *inv) error { return crashlogRemove(x, x.str("timestamp")) },
			example: "cocaine-tool crashlog remove -n echo -t 1700000000000000"},
		{name: "crashlog removeall", summary: "remove every crash log of an app", nameArg: true,
			opts: []option{n}, run: func(x *inv) error { return crashlogRemove(x, "") },
			example: "cocaine-tool crashlog removeall -n echo"},
	}}
}

// crashKey is one parsed crash log key.
type crashKey struct {
	key  string
	ts   int64 // µs since the epoch
	uuid string
}

func (k crashKey) time() string { return time.UnixMicro(k.ts).Format(time.ANSIC) } // Python's time.ctime

func (k crashKey) json() map[string]any {
	return map[string]any{"key": k.key, "timestamp": strconv.FormatInt(k.ts, 10), "time": k.time(), "uuid": k.uuid}
}

// line is the original's "{ts:^20} {ctime:^26} {uuid:^36}".
func (k crashKey) line() string {
	return center(strconv.FormatInt(k.ts, 10), 20) + " " + center(k.time(), 26) + " " + center(k.uuid, 36)
}

// center pads s to width as Python's format "^" does: the extra space goes right.
func center(s string, width int) string {
	pad := width - len(s)
	if pad <= 0 {
		return s
	}
	return strings.Repeat(" ", pad/2) + s + strings.Repeat(" ", pad-pad/2)
}

// crashKeys parses and sorts keys by time; keys that do not parse are skipped.
func crashKeys(keys []string) []crashKey {
	var out []crashKey
	for _, k := range keys {
		ts, uuid, ok := strings.Cut(k, ":")
		n, err := strconv.ParseInt(ts, 10, 64)
		if !ok || err != nil {
			continue
		}
		out = append(out, crashKey{key: k, ts: n, uuid: uuid})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ts < out[j].ts })
	return out
}

// dayTag turns the original's day filter into the day tag; now is the current time.
func dayTag(s string, now time.Time) (string, error) {
	now = now.UTC()
	const tag = "cocaine-2006-01-02"
	switch {
	case s == "":
		return "", nil
	case strings.HasPrefix("today", s):
		return now.Format(tag), nil
	case strings.HasPrefix("yesterday", s):
		return now.AddDate(0, 0, -1).Format(tag), nil
	}
	parts := strings.Split(s, "-")
	if len(parts) > 3 {
		return "", badf("--day %q: want today, yesterday, DD, DD-MM or DD-MM-YYYY", s)
	}
	nums := make([]int, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return "", badf("--day %q: want today, yesterday, DD, DD-MM or DD-MM-YYYY", s)
		}
		nums[i] = n
	}
	y, m := now.Year(), int(now.Month())
	if len(nums) > 1 {
		m = nums[1]
	}
	if len(nums) > 2 {
		y = nums[2]
	}
	d := time.Date(y, time.Month(m), nums[0], 0, 0, 0, 0, time.UTC)
	if d.Day() != nums[0] || int(d.Month()) != m {
		return "", badf("--day %q is not a date", s)
	}
	return d.Format(tag), nil
}

func (x *inv) crashlogs(ctx context.Context, app string, tags ...string) ([]crashKey, error) {
	keys, err := x.t.storageFind(ctx, node.CrashlogsCollection, append([]string{app}, tags...))
	if err != nil {
		return nil, err
	}
	return crashKeys(keys), nil
}

func crashlogList(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	day, err := dayTag(x.str("day"), time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	var tags []string
	if day != "" {
		tags = append(tags, day)
	}
	logs, err := x.crashlogs(ctx, name, tags...)
	if err != nil {
		return err
	}
	lines := []string{}
	v := []any{}
	tbl := &table{header: []string{"TIMESTAMP", "TIME", "UUID"}}
	for _, k := range logs {
		lines = append(lines, k.line())
		v = append(v, k.json())
		tbl.add(k.ts, k.time(), k.uuid)
	}
	if len(logs) == 0 {
		x.t.logf(1, "crashlog list is empty")
	}
	return x.text(lines, v, tbl)
}

func crashlogView(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	logs, err := x.crashlogs(ctx, name)
	if err != nil {
		return err
	}
	ts := x.str("timestamp")
	var pick []crashKey
	for _, k := range logs {
		if ts == "" || strconv.FormatInt(k.ts, 10) == ts {
			pick = append(pick, k)
		}
	}
	if len(pick) == 0 {
		if ts != "" {
			return notFound("app %q has no crash log at %s", name, ts)
		}
		return notFound("app %q has no crash logs", name)
	}
	if ts == "" {
		pick = pick[len(pick)-1:]
	}
	var lines []string
	var v []any
	for _, k := range pick {
		b, err := x.t.storageRead(ctx, node.CrashlogsCollection, k.key)
		if err != nil {
			return err
		}
		var got []string
		if err := rpc.Args(append([]byte{0x91}, b...)).Scan(&got); err != nil {
			return toolErrorf("crash log %s is not a list of lines: %v", k.key, err)
		}
		lines = append(lines, got...)
		j := k.json()
		j["lines"] = got
		v = append(v, j)
	}
	tbl := &table{header: []string{"LINE"}}
	for _, l := range lines {
		tbl.add(l)
	}
	var out any = v
	if len(v) == 1 {
		out = v[0]
	}
	return x.text(lines, out, tbl)
}

func crashlogRemove(x *inv, ts string) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	logs, err := x.crashlogs(ctx, name)
	if err != nil {
		return err
	}
	removed := []string{}
	for _, k := range logs {
		if ts != "" && strconv.FormatInt(k.ts, 10) != ts {
			continue
		}
		if err := x.t.storageRemove(ctx, node.CrashlogsCollection, k.key); err != nil {
			return err
		}
		removed = append(removed, k.key)
	}
	if ts != "" && len(removed) == 0 {
		return notFound("app %q has no crash log at %s", name, ts)
	}
	return x.done(map[string]any{"app": name, "removed": removed})
}

func crashlogStatus(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	apps, err := x.t.storageFind(ctx, node.ManifestsCollection, appTags)
	if err != nil {
		return err
	}
	var lines []string
	v := []any{}
	tbl := &table{header: []string{"APP", "TOTAL", "LAST", "UUID"}}
	for _, app := range apps {
		logs, err := x.crashlogs(ctx, app)
		if err != nil {
			return err
		}
		if len(logs) == 0 {
			continue
		}
		last := logs[len(logs)-1]
		lines = append(lines, fmt.Sprintf("%-20s|%s|%s|%s", app, center(strconv.Itoa(len(logs)), 10), center(last.time(), 26), center(last.uuid, 38)))
		v = append(v, map[string]any{"app": app, "total": len(logs), "last": last.json()})
		tbl.add(app, len(logs), last.time(), last.uuid)
	}
	if len(lines) == 0 {
		lines = append(lines, "There are no applications with crashlogs")
	}
	return x.text(lines, v, tbl)
}
