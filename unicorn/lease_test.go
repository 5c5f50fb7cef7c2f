package unicorn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cocaine/cocaine/raft"
)

// The raft layer's Sub is what the daemon hands to New.
var _ Consensus = (*raft.Sub)(nil)

// These tests run under testing/synctest: TTLs pass in virtual time, instantly and
// deterministically, and synctest.Wait lets every goroutine of the service settle.

const ttl = MinLeaseTTL

func TestHostLeaseKeptAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		h, stop := c.addHost(t, Config{HostLeaseTTL: ttl})
		ctx := context.Background()
		id, lost, err := h.svc.HostLease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.svc.Create(ctx, "/hosts/me", []byte{0x01}, CreateOptions{Ephemeral: true}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * ttl) // many TTLs: the keeper renews the lease all along
		synctest.Wait()
		if _, ok := c.store.Lease(id); !ok {
			t.Fatal("the host lease expired although its host is alive")
		}
		select {
		case <-lost:
			t.Fatal("host lease reported lost")
		default:
		}
		if n, _ := c.store.Node("/hosts/me"); n.Lease != id {
			t.Fatalf("ephemeral node under lease %d, want the host lease %d", n.Lease, id)
		}
		stop() // a clean stop revokes the host's leases at once
		if _, ok := c.store.Node("/hosts/me"); ok {
			t.Fatal("the host's ephemeral node outlived its Run")
		}
	})
}

func TestLeaseExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		h, _ := c.addHost(t, Config{})
		ctx := context.Background()
		id, granted, err := h.svc.GrantLease(ctx, 1500*time.Millisecond)
		if err != nil || granted != 2*time.Second {
			t.Fatalf("grant = %d, %v, %v", id, granted, err)
		}
		if _, _, err := h.svc.Create(ctx, "/tmp/x", []byte{0x01}, CreateOptions{Lease: id}); err != nil {
			t.Fatal(err)
		}
		// kept alive by the caller, it stays
		for range 5 {
			time.Sleep(granted / 2)
			if _, err := h.svc.KeepAlive(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		start, events, err := h.svc.Watch(ctx, "/tmp/x", WatchOptions{From: -1})
		if err != nil {
			t.Fatal(err)
		}
		// left alone, it expires, and its node goes with it
		time.Sleep(granted + time.Second)
		synctest.Wait()
		if _, ok := c.store.Lease(id); ok {
			t.Fatal("lease still there after its TTL")
		}
		r := <-events
		if r.Err != nil || len(r.Events) != 1 || r.Events[0].Kind != EventDelete || r.Events[0].Revision <= start {
			t.Fatalf("watch got %+v", r)
		}
		if _, err := h.svc.KeepAlive(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("keepalive of an expired lease: %v", err)
		}
		if err := h.svc.RevokeLease(ctx, id); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("revoke of an expired lease: %v", err)
		}
	})
}

func TestNewLeaderResetsDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		a, _ := c.addHost(t, Config{})
		b, _ := c.addHost(t, Config{})
		ctx := context.Background()
		id, granted, err := a.svc.GrantLease(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(granted * 3 / 4)
		c.setLeader(b) // b cannot know when the owner last reached a: it starts over
		time.Sleep(granted * 3 / 4)
		synctest.Wait()
		if _, ok := c.store.Lease(id); !ok {
			t.Fatal("the new leader expired a lease before a full TTL of its own")
		}
		time.Sleep(granted)
		synctest.Wait()
		if _, ok := c.store.Lease(id); ok {
			t.Fatal("the new leader never expired the lease")
		}
		// keepalives now reach b
		id2, _, _ := a.svc.GrantLease(ctx, ttl)
		for range 4 {
			time.Sleep(granted / 2)
			if _, err := a.svc.KeepAlive(ctx, id2); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := c.store.Lease(id2); !ok {
			t.Fatal("a lease kept alive through the new leader expired")
		}
	})
}

// contender takes the lock of folder on svc under a lease of its own, and reports when
// it holds it; closing release gives it back.
type contender struct {
	held    chan struct{}
	release chan struct{}
	done    chan error
}

func contend(t *testing.T, svc *Service, folder string) *contender {
	t.Helper()
	l, err := svc.grantOwned(context.Background(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	ct := &contender{held: make(chan struct{}), release: make(chan struct{}), done: make(chan error, 1)} // holdLock's result, read once
	svc.work.Go(func(ctx context.Context) {
		ct.done <- svc.holdLock(ctx, ct.release, l, folder, []byte{0xc0}, func() error { close(ct.held); return nil }, nil)
	})
	return ct
}

func TestPartitionedHolderLetsGoFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		a, _ := c.addHost(t, Config{}) // the leader
		b, _ := c.addHost(t, Config{})
		holder := contend(t, b.svc, "/locks/p")
		<-holder.held
		waiter := contend(t, a.svc, "/locks/p")
		time.Sleep(3 * ttl)
		synctest.Wait()
		select {
		case <-waiter.held:
			t.Fatal("two holders")
		default:
		}

		b.partitioned.Store(true) // b's keepalives no longer reach the leader
		var lostAt, heldAt time.Time
		select {
		case err := <-holder.done:
			lostAt = time.Now()
			if !errors.Is(err, ErrConnectionLoss) {
				t.Fatalf("partitioned holder ended with %v, want connection loss", err)
			}
		case <-waiter.held:
			t.Fatal("the waiter got the lock while the partitioned holder still believed it held it")
		}
		<-waiter.held
		heldAt = time.Now()
		if !lostAt.Before(heldAt) {
			t.Fatalf("holder let go at %v, waiter took over at %v", lostAt, heldAt)
		}
		close(waiter.release)
		if err := <-waiter.done; err != nil {
			t.Fatal(err)
		}
		b.partitioned.Store(false)
	})
}

// TestLostHolderToldBeforeItsNodeGoes: a holder whose lease is lost on its host (its
// keepalives do not get through, its writes still do) hears so while its lock node
// still exists: neither its own cleanup nor the revoke of the lost lease may let a
// waiter in first.
func TestLostHolderToldBeforeItsNodeGoes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		a, _ := c.addHost(t, Config{}) // the leader
		b, _ := c.addHost(t, Config{})
		l, err := b.svc.grantOwned(context.Background(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		held := make(chan struct{})
		told := make(chan []string, 1) // the lock nodes when the holder heard of the loss
		done := make(chan error, 1)
		b.svc.work.Go(func(ctx context.Context) {
			done <- b.svc.holdLock(ctx, nil, l, "/locks/t", []byte{0xc0}, func() error { close(held); return nil }, func(error) {
				_, names, _, _ := c.store.Children("/locks/t")
				told <- names
			})
		})
		<-held
		waiter := contend(t, a.svc, "/locks/t")
		b.noLeaderCalls.Store(true) // b's keepalives fail; b itself gives the lease up
		if err := <-done; !errors.Is(err, ErrConnectionLoss) {
			t.Fatalf("the holder ended with %v, want connection loss", err)
		}
		if names := <-told; len(names) != 2 {
			t.Fatalf("when the holder heard of the loss the lock folder held %v, want its node and the waiter's", names)
		}
		b.noLeaderCalls.Store(false)
		<-waiter.held
		close(waiter.release)
		if err := <-waiter.done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestLockHoldersNeverOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		a, _ := c.addHost(t, Config{})
		b, _ := c.addHost(t, Config{})
		var holders, turns atomic.Int64
		var wg sync.WaitGroup
		for i := range 24 {
			svc := a.svc
			if i%2 == 1 {
				svc = b.svc
			}
			wg.Go(func() {
				for range 3 {
					ct := contend(t, svc, "/locks/many")
					<-ct.held
					if n := holders.Add(1); n != 1 {
						t.Errorf("%d holders at once", n)
					}
					turns.Add(1)
					time.Sleep(10 * time.Millisecond)
					holders.Add(-1)
					close(ct.release)
					if err := <-ct.done; err != nil {
						t.Errorf("release: %v", err)
					}
				}
			})
		}
		wg.Wait()
		if turns.Load() != 72 {
			t.Fatalf("%d turns", turns.Load())
		}
		synctest.Wait()
		if _, names, _, _ := c.store.Children("/locks/many"); len(names) != 0 {
			t.Fatalf("lock nodes left: %v", names)
		}
	})
}

func TestSessionLeaseRevokedAtSessionEnd(t *testing.T) {
	// covered over TCP by TestEphemeralVanishOnDisconnect; here the lost case: a session
	// whose lease cannot be renewed loses its locks with connection_loss
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, Config{})
		a, _ := c.addHost(t, Config{})
		l, err := a.svc.grantOwned(context.Background(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		a.partitioned.Store(true)
		<-l.lost // keepalives fail until the local deadline
		lostAt := time.Now()
		a.partitioned.Store(false)
		if _, ok := c.store.Lease(l.id); ok {
			// the leader (a itself) expires it a margin later, unless the best-effort
			// revoke got there first
			eventually(t, 2*ttl, func() error {
				if _, ok := c.store.Lease(l.id); ok {
					return fmt.Errorf("lease %d still granted at %v (lost at %v)", l.id, time.Now(), lostAt)
				}
				return nil
			})
		}
	})
}
