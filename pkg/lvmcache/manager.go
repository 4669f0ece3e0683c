package lvmcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// DefaultStateDir is where resize journals live unless told otherwise.
const DefaultStateDir = "/var/lib/opsctl/lvm"

// Progress shows the advance of a flush. opsctl passes its progress bar.
type Progress interface {
	Update(done int64)
	SetTotal(total int64)
	Done()
}

// Manager plans and applies changes to the caches of LVs through lvm2.
type Manager struct {
	Runner *Runner
	// StateDir holds the resize journals and lock files: DefaultStateDir
	// when empty.
	StateDir string
	// NewProgress starts a progress display for a flush of total dirty
	// blocks; nil shows none.
	NewProgress func(label string, total int64) Progress
	// PollInterval is how often the dirty blocks are polled during a flush:
	// 500ms when zero.
	PollInterval time.Duration
	// Logger gets one line per step; nil discards.
	Logger *slog.Logger
	// Clock replaces time.Now in tests.
	Clock func() time.Time
}

// pollInterval is how often a flush polls the dirty blocks.
func (m *Manager) pollInterval() time.Duration {
	if m.PollInterval <= 0 {
		return 500 * time.Millisecond
	}
	return m.PollInterval
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// ErrInterrupted is wrapped by the error of a plan stopped between two
// steps by its context (SIGINT, SIGTERM): the journal tells where it was.
var ErrInterrupted = errors.New("interrupted")

// Apply carries out plan, one step after the other. Before each step the
// LV is read again and a step whose effect is already there is skipped, so
// a resumed plan never repeats a change. A resize is journaled before and
// after every step. When its lvresize fails after the cache was detached,
// the recorded cache is re-attached before Apply returns the error.
func (m *Manager) Apply(ctx context.Context, plan *Plan) error {
	name := plan.Name()
	// failf wraps with %w, so errors.Is sees ErrNotFound and the like.
	failf := func(format string, args ...any) error {
		return fmt.Errorf("lvm cache %s %s: "+format, append([]any{plan.Op, name}, args...)...)
	}
	state, err := m.openState()
	if err != nil {
		return fmt.Errorf("lvm cache %s %s: %w", plan.Op, name, err)
	}
	defer state.Close()
	unlock, err := state.lockLV(name)
	if err != nil {
		return fmt.Errorf("lvm cache %s %s: %w", plan.Op, name, err)
	}
	defer unlock()
	journaled := plan.Op == OpResize && len(plan.Steps) > 0
	// The plan was made before the lock was taken: check the journal again
	// under the lock. Another opsctl may have left a journal since (no
	// change may run before it is resumed), or finished the journal this
	// resumed plan was loaded from (running it again would flush and
	// re-create the cache once more).
	if !plan.Resumed {
		if err := m.checkNoJournal(state, name); err != nil {
			return fmt.Errorf("lvm cache %s %s: %w", plan.Op, name, err)
		}
	} else if err := m.checkJournalExists(state, name); err != nil {
		return fmt.Errorf("%s: %w", resumeContext(name), err)
	}
	save := func() error {
		if !journaled {
			return nil
		}
		plan.Updated = m.now()
		return m.saveJournal(state, plan)
	}
	removeJournal := func() error { return m.removeJournal(state, name) }
	if err := save(); err != nil {
		return fmt.Errorf("lvm cache %s %s: %w", plan.Op, name, err)
	}
	reopened := false
	for i := 0; i < len(plan.Steps); i++ {
		step := &plan.Steps[i]
		if step.State == StateDone {
			continue
		}
		interrupted := func() error {
			if !journaled {
				return failf("%w before %s; nothing was changed", ErrInterrupted, step.Kind)
			}
			// Stopped before its first step, a new resize has changed
			// nothing: no journal binds the LV to a Resume of it.
			if !plan.Resumed && !plan.started() {
				if err := removeJournal(); err != nil {
					return failf("%w before %s; nothing was changed (%v)", ErrInterrupted, step.Kind, err)
				}
				return failf("%w before %s; nothing was changed", ErrInterrupted, step.Kind)
			}
			_ = save()
			return failf("%w before %s; run `%s` to finish", ErrInterrupted, step.Kind, resumeCall(name))
		}
		if ctx.Err() != nil {
			return interrupted()
		}
		_, lv, err := m.inspectLV(ctx, name)
		if err != nil {
			if ctx.Err() != nil {
				return interrupted()
			}
			if !journaled {
				return failf("before %s: %w", step.Kind, err)
			}
			_ = save()
			return failf("before %s: %w; the journal %s records the remaining steps, run `%s` once the cause is fixed",
				step.Kind, err, m.journalPath(name), resumeCall(name))
		}
		// The plan was made before the lock: another opsctl (or an admin's
		// lvm2 command) may have changed the LV since. A plan for a state
		// that is gone is not carried out.
		if !plan.Resumed && !plan.started() {
			if changed := changedSincePlan(plan, lv); changed != "" {
				if journaled {
					if err := removeJournal(); err != nil {
						return failf("%s changed since the plan was made: %s; nothing was changed (%v)", name, changed, err)
					}
				}
				return failf("%s changed since the plan was made: %s; nothing was changed, run the command again", name, changed)
			}
		}
		if plan.Resumed && step.Kind == StepResize && !reopened && reopenUncache(plan, lv) {
			reopened = true
			m.logger().Warn("the LV is cached again before lvresize; uncaching it again", "lv", name.String())
			for j := range plan.Steps {
				if plan.Steps[j].Kind == StepUncache {
					i = j - 1
				}
			}
			continue
		}
		if stepDone(step, lv, plan) {
			step.State, step.Skipped = StateDone, true
			m.logger().Info("step already done", "lv", name.String(), "step", step.Kind)
			if err := save(); err != nil {
				return failf("%w", err)
			}
			continue
		}
		started := m.now()
		step.State, step.Started, step.Finished, step.Error = StateRunning, &started, nil, ""
		if err := save(); err != nil {
			return failf("%w", err)
		}
		runErr := m.runStep(ctx, plan, step, lv)
		finished := m.now()
		step.Finished = &finished
		if runErr == nil {
			step.State = StateDone
			m.logger().Info("step done", "lv", name.String(), "step", step.Kind, "seconds", step.Duration().Seconds(), "dirty_blocks", step.DirtyBlocks)
			if err := save(); err != nil {
				return failf("%w", err)
			}
			continue
		}
		step.State, step.Error = StateFailed, runErr.Error()
		return m.recover(ctx, plan, step, runErr, save, removeJournal)
	}
	if journaled {
		if err := removeJournal(); err != nil {
			return failf("%w", err)
		}
	}
	return nil
}

// Resume reads the journal of name's interrupted resize and returns the
// plan that finishes it, with the leading steps whose effect is already
// there marked done (see SkipDoneSteps): Apply carries it out.
func (m *Manager) Resume(ctx context.Context, name Name) (*Plan, error) {
	plan, err := m.LoadJournal(name)
	if err != nil {
		return nil, err
	}
	if plan.Op != OpResize {
		return nil, fmt.Errorf("%s: the journal %s records an interrupted %s, not a resize; finish it with `%s`",
			resumeContext(name), m.journalPath(name), plan.Op, flushResumeCall(name))
	}
	if err := m.SkipDoneSteps(ctx, plan); err != nil {
		return nil, err
	}
	return plan, nil
}

// SkipDoneSteps marks the leading steps of a resumed plan whose effect is
// already there as done (an uncache that lvm2 finished after opsctl was
// killed, say), so that a dry run and the confirmation show only the lvm2
// commands Apply will really run. Apply checks each step again.
func (m *Manager) SkipDoneSteps(ctx context.Context, plan *Plan) error {
	var lv *LV
	if plan.Resumed && plan.step(StepUncache) != nil {
		var err error
		if _, lv, err = m.inspectLV(ctx, plan.Name()); err != nil {
			return fmt.Errorf("lvm cache %s %s: %w", plan.Op, plan.Name(), err)
		}
		reopenUncache(plan, lv)
	}
	for i := range plan.Steps {
		step := &plan.Steps[i]
		if step.State == StateDone {
			continue
		}
		if lv == nil {
			var err error
			if _, lv, err = m.inspectLV(ctx, plan.Name()); err != nil {
				return fmt.Errorf("lvm cache %s %s: %w", plan.Op, plan.Name(), err)
			}
		}
		if !stepDone(step, lv, plan) {
			return nil
		}
		step.State, step.Skipped = StateDone, true
	}
	return nil
}

// recover runs after step failed: it re-attaches the cache when a resize
// failed between uncache and recache, and decides whether the journal is
// still needed (something changed) or not (the LV is as it was).
func (m *Manager) recover(ctx context.Context, plan *Plan, failed *Step, stepErr error, save, removeJournal func() error) error {
	name := plan.Name()
	prefix := fmt.Sprintf("lvm cache %s %s: %s", plan.Op, name, failed.Kind)
	if plan.Op != OpResize {
		return fmt.Errorf("%s: %w", prefix, stepErr)
	}
	if failed.Kind == StepResize && plan.Strategy == StrategyRecache {
		recache := plan.step(StepRecache)
		m.logger().Warn("lvresize failed; re-attaching the cache", "lv", name.String(), "error", stepErr)
		started := m.now()
		_, reErr := m.Runner.Run(context.WithoutCancel(ctx), recache.Args...)
		finished := m.now()
		if reErr != nil {
			// lvm2 may exit non-zero after the cache was attached (a
			// warning turned error, a udev timeout): look before saying
			// the LV is not cached.
			if _, lv, err := m.inspectLV(context.WithoutCancel(ctx), name); err == nil && lv.Cached() {
				m.logger().Warn("the re-attach exited non-zero, but the LV is cached", "lv", name.String(), "error", reErr)
				reErr = nil
			}
		}
		if reErr != nil {
			recache.Error = "re-attach after the failed lvresize: " + reErr.Error()
			_ = save()
			return fmt.Errorf("%s: %w; re-attaching the cache failed too (%v): %s is NOT cached, its data is intact; the journal %s keeps the cache settings, run `%s` once the cause is fixed",
				prefix, stepErr, reErr, name, m.journalPath(name), resumeCall(name))
		}
		recache.Started, recache.Finished = &started, &finished
	}
	_, lv, inspectErr := m.inspectLV(context.WithoutCancel(ctx), name)
	if inspectErr == nil && lv.Cached() && lv.SizeBytes == plan.OriginalSizeBytes {
		if err := removeJournal(); err != nil {
			return fmt.Errorf("%s: %w (and %v)", prefix, stepErr, err)
		}
		what := "nothing was changed"
		if failed.Kind == StepResize && plan.Strategy == StrategyRecache {
			what = "the cache was re-attached with its recorded settings, " + name.String() + " is as before"
		}
		return fmt.Errorf("%s: %w; %s", prefix, stepErr, what)
	}
	_ = save()
	return fmt.Errorf("%s: %w; the journal %s records the remaining steps, run `%s` once the cause is fixed",
		prefix, stepErr, m.journalPath(name), resumeCall(name))
}

// changedSincePlan says how lv differs from what plan was made for, ""
// when it does not.
func changedSincePlan(plan *Plan, lv *LV) string {
	if lv.SizeBytes != plan.OriginalSizeBytes {
		return fmt.Sprintf("its size is %s, the plan was made for %s", FormatBytes(lv.SizeBytes), FormatBytes(plan.OriginalSizeBytes))
	}
	switch {
	case plan.Op == OpCreate && lv.Cached():
		return "it is cached by " + lv.Cache.Pool + " now"
	case plan.Op != OpCreate && !lv.Cached():
		return "it is not cached any more"
	case plan.Op != OpCreate && plan.Cache != nil && lv.Cache.Pool != plan.Cache.Pool:
		return "it is cached by " + lv.Cache.Pool + " now, the plan was made for " + plan.Cache.Pool
	}
	return ""
}

// reopenUncache puts the uncache of a resumed recache back to pending when
// the journal has it done but the LV, not yet grown, is cached again (opsctl
// was killed after re-attaching the cache, before it removed the journal):
// lvresize needs the LV uncached, on an lvm2 that cannot resize a cached LV.
// It reports whether it did.
func reopenUncache(plan *Plan, lv *LV) bool {
	uncache, resize := plan.step(StepUncache), plan.step(StepResize)
	if plan.Strategy != StrategyRecache || uncache == nil || resize == nil || uncache.State != StateDone ||
		resize.State == StateDone || !lv.Cached() || lv.SizeBytes >= plan.TargetSizeBytes {
		return false
	}
	uncache.State, uncache.Earlier, uncache.Skipped = StatePending, false, false
	uncache.Started, uncache.Finished = nil, nil
	return true
}

// stepDone reports whether the effect of step is already there.
func stepDone(step *Step, lv *LV, plan *Plan) bool {
	switch step.Kind {
	case StepCreate, StepRecache:
		return lv.Cached()
	case StepUncache:
		return !lv.Cached()
	case StepResize:
		return lv.SizeBytes >= plan.TargetSizeBytes
	}
	return false
}

// inspectLV reads the VG of name from lvm2 and finds the LV in it.
func (m *Manager) inspectLV(ctx context.Context, name Name) (*VG, *LV, error) {
	vg, err := m.Runner.InspectVG(ctx, name.VG)
	if err != nil {
		return nil, nil, err
	}
	lv, err := vg.LV(name.LV)
	return vg, lv, err
}

// runStep runs one lvm2 command. An uncache of a cache with dirty blocks
// polls them while lvm2 flushes, for the progress display.
func (m *Manager) runStep(ctx context.Context, plan *Plan, step *Step, lv *LV) error {
	// Once started, a step is never cancelled: lvm2 must finish what it
	// began; the plan stops before the next step instead. A flush can take
	// hours: say what opsctl waits for, and how not to.
	runCtx := context.WithoutCancel(ctx)
	// A log line an admin reads while lvm2 runs, not an error a program
	// could rename (see hints.go): it names opsctl's command lines itself.
	later := "`opsctl lvm cache status " + plan.LV + "` shows what it did"
	if plan.Op == OpResize {
		later = "`opsctl lvm cache resize " + plan.LV + " --resume` checks what it did and finishes"
	}
	stopWarning := context.AfterFunc(ctx, func() {
		m.logger().Warn("interrupted: waiting for lvm2 to finish, then stopping before the next step; interrupt again to stop waiting (lvm2 goes on in the background, "+later+")",
			"lv", plan.LV, "command", ShellQuote(append([]string{plan.Lvm}, step.Args...)))
	})
	defer stopWarning()
	if step.Kind != StepUncache || lv.Cache == nil {
		_, err := m.Runner.Run(runCtx, step.Args...)
		return err
	}
	// Checked by the plan, and again here: a resumed plan or a cache that
	// failed since must not lose its dirty blocks either.
	if why := lv.Cache.uncacheLoses(); why != "" {
		return errors.New(why)
	}
	step.DirtyBlocks = lv.Cache.DirtyBlocks
	if step.DirtyBlocks == 0 || m.NewProgress == nil {
		_, err := m.Runner.Run(runCtx, step.Args...)
		return err
	}
	progress := m.NewProgress(fmt.Sprintf("flush %s: blocks written back", plan.LV), step.DirtyBlocks)
	progress.Update(0)
	pollCtx, stopPolling := context.WithCancel(runCtx)
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		m.pollDirtyBlocks(pollCtx, plan.Name(), step, progress)
	}()
	_, err := m.Runner.Run(runCtx, step.Args...)
	stopPolling()
	<-polled
	if err == nil {
		// The uncache wrote every dirty block back, whether or not a poll
		// saw the last of them before it returned.
		progress.Update(step.DirtyBlocks)
		progress.Done()
	}
	return err
}

// pollDirtyBlocks reads cache_dirty_blocks until ctx ends. lvconvert holds
// the VG lock for the whole flush, so the poll reads without locking; a
// poll that fails (metadata being rewritten) is simply skipped.
func (m *Manager) pollDirtyBlocks(ctx context.Context, name Name, step *Step, progress Progress) {
	total := step.DirtyBlocks
	ticker := time.NewTicker(m.pollInterval())
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		report, err := m.Runner.Report(ctx, "lvs", "--nolocking", "-o", "cache_dirty_blocks", name.String())
		if err != nil || len(report["lv"]) == 0 || strings.TrimSpace(report["lv"][0]["cache_dirty_blocks"]) == "" {
			continue
		}
		left, err := report["lv"][0].Int("cache_dirty_blocks")
		if err != nil {
			continue
		}
		m.logger().Debug("flush", "lv", name.String(), "dirty_blocks_left", left)
		if left > total {
			total = left
			step.DirtyBlocks = total
			progress.SetTotal(total)
		}
		progress.Update(total - left)
	}
}

func (m *Manager) now() time.Time {
	if m.Clock != nil {
		return m.Clock().UTC()
	}
	return time.Now().UTC()
}
