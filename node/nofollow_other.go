//go:build !unix

package node

const syscallNoFollow = 0
