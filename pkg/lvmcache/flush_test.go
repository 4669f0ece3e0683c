package lvmcache

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// flushFake is newFake with slowlv's writeback frozen the way the VM test
// freezes it (runtime migration_threshold 0), and fast polls.
func flushFake(t *testing.T, mutate func(*fakeState)) (*Manager, string) {
	t.Helper()
	m, path := newFake(t, func(s *fakeState) {
		s.LVs[0].Cache.Threshold = 0
		if mutate != nil {
			mutate(s)
		}
	})
	m.PollInterval = time.Millisecond
	return m, path
}

func planFlush(t *testing.T, m *Manager, req FlushRequest) *Plan {
	t.Helper()
	if req.LV == (Name{}) {
		req.LV = slowlv
	}
	plan, err := m.PlanFlush(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// changesOf lists the commands other than reports the fake ran after its
// first n calls, with their arguments.
func changesOf(t *testing.T, path string, n int) []string {
	t.Helper()
	var ran []string
	for _, call := range readFake(t, path).Calls[n:] {
		switch call[0] {
		case "lvs", "pvs", "vgs", "version", "status":
		default:
			ran = append(ran, strings.Join(call, " "))
		}
	}
	return ran
}

// wantSettingsBack checks that slowlv's cache is as flushFake made it:
// cached, writeback, policy and settings as recorded, the runtime
// migration_threshold as found, and no journal.
func wantSettingsBack(t *testing.T, m *Manager, path string, settings string, threshold int64) {
	t.Helper()
	c := slowlvOf(t, path).Cache
	if c == nil || c.Mode != "writeback" || c.Policy != "smq" || c.kernelPolicy() != "smq" || c.Settings != settings || c.Threshold != threshold {
		t.Errorf("cache after the flush: %+v; want writeback, smq in lvm and the kernel, settings %q, migration_threshold %d", c, settings, threshold)
	}
	if _, err := os.Stat(m.journalPath(slowlv)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left: %v", err)
	}
}

func TestFlushPlanIsTheCleanerPolicyAndBack(t *testing.T) {
	m, _ := flushFake(t, nil)
	plan := planFlush(t, m, FlushRequest{})
	plan.Lvm, plan.Dmsetup = "lvm", "dmsetup"
	want := "+ lvm lvchange --cachepolicy cleaner storage/slowlv\n+ lvm lvchange --cachepolicy smq storage/slowlv\n+ dmsetup message storage-slowlv 0 migration_threshold 0"
	if got := strings.Join(plan.Commands(), "\n"); got != want {
		t.Errorf("commands:\n%s\nwant\n%s", got, want)
	}
	if plan.Flush.DirtyBlocks != 300 || plan.Flush.MigrationThreshold != 0 || plan.Flush.Policy != "smq" || !strings.Contains(plan.Notes[0], "300 dirty blocks (18.75 MiB)") {
		t.Errorf("plan %+v %+v", plan.Flush, plan.Notes)
	}
	plan = planFlush(t, m, FlushRequest{Method: FlushThreshold})
	plan.Lvm, plan.Dmsetup = "lvm", "dmsetup"
	want = "+ dmsetup message storage-slowlv 0 migration_threshold 2048\n+ dmsetup message storage-slowlv 0 migration_threshold 0"
	if got := strings.Join(plan.Commands(), "\n"); got != want {
		t.Errorf("threshold commands:\n%s\nwant\n%s", got, want)
	}
}

// TestFlushWritesBackAndPutsEveryRecordedSettingBack: dm-cache's own
// writeback frozen (runtime migration_threshold 0) and a persistent
// setting: the cleaner policy writes every block back; then lvm's metadata
// has the policy and setting it had, and the kernel the runtime 0 it had
// (the reload set 4096 from the metadata: dmsetup puts 0 back).
func TestFlushWritesBackAndPutsEveryRecordedSettingBack(t *testing.T) {
	m, path := flushFake(t, func(s *fakeState) { s.LVs[0].Cache.Settings = "migration_threshold=4096" })
	var progress *recordedProgress
	m.NewProgress = func(label string, total int64) Progress {
		progress = &recordedProgress{label: label, total: total}
		return progress
	}
	plan := planFlush(t, m, FlushRequest{})
	calls := len(readFake(t, path).Calls)
	res, err := m.Flush(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Stopped != StoppedClean || res.DirtyBlocksBefore != 300 || res.DirtyBlocksAfter != 0 || res.FlushedBlocks != 300 ||
		res.Policy != "smq" || res.Settings != "migration_threshold=4096" || res.MigrationThreshold != 0 {
		t.Errorf("result %+v", res)
	}
	if slowlvOf(t, path).Cache.Dirty != 0 {
		t.Errorf("dirty blocks left: %d", slowlvOf(t, path).Cache.Dirty)
	}
	wantSettingsBack(t, m, path, "migration_threshold=4096", 0)
	want := []string{"lvchange --cachepolicy cleaner storage/slowlv", "lvchange --cachepolicy smq storage/slowlv", "message storage-slowlv 0 migration_threshold 0"}
	if ran := changesOf(t, path, calls); !slices.Equal(ran, want) {
		t.Errorf("ran %q, want %q", ran, want)
	}
	if progress == nil || progress.total != 300 || !progress.ended || progress.done[len(progress.done)-1] != 300 || progress.label != "flush storage/slowlv: blocks written back" {
		t.Errorf("progress %+v", progress)
	}
}

// TestFlushLeavesAThresholdTheReloadPutBackAlone: the runtime value was
// lvm's own; the reload to the recorded policy restores it, and dmsetup
// does not run.
func TestFlushLeavesAThresholdTheReloadPutBackAlone(t *testing.T) {
	m, path := flushFake(t, func(s *fakeState) { s.LVs[0].Cache.Threshold = 2048 })
	calls := len(readFake(t, path).Calls)
	if _, err := m.Flush(context.Background(), planFlush(t, m, FlushRequest{})); err != nil {
		t.Fatal(err)
	}
	wantSettingsBack(t, m, path, "", 2048)
	if ran := changesOf(t, path, calls); len(ran) != 2 || strings.Contains(strings.Join(ran, " "), "message") {
		t.Errorf("ran %q, want the two lvchange and no dmsetup message", ran)
	}
}

// TestFlushByThresholdRaisesAndRestoresIt: the threshold method raises the
// runtime migration_threshold and puts the found one back.
func TestFlushByThresholdRaisesAndRestoresIt(t *testing.T) {
	m, path := flushFake(t, nil)
	res, err := m.Flush(context.Background(), planFlush(t, m, FlushRequest{Method: FlushThreshold}))
	if err != nil || !res.Complete || res.Method != FlushThreshold {
		t.Fatalf("result %+v, %v", res, err)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// TestFlushStopsAtTheEndOfItsWindow: a busy LV, where smq writes nothing
// back at any threshold: the window ends, the threshold goes back, and the
// result says how much is left.
func TestFlushStopsAtTheEndOfItsWindow(t *testing.T) {
	m, path := flushFake(t, func(s *fakeState) { s.LVs[0].Cache.Busy = true })
	plan := planFlush(t, m, FlushRequest{Method: FlushThreshold, Until: time.Now().Add(100 * time.Millisecond)})
	res, err := m.Flush(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete || res.Stopped != StoppedWindow || res.DirtyBlocksAfter != 300 {
		t.Errorf("result %+v: want stopped by the window with 300 left", res)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// TestFlushWhoseWindowIsOverChangesNothing: planned, then started after
// its window ended (a long confirmation, a slow lvm2): nothing runs.
func TestFlushWhoseWindowIsOverChangesNothing(t *testing.T) {
	m, path := flushFake(t, nil)
	plan := planFlush(t, m, FlushRequest{Until: time.Now().Add(-time.Second)})
	calls := len(readFake(t, path).Calls)
	res, err := m.Flush(context.Background(), plan)
	if err != nil || res.Stopped != StoppedWindow || res.DirtyBlocksAfter != 300 {
		t.Errorf("result %+v, %v", res, err)
	}
	if ran := changesOf(t, path, calls); len(ran) != 0 {
		t.Errorf("ran %q", ran)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// TestInterruptedFlushPutsTheSettingsBack: SIGINT once the write-back runs:
// the flush stops, the settings are back before Flush returns, and its
// error says how much is left.
func TestInterruptedFlushPutsTheSettingsBack(t *testing.T) {
	m, path := flushFake(t, func(s *fakeState) { s.LVs[0].Cache.Busy = true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.NewProgress = func(string, int64) Progress { cancel(); return &recordedProgress{} }
	res, err := m.Flush(ctx, planFlush(t, m, FlushRequest{Method: FlushThreshold}))
	if !errors.Is(err, ErrFlushInterrupted) || !strings.Contains(err.Error(), "300 dirty blocks left; the settings are back (policy smq, migration_threshold 0)") {
		t.Errorf("Flush interrupted: %v", err)
	}
	if res == nil || res.Stopped != StoppedInterrupted || res.Complete {
		t.Errorf("result %+v", res)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// TestFlushInterruptedBeforeItBeganChangesNothing: a context cancelled
// before the first change: no command, no journal.
func TestFlushInterruptedBeforeItBeganChangesNothing(t *testing.T) {
	m, path := flushFake(t, nil)
	plan := planFlush(t, m, FlushRequest{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := len(readFake(t, path).Calls)
	if _, err := m.Flush(ctx, plan); !errors.Is(err, ErrFlushInterrupted) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Errorf("Flush: %v", err)
	}
	if ran := changesOf(t, path, calls); len(ran) != 0 {
		t.Errorf("ran %q", ran)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// killedFlush leaves what a flush killed (SIGKILL) during its write-back
// leaves: the cleaner policy set in lvm2 and the kernel, the journal
// saying so.
func killedFlush(t *testing.T, m *Manager, path string) {
	t.Helper()
	plan := planFlush(t, m, FlushRequest{})
	plan.Steps[0].State, plan.Steps[1].State = StateDone, StateRunning
	saveJournalOf(t, m, plan)
	if _, err := m.Runner.Run(context.Background(), plan.Steps[0].Args...); err != nil {
		t.Fatal(err)
	}
	editFake(t, path, func(s *fakeState) { s.LVs[0].Cache.Busy = true })
}

// TestKilledFlushIsFinishedByResumeFlush: while the journal of a killed
// flush is there, every other change of the LV is refused with the way
// out; ResumeFlush writes back what is left and puts the settings back.
func TestKilledFlushIsFinishedByResumeFlush(t *testing.T) {
	ctx := context.Background()
	m, path := flushFake(t, nil)
	killedFlush(t, m, path)
	if _, err := m.PlanRemove(ctx, slowlv); err == nil || !strings.Contains(err.Error(), "an interrupted flush of storage/slowlv") ||
		!strings.Contains(err.Error(), "finish it with `Manager.ResumeFlush(storage/slowlv)`") {
		t.Errorf("remove while a flush is journaled: %v", err)
	}
	if _, err := m.PlanFlush(ctx, FlushRequest{LV: slowlv}); err == nil || !strings.Contains(err.Error(), "Manager.ResumeFlush(storage/slowlv)") {
		t.Errorf("a new flush while one is journaled: %v", err)
	}
	if _, err := m.Resume(ctx, slowlv); err == nil || !strings.Contains(err.Error(), "records an interrupted flush, not a resize") {
		t.Errorf("resize resume of a flush journal: %v", err)
	}
	plan, err := m.ResumeFlush(slowlv, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Commands(), "\n"); strings.Contains(got, "cleaner") || !strings.Contains(got, "--cachepolicy smq") {
		t.Errorf("resume shows\n%s\nwant the restore only", got)
	}
	res, err := m.Flush(ctx, plan)
	if err != nil || !res.Complete {
		t.Fatalf("resumed flush: %+v, %v", res, err)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// TestResumeFlushWithAWindowOverOnlyPutsTheSettingsBack: a window that
// ended while opsctl was dead: the resume restores, writing back no more.
func TestResumeFlushWithAWindowOverOnlyPutsTheSettingsBack(t *testing.T) {
	m, path := flushFake(t, nil)
	killedFlush(t, m, path)
	plan, err := m.ResumeFlush(slowlv, time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Flush(context.Background(), plan)
	if err != nil || res.Complete || res.Stopped != StoppedWindow {
		t.Errorf("result %+v, %v", res, err)
	}
	wantSettingsBack(t, m, path, "", 0)
}

// TestFlushThatCannotPutTheSettingsBackKeepsTheJournal: the lvchange back
// fails: the error says so and the journal keeps the settings.
func TestFlushThatCannotPutTheSettingsBackKeepsTheJournal(t *testing.T) {
	m, path := flushFake(t, nil)
	plan := planFlush(t, m, FlushRequest{})
	failNext(t, path, "lvchange", false, 1)
	// The first lvchange (to cleaner) fails: nothing to put back yet.
	if _, err := m.Flush(context.Background(), plan); err == nil || !strings.Contains(err.Error(), "Manager.ResumeFlush(storage/slowlv)") {
		t.Fatalf("Flush with a failing lvchange: %v", err)
	}
	resumed, err := m.ResumeFlush(slowlv, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Flush(context.Background(), resumed); err != nil {
		t.Fatal(err)
	}
	wantSettingsBack(t, m, path, "", 0)
	// Now the lvchange back fails (the fake fails the next lvchange once
	// the write-back has begun): the journal stays, with the settings.
	editFake(t, path, func(s *fakeState) { s.LVs[0].Cache.Dirty = 300 })
	plan = planFlush(t, m, FlushRequest{})
	m.NewProgress = func(string, int64) Progress {
		failNext(t, path, "lvchange", false, 1)
		return &recordedProgress{}
	}
	_, err = m.Flush(context.Background(), plan)
	if err == nil || !strings.Contains(err.Error(), "restore-policy") || !strings.Contains(err.Error(), "keeps the settings to put back") {
		t.Errorf("Flush whose restore fails: %v", err)
	}
	if _, err := os.Stat(m.journalPath(slowlv)); err != nil {
		t.Errorf("journal: %v", err)
	}
	m.NewProgress = nil
	resumed, err = m.ResumeFlush(slowlv, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Flush(context.Background(), resumed); err != nil {
		t.Fatal(err)
	}
	wantSettingsBack(t, m, path, "", 0)
}

func TestFlushRefusesWhatItCannotFlush(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		mutate func(*fakeState)
		lv     Name
		want   string
	}{
		{"a plain LV", nil, Name{"storage", "plainlv"}, "is not cached: nothing to flush"},
		{"a failed cache", func(s *fakeState) { s.LVs[0].Cache.Health = "F" }, slowlv, "the writeback cache slowlv_cache_cpool is failed"},
		{"read-only metadata", func(s *fakeState) { s.LVs[0].Cache.Health = "M" }, slowlv, "is metadata read-only"},
		{"an inactive LV", func(s *fakeState) { s.LVs[0].Cache.Inactive = true }, slowlv, "is not active"},
		{"the cleaner policy already", func(s *fakeState) { s.LVs[0].Cache.Policy = "cleaner" }, slowlv, "its cache policy is cleaner already"},
		{"a kernel on another policy", func(s *fakeState) { s.LVs[0].Cache.KernelPolicy = "mq" }, slowlv, "the kernel runs the cache policy mq, lvm's metadata says smq"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, path := flushFake(t, tc.mutate)
			_, err := m.PlanFlush(ctx, FlushRequest{LV: tc.lv})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "lvm cache flush "+tc.lv.String()+": ") {
				t.Errorf("PlanFlush: %v, want %q", err, tc.want)
			}
			if ran := changesOf(t, path, 0); len(ran) != 0 {
				t.Errorf("ran %q", ran)
			}
		})
	}
	// Nothing to flush: a plan without steps that says why.
	for _, tc := range []struct {
		mutate func(*fakeState)
		want   string
	}{
		{func(s *fakeState) { s.LVs[0].Cache.Mode = "writethrough" }, "has a writethrough cache, which holds no dirty block: nothing to flush"},
		{func(s *fakeState) { s.LVs[0].Cache.Dirty = 0 }, "has no dirty block: nothing to flush"},
	} {
		m, _ := flushFake(t, tc.mutate)
		plan, err := m.PlanFlush(ctx, FlushRequest{LV: slowlv})
		if err != nil || len(plan.Steps) != 0 || !strings.Contains(strings.Join(plan.Notes, ""), tc.want) {
			t.Errorf("PlanFlush: %+v, %v; want no steps and %q", plan, err, tc.want)
		}
	}
}

// TestFlushOfACacheChangedSinceItsPlanChangesNothing: the policy changed
// between the plan and the flush (another admin): nothing runs.
func TestFlushOfACacheChangedSinceItsPlanChangesNothing(t *testing.T) {
	m, path := flushFake(t, nil)
	plan := planFlush(t, m, FlushRequest{})
	editFake(t, path, func(s *fakeState) { s.LVs[0].Cache.Policy = "mq" })
	calls := len(readFake(t, path).Calls)
	if _, err := m.Flush(context.Background(), plan); err == nil || !strings.Contains(err.Error(), "changed since the plan was made: its cache policy is mq") {
		t.Errorf("Flush: %v", err)
	}
	if ran := changesOf(t, path, calls); len(ran) != 0 {
		t.Errorf("ran %q", ran)
	}
}

// TestFlushHoldsTheLVsLock: a second opsctl changing the LV meanwhile is
// told the LV is busy (exit 75), and a flush of a busy LV is refused.
func TestFlushHoldsTheLVsLock(t *testing.T) {
	m, _ := flushFake(t, nil)
	plan := planFlush(t, m, FlushRequest{})
	unlock := holdLock(t, m, slowlv)
	defer unlock()
	if _, err := m.Flush(context.Background(), plan); !errors.Is(err, ErrBusy) {
		t.Errorf("Flush of a locked LV: %v, want ErrBusy", err)
	}
	if _, err := m.PlanFlush(context.Background(), FlushRequest{LV: slowlv}); !errors.Is(err, ErrBusy) {
		t.Errorf("PlanFlush of a locked LV: %v, want ErrBusy", err)
	}
}
