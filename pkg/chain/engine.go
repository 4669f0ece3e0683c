package chain

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PipelineAPI is what the engine needs of GitLab. Implementations retry
// rate limits, server errors and time-outs themselves; an error they
// return is either a *PermanentError (the project's step fails with it) or
// temporary (the engine tries again later).
type PipelineAPI interface {
	// CreatePipeline creates a pipeline of project on t.Ref carrying
	// RunVariable=runID (and RootsVariable when roots has more than one
	// project) and returns its id and page.
	CreatePipeline(ctx context.Context, project string, t Target, runID string, roots []string) (CreatedPipeline, error)
	// FindRunPipeline looks for a pipeline of project created since since
	// that carries RunVariable=runID.
	FindRunPipeline(ctx context.Context, project string, t Target, runID string, since time.Time) (id int64, found bool, err error)
	// PipelineStatus returns GitLab's status of a pipeline.
	PipelineStatus(ctx context.Context, project string, t Target, pipelineID int64) (string, error)
}

// CreatedPipeline is GitLab's answer to a pipeline creation.
type CreatedPipeline struct {
	ID int64
	// WebURL is the pipeline's page (the API's web_url); "" when GitLab
	// gave none that is an http(s) URL (see PipelinePageURL).
	WebURL string
}

// PermanentError is an API error that retrying will not cure (403, 404,
// 400): the step fails with it.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// RunIDInUseError: a run was asked for with the id of another run.
type RunIDInUseError struct{ ID string }

func (e *RunIDInUseError) Error() string { return "run id " + e.ID + " is already used by another run" }

const reasonRunIDUsed = "run id already used"

// RunIDError: a run id that does not have the form NewRunID gives.
type RunIDError struct{ ID string }

func (e *RunIDError) Error() string {
	return fmt.Sprintf("run id %q: expected the form YYYYMMDD-HHMMSS-xxxxxxxx (8 hex digits)", e.ID)
}

// PipelineUpdate is a pipeline's new status, from a webhook or the poller.
type PipelineUpdate struct {
	Project       string // path with namespace
	ProjectID     int64
	DefaultBranch string
	Ref           string
	Tag           bool
	PipelineID    int64
	Status        string // GitLab's pipeline status
	// Source is GitLab's object_attributes.source (push, schedule, api,
	// parent_pipeline, ...).
	Source string
	// RunID is the value of RunVariable when the pipeline carries it.
	RunID string
	// RunRoots is the value of RootsVariable, split.
	RunRoots []string
	// PipelineURL is the pipeline's page in GitLab (object_attributes.url
	// of the Pipeline Hook, GitLab 16.1 and later), or "".
	PipelineURL string
}

// Outcome says what the engine did with an update.
type Outcome struct {
	Acted  bool
	RunID  string
	Queued []string
	// Reason says why an update was ignored.
	Reason string
	// committed are the logs and metrics of the decision, made once its
	// transaction committed: bbolt's Batch may run the decision more than
	// once, and may roll it back.
	committed []func()
}

// Engine is the chain-run state machine over a bbolt state file, shared by
// the webhook receiver and the poller. Every decision is committed to the
// state file before it is acted on.
type Engine struct {
	db      *bolt.DB
	api     PipelineAPI
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics

	mu      sync.RWMutex
	planner Planner

	health storeHealth

	wake chan struct{}
	// runsDecoded counts the runs RunsBefore decoded: the tests check with
	// it that a page reads its own runs and no others.
	runsDecoded atomic.Int64
	// crash, when set, is called at named points of the trigger path; the
	// crash tests make it kill the process there.
	crash func(point string)
}

// EngineOptions configure NewEngine.
type EngineOptions struct {
	StatePath string
	API       PipelineAPI
	Planner   Planner
	Logger    *slog.Logger
	Metrics   *Metrics
	// Crash is for crash tests: called at the points "queued",
	// "attempted" and "created" of the trigger path.
	Crash func(point string)
	Now   func() time.Time
}

// NewEngine opens (or creates) the state file and returns the engine. The
// caller runs Work to create the queued pipelines and Close at the end.
func NewEngine(opts EngineOptions) (*Engine, error) {
	db, err := openState(opts.StatePath, false)
	if err != nil {
		return nil, err
	}
	e := &Engine{db: db, api: opts.API, planner: opts.Planner, log: opts.Logger, metrics: opts.Metrics,
		crash: opts.Crash, now: opts.Now, wake: make(chan struct{}, 1),
		health: storeHealth{every: healthProbeEvery}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.crash == nil {
		e.crash = func(string) {}
	}
	return e, nil
}

// OpenReadOnly opens a state file for reading runs (a status command on
// a file no receiver holds); it fails when another process holds the file.
func OpenReadOnly(path string) (*Engine, error) {
	db, err := openState(path, true)
	if err != nil {
		return nil, err
	}
	return &Engine{db: db, log: slog.New(slog.DiscardHandler), now: time.Now, crash: func(string) {}}, nil
}

// Close closes the state file.
func (e *Engine) Close() error { return e.db.Close() }

// SetPlanner replaces the graph new runs are planned on.
func (e *Engine) SetPlanner(p Planner) {
	e.mu.Lock()
	e.planner = p
	e.mu.Unlock()
}

// Planner returns the graph new runs are planned on.
func (e *Engine) Planner() Planner { return e.currentPlanner() }

func (e *Engine) currentPlanner() Planner {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.planner
}

func (e *Engine) notify() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// freshRunID returns a run id no run of the state file has: thousands of
// runs may start within the same second.
func (e *Engine) freshRunID(tx *bolt.Tx) (string, error) {
	for range 10 {
		id := NewRunID(e.now())
		if existing, err := loadRun(tx, id); err != nil || existing == nil {
			return id, err
		}
	}
	return "", errors.New("no free run id after 10 tries")
}

// NewRunID returns a run id that sorts by time and is unique: the UTC
// date and time to the second, then 8 hex digits: the fraction of the
// second in 20 bits (steps of 1.024 µs), so that runs started within the
// same second still sort in the order they started, and 12 random bits.
func NewRunID(now time.Time) string {
	var b [2]byte
	rand.Read(b[:])
	suffix := uint32(now.Nanosecond()>>10)<<12 | uint32(binary.BigEndian.Uint16(b[:]))&0xfff
	return fmt.Sprintf("%s-%08x", now.UTC().Format("20060102-150405"), suffix)
}

// runIDPattern is the form NewRunID gives. Only such ids are taken from a
// pipeline's variable or a request: the id is a key of the state file whose
// order says which run is newest (and so which one a success resumes), and
// it is a path element of /runs/{id}.
var runIDPattern = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$`)

// ValidRunID reports whether id has the form of the ids NewRunID returns.
func ValidRunID(id string) bool { return runIDPattern.MatchString(id) }

// Statuses of GitLab pipelines, grouped by what they mean for a chain.
func pipelineOutcome(status string) StepState {
	switch status {
	case "success":
		return StepSucceeded
	case "failed", pipelineNotFound:
		return StepFailed
	case "canceled", "canceling", "skipped":
		return StepCanceled
	default: // created, waiting_for_resource, preparing, pending, running, manual, scheduled
		return StepRunning
	}
}

// HandlePipeline records a pipeline's new status durably and decides what
// follows: a new run, the next projects of a run, or nothing. It returns
// once the decision is committed; the pipelines it queued are created by
// Work.
func (e *Engine) HandlePipeline(u PipelineUpdate) (Outcome, error) {
	var out Outcome
	err := e.db.Batch(func(tx *bolt.Tx) error {
		var err error
		out, err = e.apply(tx, u)
		if err != nil {
			return err
		}
		rec := eventRecord{Received: e.now().UTC(), Project: u.Project, PipelineID: u.PipelineID, Ref: u.Ref,
			Status: u.Status, Result: "ignored", RunID: out.RunID}
		if out.Acted {
			rec.Result = "accepted"
		}
		return appendEvent(tx, rec)
	})
	if err != nil {
		e.noteWriteFailed(err)
		return Outcome{}, fmt.Errorf("pipeline %d of %s: %w", u.PipelineID, u.Project, err)
	}
	for _, f := range out.committed {
		f()
	}
	out.committed = nil
	if len(out.Queued) > 0 {
		e.crash("queued")
		e.notify()
	}
	return out, nil
}

func (e *Engine) apply(tx *bolt.Tx, u PipelineUpdate) (Outcome, error) {
	if u.Source == "parent_pipeline" {
		// A child pipeline runs on its parent's project and ref, and may
		// carry the parent's variables: it neither starts a run nor
		// decides the step, its parent pipeline does.
		return Outcome{Reason: "a child pipeline"}, nil
	}
	if prunedRun(tx, u) {
		return Outcome{Reason: "its run was removed (retention)"}, nil
	}
	run, err := e.findRun(tx, u)
	if err != nil {
		return Outcome{}, err
	}
	if run != nil {
		return e.applyToRun(tx, run, u)
	}
	if pipelineOutcome(u.Status) != StepSucceeded {
		return Outcome{Reason: "not part of a run"}, nil
	}
	if u.Tag || u.Ref != u.DefaultBranch {
		// Off the default branch, only the root pipeline of a run that
		// opsctl started (StartRun with a ref) starts a run.
		if !ValidRunID(u.RunID) {
			return Outcome{Reason: "not the default branch"}, nil
		}
		if existing, err := loadRun(tx, u.RunID); err != nil || existing != nil {
			return Outcome{Reason: "not the default branch"}, err
		}
	}
	// Adopt the run id a pipeline carries (one created by `chain trigger`
	// or `chain watch` without this receiver), unless that id is taken.
	id := u.RunID
	if !ValidRunID(id) {
		id = ""
	}
	if id != "" {
		if existing, err := loadRun(tx, id); err != nil || existing != nil {
			id = ""
		}
	}
	if id == "" {
		if id, err = e.freshRunID(tx); err != nil {
			return Outcome{}, err
		}
	}
	startedBy := fmt.Sprintf("pipeline %d of %s", u.PipelineID, u.Project)
	if id == u.RunID && len(u.RunRoots) > 1 && slices.Contains(u.RunRoots, u.Project) {
		// A run with several roots started outside this receiver: the
		// other roots' pipelines exist (or are being created) already.
		if run, _, err = e.newRun(tx, id, u.RunRoots, startedBy); err != nil {
			return Outcome{}, err
		}
		if run != nil {
			// The starter created the pipelines of the roots that were
			// ready at once; a root below another root waits for it, here
			// as there.
			for _, r := range u.RunRoots {
				if s := run.Steps[r]; s != nil && r != u.Project && len(run.Upstreams[r]) == 0 {
					s.State, s.Updated = StepTriggered, e.now().UTC()
				}
			}
		}
	}
	if run == nil {
		var reason string
		if run, reason, err = e.newRun(tx, id, []string{u.Project}, startedBy); err != nil || run == nil {
			return Outcome{Reason: reason}, err
		}
	}
	root := run.Steps[u.Project]
	root.State, root.Updated = StepSucceeded, e.now().UTC()
	root.setPipeline(u)
	if err := indexPipeline(tx, u.PipelineID, run.ID); err != nil {
		return Outcome{}, err
	}
	queued, err := e.queueReady(tx, run)
	if err != nil {
		return Outcome{}, err
	}
	run.updateStatus(e.now().UTC())
	started := func() {
		e.log.Info("chain run started", "run", run.ID, "by", run.StartedBy, "projects", len(run.Steps))
	}
	return Outcome{Acted: true, RunID: run.ID, Queued: queued, committed: []func(){started}}, saveRun(tx, run)
}

// findRun finds the run an update belongs to: the run of a pipeline the
// engine created or already saw, the run its RunVariable names, or, for a
// success, an unfinished run in which this project failed (the run
// continues where it stopped).
func (e *Engine) findRun(tx *bolt.Tx, u PipelineUpdate) (*Run, error) {
	if id, found := runOfPipeline(tx, u.PipelineID); found {
		return loadRun(tx, id)
	}
	if u.RunID != "" {
		run, err := loadRun(tx, u.RunID)
		if err != nil || (run != nil && run.Steps[u.Project] != nil) {
			return run, err
		}
	}
	if pipelineOutcome(u.Status) != StepSucceeded || u.Ref != u.DefaultBranch {
		return nil, nil
	}
	// The newest run in which the project stopped wins.
	newest := newestStoppedRun(tx, u.Project)
	if newest == "" {
		return nil, nil
	}
	return loadRun(tx, newest)
}

func (e *Engine) applyToRun(tx *bolt.Tx, run *Run, u PipelineUpdate) (Outcome, error) {
	now := e.now().UTC()
	out := Outcome{Acted: true, RunID: run.ID}
	step := run.Steps[u.Project]
	if step == nil {
		return Outcome{Reason: "project not in the run's plan"}, nil
	}
	if step.State == StepSucceeded {
		// Each project succeeds once per run; a duplicate or late
		// delivery changes nothing.
		return out, nil
	}
	switch state := pipelineOutcome(u.Status); state {
	case StepSucceeded:
		step.State, step.Reason = StepSucceeded, ""
		if err := supersedeStops(tx, u.Project); err != nil {
			return Outcome{}, err
		}
	case StepFailed, StepCanceled:
		step.State, step.Reason = state, fmt.Sprintf("pipeline %d %s", u.PipelineID, u.Status)
	default:
		if step.State == StepWaiting {
			// Someone else's pipeline of a project the run has not reached:
			// the run will create its own.
			return Outcome{Reason: "project not reached by the run yet"}, nil
		}
		if (step.State == StepFailed || step.State == StepCanceled) && step.PipelineID == u.PipelineID {
			// A delivery overtaken by the pipeline's end, or a retry of its
			// jobs: the step stays stopped, so that a later success still
			// finds and resumes this run, until the pipeline ends again.
			return out, nil
		}
		step.State, step.Reason = StepRunning, ""
	}
	step.setPipeline(u)
	step.Updated = now
	if err := indexPipeline(tx, u.PipelineID, run.ID); err != nil {
		return Outcome{}, err
	}
	if step.State == StepSucceeded {
		queued, err := e.queueReady(tx, run)
		if err != nil {
			return Outcome{}, err
		}
		out.Queued = queued
	}
	before := run.Status
	run.updateStatus(now)
	if status := run.Status; status != before {
		out.committed = append(out.committed, func() {
			e.log.Info("chain run "+string(status), "run", run.ID, "project", u.Project, "pipeline", u.PipelineID)
			if status == RunSucceeded && e.metrics != nil {
				e.metrics.RunDuration.Observe(now.Sub(run.Created).Seconds())
			}
		})
	}
	return out, saveRun(tx, run)
}

// newRun plans a run rooted at roots and stores it with every step waiting.
// A nil run with a reason means there is nothing to run.
func (e *Engine) newRun(tx *bolt.Tx, id string, roots []string, startedBy string) (*Run, string, error) {
	planner := e.currentPlanner()
	if planner == nil {
		return nil, "no graph yet", nil
	}
	plan, err := planner.PlanRun(roots)
	if err != nil {
		e.log.Warn("no chain run", "roots", roots, "err", err)
		return nil, err.Error(), nil
	}
	n := 0
	for _, w := range plan.Waves {
		n += len(w)
	}
	if n <= len(roots) && strings.HasPrefix(startedBy, "pipeline ") {
		return nil, "no downstream projects", nil
	}
	if existing, err := loadRun(tx, id); err != nil || existing != nil {
		return nil, reasonRunIDUsed, err
	}
	now := e.now().UTC()
	run := &Run{ID: id, Roots: roots, Status: RunRunning, Created: now, StartedBy: startedBy,
		Waves: plan.Waves, Upstreams: plan.Upstreams, Targets: plan.Targets, Steps: map[string]*Step{}}
	if run.Upstreams == nil {
		run.Upstreams = map[string][]string{}
	}
	for _, p := range run.projects() {
		run.Steps[p] = &Step{State: StepWaiting, Updated: now}
	}
	return run, "", nil
}

// queueReady records an intent for every project of run that can be built
// now. It runs in the transaction that made them ready.
func (e *Engine) queueReady(tx *bolt.Tx, run *Run) ([]string, error) {
	now := e.now().UTC()
	ready := run.ready()
	for _, p := range ready {
		run.Steps[p].State, run.Steps[p].Updated = StepQueued, now
		in := intent{RunID: run.ID, Project: p, Target: run.Targets[p], Created: now}
		if err := saveIntent(tx, in); err != nil {
			return nil, err
		}
	}
	return ready, nil
}

// StartRun starts a run at roots by creating their pipelines (as `chain
// trigger` does). id may be empty for a new id; ref, when set, is the ref
// of the roots' pipelines instead of their default branches.
func (e *Engine) StartRun(roots []string, id, startedBy, ref string) (*Run, error) {
	if id != "" && !ValidRunID(id) {
		return nil, &RunIDError{ID: id}
	}
	var run *Run
	err := e.db.Update(func(tx *bolt.Tx) error {
		var err error
		run, err = e.startRunTx(tx, roots, id, "trigger: "+startedBy, ref)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chain run at %v: %w", roots, err)
	}
	e.log.Info("chain run started", "run", run.ID, "by", run.StartedBy, "projects", len(run.Steps))
	e.notify()
	return run, nil
}

// startRunTx plans a run at roots and queues the roots, in tx.
func (e *Engine) startRunTx(tx *bolt.Tx, roots []string, id, startedBy, ref string) (*Run, error) {
	if id == "" {
		var err error
		if id, err = e.freshRunID(tx); err != nil {
			return nil, err
		}
	}
	run, reason, err := e.newRun(tx, id, roots, startedBy)
	if err != nil {
		return nil, err
	}
	if run == nil {
		if reason == reasonRunIDUsed {
			return nil, &RunIDInUseError{ID: id}
		}
		// Keep the planner's typed error (unknown project, cycle).
		if planner := e.currentPlanner(); planner != nil {
			if _, perr := planner.PlanRun(roots); perr != nil {
				return nil, perr
			}
		}
		return nil, errors.New(reason)
	}
	if ref != "" {
		for _, root := range roots {
			t := run.Targets[root]
			t.Ref = ref
			run.Targets[root] = t
		}
	}
	if _, err := e.queueReady(tx, run); err != nil {
		return nil, err
	}
	return run, saveRun(tx, run)
}

// UnfinishedRunAt returns the newest run whose only root is root and that
// is still running (not failed), or nil: a follower (Follow) resumes it
// after a crash instead of starting a second run.
func (e *Engine) UnfinishedRunAt(root string) (*Run, error) {
	var found *Run
	err := e.db.View(func(tx *bolt.Tx) error {
		return walkActiveRuns(tx, true, func(run *Run) bool {
			if run.Status == RunRunning && len(run.Roots) == 1 && run.Roots[0] == root {
				found = run
			}
			return found == nil
		})
	})
	return found, err
}

// Run returns a run by id, or nil.
func (e *Engine) Run(id string) (*Run, error) {
	var run *Run
	err := e.db.View(func(tx *bolt.Tx) error {
		var err error
		run, err = loadRun(tx, id)
		return err
	})
	return run, err
}

// Runs returns the newest runs first, at most limit (0: all).
func (e *Engine) Runs(limit int) ([]*Run, error) {
	var runs []*Run
	err := e.db.View(func(tx *bolt.Tx) error {
		return walkRunsBack(tx, "", func(k, v []byte) (bool, error) {
			if limit > 0 && len(runs) == limit {
				return false, nil
			}
			var r Run
			if err := json.Unmarshal(v, &r); err != nil {
				return false, fmt.Errorf("state: run %s: %w", k, err)
			}
			runs = append(runs, &r)
			return true, nil
		})
	})
	return runs, err
}

// Work creates the queued pipelines until ctx ends: at once when
// HandlePipeline or StartRun queued some, and again for those whose API
// call failed, with backoff. When it starts and every pollEvery it asks
// GitLab for the pipelines that unfinished runs wait for (pollUnfinished).
func (e *Engine) Work(ctx context.Context) error {
	calls, release := callContext(ctx)
	defer release()
	nextPoll := e.now()
	for {
		if !e.now().Before(nextPoll) {
			if err := e.pollUnfinished(ctx); err != nil {
				return err
			}
			nextPoll = e.now().Add(pollEvery)
		}
		next, err := e.fireDue(ctx, calls)
		if err != nil {
			return err
		}
		wait := max(nextPoll.Sub(e.now()), 10*time.Millisecond)
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(e.now()), 10*time.Millisecond))
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-e.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// pollEvery is how often Work asks GitLab for the pipelines that unfinished
// runs wait for (and once when it starts): GitLab does not deliver a
// webhook again that found the receiver down or unreachable, so without a
// look the run would wait for ever.
var pollEvery = 5 * time.Minute

// pollUnfinished asks GitLab for the status of every pipeline a run that
// has not succeeded waits for (triggered or running) and feeds the ended
// ones to HandlePipeline, as if their webhook had come. API errors are
// logged and asked again at the next poll; an error of the state file is
// returned.
func (e *Engine) pollUnfinished(ctx context.Context) error {
	type waiting struct {
		runID, project string
		target         Target
		pipelineID     int64
		runCreated     time.Time
	}
	var todo []waiting
	err := e.db.View(func(tx *bolt.Tx) error {
		return walkActiveRuns(tx, false, func(run *Run) bool {
			for _, p := range run.projects() {
				// A triggered step without a pipeline id is another root of
				// a run adopted from a pipeline: its pipeline is found by
				// the run id.
				if s := run.Steps[p]; s.State == StepTriggered || (s.State == StepRunning && s.PipelineID != 0) {
					todo = append(todo, waiting{run.ID, p, run.Targets[p], s.PipelineID, run.Created})
				}
			}
			return true
		})
	})
	if err != nil {
		return err
	}
	for _, w := range todo {
		if ctx.Err() != nil {
			return nil
		}
		var status string
		var err error
		var found bool // the pipeline's id learnt only now, by the run id
		if w.pipelineID == 0 {
			w.pipelineID, found, err = e.api.FindRunPipeline(ctx, w.project, w.target, w.runID, w.runCreated.Add(-time.Hour))
			if err == nil && !found {
				continue
			}
		}
		if err == nil {
			status, err = e.api.PipelineStatus(ctx, w.project, w.target, w.pipelineID)
			if notFound(err) {
				// Deleted (GitLab sends no webhook for that), or out of
				// the token's sight: it will never end by itself.
				status, err = pipelineNotFound, nil
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if e.metrics != nil {
				e.metrics.APIErrors.Inc()
			}
			e.log.Log(ctx, apiLogLevel(err, slog.LevelWarn), "pipeline status not read, will ask again", "run", w.runID, "project", w.project, "pipeline", w.pipelineID, "err", err)
			if !isPermanent(err) {
				// GitLab is down or overloaded: the queued pipelines must
				// not wait for a look at every other one.
				return nil
			}
			continue
		}
		running := pipelineOutcome(status) == StepRunning
		if running && !found {
			continue // its webhook will come, or the next poll
		}
		// A running pipeline found by the run id is recorded too: the next
		// poll asks for its status alone instead of searching again.
		u := PipelineUpdate{Project: w.project, ProjectID: w.target.ProjectID, Ref: w.target.Ref, DefaultBranch: w.target.Ref,
			PipelineID: w.pipelineID, Status: status, RunID: w.runID}
		if _, err := e.HandlePipeline(u); err != nil {
			return err
		}
		if !running {
			e.log.Info("pipeline ended while no webhook came", "run", w.runID, "project", w.project, "pipeline", w.pipelineID, "status", status)
		}
	}
	return nil
}

// shutdownGrace is how long a pipeline creation already under way may go
// on after the context of Work, Follow or FireDue has ended, so that a stop
// rarely falls between GitLab creating the pipeline and the state file
// recording it (an intent the next start must reconcile with a look-up).
var shutdownGrace = 10 * time.Second

// callContext returns the context for GitLab API calls: it ends
// shutdownGrace after ctx does. release must be called.
func callContext(ctx context.Context) (context.Context, func()) {
	grace := shutdownGrace
	calls, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(grace, cancel) })
	return calls, func() { stop(); cancel() }
}

// fireDue creates the pipelines of every intent that is due and returns
// when the next one is. It starts no intent after ctx has ended; the API
// calls of the one under way use calls (see callContext).
func (e *Engine) fireDue(ctx, calls context.Context) (time.Time, error) {
	var intents []intent
	err := e.db.View(func(tx *bolt.Tx) error {
		var err error
		intents, err = loadIntents(tx)
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	sort.SliceStable(intents, func(i, j int) bool { return intents[i].Created.Before(intents[j].Created) })
	var next time.Time
	for _, in := range intents {
		if ctx.Err() != nil {
			return time.Time{}, nil
		}
		if due := in.NextTry; !due.IsZero() && due.After(e.now()) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		retryAt, err := e.fire(calls, in)
		if err != nil {
			return time.Time{}, err
		}
		if !retryAt.IsZero() && (next.IsZero() || retryAt.Before(next)) {
			next = retryAt
		}
	}
	return next, nil
}

// fire creates the pipeline of one intent: mark it attempted, look for a
// pipeline an earlier attempt may have created, create it, record it.
func (e *Engine) fire(ctx context.Context, in intent) (retryAt time.Time, err error) {
	var reconcile, done bool
	var roots []string
	err = e.db.Update(func(tx *bolt.Tx) error {
		cur, ok, err := loadIntent(tx, in.RunID, in.Project)
		if err != nil || !ok {
			done = true
			return err
		}
		run, err := loadRun(tx, in.RunID)
		if err != nil {
			return err
		}
		if run != nil && len(run.Roots) > 1 && slices.Contains(run.Roots, in.Project) {
			roots = run.Roots
		}
		if run == nil || run.Steps[in.Project] == nil || run.Steps[in.Project].PipelineID != 0 {
			// A webhook already told us about the pipeline.
			done = true
			return deleteIntent(tx, in.RunID, in.Project)
		}
		reconcile = cur.Attempted
		cur.Attempted = true
		cur.Attempts++
		in = cur
		return saveIntent(tx, cur)
	})
	if err != nil || done {
		return time.Time{}, err
	}
	e.crash("attempted")

	var id int64
	var page string
	result := "created"
	if reconcile {
		var found bool
		// An hour of slack: GitLab's clock may be behind ours.
		id, found, err = e.api.FindRunPipeline(ctx, in.Project, in.Target, in.RunID, in.Created.Add(-time.Hour))
		if err == nil && found {
			result = "reconciled"
		}
	}
	if err == nil && id == 0 {
		var created CreatedPipeline
		created, err = e.api.CreatePipeline(ctx, in.Project, in.Target, in.RunID, roots)
		id, page = created.ID, PipelinePageURL(created.WebURL)
	}
	if err == nil {
		e.crash("created")
	}
	if err != nil {
		return e.fireFailed(ctx, in, err)
	}
	err = e.db.Update(func(tx *bolt.Tx) error {
		run, err := loadRun(tx, in.RunID)
		if err != nil || run == nil {
			return err
		}
		step := run.Steps[in.Project]
		if step.PipelineID == 0 {
			step.PipelineID = id
		}
		if step.PipelineID == id && page != "" {
			step.PipelineURL = page
		}
		if step.State == StepQueued {
			step.State, step.Updated = StepTriggered, e.now().UTC()
		}
		if err := indexPipeline(tx, id, run.ID); err != nil {
			return err
		}
		if err := deleteIntent(tx, in.RunID, in.Project); err != nil {
			return err
		}
		return saveRun(tx, run)
	})
	if err != nil {
		return time.Time{}, err
	}
	if e.metrics != nil {
		e.metrics.Triggers.WithLabelValues(result).Inc()
	}
	e.log.Info("pipeline "+result, "run", in.RunID, "project", in.Project, "pipeline", id, "ref", in.Target.Ref)
	return time.Time{}, nil
}

// pipelineNotFound stands for the status of a pipeline GitLab answers 404
// for: the step's reason reads "pipeline N not found in GitLab".
const pipelineNotFound = "not found in GitLab"

// notFound reports whether GitLab answered 404.
func notFound(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound
}

// isPermanent: a *PermanentError, or an error that says it is not
// temporary (an API error other than 429 and 5xx). Anything else, a network
// error included, is worth another try.
func isPermanent(err error) bool {
	var permanent *PermanentError
	if errors.As(err, &permanent) {
		return true
	}
	if unresolved(err) {
		// It resolved when the run started: whatever broke the name
		// says nothing about the project. Its step waits, with backoff.
		return false
	}
	var temp interface{ Temporary() bool }
	return errors.As(err, &temp) && !temp.Temporary()
}

// unresolved: GitLab's host does not resolve. The client says so once
// when it starts (and when it resolves again), so the calls failing
// meanwhile are logged at debug level only.
func unresolved(err error) bool {
	var notFound *HostNotFoundError
	return errors.As(err, &notFound)
}

// apiLogLevel is level, or debug for an error the client already logged.
func apiLogLevel(err error, level slog.Level) slog.Level {
	if unresolved(err) {
		return slog.LevelDebug
	}
	return level
}

// Backoff of an intent whose API call failed: 2s, 4s, ... up to 5 minutes.
func intentBackoff(attempts int) time.Duration {
	d := 2 * time.Second
	for i := 1; i < attempts && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

func (e *Engine) fireFailed(ctx context.Context, in intent, apiErr error) (time.Time, error) {
	if e.metrics != nil {
		e.metrics.APIErrors.Inc()
	}
	if isPermanent(apiErr) {
		e.log.Error("pipeline not created", "run", in.RunID, "project", in.Project, "err", apiErr)
		if e.metrics != nil {
			e.metrics.Triggers.WithLabelValues("failed").Inc()
		}
		return time.Time{}, e.db.Update(func(tx *bolt.Tx) error {
			run, err := loadRun(tx, in.RunID)
			if err != nil || run == nil {
				return err
			}
			step := run.Steps[in.Project]
			step.State, step.Reason, step.Updated = StepFailed, "creating the pipeline: "+apiErr.Error(), e.now().UTC()
			run.updateStatus(e.now().UTC())
			if err := deleteIntent(tx, in.RunID, in.Project); err != nil {
				return err
			}
			return saveRun(tx, run)
		})
	}
	if ctx.Err() != nil {
		return time.Time{}, nil
	}
	delay := intentBackoff(in.Attempts)
	var apiError *APIError
	if errors.As(apiErr, &apiError) && apiError.RetryAfter > delay {
		delay = apiError.RetryAfter // GitLab said when
	}
	retryAt := e.now().Add(delay)
	e.log.Log(ctx, apiLogLevel(apiErr, slog.LevelWarn), "pipeline not created yet, will retry", "run", in.RunID, "project", in.Project, "at", retryAt.Format(time.RFC3339), "err", apiErr)
	return retryAt, e.db.Update(func(tx *bolt.Tx) error {
		cur, ok, err := loadIntent(tx, in.RunID, in.Project)
		if err != nil || !ok {
			return err
		}
		cur.NextTry, cur.LastError = retryAt, apiErr.Error()
		return saveIntent(tx, cur)
	})
}
