package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// storedRun is a run written to the state file directly, without the
// engine's decisions: the tests fill the file with thousands of them.
func storedRun(start time.Time, projects int, status RunStatus, ended time.Time) *Run {
	run := &Run{ID: NewRunID(start), Roots: []string{"g/p0"}, Status: status, Created: start.UTC(), StartedBy: "test",
		Upstreams: map[string][]string{}, Targets: map[string]Target{}, Steps: map[string]*Step{}}
	var wave []string
	for i := range projects {
		p := fmt.Sprintf("g/p%d", i)
		wave = append(wave, p)
		run.Targets[p] = Target{ProjectID: int64(i + 1), Ref: "main"}
		state := StepSucceeded
		switch status {
		case RunRunning:
			state = StepRunning
		case RunFailed:
			state = StepFailed
		}
		run.Steps[p] = &Step{State: state, PipelineID: start.UnixMilli()*1000 + int64(i), Updated: ended.UTC()}
	}
	run.Waves = [][]string{wave}
	if status == RunSucceeded {
		finished := ended.UTC()
		run.Finished = &finished
	}
	return run
}

// storeRuns writes runs to the state file, a thousand per transaction, as
// the engine keeps them (the run, its indexes, its pipelines).
func storeRuns(t testing.TB, e *Engine, runs []*Run) {
	t.Helper()
	for len(runs) > 0 {
		batch := runs[:min(1000, len(runs))]
		runs = runs[len(batch):]
		err := e.db.Update(func(tx *bolt.Tx) error {
			for _, r := range batch {
				if err := saveRun(tx, r); err != nil {
					return err
				}
				for _, s := range r.Steps {
					if err := indexPipeline(tx, s.PipelineID, r.ID); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func getRuns(t testing.TB, h http.Handler, query string) (*httptest.ResponseRecorder, []Run) {
	t.Helper()
	rec := serveDirect(t, h, "GET", "/runs"+query, "", "", "")
	var runs []Run
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &runs); err != nil {
			t.Fatalf("GET /runs%s: %v", query, err)
		}
	}
	return rec, runs
}

// TestRunsListIsPagedAndBounded (issue 19 item 6): GET /runs?limit=0 no
// longer means every run; a page holds at most 1000 runs and 8 MiB of them,
// decodes only its own runs, and the Link header leads through all of them,
// each once, newest first.
func TestRunsListIsPagedAndBounded(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:"))
	h := fx.recv.Handler()
	const total = 2500
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var runs []*Run
	for i := range total {
		at := start.Add(time.Duration(i) * time.Minute)
		runs = append(runs, storedRun(at, 3, RunSucceeded, at.Add(time.Minute)))
	}
	storeRuns(t, fx.engine, runs)

	for _, bad := range []string{"?limit=0", "?limit=-1", "?limit=1001", "?limit=x", "?before=nope", "?before=" + url.QueryEscape("../x")} {
		rec, _ := getRuns(t, h, bad)
		if rec.Code != http.StatusBadRequest || strings.Count(rec.Body.String(), "\n") != 1 {
			t.Errorf("GET /runs%s: HTTP %d %q, want 400 with one line", bad, rec.Code, rec.Body)
		}
	}

	decoded := fx.engine.runsDecoded.Load()
	rec, page := getRuns(t, h, "")
	if len(page) != DefaultRunsPage || page[0].ID != runs[total-1].ID || page[99].ID != runs[total-100].ID {
		t.Fatalf("GET /runs: %d runs, want the newest %d", len(page), DefaultRunsPage)
	}
	if n := fx.engine.runsDecoded.Load() - decoded; n != DefaultRunsPage {
		t.Errorf("GET /runs decoded %d runs for a page of %d", n, DefaultRunsPage)
	}
	if link := rec.Header().Get("Link"); link != fmt.Sprintf(`</runs?before=%s&limit=100>; rel="next"`, runs[total-100].ID) {
		t.Errorf("Link: %q", link)
	}

	// Through every page, by the Link header as a client would.
	seen := map[string]bool{}
	query, pages := "?limit=1000", 0
	decoded = fx.engine.runsDecoded.Load()
	for {
		rec, page := getRuns(t, h, query)
		if rec.Code != http.StatusOK || len(page) == 0 || len(page) > MaxRunsPage {
			t.Fatalf("GET /runs%s: HTTP %d, %d runs", query, rec.Code, len(page))
		}
		pages++
		for _, r := range page {
			if seen[r.ID] {
				t.Fatalf("run %s listed twice", r.ID)
			}
			seen[r.ID] = true
		}
		next := nextRunsCursor(rec.Header())
		if next == "" {
			break
		}
		query = "?limit=1000&before=" + next
	}
	if len(seen) != total || pages != 3 {
		t.Errorf("paging by Link: %d runs in %d pages, want %d in 3", len(seen), pages, total)
	}
	if n := fx.engine.runsDecoded.Load() - decoded; n != total {
		t.Errorf("listing every run page by page decoded %d runs, want each of the %d once", n, total)
	}

	// The client pages the same way for `chain status --limit 0`.
	srv := httptest.NewServer(h)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	all, err := (&Client{URL: u}).Runs(context.Background(), 0)
	if err != nil || len(all) != total || all[0].ID != runs[total-1].ID || all[total-1].ID != runs[0].ID {
		t.Errorf("client, every run: %d runs (%v), want %d newest first", len(all), err, total)
	}
	some, err := (&Client{URL: u}).Runs(context.Background(), 1200)
	if err != nil || len(some) != 1200 || some[1199].ID != runs[total-1200].ID {
		t.Errorf("client, 1200 runs: %d (%v)", len(some), err)
	}
}

// TestRunsPageIsBoundedInBytes: runs of 2,000 projects (some 290 KB each
// stored): a page of 100 stops at 8 MiB of stored runs, and the answer
// stays within that bound.
func TestRunsPageIsBoundedInBytes(t *testing.T) {
	fx := newEngineFixture(t, testGraph("ops/base:"))
	h := fx.recv.Handler()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var runs []*Run
	for i := range 40 {
		at := start.Add(time.Duration(i) * time.Minute)
		runs = append(runs, storedRun(at, 2000, RunSucceeded, at.Add(time.Minute)))
	}
	storeRuns(t, fx.engine, runs)
	stored, _ := json.Marshal(runs[0])
	perPage := maxRunsPageBytes / len(stored)
	decoded := fx.engine.runsDecoded.Load()
	rec, page := getRuns(t, h, "?limit=100")
	if len(page) != perPage || rec.Header().Get("Link") == "" {
		t.Errorf("a page of runs of %d bytes: %d runs, want %d (8 MiB) and a Link to the next", len(stored), len(page), perPage)
	}
	if n := fx.engine.runsDecoded.Load() - decoded; n != int64(len(page)) {
		t.Errorf("decoded %d runs for a page of %d", n, len(page))
	}
	// Indented JSON adds some 60% to the stored runs; never the 17 MB of
	// all 40 (before the bound, the answer was every run of the file).
	if size := rec.Body.Len(); size > 2*maxRunsPageBytes {
		t.Errorf("a page of %d bytes, over 2 × 8 MiB", size)
	}
}
