package main

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/cocaine/cocaine/node"
	"github.com/cocaine/cocaine/rpc"
)

// kind is a kind of stored object the tools manage the same way: profiles, runlists and
// routing groups, each a msgpack map under its name in its collection.
type kind struct {
	name       string // "profile"
	collection string // "profiles"
	tags       []string
	// check validates an object before it is stored (nil: anything goes).
	check func(name string, obj map[string]any) error
}

var (
	profileKind = kind{name: "profile", collection: node.ProfilesCollection, tags: profileTags, check: checkProfile}
	runlistKind = kind{name: "runlist", collection: node.RunlistsCollection, tags: runlistTags, check: checkRunlist}
	groupKind   = kind{name: "group", collection: "groups", tags: groupTags, check: checkGroup}
)

// checkProfile validates a profile as the node will (node.DecodeProfile).
func checkProfile(name string, obj map[string]any) error {
	b, err := rpc.Marshal(obj)
	if err != nil {
		return badf("profile: %v", err)
	}
	if _, err := node.DecodeProfile(name, b); err != nil {
		return badf("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// checkRunlist checks that a runlist maps app names to profile names.
func checkRunlist(name string, obj map[string]any) error {
	for _, app := range sortedKeys(obj) {
		if _, ok := obj[app].(string); !ok {
			return badf("runlist %q: the profile of %q must be a string, got %s", name, app, compactJSON(obj[app]))
		}
	}
	return nil
}

// checkGroup applies the original's rules for routing groups: not empty, weights
// non-negative integers, a non-zero total.
func checkGroup(name string, obj map[string]any) error {
	if len(obj) == 0 {
		return badf("routing group %q must not be empty", name)
	}
	var total float64
	for _, app := range sortedKeys(obj) {
		w, ok := weight(obj[app])
		if !ok {
			return badf("routing group %q: the weight of %q must be a non-negative integer, got %s", name, app, compactJSON(obj[app]))
		}
		total += float64(w)
	}
	if total == 0 {
		return badf("routing group %q must have a non-zero total weight", name)
	}
	return nil
}

func weight(v any) (uint64, bool) {
	switch w := v.(type) {
	case int64:
		return uint64(w), w >= 0
	case uint64:
		return w, true
	case float64:
		return uint64(w), w >= 0 && w == math.Trunc(w) && w < 1<<53
	}
	return 0, false
}

// entityCommands are the commands every kind has: list, view, upload (or create),
// remove, copy, rename, edit.
func entityCommands(k kind, uploadName string, uploadOpt option) []*command {
	n := nameOpt(k.name)
	// The original's runlist and group commands take -c; its profile ones only
	// --copyname, but -c does no harm there.
	copyOpt := option{short: "c", long: "copyname", arg: "NEW", help: "the new " + k.name + "'s name"}
	g := k.name
	return []*command{
		{name: g + " list", summary: "list the " + k.collection, run: k.list,
			example: "cocaine-tool " + g + " list"},
		{name: g + " view", summary: "show a " + k.name, nameArg: true, opts: []option{n}, run: k.view,
			example: "cocaine-tool " + g + " view -n NAME"},
		{name: g + " " + uploadName, summary: "store a " + k.name + " (inline JSON or a file)", nameArg: true,
			opts: []option{n, uploadOpt}, run: func(x *inv) error { return k.upload(x, uploadOpt.long) },
			example: "cocaine-tool " + g + " " + uploadName + " -n NAME --" + uploadOpt.long + " FILE"},
		{name: g + " remove", summary: "remove a " + k.name, nameArg: true, opts: []option{n}, run: k.remove,
			example: "cocaine-tool " + g + " remove -n NAME"},
		{name: g + " copy", summary: "copy a " + k.name + " under a new name", nameArg: true,
			opts: []option{n, copyOpt}, run: func(x *inv) error { return k.copy(x, false) },
			example: "cocaine-tool " + g + " copy -n NAME --copyname NEW"},
		{name: g + " rename", summary: "rename a " + k.name, nameArg: true,
			opts: []option{n, copyOpt}, run: func(x *inv) error { return k.copy(x, true) },
			example: "cocaine-tool " + g + " rename -n NAME --copyname NEW"},
		{name: g + " edit", summary: "edit a " + k.name + " in $EDITOR (as JSON), checked before it is stored",
			nameArg: true, opts: []option{n}, run: k.edit,
			example: "EDITOR=nano cocaine-tool " + g + " edit -n NAME"},
	}
}

func (k kind) list(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	names, err := x.t.storageFind(ctx, k.collection, k.tags)
	if err != nil {
		return err
	}
	return x.show(names, tableOf(names, strings.ToUpper(k.name)))
}

// read returns the stored object, which must be a map.
func (k kind) read(ctx context.Context, t *tool, name string) (map[string]any, error) {
	v, err := t.storageObject(ctx, k.collection, name)
	if err != nil {
		return nil, err
	}
	m, ok := jsonable(v).(map[string]any)
	if !ok {
		return nil, toolErrorf("%s %q is not a map: %s", k.name, name, compactJSON(v))
	}
	return m, nil
}

// store validates and writes obj.
func (k kind) store(ctx context.Context, t *tool, name string, obj map[string]any) error {
	if k.check != nil {
		if err := k.check(name, obj); err != nil {
			return err
		}
	}
	return t.storagePut(ctx, k.collection, name, obj, k.tags)
}

func (k kind) view(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	v, err := x.t.storageObject(ctx, k.collection, name)
	if err != nil {
		return err
	}
	var tbl *table
	if m, ok := jsonable(v).(map[string]any); ok && k.name != "profile" {
		tbl = tableOf(m, "APP", strings.ToUpper(map[string]string{"runlist": "profile", "group": "weight"}[k.name]))
	}
	return x.show(v, tbl)
}

func (k kind) upload(x *inv, opt string) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	content, err := x.need(opt)
	if err != nil {
		return err
	}
	obj, err := jsonObject(k.name, content)
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	if err := k.store(ctx, x.t, name, obj); err != nil {
		return err
	}
	return x.done(map[string]any{k.name: name, "content": obj})
}

// remove removes the object. A missing one is not an error, as in the original (scripts
// remove idempotently), but it is said on stderr.
func (k kind) remove(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	exists, err := x.t.storageHas(ctx, k.collection, k.tags, name)
	if err != nil {
		return err
	}
	if !exists {
		fmt.Fprintf(x.t.env.stderr, "cocaine-tool: warning: %s %q did not exist\n", k.name, name)
	}
	if err := x.t.storageRemove(ctx, k.collection, name); err != nil {
		return err
	}
	return x.done(map[string]any{"removed": name})
}

func (k kind) copy(x *inv, rename bool) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	to, err := x.need("copyname")
	if err != nil {
		return err
	}
	if name == to {
		return badf("%s: unable to copy an instance to itself", x.cmd.name)
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	m, err := k.read(ctx, x.t, name)
	if err != nil {
		return err
	}
	if err := k.store(ctx, x.t, to, m); err != nil {
		return err
	}
	if rename {
		if err := x.t.storageRemove(ctx, k.collection, name); err != nil {
			return err
		}
		return x.done(map[string]any{"renamed": name, "to": to})
	}
	return x.done(map[string]any{"copied": name, "to": to})
}

func (k kind) edit(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	m, err := k.read(ctx, x.t, name)
	if err != nil {
		return err
	}
	cancel() // no timeout while a person edits
	edited, changed, err := editJSON(x.t.env, k.name+"-"+name, m)
	if err != nil || !changed {
		return err
	}
	obj, ok := edited.(map[string]any)
	if !ok {
		return badf("%s %q must stay a JSON object", k.name, name)
	}
	ctx, cancel = x.t.ctx(0)
	defer cancel()
	if err := k.store(ctx, x.t, name, obj); err != nil {
		return err
	}
	return x.done(map[string]any{k.name: name, "content": obj})
}

func profileGroup() *group {
	return &group{name: "profile", summary: "manage profiles (how the node runs an app's pool)",
		commands: entityCommands(profileKind, "upload",
			option{short: "r", long: "profile", arg: "FILE|JSON", help: "the profile: a JSON object, inline or in a file"})}
}

func runlistGroup() *group {
	cmds := entityCommands(runlistKind, "upload",
		option{long: "runlist", arg: "FILE|JSON", help: "the runlist {app: profile}, inline or in a file"})
	n := nameOpt("runlist")
	cmds = append(cmds,
		&command{name: "runlist create", summary: "create an empty runlist", nameArg: true, opts: []option{n},
			run: func(x *inv) error {
				name, err := x.need("name")
				if err != nil {
					return err
				}
				ctx, cancel := x.t.ctx(0)
				defer cancel()
				if err := runlistKind.store(ctx, x.t, name, map[string]any{}); err != nil {
					return err
				}
				return x.done(map[string]any{"runlist": name, "content": map[string]any{}})
			},
			example: "cocaine-tool runlist create -n default"},
		&command{name: "runlist add-app", summary: "add an app with a profile to a runlist", nameArg: true,
			opts: []option{n, {long: "app", arg: "APP", help: "app name"}, {long: "profile", arg: "PROFILE", help: "profile name"},
				{short: "f", long: "force", help: "create the runlist if it does not exist"}},
			run: runlistAddApp, example: "cocaine-tool runlist add-app -n default --app echo --profile default --force"},
		&command{name: "runlist remove-app", summary: "remove an app from a runlist", nameArg: true,
			opts: []option{n, {long: "app", arg: "APP", help: "app name"}},
			run:  runlistRemoveApp, example: "cocaine-tool runlist remove-app -n default --app echo"},
	)
	return &group{name: "runlist", summary: "manage runlists (the apps a node starts at boot)", commands: cmds}
}

func runlistAddApp(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	app, err := x.need("app")
	if err != nil {
		return err
	}
	profile, err := x.need("profile")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	result := map[string]any{"runlist": name, "status": "modified", "added": map[string]any{"app": app, "profile": profile}}
	exists, err := x.t.storageHas(ctx, runlistKind.collection, runlistKind.tags, name)
	if err != nil {
		return err
	}
	rl := map[string]any{}
	switch {
	case exists:
		if rl, err = runlistKind.read(ctx, x.t, name); err != nil {
			return err
		}
	case x.opts.has("force"):
		result["status"] = "created"
	default:
		return notFound("runlist %q does not exist (--force creates it)", name)
	}
	rl[app] = profile
	if err := runlistKind.store(ctx, x.t, name, rl); err != nil {
		return err
	}
	return x.show(result, nil)
}

func runlistRemoveApp(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	app, err := x.need("app")
	if err != nil {
		return err
	}
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	exists, err := x.t.storageHas(ctx, runlistKind.collection, runlistKind.tags, name)
	if err != nil {
		return err
	}
	if !exists {
		return notFound("runlist %q is missing", name)
	}
	rl, err := runlistKind.read(ctx, x.t, name)
	if err != nil {
		return err
	}
	result := map[string]any{"runlist": name, "app": app, "status": "successfully removed"}
	if _, ok := rl[app]; !ok {
		result["status"] = fmt.Sprintf("the application named %s is not in runlist", app)
	} else {
		delete(rl, app)
		if err := runlistKind.store(ctx, x.t, name, rl); err != nil {
			return err
		}
	}
	return x.show(result, nil)
}

func groupGroup() *group {
	cmds := entityCommands(groupKind, "create",
		option{short: "c", long: "content", arg: "FILE|JSON", help: "the group {app: weight}, inline or in a file"})
	// create's -c is --content; copy's and rename's is --copyname, as in the original.
	n := nameOpt("group")
	cmds = append(cmds,
		&command{name: "group push", summary: "add an app to a routing group, or change its weight", nameArg: true,
			opts: []option{n, {long: "app", arg: "APP", help: "app name"}, {short: "w", long: "weight", arg: "W", help: "its weight (a non-negative integer)"}},
			run:  groupPush, example: "cocaine-tool group push -n front --app echo-v2 -w 1"},
		&command{name: "group pop", summary: "remove an app from a routing group", nameArg: true,
			opts: []option{n, {long: "app", arg: "APP", help: "app name"}},
			run:  groupPop, example: "cocaine-tool group pop -n front --app echo-v2"},
		&command{name: "group refresh", summary: "make the locator reload routing groups (all without -n)", nameArg: true,
			opts: []option{n}, run: groupRefresh, example: "cocaine-tool group refresh -n front"},
	)
	return &group{name: "group", summary: "manage routing groups (weighted sets of apps behind one name)", commands: cmds}
}

func groupPush(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	app, err := x.need("app")
	if err != nil {
		return err
	}
	ws, err := x.need("weight")
	if err != nil {
		return err
	}
	var w int64
	if _, err := fmt.Sscan(ws, &w); err != nil || fmt.Sprint(w) != ws {
		return badf("group push: weight %q is not an integer", ws)
	}
	return groupModify(x, name, func(g map[string]any) { g[app] = w })
}

func groupPop(x *inv) error {
	name, err := x.need("name")
	if err != nil {
		return err
	}
	app, err := x.need("app")
	if err != nil {
		return err
	}
	return groupModify(x, name, func(g map[string]any) { delete(g, app) })
}

// groupModify reads, changes, checks and writes a group.
func groupModify(x *inv, name string, change func(map[string]any)) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	g, err := groupKind.read(ctx, x.t, name)
	if err != nil {
		return err
	}
	change(g)
	if err := groupKind.store(ctx, x.t, name, g); err != nil {
		return err
	}
	return x.done(map[string]any{"group": name, "content": g})
}

func groupRefresh(x *inv) error {
	ctx, cancel := x.t.ctx(0)
	defer cancel()
	names := []string{}
	if n := x.str("name"); n != "" {
		names = append(names, n)
	} else {
		var err error
		if names, err = x.t.storageFind(ctx, groupKind.collection, groupKind.tags); err != nil {
			return err
		}
	}
	if _, err := x.t.call(ctx, "locator", "refresh", names); err != nil {
		return err
	}
	return x.done(map[string]any{"refreshed": names})
}
