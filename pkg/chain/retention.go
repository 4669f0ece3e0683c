package chain

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Retention says which runs the state file keeps. Without it the file grew
// with every run ever made: 110,000 runs after a flood of webhooks.
type Retention struct {
	// MaxAge removes a run that ended longer ago than this (0: no age limit).
	MaxAge time.Duration
	// MaxRuns removes a run that is not among the newest MaxRuns runs (0:
	// no count limit).
	MaxRuns int
	// HandedOver: this state file's runs are continued elsewhere, as those
	// `chain watch` starts are, by a receiver that adopts them by their
	// run id. Such a run has ended here once its pipelines are created.
	HandedOver bool
}

// The default retention of `chain serve` and `chain watch`.
const (
	DefaultRetentionAge  = 90 * 24 * time.Hour
	DefaultRetentionRuns = 10000
)

// pruneEvery is how often Work prunes the runs (and once when it starts).
var pruneEvery = time.Hour

// pruneLogged prunes by the engine's retention and logs what it removed; a
// failure is logged, and the next pass tries again.
func (e *Engine) pruneLogged(ctx context.Context) {
	res, err := e.Prune(ctx, e.retention)
	if err != nil {
		e.log.Error("old runs not pruned, will try again", "err", err)
		return
	}
	if res.Removed > 0 {
		e.log.Info("old runs pruned", "removed", res.Removed, "examined", res.Examined)
	}
}

// pruneBatch is how many runs one transaction of Prune looks at: a
// transaction holds the state file's only writer lock, and webhooks wait for
// it, so a pass over 100,000 runs is many short transactions.
const pruneBatch = 256

// bucketRetention holds prunedThroughKey: the newest id of a run Prune has
// removed.
var (
	bucketRetention  = []byte("retention")
	prunedThroughKey = []byte("pruned-through")
)

// PruneResult says what one Prune pass did.
type PruneResult struct {
	Examined int // runs decoded
	Removed  int
	Batches  int // write transactions
}

// Prune removes the runs that have ended and either ended more than
// MaxAge ago or are beyond the newest MaxRuns runs, with their entries in
// the indexes. A run that has not ended (a project queued, triggered or
// running, or a pipeline still to create) is never removed. A failed run
// whose other projects are all done has ended when its last project
// changed; until it is removed, a later success of its failed project
// resumes it.
//
// It works through the oldest runs in batches of pruneBatch, each in a
// transaction of its own, and stops early (without error) when ctx ends.
func (e *Engine) Prune(ctx context.Context, keep Retention) (PruneResult, error) {
	var res PruneResult
	if keep.MaxAge <= 0 && keep.MaxRuns <= 0 {
		return res, nil
	}
	now := e.now().UTC()
	// Only runs that started before the age cut-off can have ended before
	// it, and run ids begin with their start time; and only the runs beyond
	// the newest MaxRuns count for the count limit. So a pass looks at the
	// oldest runs, up to whichever bound is further.
	var ageBound []byte
	if keep.MaxAge > 0 {
		ageBound = []byte(now.Add(-keep.MaxAge).Format("20060102-150405"))
	}
	beyondCount := 0
	err := e.db.View(func(tx *bolt.Tx) error {
		if keep.MaxRuns > 0 {
			beyondCount = max(0, tx.Bucket(bucketRuns).Stats().KeyN-keep.MaxRuns)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("state: pruning runs: %w", err)
	}
	var after []byte // the last run looked at
	position := 0    // of the next run, from the oldest
	for done := false; !done && ctx.Err() == nil; {
		err := e.db.Update(func(tx *bolt.Tx) error {
			res.Batches++
			c := tx.Bucket(bucketRuns).Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var remove []*Run
			for n := 0; ; n, position = n+1, position+1 {
				if k == nil || (position >= beyondCount && (ageBound == nil || bytes.Compare(k, ageBound) >= 0)) {
					done = true
					break
				}
				if n == pruneBatch {
					break
				}
				var run Run
				res.Examined++
				if err := json.Unmarshal(v, &run); err != nil {
					return fmt.Errorf("state: run %s: %w", k, err)
				}
				after = bytes.Clone(k)
				ended, at, err := runEnded(tx, &run, keep.HandedOver)
				if err != nil {
					return err
				}
				if ended && (position < beyondCount || (keep.MaxAge > 0 && now.Sub(at) > keep.MaxAge)) {
					remove = append(remove, &run)
				}
				k, v = c.Next()
			}
			for _, run := range remove {
				if err := deleteRun(tx, run); err != nil {
					return err
				}
			}
			res.Removed += len(remove)
			if len(remove) > 0 {
				return notePruned(tx, remove[len(remove)-1].ID)
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("state: pruning runs: %w", err)
		}
	}
	return res, nil
}

// runEnded says whether nothing of run is under way any more, and when it
// ended: when it succeeded, or the last change of one of its projects. A
// run handed over to another state file has ended once no pipeline of it
// is still to be created.
func runEnded(tx *bolt.Tx, run *Run, handedOver bool) (bool, time.Time, error) {
	if run.Status == RunRunning && !handedOver {
		return false, time.Time{}, nil
	}
	var last time.Time
	for _, s := range run.Steps {
		switch s.State {
		case StepQueued:
			return false, time.Time{}, nil
		case StepTriggered, StepRunning:
			if !handedOver {
				return false, time.Time{}, nil
			}
		}
		if s.Updated.After(last) {
			last = s.Updated
		}
	}
	prefix := []byte(run.ID + "\x00")
	if k, _ := tx.Bucket(bucketIntents).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
		return false, time.Time{}, nil // a pipeline is still to be created
	}
	if run.Status == RunSucceeded && run.Finished != nil {
		last = *run.Finished
	}
	return true, last, nil
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

// prunedRun reports whether an update belongs to a run that Prune removed:
// a pipeline indexed under a run that is gone, or a run id that is not in
// the state file and no newer than the newest removed run. Such an update
// must not start a run of its own: a success of a pipeline the engine
// created never starts a new run, and a run id carried by a pipeline is
// adopted only when no run had it.
func prunedRun(tx *bolt.Tx, u PipelineUpdate) bool {
	runs := tx.Bucket(bucketRuns)
	if id := tx.Bucket(bucketPipelines).Get(u64key(u.PipelineID)); id != nil {
		return runs.Get(id) == nil
	}
	if !ValidRunID(u.RunID) {
		return false
	}
	b := tx.Bucket(bucketRetention)
	if b == nil {
		return false
	}
	through := b.Get(prunedThroughKey)
	if through == nil || u.RunID > string(through) {
		return false
	}
	return runs.Get([]byte(u.RunID)) == nil
}
