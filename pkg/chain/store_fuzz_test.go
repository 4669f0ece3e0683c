package chain

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// smallState writes a state file of 1 KiB pages (bbolt's smallest), so
// that seeds stay a few KiB: buckets as opsctl makes them, with a run, an
// intent, a pipeline, an event and a digest; with many, enough runs that
// the runs bucket has a branch page.
func smallState(t testing.TB, many bool) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seed.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range stateBuckets {
			if _, err := tx.CreateBucketIfNotExists(b.name); err != nil {
				return err
			}
		}
		n := 1
		if many {
			n = 12
		}
		for i := range n {
			run := &Run{ID: NewRunID(created.Add(time.Duration(i) * time.Second)), Roots: []string{"g/base"}, Status: RunRunning, Created: created,
				StartedBy: "pipeline 31 of g/base", Waves: [][]string{{"g/base"}, {"g/app"}},
				Upstreams: map[string][]string{"g/app": {"g/base"}}, Targets: map[string]Target{"g/app": {ProjectID: 2, Ref: "main"}},
				Steps: map[string]*Step{"g/base": {State: StepSucceeded, PipelineID: 31}, "g/app": {State: StepQueued}}}
			if err := saveRun(tx, run); err != nil {
				return err
			}
			if err := saveIntent(tx, intent{RunID: run.ID, Project: "g/app", Target: run.Targets["g/app"], Created: created}); err != nil {
				return err
			}
			if err := tx.Bucket(bucketPipelines).Put(u64key(int64(31+i)), []byte(run.ID)); err != nil {
				return err
			}
			if err := appendEvent(tx, eventRecord{Received: created, Project: "g/base", PipelineID: 31, Ref: "main", Status: "success", Result: "accepted", RunID: run.ID}); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketDigests).Put([]byte("docker.io/library/debian:bookworm"), []byte("sha256:0123"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The pages past the high water mark are room bbolt keeps to grow.
	m := readBoltMeta(t, data)
	return data[:int(m.pageID)*m.pageSize]
}

// FuzzStateFile: whatever bytes the state file holds, opening it read-only
// and for writing, then what the engine does first (list runs, poll,
// create queued pipelines), never panics, faults or runs out of memory: it
// works or it returns an error. The seeds are sound small state files;
// the fuzzer damages them.
func FuzzStateFile(f *testing.F) {
	f.Add(smallState(f, false))
	f.Add(smallState(f, true))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "chain.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if e, err := OpenReadOnly(path); err == nil {
			e.Runs(0)
			e.UnfinishedRunAt("g/base")
			e.Close()
		}
		e, err := NewEngine(EngineOptions{StatePath: path, API: newFakePipelines(), Planner: testGraph("g/base:", "g/app: g/base")})
		if err != nil {
			return
		}
		defer e.Close()
		e.Runs(0)
		ctx := context.Background()
		if err := e.pollUnfinished(ctx); err != nil {
			return
		}
		e.fireDue(ctx, ctx)
	})
}

// FuzzDecodeRun: a run record decodes or is refused without panic, and a
// run it accepts can be used as the engine and chain status use runs.
func FuzzDecodeRun(f *testing.F) {
	const id = "20261126-101500-a1b2c3d4"
	for _, seed := range []string{
		`{"id":"` + id + `","roots":["g/base"],"status":"running","created":"2026-11-26T10:15:00Z","started_by":"x","waves":[["g/base"],["g/app"]],"upstreams":{"g/app":["g/base"]},"targets":{"g/app":{"ref":"main"}},"steps":{"g/base":{"state":"succeeded","pipeline_id":31},"g/app":{"state":"waiting"}}}`,
		`{"id":"` + id + `","status":"failed","waves":[["a"]],"steps":{"a":{"state":"failed","reason":"pipeline 5 failed"}}}`,
		`{"id":"` + id + `","status":"running","waves":[["a"]],"steps":{"a":null}}`,
		`null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run, err := decodeRun([]byte(id), data)
		if err != nil {
			return
		}
		run.ready()
		run.updateStatus(time.Now())
		run.StepStates()
		run.Summary()
		if (&RunFailedError{Run: run}).Error() == "" {
			t.Fatal("a failed run without words")
		}
	})
}
