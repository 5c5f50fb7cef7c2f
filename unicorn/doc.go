// Package unicorn is the replicated configuration store.
package unicorn
