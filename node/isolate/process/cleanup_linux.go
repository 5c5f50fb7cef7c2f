//go:build linux

package process

import (
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/cgroups/v3"
)

// Hierarchies are the mounted cgroup hierarchies: /sys/fs/cgroup itself on a unified
// (v2) host, each controller's directory under it on a v1 or hybrid one.
func Hierarchies() []string {
	if cgroups.Mode() == cgroups.Unified {
		return []string{"/sys/fs/cgroup"}
	}
	ents, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() { // the cpu,cpuacct style symlinks name hierarchies listed already
			out = append(out, filepath.Join("/sys/fs/cgroup", e.Name()))
		}
	}
	return out
}

// RemoveHierarchy removes the node's groups below root, deepest first, and root itself,
// in every hierarchy, where they are empty: the daemon calls it once its workers are
// gone, so a stopped node leaves no cgroup behind (not even the group of a worker a
// killed daemon left). A group that still holds a process (another daemon's workers
// under the same root) stays, and so do the groups above it.
func RemoveHierarchy(root string) {
	if root == "" || !filepath.IsAbs(root) || root == "/" {
		return
	}
	for _, hier := range Hierarchies() {
		var dirs []string
		filepath.WalkDir(filepath.Join(hier, root), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i]) // rmdir: fails, harmlessly, unless empty
		}
	}
}
