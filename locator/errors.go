package locator

import (
	"errors"

	"github.com/cocaine/cocaine/rpc"
)

// Sentinel errors of the locator (resolve of an unknown name answers rpc.ErrServiceUnavailable). Each is mapped to its wire code in errorTable.
var (
	// ErrInvalidGroup: a routing group definition is unusable.
	ErrInvalidGroup = errors.New("locator: invalid routing group")
	// ErrRoutingStorage: routing groups could not be read from storage.
	ErrRoutingStorage = errors.New("locator: routing storage error")
	// ErrDuplicate: a service of that name is already exposed on this host.
	ErrDuplicate = errors.New("locator: duplicate service")
	// ErrMissingVersion: a published graph came with version 0.
	ErrMissingVersion = errors.New("locator: missing version")
)

// errorTable maps the sentinels to the original's locator category (protocol.md §4.3).
var errorTable = rpc.ErrorTable{
	{Err: ErrRoutingStorage, Category: rpc.CategoryLocator, Code: 2},
	{Err: ErrInvalidGroup, Category: rpc.CategoryLocator, Code: 2},
	{Err: ErrMissingVersion, Category: rpc.CategoryLocator, Code: 3},
	{Err: ErrDuplicate, Category: rpc.CategoryLocator, Code: 4},
}
