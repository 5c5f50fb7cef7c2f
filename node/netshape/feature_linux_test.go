//go:build linux

package netshape

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFeature: the kernel's answers for an unknown kind name the missing feature; other
// errors stay setup errors.
func TestFeature(t *testing.T) {
	for _, errno := range []error{unix.EOPNOTSUPP, unix.ENOENT, unix.EPROTONOSUPPORT, unix.ENODEV} {
		err := feature("ifb device cifbabcd", "CONFIG_IFB", fmt.Errorf("netlink: %w", errno))
		want := "netshape: the kernel lacks a feature container networking needs: ifb device cifbabcd (CONFIG_IFB): netlink: " + errno.Error()
		if !errors.Is(err, ErrMissingFeature) || err.Error() != want {
			t.Errorf("%v: %v", errno, err)
		}
	}
	if err := feature("bridge x", "CONFIG_BRIDGE", unix.EEXIST); errors.Is(err, ErrMissingFeature) {
		t.Errorf("EEXIST is not a missing feature: %v", err)
	}
}
