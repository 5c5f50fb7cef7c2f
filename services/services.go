// Package services holds what every built-in service shares: the Service interface that
// internal/daemon serves, each on its own port, and publishes through the locator. The
// services themselves live in subpackages (logging, storage, ...); the locator, unicorn
// and node satisfy Service structurally without importing this package.
package services

import (
	"context"

	"github.com/cocaine/cocaine/rpc"
)

// Service is a built-in service.
type Service interface {
	// Dispatcher is the service's graph with every handler bound. It is called once,
	// before Run, and must not change afterwards.
	Dispatcher() *rpc.Dispatcher
	// Run does the service's background work until ctx is done. It returns only when every
	// goroutine it started has exited, nil after cancellation.
	Run(ctx context.Context) error
}
