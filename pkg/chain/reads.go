package chain

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Reading runs costs in proportion to them (GET /runs answers up to 1,000
// runs and 8 MiB; one run of 10,000 projects decodes to tens of MB), and
// the read-only endpoints and pages are open to whoever reaches the
// receiver. So at most maxReads requests read runs at once; others wait
// for a turn up to readWait and are then answered 503 with Retry-After.
// Webhooks, /healthz and /metrics never wait for them.
const maxReads = 8

// readWait is how long a read waits for a turn (a variable for the test).
var readWait = 10 * time.Second

// errReadBusy is the answer of a read that got no turn.
const errReadBusy = "the receiver is busy answering other reads of its runs; try again in a few seconds"

// readLimiter hands out the turns to read runs. Its zero value is ready.
type readLimiter struct {
	once  sync.Once
	turns chan struct{}
}

// limit runs next when a turn comes; busy answers when none came in time.
func (l *readLimiter) limit(next http.HandlerFunc, busy func(http.ResponseWriter)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		l.once.Do(func() { l.turns = make(chan struct{}, maxReads) })
		if !l.take(r.Context()) {
			w.Header().Set("Retry-After", "5")
			busy(w)
			return
		}
		defer func() { <-l.turns }()
		next(w, r)
	}
}

// jsonBusy is the 503 of the JSON API.
func jsonBusy(w http.ResponseWriter) { httpError(w, http.StatusServiceUnavailable, errReadBusy) }

// pageBusy is the 503 of a page, under the pages' headers.
func pageBusy(w http.ResponseWriter) {
	pageHeaders(w.Header())
	http.Error(w, errReadBusy, http.StatusServiceUnavailable)
}

// take takes a turn: at once when one is free (whatever ctx says), else
// the first that comes within readWait while ctx lasts.
func (l *readLimiter) take(ctx context.Context) bool {
	select {
	case l.turns <- struct{}{}:
		return true
	default:
	}
	wait := time.NewTimer(readWait)
	defer wait.Stop()
	select {
	case l.turns <- struct{}{}:
		return true
	case <-ctx.Done():
	case <-wait.C:
	}
	return false
}
