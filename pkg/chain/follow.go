package chain

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// RunFailedError ends Follow when a project of the run failed: without a
// webhook receiver nobody would resume it.
type RunFailedError struct{ Run *Run }

func (e *RunFailedError) Error() string {
	for _, p := range e.Run.projects() {
		if s := e.Run.Steps[p]; s.State == StepFailed || s.State == StepCanceled {
			return fmt.Sprintf("chain run %s: %s %s: %s", e.Run.ID, p, s.State, s.Reason)
		}
	}
	return fmt.Sprintf("chain run %s failed", e.Run.ID)
}

// follow is the one loop that follows a run to its end, whoever drives
// the run: each round does its part of the work (or none) and returns the
// run as it then stands; progress, when set, gets it; the loop ends when
// the run succeeded (nil) or failed (*RunFailedError), when a round fails
// or when ctx ends, and waits interval between rounds.
func follow(ctx context.Context, round func(context.Context) (*Run, error), interval time.Duration, progress func(*Run)) (*Run, error) {
	for {
		run, err := round(ctx)
		if err != nil {
			return run, err
		}
		if progress != nil {
			progress(run)
		}
		switch run.Status {
		case RunSucceeded:
			return run, nil
		case RunFailed:
			return run, &RunFailedError{Run: run}
		}
		if !sleep(ctx, interval) {
			return run, ctx.Err()
		}
	}
}

// Follow drives a run without webhooks (`chain trigger` following it): it
// creates the queued pipelines, polls the status of the running ones every
// interval, and feeds what it sees to the same state machine the receiver
// uses, until the run succeeded or a project failed (*RunFailedError).
// progress, when set, is called with the run after every round.
func (e *Engine) Follow(ctx context.Context, runID string, interval time.Duration, progress func(*Run)) (*Run, error) {
	calls, release := callContext(ctx)
	defer release()
	return follow(ctx, func(ctx context.Context) (*Run, error) { return e.followRound(ctx, calls, runID) }, interval, progress)
}

// followRound is one round of Follow: it creates the pipelines that are
// due, asks GitLab how the pipelines of the run stand, feeds a change to
// HandlePipeline and returns the run as it then stands.
func (e *Engine) followRound(ctx, calls context.Context, runID string) (*Run, error) {
	if _, err := e.fireDue(ctx, calls); err != nil {
		return nil, err
	}
	run, err := e.Run(runID)
	if err != nil {
		return nil, err
	}
	if run == nil {
		return nil, fmt.Errorf("chain run %s: not in the state file", runID)
	}
	for _, p := range run.projects() {
		s := run.Steps[p]
		if s.PipelineID == 0 || (s.State != StepTriggered && s.State != StepRunning) {
			continue
		}
		t := run.Targets[p]
		status, err := e.api.PipelineStatus(ctx, p, t, s.PipelineID)
		if err != nil {
			if ctx.Err() != nil {
				return run, ctx.Err()
			}
			if isPermanent(err) {
				return run, err
			}
			e.log.Log(ctx, apiLogLevel(err, slog.LevelWarn), "pipeline status not read, will retry", "project", p, "pipeline", s.PipelineID, "err", err)
			continue
		}
		if next := pipelineOutcome(status); next != s.State {
			u := PipelineUpdate{Project: p, ProjectID: t.ProjectID, Ref: t.Ref, DefaultBranch: t.Ref,
				PipelineID: s.PipelineID, Status: status, RunID: runID}
			if _, err := e.HandlePipeline(u); err != nil {
				return run, err
			}
		}
	}
	return e.Run(runID)
}

// Follow follows a run of the receiver, which drives it, with the loop of
// Engine.Follow: from run, as the receiver last answered it, it asks for
// the run every interval until the run succeeded or a project failed
// (*RunFailedError). progress, when set, is called with each answer.
func (c *Client) Follow(ctx context.Context, run *Run, interval time.Duration, progress func(*Run)) (*Run, error) {
	answered := run
	return follow(ctx, func(ctx context.Context) (*Run, error) {
		if answered != nil {
			last := answered
			answered = nil
			return last, nil
		}
		return c.Run(ctx, run.ID)
	}, interval, progress)
}

// StepStates lists the projects of a run with their states, in plan order.
func (r *Run) StepStates() []ProjectStep {
	var out []ProjectStep
	for i, w := range r.Waves {
		for _, p := range w {
			out = append(out, ProjectStep{Project: p, Wave: i + 1, Step: *r.Steps[p]})
		}
	}
	return out
}

// ProjectStep is a project of a run with its wave and state.
type ProjectStep struct {
	Project string
	Wave    int
	Step
}
