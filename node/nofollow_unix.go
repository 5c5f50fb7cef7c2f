//go:build unix

package node

import "syscall"

// syscallNoFollow keeps an archive from writing through a symlink it planted earlier.
const syscallNoFollow = syscall.O_NOFOLLOW
