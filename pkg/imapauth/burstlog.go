package imapauth

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// burstLog logs one kind of event that a client can repeat at will
// (connections from a uid that is not allowed, connections beyond a cap):
// the first at once, with its details, and those that follow within
// interval as one line with their count when the interval ends. A local
// user refused 300,000 times in 12 seconds used to write 300,000 lines
// (40 MB); now that is two lines a minute at most.
type burstLog struct {
	logger   *slog.Logger
	level    slog.Level
	msg      string
	interval time.Duration
	now      func() time.Time

	mu        sync.Mutex
	lastLine  time.Time
	pending   int            // events since lastLine, not logged yet
	byUID     map[uint32]int // their count per uid, for the few first uids
	otherUIDs int            // those of uids beyond maxUIDsNamed
	flush     *time.Timer
	closed    bool
}

// maxUIDsNamed bounds the uids a summary line names (and the map behind
// it): a flood from many uids is still one short line.
const maxUIDsNamed = 8

func newBurstLog(logger *slog.Logger, level slog.Level, msg string, interval time.Duration) *burstLog {
	return &burstLog{logger: logger, level: level, msg: msg, interval: interval, now: time.Now}
}

// note records one event, caused by a client of uid (noUID: unknown);
// attrs are logged only when the event gets a line of its own.
func (l *burstLog) note(uid uint32, attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.closed || (l.pending == 0 && (l.lastLine.IsZero() || now.Sub(l.lastLine) >= l.interval)) {
		l.lastLine = now
		l.logger.Log(context.Background(), l.level, l.msg, attrs...)
		return
	}
	l.pending++
	if _, named := l.byUID[uid]; named || len(l.byUID) < maxUIDsNamed {
		if l.byUID == nil {
			l.byUID = make(map[uint32]int)
		}
		l.byUID[uid]++
	} else {
		l.otherUIDs++
	}
	if l.flush == nil {
		l.flush = time.AfterFunc(l.lastLine.Add(l.interval).Sub(now), l.flushPending)
	}
}

func (l *burstLog) flushPending() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush = nil
	l.writeSummaryLocked()
}

func (l *burstLog) writeSummaryLocked() {
	if l.pending == 0 {
		return
	}
	now := l.now()
	var uids strings.Builder
	for _, uid := range slices.Sorted(maps.Keys(l.byUID)) {
		fmt.Fprintf(&uids, "%d:%d ", uid, l.byUID[uid])
	}
	if l.otherUIDs > 0 {
		fmt.Fprintf(&uids, "others:%d", l.otherUIDs)
	}
	l.logger.Log(context.Background(), l.level, l.msg+" (repeated)", "count", l.pending,
		"since", now.Sub(l.lastLine).Round(time.Second).String(), "uids", strings.TrimSpace(uids.String()))
	l.lastLine = now
	l.pending, l.otherUIDs = 0, 0
	clear(l.byUID)
}

// close writes the count of the events not logged yet; events noted after
// it get a line each (there are none once the daemon stopped accepting).
func (l *burstLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flush != nil {
		l.flush.Stop()
		l.flush = nil
	}
	l.writeSummaryLocked()
	l.closed = true
}
