package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// fakeLVM writes an lvm stand-in that answers reports with the JSON real
// lvm2 2.03.16 printed in the test VM (pkg/lvmcache/testdata) for a cached
// storage/slowlv, and fails every command that would change something.
func fakeLVM(t *testing.T) string {
	t.Helper()
	data, err := filepath.Abs("../../pkg/lvmcache/testdata/lvm2-2.03.16")
	if err != nil {
		t.Fatal(err)
	}
	script := `#!/bin/sh
case "$1" in
version) cat '` + data + `/version.txt' ;;
vgs) cat '` + data + `/vgs.json' ;;
pvs) cat '` + data + `/pvs.json' ;;
lvs) cat '` + data + `/lvs-dirty.json' ;;
*) echo "  fake lvm: $1 must not run in this test" >&2; exit 5 ;;
esac
`
	path := filepath.Join(t.TempDir(), "lvm")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLVMCacheUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"bad size unit", []string{"lvm", "cache", "create", "vg/lv", "--size", "12Q", "--cache-pv", "/dev/x"}, `--size: size "12Q": expected a number`},
		{"relative size for create", []string{"lvm", "cache", "create", "vg/lv", "--size", "+1G", "--cache-pv", "/dev/x"}, "only for resize"},
		{"negative resize", []string{"lvm", "cache", "resize", "vg/lv", "--size", "-5G"}, `size "-5G": shrinking is not supported`},
		{"missing size", []string{"lvm", "cache", "create", "vg/lv", "--cache-pv", "/dev/x"}, "--size is required"},
		{"missing cache pv", []string{"lvm", "cache", "create", "vg/lv", "--size", "1G"}, "--cache-pv is required"},
		{"bad mode", []string{"lvm", "cache", "create", "vg/lv", "--size", "1G", "--cache-pv", "/dev/x", "--cachemode", "writearound"}, `--cachemode "writearound": expected writeback or writethrough`},
		{"bad name", []string{"lvm", "cache", "create", "lv", "--size", "1G", "--cache-pv", "/dev/x"}, `VG/LV "lv": expected VG/LV`},
		{"bad strategy", []string{"lvm", "cache", "resize", "vg/lv", "--size", "+1G", "--strategy", "fast"}, `--strategy "fast": expected auto, online or recache`},
		{"resume with size", []string{"lvm", "cache", "resize", "vg/lv", "--size", "+1G", "--resume"}, "--resume takes the size from the journal"},
		{"resume with strategy", []string{"lvm", "cache", "resize", "vg/lv", "--resume", "--strategy", "online"}, "--resume takes the strategy from the journal"},
		{"resize without size", []string{"lvm", "cache", "resize", "vg/lv"}, "--size is required (SIZE or +SIZE)"},
		{"abandon with resume", []string{"lvm", "cache", "resize", "vg/lv", "--abandon", "--resume"}, "--abandon only removes the journal"},
		{"abandon with size", []string{"lvm", "cache", "resize", "vg/lv", "--abandon", "--size", "+1G"}, "--abandon only removes the journal"},
		{"abandon with strategy", []string{"lvm", "cache", "resize", "vg/lv", "--abandon", "--strategy", "online"}, "--abandon only removes the journal"},
		{"two LVs", []string{"lvm", "cache", "remove", "vg/a", "vg/b"}, "accepts 1 arg(s)"},
		{"bad output", []string{"lvm", "cache", "status", "-o", "yaml"}, "expected one of text, json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runForTest(tc.args...)
			if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("more than one line: %q", stderr)
			}
		})
	}
}

func TestLVMCacheFlagsReachTheOptions(t *testing.T) {
	f, _, _ := testFactory("")
	var got *LVMCacheCreateOptions
	cmd := NewCmdLVMCacheCreate(f, func(o *LVMCacheCreateOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"storage/slowlv", "--size", "100G", "--cache-pv", "/dev/md3", "--cache-pv", "/dev/md4", "--cachemode", "writethrough", "--name", "fast", "--dry-run", "-y"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.LV != "storage/slowlv" || got.Size != "100G" || strings.Join(got.CachePVs, ",") != "/dev/md3,/dev/md4" ||
		got.CacheMode != "writethrough" || got.Name != "fast" || !got.DryRun || !got.Yes {
		t.Errorf("options %+v", got)
	}
	var resize *LVMCacheResizeOptions
	cmd = NewCmdLVMCacheResize(f, func(o *LVMCacheResizeOptions) error { resize = o; return nil })
	cmd.SetArgs([]string{"storage/slowlv", "--resume", "--strategy", "recache"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !resize.Resume || resize.Strategy != "recache" || resize.Size != "" {
		t.Errorf("resize options %+v", resize)
	}
}

// The flags of the group (persistent, before or after the verb) and of
// status and remove land in their options; a verb built alone gets the
// group's defaults.
func TestLVMCacheStatusAndRemoveFlagsReachTheOptions(t *testing.T) {
	f, _, _ := testFactory("")
	var status *LVMCacheStatusOptions
	cmd := NewCmdLVMCacheStatus(f, func(o *LVMCacheStatusOptions) error { status = o; return nil })
	cmd.SetArgs([]string{"storage/slowlv", "-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if status.LV != "storage/slowlv" || !status.Output.JSON() || status.LVM != (lvmFlags{ReportTimeout: lvmcache.DefaultReportTimeout}) {
		t.Errorf("status options %+v", status)
	}
	var remove *LVMCacheRemoveOptions
	group := newCmdLVM(f)
	cache, _, err := group.Find([]string{"cache"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range cache.Commands() {
		if sub.Name() == "remove" {
			cache.RemoveCommand(sub)
		}
	}
	cache.AddCommand(NewCmdLVMCacheRemove(f, func(o *LVMCacheRemoveOptions) error { remove = o; return nil }))
	group.SetArgs([]string{"--lvm", "/sbin/lvm", "cache", "remove", "storage/slowlv", "--state-dir", "/srv/state", "--report-timeout", "5s", "--dry-run"})
	if err := group.Execute(); err != nil {
		t.Fatal(err)
	}
	if remove.LV != "storage/slowlv" || !remove.DryRun || remove.Yes ||
		remove.LVM != (lvmFlags{LVMPath: "/sbin/lvm", StateDir: "/srv/state", ReportTimeout: 5 * time.Second}) {
		t.Errorf("remove options %+v", remove)
	}
}

func TestLVMCacheStatusJSONHasTheSpecFields(t *testing.T) {
	lvm := fakeLVM(t)
	out, stderr, code := runForTest("lvm", "--lvm", lvm, "cache", "status", "storage/slowlv", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := `{
  "lv": "storage/slowlv",
  "cached": true,
  "mode": "writeback",
  "policy": "smq",
  "chunk_size_bytes": 65536,
  "origin_size_bytes": 33554432,
  "cache_size_bytes": 16777216,
  "total_blocks": 256,
  "used_blocks": 192,
  "dirty_blocks": 192,
  "read_hits": 558,
  "read_misses": 917,
  "write_hits": 84,
  "write_misses": 0,
  "cache_pvs": [
    "/dev/loop1"
  ]
}
`
	if out != want {
		t.Errorf("status JSON:\n%s\nwant:\n%s", out, want)
	}
	out, _, code = runForTest("lvm", "--lvm", lvm, "cache", "status", "-o", "json")
	var all []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &all) != nil || len(all) != 1 || all[0]["lv"] != "storage/slowlv" {
		t.Errorf("status of all: exit %d, %s", code, out)
	}
	out, _, _ = runForTest("lvm", "--lvm", lvm, "cache", "status", "storage/plainlv")
	if out != "storage/plainlv: not cached (8.00 MiB)\n" {
		t.Errorf("plain LV text: %q", out)
	}
}

func TestLVMCacheChangesNeedConfirmationOrDryRun(t *testing.T) {
	lvm := fakeLVM(t)
	state := t.TempDir()
	out, stderr, code := runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "remove", "storage/slowlv")
	if code != cli.ExitUsage || out != "" || !strings.Contains(stderr, "refusing to change it without confirmation: stdin is not a terminal; pass -y") {
		t.Errorf("remove without -y: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "remove", "storage/slowlv", "--dry-run")
	if code != 0 || out != "+ "+lvm+" lvconvert --uncache storage/slowlv\n" {
		t.Errorf("remove --dry-run: exit %d, %q %q", code, out, stderr)
	}
	out, stderr, code = runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "resize", "storage/slowlv", "--size", "+8M", "--strategy", "recache", "--dry-run")
	want := "+ " + lvm + " lvconvert --uncache storage/slowlv\n+ " + lvm + " lvresize --size 40M storage/slowlv /dev/loop0\n+ " + lvm +
		" lvcreate --type cache --cachemode writeback --cachepolicy smq --chunksize 64K --poolmetadatasize 8M --name slowlv_cache --size 16M storage/slowlv /dev/loop1\n"
	if code != 0 || out != want {
		t.Errorf("resize --dry-run: exit %d\n%s\nwant\n%s\n%s", code, out, want, stderr)
	}
	_, stderr, code = runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "create", "storage/slowlv", "--size", "8M", "--cache-pv", "/dev/loop1", "-y")
	if code != 1 || !strings.Contains(stderr, "already cached by slowlv_cache_cpool") {
		t.Errorf("create on a cached LV: exit %d %q", code, stderr)
	}
	// The lvm2 failure of a change is one line, exit 1.
	_, stderr, code = runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "remove", "storage/slowlv", "-y")
	if code != 1 || !strings.Contains(stderr, "lvconvert failed (exit 5): fake lvm: lvconvert must not run in this test") {
		t.Errorf("failing lvconvert: exit %d %q", code, stderr)
	}
}

func TestLVMCacheConfirmationPrompt(t *testing.T) {
	for answer, ok := range map[string]bool{"y\n": true, "yes\n": true, "n\n": false, "\n": false, "": false} {
		var errOut strings.Builder
		io := &cli.IOStreams{In: strings.NewReader(answer), Out: &strings.Builder{}, ErrOut: &errOut}
		plan := testPlan()
		err := confirm(io, true, plan, false)
		if (err == nil) != ok {
			t.Errorf("answer %q: %v", answer, err)
		}
		if !strings.Contains(errOut.String(), "+ lvm lvconvert --uncache storage/slowlv") || !strings.Contains(errOut.String(), "Proceed? [y/N]") {
			t.Errorf("prompt: %q", errOut.String())
		}
	}
}

func testPlan() *lvmcache.Plan {
	return &lvmcache.Plan{Op: "remove", LV: "storage/slowlv", Lvm: "lvm", Steps: []lvmcache.Step{{Kind: lvmcache.StepUncache, Args: []string{"lvconvert", "--uncache", "storage/slowlv"}}}}
}

// TestLVMCacheResumeDryRunShowsOnlyWhatIsLeft: opsctl was killed while lvm2
// finished the uncache, so the journal says "running"; the LV is no longer
// cached. --resume --dry-run prints the commands --resume will run, not
// the uncache it will skip.
func TestLVMCacheResumeDryRunShowsOnlyWhatIsLeft(t *testing.T) {
	data, err := filepath.Abs("../../pkg/lvmcache/testdata/lvm2-2.03.16")
	if err != nil {
		t.Fatal(err)
	}
	lvm := filepath.Join(t.TempDir(), "lvm")
	script := "#!/bin/sh\ncase \"$1\" in\nvgs) cat '" + data + "/vgs.json' ;;\npvs) cat '" + data + "/pvs.json' ;;\nlvs) cat '" + data +
		"/lvs-plain.json' ;;\n*) echo \"  fake lvm: $1 must not run in this test\" >&2; exit 5 ;;\nesac\n"
	if err := os.WriteFile(lvm, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	recache := []string{"lvcreate", "--type", "cache", "--cachemode", "writeback", "--name", "slowlv_cache", "--size", "16M", "storage/slowlv", "/dev/loop1"}
	journal := lvmcache.Plan{Version: 1, Op: lvmcache.OpResize, LV: "storage/slowlv", Strategy: lvmcache.StrategyRecache, Lvm: "lvm",
		OriginalSizeBytes: 32 << 20, TargetSizeBytes: 64 << 20,
		Cache: &lvmcache.Cache{Name: "slowlv_cache", Mode: "writeback", SizeBytes: 16 << 20, PVs: []string{"/dev/loop1"}},
		Steps: []lvmcache.Step{
			{Kind: lvmcache.StepUncache, Args: []string{"lvconvert", "--uncache", "storage/slowlv"}, State: lvmcache.StateRunning},
			{Kind: lvmcache.StepResize, Args: []string{"lvresize", "--size", "64M", "storage/slowlv", "/dev/loop0"}, State: lvmcache.StatePending},
			{Kind: lvmcache.StepRecache, Args: recache, State: lvmcache.StatePending},
		}}
	raw, err := json.Marshal(journal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "storage-slowlv.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runForTest("lvm", "--lvm", lvm, "--state-dir", state, "cache", "resize", "storage/slowlv", "--resume", "--dry-run")
	want := "+ " + lvm + " lvresize --size 64M storage/slowlv /dev/loop0\n+ " + lvm + " " + strings.Join(recache, " ") + "\n"
	if code != 0 || out != want {
		t.Errorf("--resume --dry-run: exit %d\n%s\nwant\n%s\n%s", code, out, want, stderr)
	}
}
