package chain

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// bigRun is a run of every project of bigGraph(n): the first wave built,
// the second failed and running by turns, the rest waiting.
func bigRun(tb testing.TB, n int) *Run {
	tb.Helper()
	g := NewGraph(bigGraph(n), nil)
	plan, err := g.Plan(nil)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 10, 15, 0, 0, time.UTC)
	run := &Run{ID: "20261126-101500-a1b2c3d4", Roots: plan.Waves[0], Status: RunFailed, Created: now, StartedBy: "bench",
		Waves: plan.Waves, Upstreams: map[string][]string{}, Targets: map[string]Target{}, Steps: map[string]*Step{}}
	id := int64(1000)
	for w, wave := range plan.Waves {
		for i, p := range wave {
			id++
			step := &Step{State: StepWaiting, Updated: now}
			switch {
			case w == 0:
				step.State, step.PipelineID = StepSucceeded, id
			case w == 1 && i%2 == 0:
				step.State, step.PipelineID = StepFailed, id
			case w == 1:
				step.State, step.PipelineID = StepRunning, id
			}
			run.Steps[p] = step
			run.Targets[p] = Target{Ref: "main"}
			run.Upstreams[p] = g.index[p].Upstreams
		}
	}
	return run
}

// BenchmarkRunPage1000 serves the page of a 1,000-project run (its plan
// laid out and drawn, the table, the template), and the 304 a polling
// page gets while the run does not change.
func BenchmarkRunPage1000(b *testing.B) {
	fx := newEngineFixture(b, nil)
	fx.recv.GitLabURL = testGitLabURL
	run := bigRun(b, 1000)
	fx.storeRun(run)
	h := fx.recv.Handler()
	var size int
	var tag string
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", RunPagePath(run.ID), nil))
			if rec.Code != http.StatusOK {
				b.Fatalf("HTTP %d", rec.Code)
			}
			size, tag = rec.Body.Len(), rec.Header().Get("ETag")
		}
		b.ReportMetric(float64(size), "bytes")
	})
	b.Run("not-modified", func(b *testing.B) {
		for b.Loop() {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", RunPagePath(run.ID), nil)
			req.Header.Set("If-None-Match", tag)
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotModified {
				b.Fatalf("HTTP %d", rec.Code)
			}
		}
	})
	fmt.Fprintf(b.Output(), "run page of %d projects: %d bytes\n", len(run.Steps), size)
}
