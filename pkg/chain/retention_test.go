package chain

import (
	"context"
	"net/http"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestPruneKeepsExactlyWhatThePolicySays (issue 19 item 6): runs that
// ended more than MaxAge ago, and ended runs beyond the newest MaxRuns, go,
// with their index entries; runs under way stay, however old; the work is
// done in transactions of at most pruneBatch runs.
func TestPruneKeepsExactlyWhatThePolicySays(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	fx.engine.now = func() time.Time { return now }
	day := 24 * time.Hour
	keep := Retention{MaxAge: 90 * day, MaxRuns: 400}

	var runs []*Run
	pipelineID := int64(1000)
	add := func(n int, startAgo time.Duration, status RunStatus, endedAgo time.Duration, change func(*Run)) {
		for i := range n {
			start := now.Add(-startAgo).Add(time.Duration(i) * time.Second)
			r := storedRun(start, 2, status, now.Add(-endedAgo))
			for _, s := range r.Steps {
				pipelineID++
				s.PipelineID = pipelineID
			}
			if change != nil {
				change(r)
			}
			runs = append(runs, r)
		}
	}
	oneRunning := func(r *Run) { r.Steps["g/p1"].State = StepRunning }
	oneWaiting := func(r *Run) { r.Steps["g/p1"].State = StepWaiting }
	add(700, 200*day, RunSucceeded, 199*day, nil)   // ended long ago: go
	add(5, 150*day, RunRunning, 150*day, nil)       // under way, however old: stay
	add(5, 120*day, RunFailed, 95*day, oneRunning)  // failed, a project still running: stay
	add(5, 121*day, RunFailed, 100*day, oneWaiting) // failed, the rest waiting for it: ended, go
	add(5, 100*day, RunSucceeded, 89*day, nil)      // ended 89 days ago, but beyond the newest 400: go
	add(287, 60*day, RunSucceeded, 59*day, nil)     // within 90 days, among the newest 400: stay
	add(110, 30*day, RunFailed, 29*day, oneWaiting) // among the newest 400, failed: stay
	add(3, 20*day, RunRunning, 20*day, nil)         // under way: stay
	storeRuns(t, fx.engine, runs)
	// An intent left for one old succeeded run: a pipeline still to create.
	withIntent := runs[10]
	fx.engine.db.Update(func(tx *bolt.Tx) error {
		return saveIntent(tx, intent{RunID: withIntent.ID, Project: "g/p0"})
	})

	// What the policy says, computed apart from Prune: rank 0 is the newest.
	sorted := slices.Clone(runs)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].ID > sorted[j].ID })
	var want, gone []string
	for rank, r := range sorted {
		underWay := r.Status == RunRunning || r.ID == withIntent.ID
		for _, s := range r.Steps {
			underWay = underWay || s.State == StepRunning
		}
		var ended time.Time
		for _, s := range r.Steps {
			if s.Updated.After(ended) {
				ended = s.Updated
			}
		}
		if !underWay && (rank >= keep.MaxRuns || now.Sub(ended) > keep.MaxAge) {
			gone = append(gone, r.ID)
		} else {
			want = append(want, r.ID)
		}
	}
	if len(gone) != 700-1+5+5 || len(want) != len(runs)-len(gone) {
		t.Fatalf("the test's own policy: %d to remove, %d to keep", len(gone), len(want))
	}

	res, err := fx.engine.Prune(context.Background(), keep)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	fx.engine.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).ForEach(func(k, _ []byte) error {
			kept = append(kept, string(k))
			return nil
		})
	})
	slices.Sort(kept)
	slices.Sort(want)
	if !slices.Equal(kept, want) {
		t.Errorf("kept %d runs, want %d", len(kept), len(want))
		for _, id := range want {
			if !slices.Contains(kept, id) {
				t.Errorf("run %s was removed", id)
			}
		}
	}
	if res.Removed != len(gone) {
		t.Errorf("Prune says it removed %d runs, want %d", res.Removed, len(gone))
	}
	if res.Batches*pruneBatch < res.Examined || res.Batches > res.Examined/pruneBatch+1 {
		t.Errorf("%d runs examined in %d transactions, want batches of %d", res.Examined, res.Batches, pruneBatch)
	}
	// Only the oldest runs, up to the bounds, were decoded: not the newest
	// 400, all within 90 days.
	if res.Examined > len(runs)-400+100 {
		t.Errorf("%d runs examined of %d", res.Examined, len(runs))
	}

	// No index entry of a removed run is left; those of kept runs are.
	fx.engine.db.View(func(tx *bolt.Tx) error {
		for _, r := range runs {
			removed := slices.Contains(gone, r.ID)
			if (tx.Bucket(bucketActive).Get([]byte(r.ID)) != nil) == removed && r.Status != RunSucceeded {
				t.Errorf("run %s (removed %v): active index wrong", r.ID, removed)
			}
			for p, s := range r.Steps {
				if got := tx.Bucket(bucketPipelines).Get(u64key(s.PipelineID)); (got == nil) != removed {
					t.Errorf("run %s (removed %v): pipeline %d index %q", r.ID, removed, s.PipelineID, got)
				}
				if s.State == StepFailed && (tx.Bucket(bucketStopped).Get(stoppedKey(p, r.ID)) == nil) != removed {
					t.Errorf("run %s (removed %v): stop of %s index wrong", r.ID, removed, p)
				}
			}
		}
		return nil
	})

	// A second pass removes nothing more.
	if res, err := fx.engine.Prune(context.Background(), keep); err != nil || res.Removed != 0 {
		t.Errorf("second pass: %+v, %v", res, err)
	}
}

// TestPrunedRunIsNotStartedAgain: a late success of a pipeline of a
// removed run (GitLab's webhook carries its OPSCTL_CHAIN_RUN) neither
// revives the run nor starts a new one.
func TestPrunedRunIsNotStartedAgain(t *testing.T) {
	fx, ruby := baseSucceeded(t)
	fx.pipeline("ops/ruby", ruby.ID, "failed", hookOpts{runID: ruby.RunID})
	// The failed project is fixed by hand: a new pipeline; then its first
	// pipeline's jobs are retried too.
	fx.pipeline("ops/ruby", 5001, "success", hookOpts{})
	fx.work()
	app := fx.api.pipelineOf(t, "ops/app")
	fx.pipeline("ops/app", app.ID, "success", hookOpts{runID: app.RunID})
	if run := fx.onlyRun(); run.Status != RunSucceeded {
		t.Fatalf("run %s", run.Status)
	}
	later := time.Now().Add(91 * 24 * time.Hour)
	fx.engine.now = func() time.Time { return later }
	if res, err := fx.engine.Prune(context.Background(), Retention{MaxAge: 90 * 24 * time.Hour}); err != nil || res.Removed != 1 {
		t.Fatalf("prune: %+v, %v", res, err)
	}
	for _, late := range []struct {
		id    int64
		runID string
	}{{ruby.ID, ruby.RunID}, {ruby.ID, ""}, {777, ruby.RunID}, {app.ID, app.RunID}} {
		if code := fx.pipeline("ops/ruby", late.id, "success", hookOpts{runID: late.runID}); code != http.StatusNoContent {
			t.Errorf("late success of pipeline %d (run variable %q) of a removed run: HTTP %d, want 204", late.id, late.runID, code)
		}
	}
	if n := storedRuns(t, fx.engine); n != 0 {
		t.Errorf("%d runs after late events of a removed run, want 0", n)
	}
	// A new success of the root starts a new run as always.
	if code := fx.pipeline("ops/base", 32, "success", hookOpts{}); code != http.StatusOK || storedRuns(t, fx.engine) != 1 {
		t.Errorf("a new success of the root: HTTP %d, %d runs", code, storedRuns(t, fx.engine))
	}
}

// TestPruneHandedOverRuns: in `chain watch`'s state file a run stays
// "running" for ever (a receiver continues it elsewhere): with HandedOver
// it has ended once its pipelines are created, never before.
func TestPruneHandedOverRuns(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:", "ops/ruby: ops/base"))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var runs []*Run
	for i := range 4 {
		at := start.Add(time.Duration(i) * time.Minute)
		r := storedRun(at, 2, RunRunning, at)
		r.Steps["g/p0"].State, r.Steps["g/p1"].State = StepTriggered, StepWaiting
		runs = append(runs, r)
	}
	runs[1].Steps["g/p0"].State = StepQueued // its pipeline is still to create
	storeRuns(t, fx.engine, runs)
	fx.engine.db.Update(func(tx *bolt.Tx) error {
		return saveIntent(tx, intent{RunID: runs[1].ID, Project: "g/p0"})
	})
	if res, err := fx.engine.Prune(context.Background(), Retention{MaxRuns: 1}); err != nil || res.Removed != 0 {
		t.Fatalf("without HandedOver: %+v, %v; want no running run removed", res, err)
	}
	if res, err := fx.engine.Prune(context.Background(), Retention{MaxRuns: 1, HandedOver: true}); err != nil || res.Removed != 2 {
		t.Fatalf("HandedOver: %+v, %v; want the 2 older runs whose pipelines were created removed", res, err)
	}
	for i, want := range []bool{false, true, false, true} {
		if run, _ := fx.engine.Run(runs[i].ID); (run != nil) != want {
			t.Errorf("run %d kept %v, want %v", i, run != nil, want)
		}
	}
}

// TestStateFileStopsGrowingUnderRetention: run after run, pruning to the
// newest 1,000, the state file stays the size it reached in the second
// round: bbolt reuses the pages of removed runs.
func TestStateFileStopsGrowingUnderRetention(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:"))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	made := 0
	var sizes []int64
	for range 6 {
		var runs []*Run
		for range 2000 {
			at := start.Add(time.Duration(made) * time.Minute)
			runs = append(runs, storedRun(at, 5, RunSucceeded, at))
			made++
		}
		storeRuns(t, fx.engine, runs)
		if _, err := fx.engine.Prune(context.Background(), Retention{MaxRuns: 1000}); err != nil {
			t.Fatal(err)
		}
		if n := storedRuns(t, fx.engine); n != 1000 {
			t.Fatalf("%d runs after pruning, want 1000", n)
		}
		info, err := os.Stat(fx.path)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, info.Size())
	}
	if last := sizes[len(sizes)-1]; last > sizes[1] {
		t.Errorf("state file sizes after each round of 2,000 runs: %v; it kept growing after the second", sizes)
	}
}
