package lvmcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

// newFake starts a fake lvm2 with the VG "storage": /dev/slow (512 MiB) and
// /dev/fast (256 MiB) in 4 MiB extents; slowlv (96 MiB on /dev/slow) cached
// by a 64 MiB writeback cache on /dev/fast with 300 dirty blocks; plainlv.
func newFake(t *testing.T, mutate func(*fakeState)) (*Manager, string) {
	t.Helper()
	state := &fakeState{
		Version: "2.03.16", VG: "storage", ExtentSize: 4 * mib,
		PVs: []fakePV{{Name: "/dev/slow", Extents: 128}, {Name: "/dev/fast", Extents: 64}},
		LVs: []*fakeLV{
			{Name: "slowlv", Extents: 24, PV: "/dev/slow", Cache: &fakeCache{Name: "slowlv_cache", Mode: "writeback", Policy: "smq", Chunk: 65536, DataExtents: 16, MetaExtents: 2, PV: "/dev/fast", Dirty: 300}},
			{Name: "plainlv", Extents: 2, PV: "/dev/slow"},
		},
	}
	if mutate != nil {
		mutate(state)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "fake-lvm.json")
	writeFake(t, path, state)
	t.Setenv("FAKE_LVM_STATE", path)
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &Manager{Runner: &Runner{Path: os.Args[0], Dmsetup: os.Args[0]}, StateDir: filepath.Join(dir, "state")}, path
}

// saveJournalOf journals plan in m's state dir, as Apply does.
func saveJournalOf(t *testing.T, m *Manager, plan *Plan) {
	t.Helper()
	d, err := m.openState()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := m.saveJournal(d, plan); err != nil {
		t.Fatal(err)
	}
}

// holdLock takes the LV's lock the way another opsctl's Apply does.
func holdLock(t *testing.T, m *Manager, name Name) (unlock func()) {
	t.Helper()
	d, err := m.openState()
	if err != nil {
		t.Fatal(err)
	}
	release, err := d.lockLV(name)
	if err != nil {
		d.Close()
		t.Fatal(err)
	}
	return func() { release(); d.Close() }
}

func writeFake(t *testing.T, path string, s *fakeState) {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFake(t *testing.T, path string) *fakeState {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s fakeState
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// editFake changes the fake's state between two lvm2 calls.
func editFake(t *testing.T, path string, edit func(*fakeState)) {
	t.Helper()
	s := readFake(t, path)
	edit(s)
	writeFake(t, path, s)
}

func failNext(t *testing.T, path, command string, after bool, count int) {
	t.Helper()
	editFake(t, path, func(s *fakeState) { s.FailOn, s.FailAfter, s.FailCount = command, after, count })
}

var slowlv = Name{VG: "storage", LV: "slowlv"}

func TestPlansBuildTheExactLVM2Commands(t *testing.T) {
	m, _ := newFake(t, nil)
	m.Runner.Path = os.Args[0]
	ctx := context.Background()
	show := func(p *Plan, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(strings.Join(p.Commands(), "\n"), os.Args[0], "lvm")
	}
	cases := []struct {
		name string
		got  string
		want string
	}{
		{"create", show(m.PlanCreate(ctx, CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: 100 * mib, PVs: []string{"/dev/fast"}})),
			"+ lvm lvcreate --type cache --cachemode writeback --name plainlv_cache --size 100M storage/plainlv /dev/fast"},
		{"create writethrough named", show(m.PlanCreate(ctx, CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: 1536 * 1024, PVs: []string{"/dev/fast", "/dev/fast"}, Mode: "writethrough", CacheName: "fast"})),
			"+ lvm lvcreate --type cache --cachemode writethrough --name fast --size 1536K storage/plainlv /dev/fast"},
		{"resize recache", show(m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 200 * mib, Relative: true}, Strategy: StrategyRecache})),
			"+ lvm lvconvert --uncache storage/slowlv\n+ lvm lvresize --size 296M storage/slowlv /dev/slow\n+ lvm lvcreate --type cache --cachemode writeback --cachepolicy smq --chunksize 64K --poolmetadatasize 8M --name slowlv_cache --size 64M storage/slowlv /dev/fast"},
		{"resize online rounds up to extents", show(m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 97 * mib}, Strategy: StrategyOnline})),
			"+ lvm lvresize --size 100M storage/slowlv /dev/slow"},
		{"resize auto is online on 2.03.16", show(m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 200 * mib}})),
			"+ lvm lvresize --size 200M storage/slowlv /dev/slow"},
		{"remove", show(m.PlanRemove(ctx, slowlv)), "+ lvm lvconvert --uncache storage/slowlv"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("%s:\n got: %s\nwant: %s", tc.name, tc.got, tc.want)
		}
	}
}

// TestRecacheNeverGrowsOntoTheCachePVs: an origin that already has extents
// on the cache's PV must not grow there in a recache, where the uncache has
// just freed the cache's extents: the re-created cache would not fit.
func TestRecacheNeverGrowsOntoTheCachePVs(t *testing.T) {
	m, _ := newFake(t, func(s *fakeState) { s.LVs[0].PV = "/dev/fast" })
	ctx := context.Background()
	plan := planRecache(t, m, Size{Bytes: 8 * mib, Relative: true})
	if got := strings.Join(plan.Steps[1].Args, " "); got != "lvresize --size 104M storage/slowlv /dev/slow" {
		t.Errorf("recache grows with %q, want it kept off /dev/fast", got)
	}
	// Online, the cache keeps its extents: the origin may grow where it
	// already lives.
	plan, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 8 * mib, Relative: true}, Strategy: StrategyOnline})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Steps[0].Args, " "); got != "lvresize --size 104M storage/slowlv" {
		t.Errorf("online grows with %q, want lvresize's own choice", got)
	}
}

func TestAutoPicksRecacheOnOldLVM2AndOnlineIsRefused(t *testing.T) {
	m, _ := newFake(t, func(s *fakeState) { s.Version = "2.03.11" })
	ctx := context.Background()
	plan, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Strategy != StrategyRecache || len(plan.Steps) != 3 {
		t.Errorf("auto on 2.03.11: %s with %d steps, want recache with 3", plan.Strategy, len(plan.Steps))
	}
	_, err = m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyOnline})
	if err == nil || !strings.Contains(err.Error(), "lvm2 2.03.11 cannot resize a cached LV online (that needs 2.03.12 or newer)") {
		t.Errorf("online on 2.03.11: %v", err)
	}
}

func TestPreflightRefusesWithOneClearLine(t *testing.T) {
	ctx := context.Background()
	create := func(req CreateRequest) func(*Manager) error {
		return func(m *Manager) error { _, err := m.PlanCreate(ctx, req); return err }
	}
	resize := func(req ResizeRequest) func(*Manager) error {
		return func(m *Manager) error { _, err := m.PlanResize(ctx, req); return err }
	}
	remove := func(name Name) func(*Manager) error {
		return func(m *Manager) error { _, err := m.PlanRemove(ctx, name); return err }
	}
	cases := []struct {
		name string
		run  func(m *Manager) error
		want string
	}{
		{"create on a cached LV", create(CreateRequest{LV: slowlv, SizeBytes: mib, PVs: []string{"/dev/fast"}}), "lvm cache create storage/slowlv: already cached by slowlv_cache_cpool"},
		{"create with a PV outside the VG", create(CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: mib, PVs: []string{"/dev/elsewhere"}}), "PV /dev/elsewhere is not in volume group storage (its PVs: /dev/slow, /dev/fast)"},
		{"create without room", create(CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: 180 * mib, PVs: []string{"/dev/fast"}}), "not enough free space on /dev/fast for a 180.00 MiB cache: it needs 47 extents of 4.00 MiB (data and metadata), 46 are free"},
		{"create with a cache PV the LV itself lives on", create(CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: mib, PVs: []string{"/dev/fast", "/dev/slow"}}), "PV /dev/slow holds data of storage/plainlv itself"},
		{"create on an unknown LV", create(CreateRequest{LV: Name{"storage", "nolv"}, SizeBytes: mib, PVs: []string{"/dev/fast"}}), "logical volume storage/nolv not found (LVs of storage: plainlv, slowlv)"},
		{"create in an unknown VG", create(CreateRequest{LV: Name{"novg", "x"}, SizeBytes: mib, PVs: []string{"/dev/fast"}}), `volume group "novg" not found (volume groups: storage)`},
		{"create with a taken name", create(CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: mib, PVs: []string{"/dev/fast"}, CacheName: "slowlv"}), `cache name "slowlv": an LV storage/slowlv already exists`},
		{"resize of a plain LV", resize(ResizeRequest{LV: Name{"storage", "plainlv"}, Size: Size{Bytes: mib, Relative: true}}), "lvm cache resize storage/plainlv: is not cached"},
		{"resize that shrinks", resize(ResizeRequest{LV: slowlv, Size: Size{Bytes: 50 * mib}}), "size 52.00 MiB is smaller than the LV (96.00 MiB): shrinking is not supported"},
		{"resize beyond the room outside the cache PVs", resize(ResizeRequest{LV: slowlv, Size: Size{Bytes: 500 * mib, Relative: true}}), "not enough free space to grow by 500.00 MiB: it needs 125 extents of 4.00 MiB on PVs other than the cache's (/dev/fast), 102 are free"},
		{"remove of a plain LV", remove(Name{"storage", "plainlv"}), "is not cached: nothing to remove"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, path := newFake(t, nil)
			before := readFake(t, path)
			err := tc.run(m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			after := readFake(t, path)
			for _, call := range after.Calls {
				switch call[0] {
				case "lvs", "pvs", "vgs", "version", "status":
				default:
					t.Errorf("a refused plan ran %v", call)
				}
			}
			if len(after.LVs) != len(before.LVs) || after.LVs[0].Extents != before.LVs[0].Extents || (after.LVs[0].Cache == nil) != (before.LVs[0].Cache == nil) {
				t.Errorf("state changed")
			}
		})
	}
}

// cacheOf returns the fake's slowlv for comparisons.
func slowlvOf(t *testing.T, path string) *fakeLV {
	t.Helper()
	return readFake(t, path).lv("slowlv")
}

func sameCache(a, b *fakeCache) bool {
	return a != nil && b != nil && a.Name == b.Name && a.Mode == b.Mode && a.Policy == b.Policy && a.Chunk == b.Chunk &&
		a.DataExtents == b.DataExtents && a.MetaExtents == b.MetaExtents && a.PV == b.PV
}

func TestRecacheSurvivesAFailureAtEveryStep(t *testing.T) {
	ctx := context.Background()
	original := &fakeCache{Name: "slowlv_cache", Mode: "writeback", Policy: "smq", Chunk: 65536, DataExtents: 16, MetaExtents: 2, PV: "/dev/fast"}
	cases := []struct {
		command   string
		after     bool
		want      string // in the error
		journal   bool   // kept for --resume
		extents   int64  // slowlv size right after the failure
		cached    bool
		resumeRun []string // the commands --resume runs (besides reports)
	}{
		{"lvconvert", false, "nothing was changed", false, 24, true, nil},
		{"lvconvert", true, "run `Manager.Resume(storage/slowlv)`", true, 24, false, []string{"lvresize", "lvcreate"}},
		{"lvresize", false, "the cache was re-attached with its recorded settings, storage/slowlv is as before", false, 24, true, nil},
		{"lvresize", true, "Manager.Resume(storage/slowlv)", true, 26, true, []string{}},
		{"lvcreate", false, "injected failure of lvcreate; the journal", true, 26, false, []string{"lvcreate"}},
		{"lvcreate", true, "Manager.Resume(storage/slowlv)", true, 26, true, []string{}},
	}
	for _, tc := range cases {
		name := tc.command + "-fails-before"
		if tc.after {
			name = tc.command + "-fails-after-doing-it"
		}
		t.Run(name, func(t *testing.T) {
			m, path := newFake(t, nil)
			plan := planRecache(t, m, Size{Bytes: 8 * mib, Relative: true})
			failNext(t, path, tc.command, tc.after, 1)
			err := m.Apply(ctx, plan)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Apply: %v, want an error containing %q", err, tc.want)
			}
			lv := slowlvOf(t, path)
			if lv.Extents != tc.extents || (lv.Cache != nil) != tc.cached {
				t.Errorf("after the failure: %d extents, cached %v; want %d, %v", lv.Extents, lv.Cache != nil, tc.extents, tc.cached)
			}
			if lv.Cache != nil && !sameCache(lv.Cache, original) {
				t.Errorf("cache after the failure %+v, want %+v", lv.Cache, original)
			}
			_, statErr := os.Stat(m.journalPath(slowlv))
			if tc.journal != (statErr == nil) {
				t.Fatalf("journal kept: %v, want %v", statErr == nil, tc.journal)
			}
			if !tc.journal {
				if _, err := m.LoadJournal(slowlv); !errors.Is(err, ErrNoJournal) {
					t.Errorf("LoadJournal: %v, want ErrNoJournal", err)
				}
				return
			}
			// Anything but Resume is refused while the journal is there.
			if _, err := m.PlanRemove(ctx, slowlv); err == nil || !strings.Contains(err.Error(), "Manager.Resume(storage/slowlv)") {
				t.Errorf("remove with a journal: %v", err)
			}
			callsBefore := len(readFake(t, path).Calls)
			resumed, err := m.LoadJournal(slowlv)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Apply(ctx, resumed); err != nil {
				t.Fatalf("resume: %v", err)
			}
			if ran := changesSince(t, path, callsBefore); strings.Join(ran, " ") != strings.Join(tc.resumeRun, " ") {
				t.Errorf("resume ran %v, want %v", ran, tc.resumeRun)
			}
			lv = slowlvOf(t, path)
			if lv.Extents != 26 || !sameCache(lv.Cache, original) {
				t.Errorf("after resume: %d extents, cache %+v; want 26 and %+v", lv.Extents, lv.Cache, original)
			}
			if _, err := os.Stat(m.journalPath(slowlv)); err == nil {
				t.Error("journal left after a finished resume")
			}
		})
	}
}

func TestFailedReattachKeepsTheJournalAndResumeFinishes(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	plan := planRecache(t, m, Size{Bytes: 8 * mib, Relative: true})
	failNext(t, path, "lvresize", false, 1)
	// lvresize and the re-attach both fail: make lvcreate fail too by
	// filling /dev/fast from under the plan.
	editFake(t, path, func(s *fakeState) {
		s.Calls = nil
		s.LVs = append(s.LVs, &fakeLV{Name: "filler", Extents: 60, PV: "/dev/fast"})
	})
	err := m.Apply(ctx, plan)
	if err == nil || !strings.Contains(err.Error(), "re-attaching the cache failed too") || !strings.Contains(err.Error(), "NOT cached, its data is intact") {
		t.Fatalf("Apply: %v", err)
	}
	journal, err := m.LoadJournal(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if journal.Steps[0].State != StateDone || journal.Steps[1].State != StateFailed || journal.Cache.SizeBytes != 64*mib {
		t.Errorf("journal: %+v", journal.Steps)
	}
	editFake(t, path, func(s *fakeState) { s.LVs = s.LVs[:2] })
	if err := m.Apply(ctx, journal); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if lv := slowlvOf(t, path); lv.Extents != 26 || lv.Cache == nil || lv.Cache.DataExtents != 16 {
		t.Errorf("after resume: %+v", lv)
	}
}

// crashAfterUncache leaves what opsctl, killed after the uncache of a
// recache plan, leaves: the uncache done in lvm2 and in the journal,
// lvresize journaled in state next. It returns the plan Resume loads.
func crashAfterUncache(t *testing.T, m *Manager, plan *Plan, next string) *Plan {
	t.Helper()
	plan.Steps[0].State = StateDone
	plan.Steps[1].State = next
	saveJournalOf(t, m, plan)
	if _, err := m.Runner.Run(context.Background(), "lvconvert", "--uncache", "storage/slowlv"); err != nil {
		t.Fatal(err)
	}
	resumed, err := m.LoadJournal(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	return resumed
}

func TestResumeAfterACrashBetweenSteps(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	plan := planRecache(t, m, Size{Bytes: 128 * mib})
	// What a SIGKILL during lvresize leaves: the uncache done and journaled,
	// lvresize journaled as running and never run.
	resumed := crashAfterUncache(t, m, plan, StateRunning)
	if got := strings.Join(resumed.Commands(), "\n"); strings.Contains(got, "--uncache") || !strings.Contains(got, "lvresize") {
		t.Errorf("resume plan: %s", got)
	}
	if err := m.Apply(ctx, resumed); err != nil {
		t.Fatal(err)
	}
	if lv := slowlvOf(t, path); lv.Extents != 32 || lv.Cache == nil {
		t.Errorf("after resume: %+v", lv)
	}
}

// applyInterruptedInTheFlush applies plan and cancels its context once the
// flush of its uncache has begun, as Ctrl-C during a long flush does.
func applyInterruptedInTheFlush(m *Manager, plan *Plan) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.NewProgress = func(string, int64) Progress { cancel(); return &recordedProgress{} }
	defer func() { m.NewProgress = nil }()
	return m.Apply(ctx, plan)
}

func TestInterruptedPlanStopsBeforeTheNextStep(t *testing.T) {
	m, path := newFake(t, nil)
	plan := planRecacheBy4MiB(t, m)
	// Ctrl-C arrives while lvm2 flushes: the uncache finishes, lvresize
	// does not start.
	if err := applyInterruptedInTheFlush(m, plan); !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "before lvresize; run `Manager.Resume(storage/slowlv)`") {
		t.Fatalf("Apply interrupted during the flush: %v", err)
	}
	if lv := slowlvOf(t, path); lv.Cache != nil || lv.Extents != 24 {
		t.Errorf("after the interrupt: %+v, want uncached and not resized", lv)
	}
	resumed, err := m.LoadJournal(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), resumed); err != nil {
		t.Fatal(err)
	}
	if lv := slowlvOf(t, path); lv.Cache == nil || lv.Extents != 25 {
		t.Errorf("after resume: %+v", lv)
	}
}

func TestResizeInterruptedBeforeItsFirstStepLeavesNoJournal(t *testing.T) {
	m, path := newFake(t, nil)
	plan := planRecacheBy4MiB(t, m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Apply(ctx, plan); !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "nothing was changed") || strings.Contains(err.Error(), "Manager.Resume") {
		t.Fatalf("Apply with a cancelled context: %v; want it to say nothing was changed", err)
	}
	if lv := slowlvOf(t, path); lv.Cache == nil || lv.Extents != 24 {
		t.Errorf("an interrupted plan changed the LV: %+v", lv)
	}
	// Nothing holds the LV: the admin may remove the cache instead.
	if _, err := m.LoadJournal(slowlv); !errors.Is(err, ErrNoJournal) {
		t.Errorf("LoadJournal: %v, want ErrNoJournal", err)
	}
	if _, err := m.PlanRemove(context.Background(), slowlv); err != nil {
		t.Errorf("remove after a resize that never started: %v", err)
	}
}

func TestEveryLVM2CallHasLCALLCAndNoForce(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	plan := planRecacheBy4MiB(t, m)
	if err := m.Apply(ctx, plan); err != nil {
		t.Fatal(err)
	}
	remove, err := m.PlanRemove(ctx, slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx, remove); err != nil {
		t.Fatal(err)
	}
	s := readFake(t, path)
	if len(s.Calls) < 10 {
		t.Fatalf("only %d calls", len(s.Calls))
	}
	for i, env := range s.Env {
		if env != "LC_ALL=C" {
			t.Errorf("call %v ran with %s", s.Calls[i], env)
		}
	}
	var changes []string
	for _, call := range s.Calls {
		for _, arg := range call {
			if arg == "--force" || arg == "-f" {
				t.Errorf("%v passes --force", call)
			}
		}
		if call[0] == "lvs" || call[0] == "pvs" {
			if !strings.Contains(strings.Join(call, " "), "--reportformat json --units b --nosuffix") {
				t.Errorf("report without JSON in bytes: %v", call)
			}
			continue
		}
		if call[0] != "version" {
			changes = append(changes, call[0])
		}
	}
	if got := strings.Join(changes, " "); got != "lvconvert lvresize lvcreate lvconvert" {
		t.Errorf("changes ran: %s", got)
	}
	if lv := slowlvOf(t, path); lv.Cache != nil || lv.Extents != 25 {
		t.Errorf("after remove: %+v", lv)
	}
}

func TestResizeToTheCurrentSizeIsANoOp(t *testing.T) {
	m, _ := newFake(t, nil)
	plan, err := m.PlanResize(context.Background(), ResizeRequest{LV: slowlv, Size: Size{Bytes: 96 * mib}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Steps) != 0 || !strings.Contains(plan.Notes[0], "already 96.00 MiB") {
		t.Errorf("plan %+v", plan)
	}
}

func TestSecondOpsctlOnTheSameLVIsBusy(t *testing.T) {
	m, path := newFake(t, nil)
	ctx := context.Background()
	isBusy := func(what string, err error) {
		t.Helper()
		var temp interface{ Temporary() bool }
		if !errors.Is(err, ErrBusy) || !errors.As(err, &temp) || !temp.Temporary() || !strings.Contains(err.Error(), "another opsctl is changing storage/slowlv right now") {
			t.Errorf("%s while another opsctl holds the lock: %v; want ErrBusy, temporary", what, err)
		}
	}
	// Planned before the other opsctl took the lock.
	early, err := m.PlanRemove(ctx, slowlv)
	if err != nil {
		t.Fatal(err)
	}
	resize := planRecacheBy4MiB(t, m)
	unlock := holdLock(t, m, slowlv)
	defer unlock()
	calls := len(readFake(t, path).Calls)
	isBusy("Apply", m.Apply(ctx, early))
	_, err = m.PlanRemove(ctx, slowlv)
	isBusy("PlanRemove", err)
	// The other opsctl is resizing: its journal is there. That is not an
	// interrupted resize as long as it holds the lock.
	saveJournalOf(t, m, resize)
	_, err = m.PlanRemove(ctx, slowlv)
	isBusy("PlanRemove of a journaled LV", err)
	_, err = m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 8 * mib, Relative: true}})
	isBusy("PlanResize of a journaled LV", err)
	_, err = m.LoadJournal(slowlv)
	isBusy("LoadJournal", err)
	noChanges(t, path, calls, "a change of a busy LV")
	// The other opsctl is gone (killed): its journal is an interrupted
	// resize now, to finish with --resume.
	unlock()
	unlock = func() {}
	_, err = m.PlanRemove(ctx, slowlv)
	if err == nil || errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "Manager.Resume(storage/slowlv)") {
		t.Errorf("PlanRemove with the journal of a dead opsctl: %v; want the interrupted resize and Manager.Resume", err)
	}
}

type recordedProgress struct {
	label string
	total int64
	done  []int64
	ended bool
}

func (p *recordedProgress) Update(done int64)    { p.done = append(p.done, done) }
func (p *recordedProgress) SetTotal(total int64) { p.total = total }
func (p *recordedProgress) Done()                { p.ended = true }

func TestFlushProgressFollowsTheDirtyBlocks(t *testing.T) {
	m, path := newFake(t, func(s *fakeState) { s.FlushInSteps = true })
	var progress *recordedProgress
	m.NewProgress = func(label string, total int64) Progress {
		progress = &recordedProgress{label: label, total: total}
		return progress
	}
	m.PollInterval = 10 * time.Millisecond
	plan, err := m.PlanRemove(context.Background(), slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if progress == nil || progress.total != 300 || !progress.ended || progress.label != "flush storage/slowlv: blocks written back" {
		t.Fatalf("progress %+v", progress)
	}
	// The fake flushes a quarter at a time and waits for a poll to see
	// each step: the display shows every one, in order, and never goes back.
	var steps []int64
	for i, done := range progress.done {
		if i == 0 || done != progress.done[i-1] {
			steps = append(steps, done)
		}
	}
	if fmt.Sprint(steps) != "[0 75 150 225 300]" {
		t.Errorf("progress %v: want the steps 0 75 150 225 300 in order", progress.done)
	}
	if plan.FlushedBlocks() != 300 || slowlvOf(t, path).Cache != nil {
		t.Errorf("flushed %d blocks; cache %+v", plan.FlushedBlocks(), slowlvOf(t, path).Cache)
	}
}

// TestFlushProgressEndsAtTheTotal: an uncache that returns before any poll
// saw its last dirty blocks go still leaves the display at the total.
func TestFlushProgressEndsAtTheTotal(t *testing.T) {
	m, _ := newFake(t, nil)
	var progress *recordedProgress
	m.NewProgress = func(label string, total int64) Progress {
		progress = &recordedProgress{label: label, total: total}
		return progress
	}
	m.PollInterval = time.Hour
	plan, err := m.PlanRemove(context.Background(), slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if progress == nil || !progress.ended || fmt.Sprint(progress.done) != "[0 300]" {
		t.Fatalf("progress %+v: want updates [0 300], then done", progress)
	}
}

// changesSince lists the lvm2 commands other than reports that the fake ran
// after the first n calls.
func changesSince(t *testing.T, path string, n int) []string {
	t.Helper()
	var ran []string
	for _, call := range changesOf(t, path, n) {
		ran = append(ran, strings.Fields(call)[0])
	}
	return ran
}

// noChanges fails the test when the fake ran an lvm2 command other than a
// report after its first n calls; what says what should have changed nothing.
func noChanges(t *testing.T, path string, n int, what string) {
	t.Helper()
	if ran := changesSince(t, path, n); len(ran) != 0 {
		t.Errorf("%s: ran %v", what, ran)
	}
}

func TestInterruptedCreateOrRemoveSaysNothingChanged(t *testing.T) {
	m, path := newFake(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	remove, err := m.PlanRemove(context.Background(), slowlv)
	if err != nil {
		t.Fatal(err)
	}
	create, err := m.PlanCreate(context.Background(), CreateRequest{LV: Name{"storage", "plainlv"}, SizeBytes: 8 * mib, PVs: []string{"/dev/fast"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, plan := range []*Plan{remove, create} {
		err := m.Apply(ctx, plan)
		if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "nothing was changed") || strings.Contains(err.Error(), "Manager.Resume") {
			t.Errorf("%s interrupted: %v; want it to say nothing was changed, without a Manager.Resume that has no journal", plan.Op, err)
		}
	}
	noChanges(t, path, 0, "interrupted plans")
	if _, err := os.Stat(m.journalPath(slowlv)); err == nil {
		t.Error("an interrupted remove left a journal")
	}
}

func TestChangeIsRefusedWhenAResizeWasJournaledAfterItsPlan(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	remove, err := m.PlanRemove(ctx, slowlv)
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile another opsctl starts a resize and is interrupted.
	resize := planRecacheBy4MiB(t, m)
	saveJournalOf(t, m, resize)
	calls := len(readFake(t, path).Calls)
	if err := m.Apply(ctx, remove); err == nil || !strings.Contains(err.Error(), "Manager.Resume(storage/slowlv)") {
		t.Errorf("remove while a resize is journaled: %v", err)
	}
	noChanges(t, path, calls, "a remove while a resize was journaled")
}

func TestResumeOfAJournalAnotherOpsctlFinishedChangesNothing(t *testing.T) {
	m, path := newFake(t, nil)
	plan := planRecacheBy4MiB(t, m)
	// Interrupted during the flush: the journal waits for --resume.
	if err := applyInterruptedInTheFlush(m, plan); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("Apply: %v", err)
	}
	// Two admins run --resume at once: both load the journal, one finishes.
	first, err := m.LoadJournal(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	second, err := m.LoadJournal(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	calls := len(readFake(t, path).Calls)
	if err := m.Apply(context.Background(), second); !errors.Is(err, ErrNoJournal) {
		t.Errorf("second --resume: %v, want ErrNoJournal", err)
	}
	noChanges(t, path, calls, "a second resume of a resize done already")
	if _, err := os.Stat(m.journalPath(slowlv)); err == nil {
		t.Error("the second --resume wrote the finished journal back")
	}
}

func TestAFailedReportMidResizePointsToResume(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	// The uncache is done; lvm2 cannot report the LV before lvresize.
	resumed := crashAfterUncache(t, m, planRecacheBy4MiB(t, m), StatePending)
	failNext(t, path, "lvs", false, 1)
	err := m.Apply(ctx, resumed)
	if err == nil || !strings.Contains(err.Error(), "injected failure of lvs") || !strings.Contains(err.Error(), "run `Manager.Resume(storage/slowlv)`") {
		t.Errorf("Apply with a failing lvs after the uncache: %v; want the lvm2 error and the way to finish", err)
	}
	if _, err := m.LoadJournal(slowlv); err != nil {
		t.Errorf("journal: %v", err)
	}
}

func TestCreateCountsTheSpareMetadataLVM2Adds(t *testing.T) {
	ctx := context.Background()
	// No cache in the VG yet, so no lvol0_pmspare: lvcreate allocates one as
	// large as the new pool's metadata (2 extents) on the cache PV as well.
	m, path := newFake(t, func(s *fakeState) { s.LVs[0].Cache = nil })
	_, err := m.PlanCreate(ctx, CreateRequest{LV: slowlv, SizeBytes: 61 * 4 * mib, PVs: []string{"/dev/fast"}})
	want := "not enough free space on /dev/fast for a 244.00 MiB cache: it needs 65 extents of 4.00 MiB (data, metadata and lvm2's spare metadata), 64 are free"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("create: %v\nwant %s", err, want)
	}
	noChanges(t, path, 0, "a refused create")
	if _, err := m.PlanCreate(ctx, CreateRequest{LV: slowlv, SizeBytes: 60 * 4 * mib, PVs: []string{"/dev/fast"}}); err != nil {
		t.Errorf("a cache that fits with its spare: %v", err)
	}
}

func TestResizeRefusesSizesBeyondLVM2sRange(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	for _, size := range []Size{{Bytes: 1<<63 - 1}, {Bytes: 1<<63 - 1, Relative: true}} {
		_, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: size, Strategy: StrategyRecache})
		if err == nil || !strings.Contains(err.Error(), "too large") {
			t.Errorf("resize to %v: %v; want it refused as too large", size, err)
		}
	}
	noChanges(t, path, 0, "resizes beyond lvm2's range")
}

// planRecache plans growing slowlv to (or by) size by recache: uncache,
// lvresize, re-create.
func planRecache(t *testing.T, m *Manager, size Size) *Plan {
	t.Helper()
	plan, err := m.PlanResize(context.Background(), ResizeRequest{LV: slowlv, Size: size, Strategy: StrategyRecache})
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// planRecacheBy4MiB plans growing slowlv by 4 MiB by recache.
func planRecacheBy4MiB(t *testing.T, m *Manager) *Plan {
	t.Helper()
	return planRecache(t, m, Size{Bytes: 4 * mib, Relative: true})
}

// TestAPlanOvertakenByASecondOpsctlIsRefused: two admins plan the same
// change; the second confirms after the first has finished. Its plan was
// made from a state that is gone: under the lock it must change nothing
// (no second flush and re-create, no "cached" report for a cache it did
// not make) and say why.
func TestAPlanOvertakenByASecondOpsctlIsRefused(t *testing.T) {
	ctx := context.Background()
	plain := Name{"storage", "plainlv"}
	cases := []struct {
		name  string
		plan  func(m *Manager) (*Plan, error)
		first func(m *Manager) (*Plan, error)
	}{
		{"resize after the same resize",
			func(m *Manager) (*Plan, error) {
				return m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyRecache})
			},
			func(m *Manager) (*Plan, error) {
				return m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyRecache})
			}},
		{"create after another create",
			func(m *Manager) (*Plan, error) {
				return m.PlanCreate(ctx, CreateRequest{LV: plain, SizeBytes: 100 * mib, PVs: []string{"/dev/fast"}})
			},
			func(m *Manager) (*Plan, error) {
				return m.PlanCreate(ctx, CreateRequest{LV: plain, SizeBytes: 8 * mib, PVs: []string{"/dev/fast"}, Mode: "writethrough"})
			}},
		{"remove after a recache",
			func(m *Manager) (*Plan, error) { return m.PlanRemove(ctx, slowlv) },
			func(m *Manager) (*Plan, error) {
				return m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyRecache})
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, path := newFake(t, func(s *fakeState) { s.LVs[1].Extents = 2 })
			late, err := tc.plan(m)
			if err != nil {
				t.Fatal(err)
			}
			first, err := tc.first(m)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Apply(ctx, first); err != nil {
				t.Fatal(err)
			}
			calls := len(readFake(t, path).Calls)
			err = m.Apply(ctx, late)
			if err == nil || !strings.Contains(err.Error(), "changed since") || !strings.Contains(err.Error(), "nothing was changed") {
				t.Errorf("Apply of the overtaken plan: %v; want it refused as changed since the plan", err)
			}
			noChanges(t, path, calls, "the overtaken plan")
			if _, err := os.Stat(m.journalPath(late.Name())); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("journal left behind: %v", err)
			}
		})
	}
}

// TestRecacheRefusesACacheItCannotRecreate: lvcreate --type cache makes a
// linear cache pool. A writeback cache whose data is an lvm raid1 of two
// SSDs would come back from a recache on one SSD, without its mirror:
// refused before anything changes, online stays allowed.
func TestRecacheRefusesACacheItCannotRecreate(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, func(s *fakeState) {
		s.PVs = append(s.PVs, fakePV{Name: "/dev/fast2", Extents: 64})
		s.LVs[0].Cache.MirrorPV = "/dev/fast2"
	})
	for _, strategy := range []string{StrategyRecache, StrategyAuto} {
		if strategy == StrategyAuto {
			editFake(t, path, func(s *fakeState) { s.Version = "2.03.11" })
		}
		_, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: strategy})
		if err == nil || !strings.Contains(err.Error(), "raid1") {
			t.Errorf("%s of a raid1 cache: %v; want it refused naming raid1", strategy, err)
		}
	}
	noChanges(t, path, 0, "refused recaches of a raid1 cache")
	editFake(t, path, func(s *fakeState) { s.Version = "2.03.16" })
	if _, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyOnline}); err != nil {
		t.Errorf("online resize of a raid1 cache: %v", err)
	}
	st, err := m.Status(ctx, slowlv)
	if err != nil || strings.Join(st.CachePVs, ",") != "/dev/fast,/dev/fast2" {
		t.Errorf("status: %v %v", st.CachePVs, err)
	}
}

// TestUncacheOfAFailedWritebackCacheIsRefused: when dm-cache has failed
// (lv_attr health F) lvconvert --uncache skips the flush ("Skipping flush
// for failed cache") and deletes the cache with its dirty blocks; with
// read-only metadata (M) the flush cannot mark a block clean. remove and
// recache must refuse before anything changes; a writethrough cache holds
// no dirty block and may go.
func TestUncacheOfAFailedWritebackCacheIsRefused(t *testing.T) {
	ctx := context.Background()
	for _, health := range []string{"F", "M"} {
		m, path := newFake(t, func(s *fakeState) { s.LVs[0].Cache.Health = health })
		if _, err := m.PlanRemove(ctx, slowlv); err == nil || !strings.Contains(err.Error(), "dirty blocks") {
			t.Errorf("remove of a writeback cache with health %s: %v; want it refused", health, err)
		}
		if _, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: StrategyRecache}); err == nil || !strings.Contains(err.Error(), "dirty blocks") {
			t.Errorf("recache of a writeback cache with health %s: %v; want it refused", health, err)
		}
		noChanges(t, path, 0, "refused uncaches of a failed cache")
	}
	// The cache fails between the plan and the confirmation.
	m, path := newFake(t, nil)
	plan, err := m.PlanRemove(ctx, slowlv)
	if err != nil {
		t.Fatal(err)
	}
	editFake(t, path, func(s *fakeState) { s.LVs[0].Cache.Health = "F" })
	if err := m.Apply(ctx, plan); err == nil || !strings.Contains(err.Error(), "dirty blocks") {
		t.Errorf("Apply of a remove after the cache failed: %v; want it refused", err)
	}
	noChanges(t, path, 0, "a remove of a cache that failed after its plan")
	m, _ = newFake(t, func(s *fakeState) { s.LVs[0].Cache.Health, s.LVs[0].Cache.Mode = "F", "writethrough" })
	if _, err := m.PlanRemove(ctx, slowlv); err != nil {
		t.Errorf("remove of a failed writethrough cache: %v", err)
	}
}

// TestResumeAfterTheCacheCameBackUncachesAgain: the journal says the
// uncache is done and lvresize failed, but the LV is cached again (opsctl
// was killed after re-attaching the cache, before it removed the journal).
// On an lvm2 that cannot resize a cached LV, --resume must uncache again
// rather than fail at lvresize and then at re-attaching a cache that is
// there, for ever.
func TestResumeAfterTheCacheCameBackUncachesAgain(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, func(s *fakeState) { s.Version = "2.03.11" })
	plan := planRecacheBy4MiB(t, m)
	plan.Steps[0].State = StateDone
	plan.Steps[1].State = StateFailed
	saveJournalOf(t, m, plan)
	resumed, err := m.LoadJournal(slowlv)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SkipDoneSteps(ctx, resumed); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(resumed.Commands(), "\n"); !strings.Contains(got, "--uncache") {
		t.Errorf("resume --dry-run shows:\n%s\nwant the uncache again", got)
	}
	if err := m.Apply(ctx, resumed); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if lv := slowlvOf(t, path); lv.Extents != 25 || lv.Cache == nil || lv.Cache.DataExtents != 16 {
		t.Errorf("after resume: %+v", lv)
	}
	if _, err := os.Stat(m.journalPath(slowlv)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal left: %v", err)
	}
}

// TestAReattachThatFailedAfterAttachingSaysSo: lvresize fails, and the
// lvcreate that re-attaches the cache exits non-zero after attaching it.
// The LV is cached at its old size: opsctl must not tell the admin it is
// NOT cached, and need not keep a journal.
func TestAReattachThatFailedAfterAttachingSaysSo(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, nil)
	plan := planRecacheBy4MiB(t, m)
	failNext(t, path, "lvresize", false, 1)
	editFake(t, path, func(s *fakeState) { s.AlsoFailAfter = "lvcreate" })
	err := m.Apply(ctx, plan)
	if err == nil || strings.Contains(err.Error(), "NOT cached") || !strings.Contains(err.Error(), "is as before") {
		t.Errorf("Apply: %v; want the lvresize error and the LV as before, not NOT cached", err)
	}
	if lv := slowlvOf(t, path); lv.Cache == nil || lv.Extents != 24 {
		t.Errorf("after: %+v", lv)
	}
	if _, err := os.Stat(m.journalPath(slowlv)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("journal kept for an LV that is as before: %v", err)
	}
}

// TestResizeNeverGrowsOntoAnotherLVsCachePV: in a VG with one SSD per
// cached LV, growing slowlv must not put its extents on the SSD of
// plainlv's cache: that SSD would then be short for plainlv's own recache,
// and slowlv would live partly on a cache disk.
func TestResizeNeverGrowsOntoAnotherLVsCachePV(t *testing.T) {
	ctx := context.Background()
	m, _ := newFake(t, func(s *fakeState) {
		s.PVs = append(s.PVs, fakePV{Name: "/dev/fast2", Extents: 64})
		s.LVs[1].Cache = &fakeCache{Name: "plainlv_cache", Mode: "writeback", Policy: "smq", Chunk: 65536, DataExtents: 8, MetaExtents: 2, PV: "/dev/fast2"}
	})
	for _, strategy := range []string{StrategyRecache, StrategyOnline} {
		plan, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 4 * mib, Relative: true}, Strategy: strategy})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(plan.step(StepResize).Args, " "); got != "lvresize --size 100M storage/slowlv /dev/slow" {
			t.Errorf("%s grows with %q, want it kept off every cache PV", strategy, got)
		}
	}
}

// TestResizeCountsEveryMirrorOfAnLVMRaid1Origin: growing a raid1 origin by
// N extents takes N extents on each of its images. A preflight that counted
// N once let a recache flush the whole cache and then fail at lvresize.
func TestResizeCountsEveryMirrorOfAnLVMRaid1Origin(t *testing.T) {
	ctx := context.Background()
	m, path := newFake(t, func(s *fakeState) {
		s.PVs = append(s.PVs, fakePV{Name: "/dev/slow2", Extents: 64})
		s.LVs[0].MirrorPV = "/dev/slow2"
	})
	// Free outside the cache: 102 extents on /dev/slow, 40 on /dev/slow2.
	_, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 100 * 4 * mib, Relative: true}, Strategy: StrategyRecache})
	want := "it needs 200 extents of 4.00 MiB"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("growing a raid1 origin by 100 extents: %v; want %q", err, want)
	}
	noChanges(t, path, 0, "a refused growth of a raid1 origin")
	if _, err := m.PlanResize(ctx, ResizeRequest{LV: slowlv, Size: Size{Bytes: 40 * 4 * mib, Relative: true}, Strategy: StrategyRecache}); err != nil {
		t.Errorf("growing a raid1 origin by 40 extents, 80 of 142 free: %v", err)
	}
}

// TestStatusOfEveryLVSkipsAnExportedVG: vgs lists an exported VG (one made
// ready to move to another host), lvs refuses it. status without an LV
// must still report the caches of the other VGs.
func TestStatusOfEveryLVSkipsAnExportedVG(t *testing.T) {
	m, _ := newFake(t, func(s *fakeState) { s.ExportedVG = "moving" })
	all, err := m.StatusAll(context.Background())
	if err != nil || len(all) != 1 || all[0].LV != "storage/slowlv" {
		t.Errorf("StatusAll with an exported VG: %v, %v; want storage/slowlv", all, err)
	}
}
