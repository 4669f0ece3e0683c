package chain

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// The receiver is healthy when it can store events: /hook answers 503 when
// a pipeline event cannot be committed (a full disk, a read-only
// file system), and /healthz must say so too. Reading the state file is no
// test of that: it succeeded on a full disk while every webhook failed.
// Nor is a small write alone: on a full tmpfs it still succeeded, in pages
// bbolt had freed earlier, while the events, which need new pages, failed.
// So a probe looks at the free space of the file system, then writes.

// minFreeBytes is the free space below which the state file is taken to be
// unable to store events. An event needs a few pages of 4 KiB; a megabyte
// warns a little before the first webhook fails.
const minFreeBytes = 1 << 20

// healthProbeEvery bounds the probe writes of /healthz, which anyone who
// reaches the receiver may ask for: one commit (and fsync) a second at most.
const healthProbeEvery = time.Second

// storeHealth is the last known answer to "can the state file take a
// write": from a probe, or from a write of the engine that failed.
type storeHealth struct {
	mu      sync.Mutex
	checked time.Time
	err     error
	// every is the interval between probes; 0 in tests, which probe each
	// time.
	every time.Duration
}

// Writable reports whether the state file takes writes now: nil, or the
// error of the last write that failed. It commits a small probe record at
// most once per healthProbeEvery; in between it answers what the last
// probe or the last failed write of the engine found.
func (e *Engine) Writable() error {
	h := &e.health
	h.mu.Lock()
	defer h.mu.Unlock()
	now := e.now()
	if !h.checked.IsZero() && now.Sub(h.checked) < h.every && now.Sub(h.checked) >= 0 {
		return h.err
	}
	err := e.freeSpace()
	if err == nil {
		err = e.db.Update(func(tx *bolt.Tx) error { return writeHealthProbe(tx, now) })
	}
	if err != nil {
		err = fmt.Errorf("state file cannot store events: %w", err)
	}
	h.checked, h.err = now, err
	return err
}

// freeSpace fails when the file system of the state file has less than
// minFreeBytes free for this process (root may use the blocks reserved for
// it, other users may not).
func (e *Engine) freeSpace() error {
	dir := filepath.Dir(e.db.Path())
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	blocks := fs.Bavail
	if os.Geteuid() == 0 {
		blocks = fs.Bfree
	}
	if free := blocks * uint64(fs.Bsize); free < minFreeBytes {
		return fmt.Errorf("%d KiB free on the file system of %s, below 1 MiB", free>>10, dir)
	}
	return nil
}

// noteWriteFailed records that a write of the engine failed, so that
// /healthz reports it at once rather than after its next probe.
func (e *Engine) noteWriteFailed(err error) {
	h := &e.health
	h.mu.Lock()
	h.checked, h.err = e.now(), fmt.Errorf("state file cannot store events: %w", err)
	h.mu.Unlock()
}
