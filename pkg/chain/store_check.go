package chain

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StateCorruptError: the state file is not a sound opsctl chain state: not
// a bbolt file, damaged pages, or a record of the wrong shape. opsctl
// never writes to such a file.
type StateCorruptError struct {
	Path    string
	Problem string // what is wrong, in one line
}

func (e *StateCorruptError) Error() string {
	return fmt.Sprintf("state file %s is corrupt (%s)", e.Path, e.Problem)
}

// ErrStateNotRegular: the state path is a symbolic link, a folder, a FIFO
// or a device. opsctl opens only a regular file as its state, so that a
// link planted where the state goes does not make root write elsewhere.
var ErrStateNotRegular = errors.New("not a regular file")

// errEmptyState: an empty file opened read-only, which bbolt cannot read.
var errEmptyState = errors.New("empty (0 bytes)")

// stateBuckets are the buckets of a state file, each with the check of its
// records: what a record must look like for the engine to use it without
// failing on it later.
var stateBuckets = []struct {
	name  []byte
	check func(key, value []byte) error
}{
	{bucketRuns, func(k, v []byte) error { _, err := decodeRun(k, v); return err }},
	{bucketActive, func(k, v []byte) error { return wantEmpty(v) }},
	{bucketPipelines, func(k, v []byte) error {
		if len(k) != 8 || len(v) == 0 {
			return fmt.Errorf("expected an 8-byte pipeline id and a run id, got %d and %d bytes", len(k), len(v))
		}
		return nil
	}},
	{bucketIntents, func(k, v []byte) error {
		var in intent
		if err := decodeObject(v, &in); err != nil {
			return err
		}
		if in.Project == "" || !bytes.Equal(k, intentKey(in.RunID, in.Project)) {
			return fmt.Errorf("intent of run %q, project %q, under another key", in.RunID, in.Project)
		}
		return nil
	}},
	{bucketEvents, func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("expected an 8-byte sequence number, got %d bytes", len(k))
		}
		var ev eventRecord
		return decodeObject(v, &ev)
	}},
	{bucketStopped, func(k, v []byte) error {
		if bytes.IndexByte(k, 0) <= 0 {
			return errors.New("expected a project and a run id")
		}
		return nil
	}},
	{bucketDigests, func(k, v []byte) error {
		if len(v) == 0 {
			return errors.New("empty digest")
		}
		return nil
	}},
}

// openStateFile is bbolt's OpenFile: it never follows a symbolic link to
// a file it writes, never blocks on a FIFO, and opens regular files only.
func openStateFile(name string, flag int, mode os.FileMode) (*os.File, error) {
	extra := syscall.O_NONBLOCK | syscall.O_CLOEXEC
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		extra |= syscall.O_NOFOLLOW
	}
	f, err := os.OpenFile(name, flag|extra, mode)
	switch {
	case errors.Is(err, syscall.ELOOP):
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("a symbolic link: %w", ErrStateNotRegular)}
	case errors.Is(err, syscall.EISDIR):
		return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("a folder: %w", ErrStateNotRegular)}
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case !fi.Mode().IsRegular():
		err = &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("a %s: %w", fileKind(fi.Mode()), ErrStateNotRegular)}
	case fi.Size() == 0 && flag&(os.O_WRONLY|os.O_RDWR) == 0:
		err = errEmptyState
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// errStateLocked: the lock stayed held by another process until the
// time-out.
var errStateLocked = errors.New("locked")

// lockAndCheckPages takes the file's lock as bbolt does (exclusive to
// write, shared to read; bbolt's own flock on the same descriptor then
// succeeds at once), so that no writer changes the file while checkPages
// reads it, then checks its pages (a new, empty file has none).
func lockAndCheckPages(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return &os.PathError{Op: "flock", Path: f.Name(), Err: err}
		}
		if time.Now().After(deadline) {
			return errStateLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	if err := checkPages(f, fi.Size()); err != nil {
		var pathErr *os.PathError
		if errors.As(err, &pathErr) {
			return err // reading failed: not a verdict on the content
		}
		return &StateCorruptError{Path: f.Name(), Problem: oneLine(err.Error())}
	}
	return nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "folder"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	case m&os.ModeSymlink != 0:
		return "symbolic link"
	}
	return "special file"
}

// readGuarded runs read, which reads the state file through bbolt's
// memory map, and turns a panic into a *StateCorruptError: bbolt asserts
// on damaged pages with panics ("invalid freelist page", "Page expected
// to be"), indexes past a damaged page's end, and a page past the end of a
// truncated file faults (which SetPanicOnFault makes a panic too, in this
// goroutine).
func readGuarded(path string, read func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &StateCorruptError{Path: path, Problem: panicProblem(r)}
		}
	}()
	return read()
}

func panicProblem(r any) string {
	if _, fault := r.(interface{ Addr() uintptr }); fault {
		return "reading it faulted: a page lies outside the file (truncated?)"
	}
	return oneLine(fmt.Sprint(r))
}

// oneLine keeps a problem to one line of reasonable length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// checkState reads the whole file once before it is used: every page of
// every bucket, every record decoded as the engine will decode it, then
// bbolt's own consistency check (freelist, pages reachable once). Run
// under readGuarded, so that the pages have been read in a goroutine whose
// faults are caught before Tx.Check reads them in its own.
func checkState(path string, db *bolt.DB, file *os.File) error {
	fi, err := file.Stat()
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	return db.View(func(tx *bolt.Tx) error {
		corrupt := func(format string, args ...any) error {
			return &StateCorruptError{Path: path, Problem: oneLine(fmt.Sprintf(format, args...))}
		}
		if tx.Size() > fi.Size() {
			return corrupt("truncated: its pages end at byte %d, the file at byte %d", tx.Size(), fi.Size())
		}
		var names, ours []string
		c := tx.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			b := tx.Bucket(k)
			if b == nil {
				return corrupt("top-level key %q is not a bucket", k)
			}
			names = append(names, string(k))
			var check func(k, v []byte) error
			for _, sb := range stateBuckets {
				if bytes.Equal(sb.name, k) {
					check = sb.check
					ours = append(ours, string(k))
				}
			}
			if err := checkBucket(b, string(k), check); err != nil {
				return corrupt("%v", err)
			}
		}
		if len(names) > 0 && len(ours) == 0 {
			// A new state file has either no bucket yet or ours.
			return corrupt("not an opsctl chain state file: its buckets are %s", strings.Join(names, ", "))
		}
		var problems []error
		for err := range tx.Check() {
			problems = append(problems, err)
		}
		if len(problems) > 0 {
			return corrupt("%v (and %d more problems)", problems[0], len(problems)-1)
		}
		return nil
	})
}

// checkBucket reads every record of b (and of the buckets in it) and checks
// each one with check; a bucket not of opsctl (check nil) is only read.
func checkBucket(b *bolt.Bucket, name string, check func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if inner := b.Bucket(k); inner != nil {
			if check != nil {
				return fmt.Errorf("bucket %s: key %q is a bucket, expected a record", name, k)
			}
			if err := checkBucket(inner, name+"/"+string(k), nil); err != nil {
				return err
			}
			continue
		}
		if check == nil {
			continue
		}
		if err := check(k, v); err != nil {
			return fmt.Errorf("bucket %s, record %q: %v", name, k, err)
		}
	}
	return nil
}

// decodeObject decodes a JSON object into v: JSON null or another type
// is a record of the wrong shape, not an empty one.
func decodeObject(data []byte, v any) error {
	if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || trimmed[0] != '{' {
		return errors.New("expected a JSON object")
	}
	return json.Unmarshal(data, v)
}

func wantEmpty(v []byte) error {
	if len(v) != 0 {
		return fmt.Errorf("expected an empty value, got %d bytes", len(v))
	}
	return nil
}

var stepStates = []StepState{StepWaiting, StepQueued, StepTriggered, StepRunning, StepSucceeded, StepFailed, StepCanceled}

// decodeRun decodes the run stored under key and checks what the engine
// relies on: a step for every project of the plan and none for another,
// upstreams within the plan, known states. A run that breaks these is
// corrupt, reported here rather than as a nil dereference in the poll.
func decodeRun(key, value []byte) (*Run, error) {
	var r Run
	if err := decodeObject(value, &r); err != nil {
		return nil, err
	}
	if r.ID != string(key) {
		return nil, fmt.Errorf("the run %q under another key", r.ID)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// check says whether a decoded run has what the code that reads runs
// relies on (see decodeRun); a receiver's answer is checked the same way.
func (r *Run) check() error {
	switch r.Status {
	case RunRunning, RunSucceeded, RunFailed:
	default:
		return fmt.Errorf("unknown run status %q", r.Status)
	}
	planned := map[string]bool{}
	for _, wave := range r.Waves {
		for _, p := range wave {
			if p == "" || planned[p] {
				return fmt.Errorf("project %q empty or twice in the plan", p)
			}
			planned[p] = true
		}
	}
	if len(planned) == 0 {
		return errors.New("a plan without projects")
	}
	for p, s := range r.Steps {
		switch {
		case !planned[p]:
			return fmt.Errorf("a step of %s, which is not in the plan", p)
		case s == nil:
			return fmt.Errorf("the step of %s is null", p)
		case !slices.Contains(stepStates, s.State):
			return fmt.Errorf("unknown state %q of %s", s.State, p)
		}
	}
	for p := range planned {
		if r.Steps[p] == nil {
			return fmt.Errorf("no step for %s of the plan", p)
		}
		for _, up := range r.Upstreams[p] {
			if !planned[up] {
				return fmt.Errorf("upstream %s of %s is not in the plan", up, p)
			}
		}
	}
	return nil
}
