package imapauth

import (
	"context"
	"slices"
	"sync"
	"time"
)

// warmPool holds connections that are ready for LOGIN. A check takes one
// (or waits for one being made), and the checker starts a replacement at
// once, so a steady stream of checks never waits for TCP, TLS and the
// greeting. A connection unused for maxIdle is logged out: an idle daemon
// holds no connection open for long.
type warmPool struct {
	size    int
	maxIdle time.Duration

	mu      sync.Mutex
	ready   []*session
	warming int // warm-ups under way
	// waiters are checks waiting for a warm-up under way; each gets the
	// result of one (nil: it failed) on its own channel.
	waiters []chan *session
	closed  bool
}

func newWarmPool(size int, maxIdle time.Duration) *warmPool {
	return &warmPool{size: size, maxIdle: maxIdle}
}

// take returns a ready connection and true, or nil when none is ready and
// no warm-up under way is free to wait for (or the one waited for failed).
func (p *warmPool) take(ctx context.Context) (*session, bool) {
	if p == nil {
		return nil, false
	}
	p.mu.Lock()
	if len(p.ready) > 0 {
		s := p.ready[len(p.ready)-1]
		p.ready = p.ready[:len(p.ready)-1]
		if time.Since(s.ready) < p.maxIdle {
			p.mu.Unlock()
			return s, true
		}
		p.ready = append(p.ready, s) // expired: left for expired()
	}
	if p.closed || p.warming <= len(p.waiters) {
		p.mu.Unlock()
		return nil, false
	}
	ch := make(chan *session, 1)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()

	select {
	case s := <-ch:
		return s, s != nil
	case <-ctx.Done():
		p.mu.Lock()
		p.waiters = slices.DeleteFunc(p.waiters, func(w chan *session) bool { return w == ch })
		p.mu.Unlock()
		select {
		case s := <-ch: // arrived while we gave up: keep it for the next check
			if s != nil && p.put(s) != nil {
				return s, true // the caller's LOGIN fails on its context and retires it
			}
		default:
		}
		return nil, false
	}
}

// reserve reports whether one more warm-up should start, and counts it.
func (p *warmPool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.ready)+p.warming >= p.size {
		return false
	}
	p.warming++
	return true
}

// arrive ends a warm-up with its result (nil: failed): a waiting check gets
// it, or the pool keeps it. It returns a session nobody can use, for the
// caller to retire.
func (p *warmPool) arrive(s *session) *session {
	p.mu.Lock()
	p.warming--
	if len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		ch <- s // buffered: never blocks
		return nil
	}
	p.mu.Unlock()
	if s == nil {
		return nil
	}
	return p.put(s)
}

// put keeps s ready; it returns s when the pool is full or closed.
func (p *warmPool) put(s *session) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.ready) >= p.size {
		return s
	}
	p.ready = append(p.ready, s)
	return nil
}

// remove takes s out of the pool and reports whether it was there.
func (p *warmPool) remove(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.ready, s)
	if i < 0 {
		return false
	}
	p.ready = slices.Delete(p.ready, i, i+1)
	return true
}

// expired removes and returns the ready connections older than maxIdle.
func (p *warmPool) expired() []*session {
	p.mu.Lock()
	defer p.mu.Unlock()
	var old []*session
	p.ready = slices.DeleteFunc(p.ready, func(s *session) bool {
		if time.Since(s.ready) >= p.maxIdle {
			old = append(old, s)
			return true
		}
		return false
	})
	return old
}

// close stops warm-ups from being kept and returns the ready connections.
func (p *warmPool) close() []*session {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	ready := p.ready
	p.ready = nil
	for _, ch := range p.waiters {
		ch <- nil
	}
	p.waiters = nil
	return ready
}
