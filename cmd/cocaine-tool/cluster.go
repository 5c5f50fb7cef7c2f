package main

import (
	"context"
	"errors"
	"os"

	"github.com/cocaine/cocaine/rpc"
	"github.com/cocaine/cocaine/services/cluster"
)

func clusterGroup() *group {
	return &group{name: "cluster", summary: "the cluster: its hosts, Raft membership, backups",
		def: &command{name: "cluster", summary: "the other hosts the locator knows: {uuid: [host, port]} (the original's cluster)",
			opts: []option{{long: "resolve", arg: "BOOL", help: "a true value shows IP addresses instead of host names"}},
			run:  clusterHosts, example: "cocaine-tool cluster --resolve 1"},
		commands: []*command{
			{name: "cluster members", summary: "list the Raft members: id, address, voter, leader, healthy",
				run: clusterCall("members"), example: "cocaine-tool cluster members -o table"},
			{name: "cluster status", summary: "this host's view: its id, the leader, the applied index",
				run: clusterCall("status"), example: "cocaine-tool --host 10.0.0.2 cluster status"},
			{name: "cluster leave", summary: "this host leaves the cluster and stops", run: clusterLeave,
				example: "cocaine-tool --host 10.0.0.3 cluster leave"},
			{name: "cluster remove", args: "ID", minArgs: 1, maxArgs: 1, summary: "remove a (dead) member by its id",
				run: clusterRemove, example: "cocaine-tool cluster remove 9a1c7e4e-..."},
			{name: "cluster snapshot", args: "save FILE | restore FILE", minArgs: 2, maxArgs: 2,
				summary: "write a backup of the cluster's state, or replace the state by one",
				help: `save streams a consistent snapshot of unicorn and storage (blob references
included) into FILE (written to FILE.partial, then renamed). restore replaces the whole
cluster's state by FILE's, on every host.`,
				run: clusterSnapshot, example: "cocaine-tool cluster snapshot save /backup/cocaine.snap"},
		}}
}

func clusterCall(method string) func(x *inv) error {
	return func(x *inv) error { return x.showValue(cluster.Name, method) }
}

func clusterLeave(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	if _, err := x.t.call(ctx, cluster.Name, "leave"); err != nil {
		return err
	}
	return x.show(map[string]any{"left": true}, nil)
}

func clusterRemove(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	if _, err := x.t.call(ctx, cluster.Name, "remove", x.args[0]); err != nil {
		return err
	}
	return x.show(map[string]any{"removed": x.args[0]}, nil)
}

func clusterSnapshot(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	switch x.args[0] {
	case "save":
		return snapshotSave(ctx, x, x.args[1])
	case "restore":
		return snapshotRestore(ctx, x, x.args[1])
	}
	return badf("cluster snapshot save FILE | cluster snapshot restore FILE")
}

func snapshotSave(ctx context.Context, x *inv, path string) (err error) {
	c, err := x.t.conn(ctx, cluster.Name)
	if err != nil {
		return err
	}
	ch, err := c.Call(ctx, "snapshot_save")
	if err != nil {
		return err
	}
	tmp := path + ".partial"
	f, err := os.Create(tmp)
	if err != nil {
		return badf("%v", err)
	}
	defer func() {
		f.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	var size int64
	for {
		m, err := ch.Recv(ctx)
		if errors.Is(err, rpc.ErrChannelClosed) {
			break
		}
		if err != nil {
			return wrapCtx(ctx, err)
		}
		if err := m.Err(); err != nil {
			return err
		}
		if m.Name == "close" {
			break
		}
		var chunk []byte
		if err := m.Args.Scan(&chunk); err != nil {
			return err
		}
		if _, err := f.Write(chunk); err != nil {
			return err
		}
		size += int64(len(chunk))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return x.show(map[string]any{"saved": path, "bytes": size}, nil)
}

func snapshotRestore(ctx context.Context, x *inv, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return badf("%v", err)
	}
	c, err := x.t.conn(ctx, cluster.Name)
	if err != nil {
		return err
	}
	ch, err := c.Call(ctx, "snapshot_restore")
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(len(data), 256<<10)
		if err := ch.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	if err := ch.Close(); err != nil {
		return err
	}
	if _, err := ch.Get(ctx); err != nil {
		return wrapCtx(ctx, err)
	}
	return x.show(map[string]any{"restored": path}, nil)
}
