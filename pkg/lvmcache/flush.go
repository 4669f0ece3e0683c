package lvmcache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// A flush writes every dirty block of a writeback cache back to the origin
// while the LV stays cached, online and in writeback. dm-cache writes back
// on its own only when its policy wants to (smq: when the LV has been idle
// for a second) and at most migration_threshold sectors at a time; a flush
// makes it write back now, by one of two methods, and then puts back every
// setting it changed. Measured in the VM test (docs/lvm.md, "Flushing a big
// cache"): the cleaner policy is the default.
const (
	// FlushCleaner switches the cache to the cleaner policy (lvchange
	// --cachepolicy cleaner), which writes every dirty block back whether
	// or not the LV is busy and promotes nothing meanwhile, as lvm2's own
	// uncache does; then back to the recorded policy.
	FlushCleaner = "cleaner"
	// FlushThreshold raises the runtime migration_threshold in steps
	// (dmsetup message), so that the cache's own policy writes back more at
	// a time; smq does so only while the LV is idle. Then back to the
	// recorded value.
	FlushThreshold = "threshold"
)

// FlushRequest asks for the dirty blocks of a writeback cache to be written
// back.
type FlushRequest struct {
	LV Name
	// Until ends the flush, whatever is left, and puts the settings back;
	// zero: it ends when no dirty block is left.
	Until time.Time
	// Method is FlushCleaner (the default) or FlushThreshold.
	Method string
}

// FlushRecord is what a flush records, in its plan and its journal, before
// it changes anything: the settings it puts back and until when it runs.
type FlushRecord struct {
	Method string `json:"method"`
	// Policy and Settings are the cache policy and its settings in lvm's
	// metadata (lvs cache_policy, cache_settings). The settings are never
	// passed to lvm2: lvchange --cachepolicy keeps those of the metadata
	// (checked on lvm2 2.03.16), and the record only reports them.
	Policy   string `json:"policy"`
	Settings string `json:"settings,omitempty"`
	// MigrationThreshold is the kernel's runtime value, in sectors.
	MigrationThreshold int64      `json:"migration_threshold"`
	Until              *time.Time `json:"until,omitempty"`
	// DirtyBlocks and ChunkSizeBytes are the dirty blocks when the plan was
	// made and their size.
	DirtyBlocks    int64 `json:"dirty_blocks"`
	ChunkSizeBytes int64 `json:"chunk_size_bytes"`
}

// The reasons a flush stops writing back (FlushResult.Stopped).
const (
	StoppedClean       = "clean"
	StoppedWindow      = "window"
	StoppedInterrupted = "interrupted"
)

// FlushResult is what a flush did: the figures `-o json` prints.
type FlushResult struct {
	LV       string `json:"lv"`
	Method   string `json:"method"`
	Complete bool   `json:"complete"`
	// Stopped says why the write-back ended: StoppedClean, StoppedWindow or
	// StoppedInterrupted; "" when there was nothing to flush.
	Stopped           string `json:"stopped"`
	DirtyBlocksBefore int64  `json:"dirty_blocks_before"`
	DirtyBlocksAfter  int64  `json:"dirty_blocks_after"`
	FlushedBlocks     int64  `json:"flushed_blocks"`
	// Seconds is the flush's time from its start (the switch of the policy
	// included: the cleaner writes back from then on) to the end of the
	// write-back, the restore not included; BlocksPerSecond its rate.
	Seconds         float64 `json:"seconds"`
	BlocksPerSecond float64 `json:"blocks_per_second"`
	// Policy, Settings and MigrationThreshold are the settings as the
	// flush left them: those it found.
	Policy             string `json:"policy"`
	Settings           string `json:"settings"`
	MigrationThreshold int64  `json:"migration_threshold"`
}

// maxMigrationThreshold caps what FlushThreshold raises the runtime
// migration_threshold to: 512 MiB in flight is more than any origin
// absorbs at once.
const maxMigrationThreshold = 1 << 20

// thresholdSteps are the runtime migration_thresholds FlushThreshold goes
// through, one every raiseEvery while dirty blocks are left: from twice
// what it found (8 chunks at least, lvm2's own floor) up to 64 times that.
func thresholdSteps(found, chunkSectors int64) []int64 {
	first := max(2*found, 8*chunkSectors, 2048)
	var steps []int64
	for t := first; t <= 64*first && t <= maxMigrationThreshold; t *= 4 {
		steps = append(steps, t)
	}
	if len(steps) == 0 {
		steps = []int64{maxMigrationThreshold}
	}
	return steps
}

// raiseEvery is how long FlushThreshold waits at one threshold.
const raiseEvery = 10 * time.Second

func flushSteps(name Name, rec *FlushRecord, chunkSectors int64) []Step {
	threshold := func(kind string, value int64) Step {
		return Step{Kind: kind, Dmsetup: true, State: StatePending,
			Args: []string{"message", name.DMName(), "0", "migration_threshold", strconv.FormatInt(value, 10)}}
	}
	writeBack := Step{Kind: StepWriteBack, State: StatePending}
	restore := threshold(StepRestoreThreshold, rec.MigrationThreshold)
	if rec.Method == FlushThreshold {
		return []Step{threshold(StepRaiseThreshold, thresholdSteps(rec.MigrationThreshold, chunkSectors)[0]), writeBack, restore}
	}
	return []Step{
		{Kind: StepCleanerPolicy, Args: []string{"lvchange", "--cachepolicy", "cleaner", name.String()}, State: StatePending},
		writeBack,
		{Kind: StepRestorePolicy, Args: []string{"lvchange", "--cachepolicy", rec.Policy, name.String()}, State: StatePending},
		restore,
	}
}

// ResumeFlush reads the journal of name's interrupted flush (a SIGKILL
// left it) and returns the plan that finishes it: the write-back goes on
// until no dirty block is left or the recorded window ends, then the
// recorded settings are put back. until, when not zero, replaces the
// recorded end. Flush carries it out.
func (m *Manager) ResumeFlush(name Name, until time.Time) (*Plan, error) {
	plan, err := m.loadJournal(name, flushResumeContext(name))
	if errors.Is(err, ErrNoJournal) {
		return nil, &noFlushJournalError{context: flushResumeContext(name), name: name, dir: m.stateDir()}
	}
	if err != nil {
		return nil, err
	}
	if plan.Op != OpFlush {
		return nil, fmt.Errorf("%s: the journal %s records an interrupted %s, not a flush; finish it with `%s`",
			flushResumeContext(name), m.journalPath(name), plan.Op, resumeCall(name))
	}
	if !until.IsZero() {
		u := until.UTC()
		plan.Flush.Until = &u
	}
	return plan, nil
}

// noFlushJournalError is ResumeFlush's ErrNoJournal: no flush of the LV
// was interrupted.
type noFlushJournalError struct {
	context, dir string
	name         Name
}

func (e *noFlushJournalError) Error() string {
	return fmt.Sprintf("%s: no interrupted flush of %s is journaled in %s", e.context, e.name, e.dir)
}

func (e *noFlushJournalError) Unwrap() error { return ErrNoJournal }

// ErrFlushInterrupted is wrapped by the error of a flush stopped by its
// context (SIGINT, SIGTERM): the settings are back, dirty blocks are left.
var ErrFlushInterrupted = errors.New("interrupted")

// Flush carries out a plan of PlanFlush or ResumeFlush: it changes the
// cache's policy or migration_threshold, waits for the dirty blocks to go
// (showing them on NewProgress), and puts every recorded setting back, when
// no dirty block is left, when the plan's window ends, or when ctx ends
// (SIGINT, SIGTERM): the restore itself is not cancelled. The plan is
// journaled before each change and the journal removed once the settings
// are back, so that a flush killed mid-way is finished by ResumeFlush.
// A flush stopped by ctx returns its result and an error wrapping
// ErrFlushInterrupted.
func (m *Manager) Flush(ctx context.Context, plan *Plan) (*FlushResult, error) {
	name := plan.Name()
	failf := func(format string, args ...any) error {
		return fmt.Errorf("lvm cache flush %s: "+format, append([]any{name}, args...)...)
	}
	if plan.Op != OpFlush || plan.Flush == nil {
		return nil, failf("not a flush plan")
	}
	state, err := m.openState()
	if err != nil {
		return nil, failf("%w", err)
	}
	defer state.Close()
	unlock, err := state.lockLV(name)
	if err != nil {
		return nil, failf("%w", err)
	}
	defer unlock()
	if !plan.Resumed {
		err = m.checkNoJournal(state, name)
	} else if err = m.checkJournalExists(state, name); err != nil {
		return nil, fmt.Errorf("%s: %w", flushResumeContext(name), err)
	}
	if err != nil {
		return nil, failf("%w", err)
	}
	f := &flushRun{m: m, plan: plan, state: state, name: name}
	return f.run(ctx)
}

// flushRun is one Flush under the LV's lock.
type flushRun struct {
	m     *Manager
	plan  *Plan
	state *stateDir
	name  Name
	res   FlushResult
	// started is when Flush began: the result's seconds count from there,
	// the switch of the policy included, for the cleaner starts writing
	// back as soon as the kernel has it.
	started time.Time
}

func (f *flushRun) save() error {
	f.plan.Updated = f.m.now()
	return f.m.saveJournal(f.state, f.plan)
}

func (f *flushRun) failf(format string, args ...any) error {
	return fmt.Errorf("lvm cache flush %s: "+format, append([]any{f.name}, args...)...)
}

// keptf is the error of a flush that could not put everything back: the
// journal keeps the settings for ResumeFlush.
func (f *flushRun) keptf(format string, args ...any) error {
	_ = f.save()
	return fmt.Errorf("lvm cache flush %s: %s; the journal %s keeps the settings to put back, run `%s` once the cause is fixed",
		f.name, fmt.Sprintf(format, args...), f.m.journalPath(f.name), flushResumeCall(f.name))
}

func (f *flushRun) run(ctx context.Context) (*FlushResult, error) {
	f.started = f.m.now()
	rec := f.plan.Flush
	f.res = FlushResult{LV: f.plan.LV, Method: rec.Method, Policy: rec.Policy, Settings: rec.Settings, MigrationThreshold: rec.MigrationThreshold}
	// Stopped before its first change, a new flush has changed nothing: no
	// journal, nothing to put back.
	if !f.plan.Resumed && ctx.Err() != nil {
		return nil, f.failf("%w before the flush began; nothing was changed", ErrFlushInterrupted)
	}
	if err := f.checkUnchanged(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	if !f.plan.Resumed && f.windowOver() {
		f.res.Stopped, f.res.DirtyBlocksAfter = StoppedWindow, f.res.DirtyBlocksBefore
		return &f.res, nil
	}
	if err := f.save(); err != nil {
		return nil, f.failf("%w", err)
	}
	var pollErr error
	for i := range f.plan.Steps {
		step := &f.plan.Steps[i]
		if step.State == StateDone {
			continue
		}
		switch step.Kind {
		case StepWriteBack:
			pollErr = f.writeBack(ctx, step)
			continue
		case StepCleanerPolicy, StepRaiseThreshold:
			if ctx.Err() != nil || f.windowOver() {
				// A resumed flush whose window is over, or stopped: only
				// the restore is left to do.
				step.State, step.Skipped = StateDone, true
				continue
			}
		}
		if err := f.runStep(ctx, step); err != nil {
			return nil, err
		}
	}
	if err := f.m.removeJournal(f.state, f.name); err != nil {
		return nil, f.failf("%w", err)
	}
	back := fmt.Sprintf("the settings are back (policy %s, migration_threshold %d)", rec.Policy, rec.MigrationThreshold)
	switch {
	case pollErr != nil:
		return &f.res, f.failf("%v; %s", pollErr, back)
	case f.res.Stopped == StoppedInterrupted:
		return &f.res, f.failf("%w with %d dirty blocks left; %s", ErrFlushInterrupted, f.res.DirtyBlocksAfter, back)
	}
	return &f.res, nil
}

// maxPollFailures is how many dirty-block polls in a row may fail (lvm2
// rewriting the metadata, a slow device) before the flush stops waiting
// and puts the settings back.
const maxPollFailures = 10

// writeBack waits for the dirty blocks to go, showing them on the progress
// display, until none is left, the window ends or ctx ends; FlushThreshold
// raises the runtime migration_threshold a step every raiseEvery. It
// records the figures in f.res. Its error is a dirty-block count that
// could not be read: the caller still puts the settings back.
func (f *flushRun) writeBack(ctx context.Context, step *Step) error {
	rec := f.plan.Flush
	started := f.m.now()
	step.State, step.Started = StateRunning, &started
	if err := f.save(); err != nil {
		return err
	}
	poll := func() (int64, error) {
		st, err := f.m.Runner.DMCacheStatus(context.WithoutCancel(ctx), f.name)
		if err != nil {
			return 0, err
		}
		return st.DirtyBlocks, nil
	}
	left, err := poll()
	for failures := 1; err != nil && failures < maxPollFailures; failures++ {
		left, err = poll()
	}
	if err != nil {
		return err
	}
	// A resumed flush counts from what is left now.
	if f.plan.Resumed {
		f.res.DirtyBlocksBefore = left
	}
	f.res.DirtyBlocksAfter = left
	total := max(f.res.DirtyBlocksBefore, left)
	var progress Progress = nopProgress{}
	if f.m.NewProgress != nil && total > 0 {
		progress = f.m.NewProgress(fmt.Sprintf("flush %s: blocks written back", f.name), total)
	}
	progress.Update(total - left)
	var window <-chan time.Time
	if rec.Until != nil {
		timer := time.NewTimer(rec.Until.Sub(f.m.now()))
		defer timer.Stop()
		window = timer.C
	}
	ticker := time.NewTicker(f.m.pollInterval())
	defer ticker.Stop()
	steps := thresholdSteps(rec.MigrationThreshold, rec.ChunkSizeBytes/sectorSize)
	raised, lastRaise := 0, f.m.now()
	stopWarning := context.AfterFunc(ctx, func() {
		f.m.logger().Warn("interrupted: stopping the flush and putting the settings back first; further interrupts wait for that",
			"lv", f.name.String(), "policy", rec.Policy, "migration_threshold", rec.MigrationThreshold)
	})
	defer stopWarning()
	failures := 0
	for left > 0 && f.res.Stopped == "" {
		select {
		case <-ctx.Done():
			f.res.Stopped = StoppedInterrupted
			continue
		case <-window:
			f.res.Stopped = StoppedWindow
			continue
		case <-ticker.C:
		}
		n, err := poll()
		if err != nil {
			if failures++; failures >= maxPollFailures {
				f.finishWriteBack(step, total, left)
				return err
			}
			continue
		}
		failures = 0
		left = n
		f.m.logger().Debug("flush", "lv", f.name.String(), "dirty_blocks_left", left)
		if left > total {
			total = left
			progress.SetTotal(total)
		}
		progress.Update(total - left)
		if rec.Method == FlushThreshold && raised+1 < len(steps) && f.m.now().Sub(lastRaise) >= raiseEvery {
			raised, lastRaise = raised+1, f.m.now()
			f.raise(ctx, steps[raised])
		}
	}
	if left == 0 {
		f.res.Stopped, f.res.Complete = StoppedClean, true
		progress.Update(total)
		progress.Done()
	} else if stopper, ok := progress.(interface{ Stop() }); ok {
		stopper.Stop() // a display that can end short of its total
	}
	f.finishWriteBack(step, total, left)
	return nil
}

// raise sets the runtime migration_threshold to value, a step of
// FlushThreshold. It is not journaled: the restore puts back the recorded
// value, whatever the last step was. A failed step is logged; the flush
// goes on at the threshold it has.
func (f *flushRun) raise(ctx context.Context, value int64) {
	args := []string{"message", f.name.DMName(), "0", "migration_threshold", strconv.FormatInt(value, 10)}
	if _, err := f.m.Runner.RunDmsetup(context.WithoutCancel(ctx), args...); err != nil {
		f.m.logger().Warn("raising migration_threshold failed", "lv", f.name.String(), "migration_threshold", value, "error", err)
		return
	}
	f.m.logger().Info("raised migration_threshold", "lv", f.name.String(), "migration_threshold", value)
}

// finishWriteBack records the figures of the write-back (total is the
// most dirty blocks seen, left what remains) and journals it done.
func (f *flushRun) finishWriteBack(step *Step, total, left int64) {
	finished := f.m.now()
	step.State, step.Finished = StateDone, &finished
	f.res.DirtyBlocksAfter = left
	f.res.FlushedBlocks = max(total-left, 0)
	f.res.Seconds = finished.Sub(f.started).Seconds()
	if f.res.Seconds > 0 {
		f.res.BlocksPerSecond = float64(f.res.FlushedBlocks) / f.res.Seconds
	}
	step.DirtyBlocks = f.res.FlushedBlocks
	_ = f.save()
}

// nopProgress shows nothing.
type nopProgress struct{}

func (nopProgress) Update(int64)   {}
func (nopProgress) SetTotal(int64) {}
func (nopProgress) Done()          {}

// windowOver reports whether the plan's window has ended.
func (f *flushRun) windowOver() bool {
	until := f.plan.Flush.Until
	return until != nil && !f.m.now().Before(*until)
}

// checkUnchanged checks, under the lock, that the cache is still the one
// the plan was made for: cached, writeback, its policy the recorded one
// (or, for a resumed flush, the one the flush set).
func (f *flushRun) checkUnchanged(ctx context.Context) error {
	c, err := f.m.cacheStateOf(ctx, f.name)
	if err != nil {
		if f.plan.Resumed {
			return f.keptf("%v", err)
		}
		return f.failf("%w", err)
	}
	rec := f.plan.Flush
	switch {
	case !c.cached:
		return f.changedf("it is not cached any more")
	case f.plan.Resumed:
		return nil
	case c.mode != "writeback":
		return f.changedf("its cache is " + c.mode + " now")
	case c.policy != rec.Policy || c.settings != rec.Settings:
		return f.changedf(fmt.Sprintf("its cache policy is %s (settings %q) now, the plan was made for %s (settings %q)",
			c.policy, c.settings, rec.Policy, rec.Settings))
	}
	// The dirty blocks before anything changes: dm-cache starts writing
	// back as soon as the first step has run.
	st, err := f.m.Runner.DMCacheStatus(ctx, f.name)
	if err != nil {
		return f.failf("%w", err)
	}
	f.res.DirtyBlocksBefore = st.DirtyBlocks
	return nil
}

func (f *flushRun) changedf(what string) error {
	if f.plan.Resumed {
		return f.keptf("%s changed since the flush was interrupted: %s; nothing was changed", f.name, what)
	}
	return f.failf("%s changed since the plan was made: %s; nothing was changed, run the command again", f.name, what)
}

// runStep runs one change of the flush, unless its effect is there, and
// journals it. A restore is never cancelled: it runs after ctx has ended.
func (f *flushRun) runStep(ctx context.Context, step *Step) error {
	ctx = context.WithoutCancel(ctx)
	// A new flush knows where the policy stands (checkUnchanged, then its
	// own change): it looks before a step only where the look is the
	// step's condition (the runtime migration_threshold) or the plan was
	// resumed. Each lvm2 report costs a scan of the devices.
	var done bool
	var err error
	if f.plan.Resumed || step.Dmsetup {
		done, err = f.stepDone(ctx, step)
	}
	if err != nil {
		return f.keptf("before %s: %v", step.Kind, err)
	}
	if done {
		step.State, step.Skipped = StateDone, true
		return f.saveOrFail()
	}
	started := f.m.now()
	step.State, step.Started, step.Finished, step.Error = StateRunning, &started, nil, ""
	if err := f.save(); err != nil {
		return f.failf("%w", err)
	}
	if step.Dmsetup {
		_, err = f.m.Runner.RunDmsetup(ctx, step.Args...)
	} else {
		_, err = f.m.Runner.Run(ctx, step.Args...)
	}
	finished := f.m.now()
	step.Finished = &finished
	if err != nil {
		step.State, step.Error = StateFailed, err.Error()
		return f.keptf("%s: %v", step.Kind, err)
	}
	if done, err = f.stepDone(ctx, step); err != nil || !done {
		step.State = StateFailed
		if err == nil {
			err = errors.New(f.notDoneYet(step))
		}
		return f.keptf("%s: %v", step.Kind, err)
	}
	step.State = StateDone
	f.m.logger().Info("step done", "lv", f.name.String(), "step", step.Kind, "seconds", step.Duration().Seconds())
	return f.saveOrFail()
}

func (f *flushRun) saveOrFail() error {
	if err := f.save(); err != nil {
		return f.failf("%w", err)
	}
	return nil
}

// stepDone reports whether the effect of step is there: the kernel runs
// the policy it sets, and lvm's metadata records it; the runtime
// migration_threshold is the one it sets.
func (f *flushRun) stepDone(ctx context.Context, step *Step) (bool, error) {
	rec := f.plan.Flush
	switch step.Kind {
	case StepCleanerPolicy, StepRestorePolicy:
		want := "cleaner"
		if step.Kind == StepRestorePolicy {
			want = rec.Policy
		}
		c, err := f.m.cacheStateOf(ctx, f.name)
		if err != nil {
			return false, err
		}
		if !c.cached {
			return false, errors.New("it is not cached any more")
		}
		st, err := f.m.Runner.DMCacheStatus(ctx, f.name)
		if err != nil {
			return false, err
		}
		return c.policy == want && st.Policy == want, nil
	case StepRaiseThreshold, StepRestoreThreshold:
		st, err := f.m.Runner.DMCacheStatus(ctx, f.name)
		if err != nil {
			return false, err
		}
		have, err := st.MigrationThreshold()
		if err != nil {
			return false, err
		}
		want, _ := strconv.ParseInt(step.Args[len(step.Args)-1], 10, 64)
		if step.Kind == StepRaiseThreshold {
			return have >= want, nil
		}
		return have == want, nil
	}
	return false, nil
}

// notDoneYet says what a step that ran without error left undone.
func (f *flushRun) notDoneYet(step *Step) string {
	if step.Dmsetup {
		return "the kernel does not report migration_threshold " + step.Args[len(step.Args)-1] + " after it"
	}
	return "lvm2 and the kernel do not both report policy " + step.Args[2] + " after it"
}

// cacheState is what a flush looks at of an LV's cache in lvm's metadata.
type cacheState struct {
	cached                 bool
	mode, policy, settings string
}

// cacheStateOf reads name's cacheState in one lvm2 report of the LV alone,
// where InspectVG reads the whole VG and its PVs.
func (m *Manager) cacheStateOf(ctx context.Context, name Name) (cacheState, error) {
	report, err := m.Runner.Report(ctx, "lvs", "-o", "lv_name,segtype,cache_mode,cache_policy,cache_settings", name.String())
	if err != nil {
		return cacheState{}, fmt.Errorf("lvs %s: %w", name, err)
	}
	for _, row := range report["lv"] {
		if row["lv_name"] == name.LV {
			return cacheState{cached: row["segtype"] == "cache", mode: row["cache_mode"], policy: row["cache_policy"], settings: row["cache_settings"]}, nil
		}
	}
	return cacheState{}, fmt.Errorf("logical volume %s %w", name, ErrNotFound)
}
