package chain

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// The runs of the state file and their indexes: every read and write of
// the buckets runs, active, stopped, pipelines and retention is here, so
// that the engine, which decides, never touches a bucket itself.

func loadRun(tx *bolt.Tx, id string) (*Run, error) {
	b := tx.Bucket(bucketRuns)
	if b == nil {
		return nil, errNotState
	}
	data := b.Get([]byte(id))
	if data == nil {
		return nil, nil
	}
	run, err := decodeRun([]byte(id), data)
	if err != nil {
		return nil, &StateCorruptError{Path: tx.DB().Path(), Problem: fmt.Sprintf("bucket runs, record %q: %v", id, err)}
	}
	return run, nil
}

// runExists reports whether a run of that id is stored.
func runExists(tx *bolt.Tx, id string) bool {
	return tx.Bucket(bucketRuns).Get([]byte(id)) != nil
}

// countRuns is the number of runs stored.
func countRuns(tx *bolt.Tx) int { return tx.Bucket(bucketRuns).Stats().KeyN }

func stoppedKey(project, runID string) []byte { return []byte(project + "\x00" + runID) }

// saveRun stores r and keeps its indexes in step: the runs not yet
// succeeded (active) and the stopped steps.
func saveRun(tx *bolt.Tx, r *Run) error {
	if err := putJSON(tx.Bucket(bucketRuns), []byte(r.ID), r); err != nil {
		return err
	}
	// Keep the index in step with the run, writing only what changed: a
	// run of a thousand projects must not rewrite a thousand keys per event.
	stopped := tx.Bucket(bucketStopped)
	for project, s := range r.Steps {
		key := stoppedKey(project, r.ID)
		isStopped, indexed := s.State == StepFailed || s.State == StepCanceled, stopped.Get(key) != nil
		var err error
		switch {
		case isStopped && !indexed:
			// Not an empty value: bbolt's Get answers nil for one within
			// the transaction that put it.
			err = stopped.Put(key, []byte{1})
		case !isStopped && indexed:
			err = stopped.Delete(key)
		}
		if err != nil {
			return err
		}
	}
	if r.Status == RunSucceeded {
		return tx.Bucket(bucketActive).Delete([]byte(r.ID))
	}
	return tx.Bucket(bucketActive).Put([]byte(r.ID), nil)
}

// deleteRun removes a run and its entries in the indexes: the runs not yet
// succeeded, the stopped steps, and the pipelines of its steps.
func deleteRun(tx *bolt.Tx, run *Run) error {
	id := []byte(run.ID)
	pipelines, stopped := tx.Bucket(bucketPipelines), tx.Bucket(bucketStopped)
	for project, s := range run.Steps {
		if err := stopped.Delete(stoppedKey(project, run.ID)); err != nil {
			return err
		}
		if s.PipelineID == 0 {
			continue
		}
		// A pipeline of an earlier failure of the step, replaced by a new
		// one, keeps its entry: a late event of it finds the run gone and
		// is ignored (see prunedRun).
		if key := u64key(s.PipelineID); bytes.Equal(pipelines.Get(key), id) {
			if err := pipelines.Delete(key); err != nil {
				return err
			}
		}
	}
	if err := tx.Bucket(bucketActive).Delete(id); err != nil {
		return err
	}
	return tx.Bucket(bucketRuns).Delete(id)
}

// walkRuns calls fn with the stored runs (key and JSON) in the order of
// their ids, oldest first, from the first id after after (from the oldest
// when after is nil), until fn says no more.
func walkRuns(tx *bolt.Tx, after []byte, fn func(key, value []byte) (more bool, err error)) error {
	c := tx.Bucket(bucketRuns).Cursor()
	k, v := c.First()
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		if more, err := fn(k, v); err != nil || !more {
			return err
		}
	}
	return nil
}

// walkRunsBack calls fn with the stored runs (key and JSON) newest first,
// from the newest whose id sorts before before (from the newest of all
// when before is ""), until fn says no more. A file without runs is not a
// state file (errNotState).
func walkRunsBack(tx *bolt.Tx, before string, fn func(key, value []byte) (more bool, err error)) error {
	b := tx.Bucket(bucketRuns)
	if b == nil {
		return errNotState
	}
	c := b.Cursor()
	var k, v []byte
	if before == "" {
		k, v = c.Last()
	} else if k, _ = c.Seek([]byte(before)); k == nil {
		// Every id sorts before the cursor.
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for ; k != nil; k, v = c.Prev() {
		if more, err := fn(k, v); err != nil || !more {
			return err
		}
	}
	return nil
}

// walkActiveRuns calls fn with each run that has not succeeded, oldest
// first or newestFirst, until fn says no more. A file opened read-only
// that has no runs yet has none.
func walkActiveRuns(tx *bolt.Tx, newestFirst bool, fn func(*Run) (more bool)) error {
	active := tx.Bucket(bucketActive)
	if active == nil {
		return nil
	}
	c := active.Cursor()
	first, next := c.First, c.Next
	if newestFirst {
		first, next = c.Last, c.Prev
	}
	for k, _ := first(); k != nil; k, _ = next() {
		run, err := loadRun(tx, string(k))
		if err != nil {
			return err
		}
		if run != nil && !fn(run) {
			return nil
		}
	}
	return nil
}

// indexPipeline records that pipelineID belongs to run runID.
func indexPipeline(tx *bolt.Tx, pipelineID int64, runID string) error {
	return tx.Bucket(bucketPipelines).Put(u64key(pipelineID), []byte(runID))
}

// runOfPipeline is the id of the run pipelineID belongs to, if the engine
// created or saw it.
func runOfPipeline(tx *bolt.Tx, pipelineID int64) (runID string, found bool) {
	id := tx.Bucket(bucketPipelines).Get(u64key(pipelineID))
	return string(id), id != nil
}

// newestStoppedRun is the newest unfinished run in which project failed or
// was canceled, or "".
func newestStoppedRun(tx *bolt.Tx, project string) string {
	prefix := []byte(project + "\x00")
	var newest string
	c := tx.Bucket(bucketStopped).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		newest = string(k[len(prefix):])
	}
	return newest
}

// supersedeStops removes every run's stop at project: called when the
// project succeeds in a run, which builds its downstream now, so that its
// next success does not resume an older failed run on that run's old plan.
func supersedeStops(tx *bolt.Tx, project string) error {
	stopped := tx.Bucket(bucketStopped)
	prefix := []byte(project + "\x00")
	var keys [][]byte
	c := stopped.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := stopped.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// notePruned records id as removed when it is the newest removed so far.
func notePruned(tx *bolt.Tx, id string) error {
	b, err := tx.CreateBucketIfNotExists(bucketRetention)
	if err != nil {
		return err
	}
	if prev := b.Get(prunedThroughKey); prev == nil || string(prev) < id {
		return b.Put(prunedThroughKey, []byte(id))
	}
	return nil
}

// prunedThrough is the newest id of a run retention removed, or "".
func prunedThrough(tx *bolt.Tx) string {
	b := tx.Bucket(bucketRetention)
	if b == nil {
		return ""
	}
	return string(b.Get(prunedThroughKey))
}
