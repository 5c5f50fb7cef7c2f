package main

import (
	"io"
	"os"

	"github.com/cocaine/cocaine/rpc"
)

func storageGroup() *group {
	tagOpt := option{short: "t", long: "tag", arg: "TAG", help: "a tag of the key (repeat for more)", multi: true}
	return &group{name: "storage", summary: "read and write the storage service directly", commands: []*command{
		{name: "storage read", args: "COLLECTION KEY", minArgs: 2, maxArgs: 2,
			summary: "print a value: decoded from msgpack to JSON (the tools' convention), or its bytes with --raw",
			opts:    []option{{long: "raw", help: "write the stored bytes as they are"}},
			run:     storageReadCmd, example: "cocaine-tool storage read manifests echo\ncocaine-tool storage read apps echo --raw > echo.msgpack"},
		{name: "storage write", args: "COLLECTION KEY [JSON]", minArgs: 2, maxArgs: 3,
			summary: "store a value: JSON encoded as msgpack (the tools' convention), or bytes with --raw",
			help: `The value is the JSON argument, or --file's content (JSON, or bytes with --raw; "-"
is stdin). A key carries exactly the tags of its last write.`,
			opts: []option{tagOpt, {long: "file", arg: "FILE", help: "read the value from FILE (- for stdin)"},
				{long: "raw", help: "store --file's bytes as they are, not JSON as msgpack"}},
			run: storageWriteCmd, example: `cocaine-tool storage write settings answer '{"value": 42}' -t config`},
		{name: "storage remove", args: "COLLECTION KEY", minArgs: 2, maxArgs: 2, summary: "remove a key (a missing one is not an error)",
			run: func(x *inv) error {
				ctx, cancel := x.t.ctx(0)
				defer cancel()
				if err := x.t.storageRemove(ctx, x.args[0], x.args[1]); err != nil {
					return err
				}
				return x.done(map[string]any{"removed": x.args[0] + "/" + x.args[1]})
			}, example: "cocaine-tool storage remove settings answer"},
		{name: "storage find", args: "COLLECTION [TAG...]", minArgs: 1, maxArgs: -1,
			summary: "list the keys of a collection that carry all the tags",
			opts:    []option{tagOpt},
			run: func(x *inv) error {
				ctx, cancel := x.t.ctx(0)
				defer cancel()
				keys, err := x.t.storageFind(ctx, x.args[0], append(x.args[1:], x.opts["tag"]...))
				if err != nil {
					return err
				}
				return x.show(keys, tableOf(keys, "KEY"))
			}, example: "cocaine-tool storage find manifests app"},
	}}
}

func storageReadCmd(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	b, err := x.t.storageRead(ctx, x.args[0], x.args[1])
	if err != nil {
		return err
	}
	if x.opts.has("raw") {
		_, err := x.stdout().Write(b)
		return err
	}
	v, err := rpc.Unmarshal(b)
	if err != nil {
		return toolErrorf("%s/%s is not msgpack (%v): read it with --raw", x.args[0], x.args[1], err)
	}
	return x.show(v, nil)
}

func storageWriteCmd(x *inv) error {
	var value []byte
	switch {
	case len(x.args) == 3 && x.opts.has("file"):
		return badf("storage write: give the value as JSON or with --file, not both")
	case len(x.args) == 3:
		if x.opts.has("raw") {
			return badf("storage write: --raw goes with --file")
		}
		v, err := parseJSON(x.args[2])
		if err != nil {
			return err
		}
		if value, err = rpc.Marshal(v); err != nil {
			return err
		}
	case x.opts.has("file"):
		var b []byte
		var err error
		if f := x.str("file"); f == "-" {
			b, err = io.ReadAll(x.t.env.stdin)
		} else {
			b, err = os.ReadFile(f)
		}
		if err != nil {
			return badf("storage write: %v", err)
		}
		value = b
		if !x.opts.has("raw") {
			v, err := parseJSONBytes(b)
			if err != nil {
				return badf("storage write: %s is not JSON (%v); use --raw for bytes", x.str("file"), err)
			}
			if value, err = rpc.Marshal(v); err != nil {
				return err
			}
		}
	default:
		return badf("storage write: give the value as JSON or with --file")
	}
	ctx, cancel := x.t.ctx(uploadFloor)
	defer cancel()
	if err := x.t.storageWrite(ctx, x.args[0], x.args[1], value, x.opts["tag"]); err != nil {
		return err
	}
	return x.done(map[string]any{"written": x.args[0] + "/" + x.args[1], "bytes": len(value)})
}
