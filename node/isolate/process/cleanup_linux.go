//go:build linux

package process

import (
	"os"
	"path/filepath"
)

// RemoveHierarchy removes the node's class groups and its root below every controller,
// where they are empty: the daemon calls it once its workers are gone, so a stopped node
// leaves no cgroup behind. A group that still holds something (another daemon's workers
// under the same root) stays, and so does the root above it.
func RemoveHierarchy(root string) {
	if root == "" || !filepath.IsAbs(root) || root == "/" {
		return
	}
	for _, c := range controllers {
		dir := ControllerDir(string(c), root)
		for _, class := range []string{ClassProd, ClassBatch, ClassIdle} {
			os.Remove(filepath.Join(dir, class)) // rmdir: fails, harmlessly, unless empty
		}
		os.Remove(dir)
	}
}
