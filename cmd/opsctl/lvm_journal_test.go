package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// recordingLVM is fakeLVM (reports of a cached storage/slowlv, every change
// refused) that also appends each command line to the returned log.
func recordingLVM(t *testing.T) (lvm, log string) {
	t.Helper()
	data, err := filepath.Abs("../../pkg/lvmcache/testdata/lvm2-2.03.16")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	script := `#!/bin/sh
echo "$*" >>'` + log + `'
case "$1" in
version) cat '` + data + `/version.txt' ;;
vgs) cat '` + data + `/vgs.json' ;;
pvs) cat '` + data + `/pvs.json' ;;
lvs) cat '` + data + `/lvs-dirty.json' ;;
*) echo "  fake lvm: $1 must not run in this test" >&2; exit 5 ;;
esac
`
	lvm = filepath.Join(dir, "lvm")
	if err := os.WriteFile(lvm, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return lvm, log
}

// changesIn lists the commands in an lvm log that are not reports.
func changesIn(t *testing.T, log string) []string {
	t.Helper()
	data, _ := os.ReadFile(log)
	var changes []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if word, _, _ := strings.Cut(line, " "); line != "" && word != "lvs" && word != "vgs" && word != "pvs" && word != "version" {
			changes = append(changes, line)
		}
	}
	return changes
}

// slowlvJournal is the journal of a recache of the storage/slowlv of the
// testdata from 32 to 64 MiB, interrupted after the uncache, as a JSON
// object to damage.
func slowlvJournal(t *testing.T) map[string]any {
	t.Helper()
	cache := &lvmcache.Cache{Name: "slowlv_cache", Pool: "slowlv_cache_cpool", Mode: "writeback", Policy: "smq", ChunkSizeBytes: 64 << 10,
		SizeBytes: 16 << 20, MetadataSizeBytes: 8 << 20, PVs: []string{"/dev/loop1"}}
	plan := lvmcache.Plan{Version: 1, Op: lvmcache.OpResize, LV: "storage/slowlv", Strategy: lvmcache.StrategyRecache, Lvm: "lvm",
		OriginalSizeBytes: 32 << 20, TargetSizeBytes: 64 << 20, Cache: cache,
		Steps: []lvmcache.Step{
			{Kind: lvmcache.StepUncache, Args: []string{"lvconvert", "--uncache", "storage/slowlv"}, State: lvmcache.StateDone},
			{Kind: lvmcache.StepResize, Args: []string{"lvresize", "--size", "64M", "storage/slowlv", "/dev/loop0"}, State: lvmcache.StateRunning},
			{Kind: lvmcache.StepRecache, Args: strings.Fields("lvcreate --type cache --cachemode writeback --cachepolicy smq --chunksize 64K --poolmetadatasize 8M --name slowlv_cache --size 16M storage/slowlv /dev/loop1"), State: lvmcache.StatePending},
		}}
	raw, err := json.Marshal(plan)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func writeJSON(t *testing.T, path string, doc any) {
	t.Helper()
	raw, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestLVMCacheResumeOfADamagedJournalSaysWhatItRecordsAndTheWayOut: a
// journal that does not parse, or parses to the wrong shape, is one line
// naming the file, what it records as far as readable, what to check and
// --abandon; no lvm2 change runs.
func TestLVMCacheResumeOfADamagedJournalSaysWhatItRecordsAndTheWayOut(t *testing.T) {
	steps := func(doc map[string]any) []any { return doc["steps"].([]any) }
	for _, tc := range []struct {
		name    string
		damage  func(doc map[string]any) any
		problem string
		records string
	}{
		{"truncated", func(doc map[string]any) any {
			raw, _ := json.Marshal(doc)
			return json.RawMessage(raw[:len(raw)/2])
		}, "not the JSON of a journal", "nothing readable"},
		{"null steps", func(doc map[string]any) any { doc["steps"] = nil; return doc },
			"0 steps, expected 3 for recache", "a resize of storage/slowlv from 32.00 MiB to 64.00 MiB by recache; the cache slowlv_cache of 16.00 MiB, writeback, policy smq, chunk 64.00 KiB on /dev/loop1"},
		{"unknown step", func(doc map[string]any) any { steps(doc)[0].(map[string]any)["kind"] = "defrag"; return doc },
			`step 1 is "defrag", expected "uncache"`, "steps defrag done, lvresize running, recache pending"},
		{"wrong type", func(doc map[string]any) any { doc["target_size_bytes"] = "64M"; return doc },
			"not the JSON of a journal: json: cannot unmarshal string into Go struct field Plan.target_size_bytes", "from 32.00 MiB to ? by recache"},
		{"null cache", func(doc map[string]any) any { doc["cache"] = nil; return doc },
			"recorded cache: missing", "steps uncache done, lvresize running, recache pending"},
		{"argv that is not the plan's", func(doc map[string]any) any {
			step := steps(doc)[1].(map[string]any)
			step["args"] = append(step["args"].([]any), "--config", "global { fsadm_executable = \"/tmp/x\" }")
			return doc
		}, `step lvresize: PV "--config" is not a device path`, "a resize of storage/slowlv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lvm, log := recordingLVM(t)
			state := t.TempDir()
			journal := filepath.Join(state, "storage-slowlv.json")
			if raw, ok := tc.damage(slowlvJournal(t)).(json.RawMessage); ok {
				os.WriteFile(journal, raw, 0o600)
			} else {
				writeJSON(t, journal, tc.damage(slowlvJournal(t)))
			}
			for _, args := range [][]string{{"--resume", "-y"}, {"--resume", "--dry-run"}} {
				out, stderr, code := runForTest(append([]string{"lvm", "--lvm", lvm, "--state-dir", state, "cache", "resize", "storage/slowlv"}, args...)...)
				for _, want := range []string{"journal " + journal + " is not one opsctl can resume (" + tc.problem, "as far as it can be read it records: ", tc.records,
					"lvm lvs -a -o lv_name,lv_size,segtype,cache_mode,cache_dirty_blocks,devices storage",
					"`opsctl lvm cache resize storage/slowlv --abandon`"} {
					if !strings.Contains(stderr, want) {
						t.Errorf("%s: stderr %q lacks %q", strings.Join(args, " "), stderr, want)
					}
				}
				if code != cli.ExitFailure || out != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and one line", strings.Join(args, " "), code, out, stderr)
				}
			}
			if changes := changesIn(t, log); len(changes) != 0 {
				t.Errorf("lvm2 changes ran from a damaged journal: %q", changes)
			}
			if _, err := os.Stat(journal); err != nil {
				t.Errorf("the damaged journal was touched: %v", err)
			}
		})
	}
}

// TestLVMCacheAbandonRemovesOnlyThatJournal: --abandon shows what the
// journal records and what to check, --dry-run removes nothing, and -y
// removes that LV's journal and nothing else, without running lvm2.
func TestLVMCacheAbandonRemovesOnlyThatJournal(t *testing.T) {
	lvm, log := recordingLVM(t)
	state := t.TempDir()
	journal := filepath.Join(state, "storage-slowlv.json")
	doc := slowlvJournal(t)
	doc["steps"].([]any)[0].(map[string]any)["kind"] = "defrag"
	writeJSON(t, journal, doc)
	other := filepath.Join(state, "storage-otherlv.json")
	os.WriteFile(other, []byte("{}"), 0o600)
	base := []string{"lvm", "--lvm", lvm, "--state-dir", state, "cache", "resize", "storage/slowlv", "--abandon"}

	out, stderr, code := runForTest(append(base, "--dry-run")...)
	if code != 0 || out != "+ rm "+journal+"\n" {
		t.Errorf("--abandon --dry-run: exit %d, stdout %q; want exit 0 and the removal", code, out)
	}
	for _, want := range []string{"the journal records: a resize of storage/slowlv from 32.00 MiB to 64.00 MiB by recache",
		`--resume cannot use it: step 1 is "defrag"`, "look at the LV: lvm lvs -a", "nothing is changed in lvm2"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--abandon --dry-run: stderr %q lacks %q", stderr, want)
		}
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("--dry-run removed the journal: %v", err)
	}
	if _, stderr, code := runForTest(base...); code != cli.ExitUsage || !strings.Contains(stderr, "pass -y") {
		t.Errorf("--abandon without -y and without a terminal: exit %d %q; want 2", code, stderr)
	}
	out, stderr, code = runForTest(append(base, "-y")...)
	if code != 0 || out != "storage/slowlv: journal "+journal+" removed; nothing was changed in lvm2\n" {
		t.Errorf("--abandon -y: exit %d, %q %q", code, out, stderr)
	}
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("--abandon -y left the journal: %v", err)
	}
	if data, err := os.ReadFile(other); err != nil || string(data) != "{}" {
		t.Errorf("--abandon touched another LV's journal: %v %q", err, data)
	}
	if _, stderr, code := runForTest(append(base, "-y")...); code != cli.ExitFailure || !strings.Contains(stderr, "no interrupted resize of storage/slowlv is journaled in "+state) {
		t.Errorf("--abandon without a journal: exit %d %q; want 1", code, stderr)
	}
	if changes := changesIn(t, log); len(changes) != 0 {
		t.Errorf("--abandon ran lvm2 changes: %q", changes)
	}
}

// TestLVMCacheAbandonOfALinkRemovesTheLinkOnly: a symbolic link planted as
// the journal is removed as what it is; what it points to stays.
func TestLVMCacheAbandonOfALinkRemovesTheLinkOnly(t *testing.T) {
	lvm, _ := recordingLVM(t)
	state := t.TempDir()
	target := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(target, []byte("root:x:0:0\n"), 0o644)
	journal := filepath.Join(state, "storage-slowlv.json")
	os.Symlink(target, journal)
	out, stderr, code := runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "resize", "storage/slowlv", "--abandon", "-y")
	if code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("--abandon of a link: exit %d, %q %q", code, out, stderr)
	}
	if _, err := os.Lstat(journal); !os.IsNotExist(err) {
		t.Errorf("the link is still there: %v", err)
	}
	if data, _ := os.ReadFile(target); string(data) != "root:x:0:0\n" {
		t.Errorf("the link's target changed: %q", data)
	}
}

// TestLVMCacheMessagesNameTheCommandLinesNotTheCalls: lvmcache points to
// Manager.Resume and Manager.PlanAbandon in its own terms; the user reads
// the command lines that make those calls, in errors and in the notes of
// --abandon alike.
func TestLVMCacheMessagesNameTheCommandLinesNotTheCalls(t *testing.T) {
	lvm, _ := recordingLVM(t)
	state := t.TempDir()
	writeJSON(t, filepath.Join(state, "storage-slowlv.json"), slowlvJournal(t))
	base := []string{"lvm", "--lvm", lvm, "--state-dir", state, "cache"}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"remove", "storage/slowlv", "-y"}, cli.ExitFailure, "finish it with `opsctl lvm cache resize storage/slowlv --resume`"},
		{[]string{"resize", "storage/slowlv", "--abandon", "--dry-run"}, cli.ExitOK, "`opsctl lvm cache resize storage/slowlv --resume` would finish this"},
		{[]string{"resize", "storage/plainlv", "--resume", "-y"}, cli.ExitFailure, "opsctl: lvm cache resize storage/plainlv --resume: no interrupted resize of storage/plainlv"},
		{[]string{"resize", "storage/plainlv", "--abandon", "-y"}, cli.ExitFailure, "opsctl: lvm cache resize storage/plainlv --abandon: no interrupted resize of storage/plainlv"},
	} {
		_, stderr, code := runForTest(append(base, tc.args...)...)
		if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "Manager.") {
			t.Errorf("%s: exit %d, %q; want exit %d and %q", strings.Join(tc.args, " "), code, stderr, tc.code, tc.want)
		}
	}
	// The journal of a killed flush points to flush --resume.
	flush := map[string]any{"version": 1, "op": "flush", "lv": "storage/slowlv", "lvm": "lvm",
		"flush": map[string]any{"method": "cleaner", "policy": "smq", "migration_threshold": 0, "dirty_blocks": 192, "chunk_size_bytes": 65536},
		"steps": []any{
			map[string]any{"kind": "cleaner-policy", "args": []string{"lvchange", "--cachepolicy", "cleaner", "storage/slowlv"}, "state": "done"},
			map[string]any{"kind": "write-back", "args": nil, "state": "running"},
			map[string]any{"kind": "restore-policy", "args": []string{"lvchange", "--cachepolicy", "smq", "storage/slowlv"}, "state": "pending"},
			map[string]any{"kind": "restore-threshold", "args": []string{"message", "storage-slowlv", "0", "migration_threshold", "0"}, "dmsetup": true, "state": "pending"},
		}}
	writeJSON(t, filepath.Join(state, "storage-slowlv.json"), flush)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"remove", "storage/slowlv", "-y"}, "an interrupted flush of storage/slowlv is journaled in " + state + "/storage-slowlv.json (a flush of storage/slowlv; steps cleaner-policy done, write-back running, restore-policy pending, restore-threshold pending; the settings to put back: policy smq, migration_threshold 0); finish it with `opsctl lvm cache flush storage/slowlv --resume`"},
		{[]string{"resize", "storage/slowlv", "--resume", "-y"}, "opsctl: lvm cache resize storage/slowlv --resume: the journal " + state + "/storage-slowlv.json records an interrupted flush, not a resize; finish it with `opsctl lvm cache flush storage/slowlv --resume`"},
		{[]string{"flush", "storage/plainlv", "--resume"}, "opsctl: lvm cache flush storage/plainlv --resume: no interrupted flush of storage/plainlv is journaled in " + state},
	} {
		_, stderr, code := runForTest(append(base, tc.args...)...)
		if code != cli.ExitFailure || !strings.Contains(stderr, tc.want) || strings.Contains(stderr, "Manager.") {
			t.Errorf("%s: exit %d, %q; want exit 1 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
}
