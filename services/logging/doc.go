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
package logging
