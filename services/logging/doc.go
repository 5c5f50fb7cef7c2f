// Package logging is the `logging` service (logging v2, plugins.md §3.1): apps emit
// structured records (severity, logger name, message, attribute pairs); runtime filters
// decide which records reach the sinks.
//
// Filters are grouped in metafilters, one per logger name. A record is judged by the
// metafilter whose name is the longest prefix of its logger name, or by the default one
// (from the config's default_filter) when there is none; a metafilter accepts when any of
// its live filters does. Filters are added with set_filter and a TTL, listed, and removed
// by id. The filter language:
//
//	["empty"]                    accept everything
//	["traced"]                   accept records of a verbose trace (trace_bit "1")
//	["severity", N]              severity >= N
//	["e", attr], ["!e", attr]    the attribute exists / does not
//	[op, attr, value]            op is == != > < >= <=, compared by the value's type
//	["||", f, g], ["&&", f, g], ["xor", f, g]
//
// Accepted records go to every configured sink: a text sink (stderr) and JSON-lines files,
// each record with a process-unique increasing id and a nanosecond timestamp.
//
// # Cluster filters
//
// set_filter acts on this host only (disposition 0). set_cluster_filter (disposition 1)
// validates the filter as set_filter does, stores it in a FilterStore (unicorn, wired by
// the daemon) at <unicorn_path>/<id> as the msgpack map
// {filter, deadline, id, logger_name, disposition: 1}, deadline in Unix seconds, and
// answers the random id, applying the filter here at once. Without a store it fails
// with ErrNoCluster; when the store fails (unicorn has no leader) it fails with the
// store's error and code, and applies nothing here (a write whose outcome unicorn could
// not tell may still land later: that filter then acts until its deadline).
//
// Every host watches the folder from Run, on two goroutines of its lifecycle group:
//
//	watch loop   Watch(folder): a sync of the whole folder, then each change, applied to
//	             the metafilters; a broken watch is retried with back-off (100ms
//	             doubling to 5s) and the folder resynced from scratch
//	sweep loop   every second, and at once when the watch reports one: deletes the
//	             nodes that have expired or do not parse (bad map, bad filter, a name
//	             that is not the node's id); every host may, and the losers find the
//	             node gone
//
// so a filter set through any host acts on every host. remove_filter(id) removes a local
// filter here; any other id it deletes from the store (whatever the node's version) and
// then here, answering false only when it was found nowhere, and failing, changing
// nothing, when the store does. list_filters shows the cluster filters with disposition
// 1. Records never wait for the store: the metafilters are only ever updated by the
// loops and the handlers, under their own lock.
package logging
