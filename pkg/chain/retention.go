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

// pruneEvery is how often a Server prunes the runs (and once when it
// starts).
var pruneEvery = time.Hour

// pruneLogged prunes by keep and logs what it removed; a failure is
// logged, and the next pass tries again.
func (e *Engine) pruneLogged(ctx context.Context, keep Retention) {
	res, err := e.Prune(ctx, keep)
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
	if keep.MaxAge <= 0 && keep.MaxRuns <= 0 {
		return PruneResult{}, nil
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
			beyondCount = max(0, countRuns(tx)-keep.MaxRuns)
		}
		return nil
	})
	if err != nil {
		return PruneResult{}, fmt.Errorf("state: pruning runs: %w", err)
	}
	pass := &prunePass{keep: keep, now: now, ageBound: ageBound, beyondCount: beyondCount}
	for done := false; !done && ctx.Err() == nil; {
		err := e.db.Update(func(tx *bolt.Tx) error {
			var err error
			done, err = pass.batch(tx)
			return err
		})
		if err != nil {
			return pass.res, fmt.Errorf("state: pruning runs: %w", err)
		}
	}
	return pass.res, nil
}

// prunePass is where a Prune stands between its batches.
type prunePass struct {
	keep        Retention
	now         time.Time
	ageBound    []byte // no run from this id on ended before MaxAge
	beyondCount int    // the oldest runs beyond the newest MaxRuns
	after       []byte // the last run looked at
	position    int    // of the next run, from the oldest
	res         PruneResult
}

// batch looks at the next pruneBatch runs at most, in tx, and removes
// those to remove; done when no run further on is to be looked at.
func (p *prunePass) batch(tx *bolt.Tx) (done bool, err error) {
	p.res.Batches++
	var remove []*Run
	n := 0
	done = true // unless the batch is full first
	err = walkRuns(tx, p.after, func(k, v []byte) (bool, error) {
		if p.position >= p.beyondCount && (p.ageBound == nil || bytes.Compare(k, p.ageBound) >= 0) {
			return false, nil
		}
		if n == pruneBatch {
			done = false
			return false, nil
		}
		var run Run
		p.res.Examined++
		if err := json.Unmarshal(v, &run); err != nil {
			return false, fmt.Errorf("state: run %s: %w", k, err)
		}
		p.after = bytes.Clone(k)
		ended, at, err := runEnded(tx, &run, p.keep.HandedOver)
		if err != nil {
			return false, err
		}
		if ended && (p.position < p.beyondCount || (p.keep.MaxAge > 0 && p.now.Sub(at) > p.keep.MaxAge)) {
			remove = append(remove, &run)
		}
		n, p.position = n+1, p.position+1
		return true, nil
	})
	if err != nil {
		return false, err
	}
	for _, run := range remove {
		if err := deleteRun(tx, run); err != nil {
			return false, err
		}
	}
	p.res.Removed += len(remove)
	if len(remove) > 0 {
		return done, notePruned(tx, remove[len(remove)-1].ID)
	}
	return done, nil
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
	if runHasIntents(tx, run.ID) {
		return false, time.Time{}, nil // a pipeline is still to be created
	}
	if run.Status == RunSucceeded && run.Finished != nil {
		last = *run.Finished
	}
	return true, last, nil
}

// prunedRun reports whether an update belongs to a run that Prune removed:
// a pipeline indexed under a run that is gone, or a run id that is not in
// the state file and no newer than the newest removed run. Such an update
// must not start a run of its own: a success of a pipeline the engine
// created never starts a new run, and a run id carried by a pipeline is
// adopted only when no run had it.
func prunedRun(tx *bolt.Tx, u PipelineUpdate) bool {
	if id, found := runOfPipeline(tx, u.PipelineID); found {
		return !runExists(tx, id)
	}
	if !ValidRunID(u.RunID) {
		return false
	}
	through := prunedThrough(tx)
	if through == "" || u.RunID > through {
		return false
	}
	return !runExists(tx, u.RunID)
}
