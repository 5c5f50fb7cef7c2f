package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// Storage conventions of the original tools (clients.md §4, plugins.md §2.2).
var (
	appTags     = []string{"app"}
	profileTags = []string{"profile"}
	runlistTags = []string{"runlist"}
	groupTags   = []string{"group", "active"}
)

// uploadFloor is the least time an upload gets, as the original (120 s).
const uploadFloor = 120 * time.Second

// progressFloor is the archive size from which an upload draws a progress bar.
const progressFloor = 1 << 20

// nameOpt is the -n/--name option of the commands about one object.
func nameOpt(what string) option {
	return option{short: "n", long: "name", arg: "NAME", help: what + " name (or the first argument)"}
}

func appGroup() *group {
	return &group{name: "app", summary: "upload, start and stop apps", commands: []*command{
		{name: "app list", summary: "list the uploaded apps (manifests)", run: appList,
			example: "cocaine-tool app list"},
		{name: "app view", summary: "show an app's manifest", nameArg: true, maxArgs: 0,
			opts: []option{nameOpt("app")}, run: appView,
			example: "cocaine-tool app view -n echo"},
		{name: "app upload", args: "[PATH]", maxArgs: 1, run: appUpload,
			summary: "upload an app: its directory packed as a .tar.gz, and its manifest",
			help: `PATH (the current directory by default) is packed as a .tar.gz and stored in
apps/NAME (msgpack-wrapped, as the original), then its manifest in manifests/NAME.
The manifest is PATH/manifest.json (or PATH/manifest), or --manifest, a file or
inline JSON; it is checked as the node will check it, and so is the presence of its
"slave" in the archive. NAME is PATH's last element unless -n is given. --package
uploads a ready archive instead of a directory; --manifest-only just the manifest.
Archives over 1 MiB go to the storage blob store; a progress bar is drawn on stderr
when it is a terminal. The timeout is at least 120 s.`,
			opts: []option{
				{short: "n", long: "name", arg: "NAME", help: "app name (PATH's last element by default)"},
				{long: "manifest", arg: "FILE|JSON", help: "the manifest (PATH/manifest.json by default)"},
				{long: "package", arg: "FILE", help: "a ready .tar.gz (or .tar) to upload instead of PATH"},
				{long: "manifest-only", help: "upload only the manifest"},
				{long: "docker_address", arg: "URL", help: "not supported: Docker images are not built here"},
				{long: "registry", arg: "HOST", help: "not supported: Docker images are not built here"},
			},
			example: "cocaine-tool app upload ./examples/echo -n echo\ncocaine-tool app upload -n echo --package echo.tar.gz --manifest '{\"slave\": \"echo\"}'"},
		{name: "app remove", summary: "remove an app's manifest and archive", nameArg: true,
			opts: []option{nameOpt("app")}, run: appRemove,
			example: "cocaine-tool app remove -n echo"},
		{name: "app start", summary: "start an app with a profile (node.start_app)", nameArg: true,
			opts: []option{nameOpt("app"), {short: "r", long: "profile", arg: "PROFILE", help: "profile name"}},
			run:  appStart, example: "cocaine-tool app start -n echo -r default"},
		{name: "app pause", aliases: []string{"stop"}, summary: "stop an app (node.pause_app)", nameArg: true,
			opts: []option{nameOpt("app")}, run: appPause,
			example: "cocaine-tool app pause -n echo"},
		{name: "app restart", nameArg: true, run: appRestart,
			summary: "pause and start an app, with its current profile unless -r is given",
			opts:    []option{nameOpt("app"), {short: "r", long: "profile", arg: "PROFILE", help: "profile name (the running one by default)"}},
			example: "cocaine-tool app restart -n echo"},
		{name: "app check", nameArg: true, run: appCheck,
			summary: "check that an app is uploaded and running; exit 128 if it is not",
			opts:    []option{nameOpt("app")},
			example: "cocaine-tool app check -n echo"},
	}}
}

func appList(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	apps, err := x.t.storageFind(ctx, node.ManifestsCollection, appTags)
	if err != nil {
		return err
	}
	return x.show(apps, tableOf(apps, "APP"))
}

func appView(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	m, err := x.t.storageObject(ctx, node.ManifestsCollection, name)
	if err != nil {
		return err
	}
	return x.show(m, nil)
}

func appUpload(x *inv) error {
	if x.opts.has("docker_address") || x.opts.has("registry") {
		return badf("app upload: Docker images (--docker_address, --registry) are not supported: upload a directory or --package")
	}
	if len(x.args) > 0 && x.opts.has("package") {
		return badf("app upload: PATH and --package are mutually exclusive")
	}
	dir := "."
	if len(x.args) > 0 {
		dir = x.args[0]
	}
	if !x.opts.has("package") && !x.opts.has("manifest-only") {
		st, err := os.Stat(dir)
		if err != nil {
			return badf("app upload: %v", err)
		}
		if !st.IsDir() {
			return badf("app upload: %s is not a directory (use --package for an archive)", dir)
		}
	}
	name := x.str("name")
	if name == "" {
		if x.opts.has("package") || x.opts.has("manifest-only") {
			return badf("app upload: -n/--name is required with --package or --manifest-only")
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return badf("app upload: %v", err)
		}
		name = filepath.Base(abs)
	}
	if err := node.ValidateAppName(name); err != nil {
		return badf("app upload: %v", err)
	}
	manifestArg := x.str("manifest")
	if manifestArg == "" {
		if x.opts.has("package") || x.opts.has("manifest-only") {
			return badf("app upload: --manifest is required with --package or --manifest-only")
		}
		p, err := findManifest(dir)
		if err != nil {
			return err
		}
		manifestArg = p
	}
	manifest, err := jsonObject("manifest", manifestArg)
	if err != nil {
		return err
	}
	man, err := checkManifest(manifest)
	if err != nil {
		return err
	}
	warn := func(s string) { fmt.Fprintf(x.t.env.stderr, "cocaine-tool: warning: %s\n", s) }

	var archive []byte
	switch {
	case x.opts.has("manifest-only"):
	case x.opts.has("package"):
		if archive, err = os.ReadFile(x.str("package")); err != nil {
			return badf("app upload: %v", err)
		}
		entries, err := archiveEntries(archive)
		if err != nil {
			return badf("app upload: %s: %v", x.str("package"), err)
		}
		if err := checkSlave(man.Slave, entries, warn); err != nil {
			return err
		}
	default:
		x.t.logf(1, "packing %s", dir)
		if archive, err = packDir(dir, warn); err != nil {
			return err
		}
		entries, err := archiveEntries(archive)
		if err != nil {
			return toolErrorf("packing %s: %v", dir, err)
		}
		if err := checkSlave(man.Slave, entries, warn); err != nil {
			return err
		}
	}

	ctx, cancel := x.t.ctx(uploadFloor)
	defer cancel()
	if archive != nil {
		value, err := rpc.Marshal(archive) // a msgpack raw holding the archive, as the original
		if err != nil {
			return err
		}
		c, err := x.t.conn(ctx, "storage")
		if err != nil {
			return err
		}
		x.t.logf(1, "uploading %s (%s) to apps/%s", name, size(int64(len(archive))), name)
		var bar *progress
		if x.t.env.stderrTTY && len(archive) >= progressFloor {
			start := c.sent.Load()
			bar = startProgress(x.t.env.stderr, "uploading "+name, int64(len(value)), func() int64 { return c.sent.Load() - start })
		}
		err = x.t.storageWrite(ctx, node.AppsCollection, name, value, appTags)
		if bar != nil {
			bar.finish()
		}
		if errors.Is(err, rpc.ErrNotConnected) && len(value) > progressFloor {
			return fmt.Errorf("%w (the node closed the connection: is the archive, %s, over its rpc.max_frame_size, 64 MiB by default?)", err, size(int64(len(value))))
		}
		if err != nil {
			return wrapCtx(ctx, err)
		}
	}
	x.t.logf(1, "uploading the manifest to manifests/%s", name)
	if err := x.t.storagePut(ctx, node.ManifestsCollection, name, manifest, appTags); err != nil {
		return wrapCtx(ctx, err)
	}
	out := map[string]any{"app": name, "manifest": manifest}
	if archive != nil {
		out["archive_bytes"] = len(archive)
	}
	return x.done(out)
}

func appRemove(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	exists, err := x.t.storageHas(ctx, node.ManifestsCollection, appTags, name)
	if err != nil {
		return err
	}
	if !exists {
		return notFound("application %q does not exist", name)
	}
	if err := x.t.storageRemove(ctx, node.ManifestsCollection, name); err != nil {
		return err
	}
	if err := x.t.storageRemove(ctx, node.AppsCollection, name); err != nil {
		x.t.logf(1, "removing the archive failed (an app without one?): %v", err)
	}
	return x.done(map[string]any{"removed": name})
}

// appSentence is the original's answer to start, stop and restart.
func (x *inv) appSentence(name, status, profile string) error {
	s := fmt.Sprintf("Application `%s` has been %s", name, status)
	if profile != "" {
		s += fmt.Sprintf(" with profile `%s`", profile)
	}
	v := map[string]any{"app": name, "status": status}
	if profile != "" {
		v["profile"] = profile
	}
	return x.text([]string{s}, v, nil)
}

func appStart(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	profile, err := x.need("profile")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	if _, err := x.t.call(ctx, node.Name, "start_app", name, profile); err != nil {
		return err
	}
	return x.appSentence(name, "started", profile)
}

func appPause(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	if _, err := x.t.call(ctx, node.Name, "pause_app", name); err != nil {
		return err
	}
	return x.appSentence(name, "stopped", "")
}

func appRestart(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	profile := x.str("profile")
	if profile == "" {
		v, err := x.t.value(ctx, node.Name, "info", name, uint64(1))
		if err != nil {
			return toolErrorf("application %q is not running and no profile was given (-r): %s", name, describe(err))
		}
		profile = profileName(v)
		if profile == "" {
			return toolErrorf("cannot tell the profile of %q from its info: %s", name, compactJSON(v))
		}
	}
	if _, err := x.t.call(ctx, node.Name, "pause_app", name); err != nil {
		x.t.logf(1, "pause: %v (not running?)", describe(err))
	}
	if _, err := x.t.call(ctx, node.Name, "start_app", name, profile); err != nil {
		return err
	}
	return x.appSentence(name, "restarted", profile)
}

// profileName is the profile of an app's info (flags 1): {"profile": {"name": ...}}.
func profileName(info any) string {
	m, _ := info.(map[string]any)
	p, _ := m["profile"].(map[string]any)
	s, _ := p["name"].(string)
	return s
}

func appCheck(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	uploaded, err := x.t.storageHas(ctx, node.ManifestsCollection, appTags, name)
	if err != nil {
		return err
	}
	if !uploaded {
		return notFound("application %q is not available (not uploaded)", name)
	}
	v, err := x.t.value(ctx, node.Name, "info", name, uint64(0))
	if err != nil {
		return fmt.Errorf("application %q is stopped: %w", name, err)
	}
	m, _ := v.(map[string]any)
	switch state, _ := m["state"].(string); state {
	case node.StateRunning, node.StateSpooling:
	default:
		return toolErrorf("application %q is %s: %v", name, state, m["cause"])
	}
	return x.show(v, nil)
}
