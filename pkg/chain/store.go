package chain

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The buckets of the engine's state file. Only the store files read and
// write them: this one opens the file and keeps the events, the digests and
// the health probe; store_runs.go the runs and their indexes;
// store_intents.go the pipelines to create. The engine decides and never
// touches a bucket itself.
var (
	bucketRuns      = []byte("runs")      // run id -> Run (JSON)
	bucketActive    = []byte("active")    // run id -> "" for runs not yet succeeded
	bucketPipelines = []byte("pipelines") // pipeline id (uint64 BE) -> run id
	bucketIntents   = []byte("intents")   // run id NUL project -> intent (JSON)
	bucketEvents    = []byte("events")    // sequence (uint64 BE) -> received event (JSON)
	// project NUL run id -> "" for each failed or canceled step of an
	// unfinished run: where a later success of the project resumes.
	bucketStopped = []byte("stopped")
	// normalised external image reference -> its last seen manifest digest
	bucketDigests = []byte("digests")
	// prunedThroughKey -> the newest id of a run retention removed
	bucketRetention  = []byte("retention")
	prunedThroughKey = []byte("pruned-through")
	// healthKey -> the time of the last probe write (see Engine.Writable)
	bucketHealth = []byte("health")
	healthKey    = []byte("probe")
)

// eventsKept bounds the log of received pipeline events.
const eventsKept = 10000

type eventRecord struct {
	Received   time.Time `json:"received"`
	Project    string    `json:"project"`
	PipelineID int64     `json:"pipeline_id"`
	Ref        string    `json:"ref"`
	Status     string    `json:"status"`
	Result     string    `json:"result"`
	RunID      string    `json:"run_id,omitempty"`
}

// openState opens the state file, read-only or for writing, after
// checking it (see checkState): a damaged file is a *StateCorruptError and
// is left exactly as it was. A new file (absent or empty) is created with
// the buckets when writable.
func openState(path string, readOnly bool) (*bolt.DB, error) {
	var file *os.File
	timeout := 5 * time.Second
	if readOnly {
		timeout = time.Second
	}
	opts := &bolt.Options{
		Timeout:  timeout,
		ReadOnly: readOnly,
		// Open writes to an existing file in one case: to add the freelist
		// to a file written without one. Nothing may be written before the
		// check, so the freelist is synced from the first commit after it.
		NoFreelistSync: true,
		// Read the freelist in Open, under the guard of readGuarded, rather
		// than in the goroutine of Tx.Check, where a damaged freelist page
		// would panic out of reach.
		PreLoadFreelist: true,
		// The file is locked and its pages checked before bbolt reads
		// any of it (see checkPages).
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			f, err := openStateFile(name, flag, mode)
			if err != nil {
				return nil, err
			}
			if err := lockAndCheckPages(f, !readOnly, timeout); err != nil {
				f.Close()
				return nil, err
			}
			file = f
			return f, nil
		},
	}
	var db *bolt.DB
	err := readGuarded(path, func() error {
		var err error
		if db, err = bolt.Open(path, 0o600, opts); err != nil {
			return openError(path, err, readOnly)
		}
		return checkState(path, db, file)
	})
	if err != nil {
		if db != nil {
			db.Close()
		} else if file != nil {
			// Open panicked before it could close the file. Its memory
			// map stays (bbolt holds the only reference to it) and keeps
			// the file's lock alive after close, so unlock it first.
			syscall.Flock(int(file.Fd()), syscall.LOCK_UN)
			file.Close()
		}
		return nil, err
	}
	if readOnly {
		return db, nil
	}
	db.NoFreelistSync = false
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range stateBuckets {
			if _, err := tx.CreateBucketIfNotExists(b.name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return db, nil
}

// openError says why bbolt could not open the file: the lock is held
// elsewhere (temporary), the file could not be opened or read (its path),
// or its content is not a sound bbolt file (corrupt).
func openError(path string, err error, readOnly bool) error {
	var pathErr *os.PathError
	var errno syscall.Errno
	var corrupt *StateCorruptError
	switch {
	case errors.As(err, &corrupt):
		return corrupt
	case errors.Is(err, bolterrors.ErrTimeout), errors.Is(err, errStateLocked):
		msg := "locked by another opsctl process"
		if readOnly {
			msg = "in use by a running opsctl; ask it with --server"
		}
		return &StateLockedError{Path: path, Msg: msg}
	case errors.Is(err, errEmptyState):
		// bbolt would write the meta pages of an empty file, which a
		// read-only open cannot: there is nothing to read in it.
		return &StateCorruptError{Path: path, Problem: errEmptyState.Error()}
	case errors.Is(err, ErrStateNotRegular) && errors.As(err, &pathErr):
		return fmt.Errorf("state file %s: %w", path, pathErr.Err)
	case errors.As(err, &pathErr), errors.As(err, &errno):
		return fmt.Errorf("state file %s: %w", path, err)
	case errors.Is(err, bolterrors.ErrInvalid):
		return &StateCorruptError{Path: path, Problem: "not a bbolt database, or both of its meta pages are damaged"}
	}
	return &StateCorruptError{Path: path, Problem: err.Error()}
}

// StateLockedError: another process holds the state file. It is
// temporary: the same command succeeds once that process is done.
type StateLockedError struct{ Path, Msg string }

func (e *StateLockedError) Error() string   { return fmt.Sprintf("state file %s: %s", e.Path, e.Msg) }
func (e *StateLockedError) Temporary() bool { return true }

func u64key(n int64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, uint64(n))
	return k
}

func getJSON(b *bolt.Bucket, key []byte, v any) (bool, error) {
	data := b.Get(key)
	if data == nil {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("state: record %q: %w", key, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, data)
}

// errNotState: the file is a bbolt file, but not an opsctl chain state.
var errNotState = errors.New("not an opsctl chain state file")

func appendEvent(tx *bolt.Tx, rec eventRecord) error {
	b := tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	if seq > eventsKept {
		if err := b.Delete(u64key(int64(seq - eventsKept))); err != nil {
			return err
		}
	}
	return putJSON(b, u64key(int64(seq)), rec)
}

// loadDigest is the digest last seen of an external image, or "".
func loadDigest(tx *bolt.Tx, image string) string {
	b := tx.Bucket(bucketDigests)
	if b == nil {
		return "" // a file opened read-only that has seen no image yet
	}
	return string(b.Get([]byte(image)))
}

// saveDigest records the digest an external image has now.
func saveDigest(tx *bolt.Tx, image, digest string) error {
	return tx.Bucket(bucketDigests).Put([]byte(image), []byte(digest))
}

// writeHealthProbe writes the small record of a health probe (see
// Engine.Writable).
func writeHealthProbe(tx *bolt.Tx, now time.Time) error {
	b, err := tx.CreateBucketIfNotExists(bucketHealth)
	if err != nil {
		return err
	}
	return b.Put(healthKey, []byte(now.UTC().Format(time.RFC3339Nano)))
}
