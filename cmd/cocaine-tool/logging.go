package main

import (
	"strconv"
	"time"
)

// The logging service's runtime filters (plugins.md §3.1), with the original's command
// names (set_filter, ...) and shorter ones (set, list, remove).

func loggingGroup() *group {
	setOpts := []option{
		{short: "n", long: "name", arg: "LOGGER", help: "logger name (a prefix: \"app/echo\" covers app/echo/...)"},
		{long: "filter_def", arg: "JSON", help: `the filter, e.g. '["severity", 2]' or '["||", ["e", "trace"], ["severity", 3]]'`},
		{long: "ttl", arg: "SECONDS", help: "how long the filter lives"},
	}
	return &group{name: "logging", aliases: []string{"logs"}, summary: "the logging service's loggers and runtime filters", commands: []*command{
		{name: "logging list_loggers", aliases: []string{"loggers", "list-loggers"}, summary: "list the loggers records came from",
			run: func(x *inv) error {
				ctx, cancel := x.t.ctx(0)
				defer cancel()
				v, err := x.t.value(ctx, "logging", "list_loggers")
				if err != nil {
					return err
				}
				if v == nil {
					v = []any{}
				}
				return x.show(map[string]any{"loggers": v}, tableOf(v, "LOGGER"))
			}, example: "cocaine-tool logging list_loggers"},
		{name: "logging list_filters", aliases: []string{"list", "list-filters"}, summary: "list the filters: local ones and cluster-wide ones",
			run: listFilters, example: "cocaine-tool logs list -o table"},
		{name: "logging set_filter", aliases: []string{"set", "set-filter"}, summary: "set a filter on this host (--cluster: on every host)",
			opts: append(setOpts, option{long: "cluster", help: "cluster-wide, as set_cluster_filter"}),
			run: func(x *inv) error {
				method := "set_filter"
				if x.opts.has("cluster") {
					method = "set_cluster_filter"
				}
				return setFilter(x, method)
			}, example: `cocaine-tool logging set_filter -n app/echo --filter_def '["severity", 0]' --ttl 600`},
		{name: "logging set_cluster_filter", aliases: []string{"set-cluster-filter"}, summary: "set a filter on every host (stored in unicorn)",
			opts: setOpts, run: func(x *inv) error { return setFilter(x, "set_cluster_filter") },
			example: `cocaine-tool logging set_cluster_filter -n app --filter_def '["severity", 2]' --ttl 3600`},
		{name: "logging remove_filter", aliases: []string{"remove", "remove-filter"}, summary: "remove a filter by its id (true if it existed)",
			args: "[ID]", maxArgs: 1, opts: []option{{short: "i", long: "filter-id", arg: "ID", help: "the filter's id (list_filters shows it)"}},
			run: func(x *inv) error {
				s := x.str("filter-id")
				if s == "" && len(x.args) > 0 {
					s = x.args[0]
				}
				if s == "" {
					return badf("logging remove_filter: -i/--filter-id is required")
				}
				id, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return badf("logging remove_filter: filter id %q is not a number", s)
				}
				return x.showValue("logging", "remove_filter", id)
			}, example: "cocaine-tool logging remove_filter -i 3"},
	}}
}

func setFilter(x *inv, method string) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	def, err := x.need("filter_def")
	if err != nil {
		return err
	}
	ttls, err := x.need("ttl")
	if err != nil {
		return err
	}
	filter, err := parseJSON(def)
	if err != nil {
		return badf("filter definition is not parsable: it should be a JSON array with at least one element")
	}
	if l, ok := filter.([]any); !ok || len(l) == 0 {
		return badf("filter definition should be an array with at least one element")
	}
	ttl, err := strconv.ParseUint(ttls, 10, 64)
	if err != nil {
		return badf("TTL should be a number of seconds, got %q", ttls)
	}
	return x.showValue("logging", method, name, filter, ttl)
}

// listFilters is the original's: {logger: [{id, deadline, filter_definition,
// disposition}]}, the deadline as local time.
func listFilters(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	v, err := x.t.value(ctx, "logging", "list_filters")
	if err != nil {
		return err
	}
	out := map[string]any{}
	tbl := &table{header: []string{"ID", "LOGGER", "DISPOSITION", "DEADLINE", "FILTER"}}
	list, _ := v.([]any)
	for _, e := range list {
		f, ok := e.([]any)
		if !ok || len(f) < 5 {
			return toolErrorf("list_filters: unexpected entry %s", compactJSON(e))
		}
		logger, _ := f[0].(string)
		deadline := int64(0)
		switch d := f[3].(type) {
		case uint64:
			deadline = int64(min(d, 1<<32))
		case int64:
			deadline = min(d, 1<<32)
		}
		disp := "unknown disposition_id: " + cell(f[4])
		switch f[4] {
		case uint64(0), int64(0):
			disp = "local"
		case uint64(1), int64(1):
			disp = "clusterwide"
		}
		when := time.Unix(deadline, 0).Format("2006-01-02 15:04:05")
		entry := map[string]any{"id": f[2], "deadline": when, "filter_definition": f[1], "disposition": disp}
		prev, _ := out[logger].([]any)
		out[logger] = append(prev, entry)
		tbl.add(f[2], logger, disp, when, f[1])
	}
	return x.show(out, tbl)
}
