package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// fakeDmsetup writes a dmsetup stand-in that answers `status storage-slowlv`
// with the kernel's line for the cache of the testdata (192 of 256 blocks
// dirty, writeback frozen at migration_threshold 0) and fails anything
// else, a message included.
func fakeDmsetup(t *testing.T) string {
	t.Helper()
	script := `#!/bin/sh
if [ "$1 $2" = "status storage-slowlv" ]; then
	echo "0 65536 cache 8 27/2048 128 192/256 558 917 84 0 3 205 192 2 metadata2 writeback 2 migration_threshold 0 smq 0 rw - "
	exit 0
fi
echo "fake dmsetup: $* must not run in this test" >&2
exit 1
`
	path := filepath.Join(t.TempDir(), "dmsetup")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLVMCacheFlushFlagsReachTheOptions(t *testing.T) {
	f, _, _ := testFactory("")
	var got *LVMCacheFlushOptions
	cmd := NewCmdLVMCacheFlush(f, func(o *LVMCacheFlushOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"storage/slowlv", "--for", "90m", "--dry-run", "-o", "json", "--method", "threshold"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.LV != "storage/slowlv" || got.For != 90*time.Minute || !got.ForSet || !got.DryRun || !got.Output.JSON() || got.Method != lvmcache.FlushThreshold || got.Resume || got.Until != "" {
		t.Errorf("options %+v", got)
	}
	cmd = NewCmdLVMCacheFlush(f, func(o *LVMCacheFlushOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"storage/slowlv", "--until", "06:00", "--resume"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Until != "06:00" || got.ForSet || !got.Resume || got.Method != lvmcache.FlushCleaner || got.Output.JSON() {
		t.Errorf("options %+v", got)
	}
	var status *LVMCacheStatusOptions
	cmd = NewCmdLVMCacheStatus(f, func(o *LVMCacheStatusOptions) error { status = o; return nil })
	cmd.SetArgs([]string{"storage", "-o", "prometheus", "--textfile", "/var/lib/prometheus/node-exporter"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if status.LV != "storage" || status.Output.Value != "prometheus" || status.Textfile != "/var/lib/prometheus/node-exporter" {
		t.Errorf("status options %+v", status)
	}
}

func TestLVMCacheFlushUntilIsTheNextTimeOrAFutureDate(t *testing.T) {
	now := time.Date(2026, 12, 7, 23, 30, 0, 0, time.Local)
	cases := map[string]time.Time{
		"06:00":                     time.Date(2026, 12, 8, 6, 0, 0, 0, time.Local),
		"23:45":                     time.Date(2026, 12, 7, 23, 45, 0, 0, time.Local),
		"2026-12-24 06:00":          time.Date(2026, 12, 24, 6, 0, 0, 0, time.Local),
		"2026-12-24T06:00":          time.Date(2026, 12, 24, 6, 0, 0, 0, time.Local),
		"2026-12-24T06:00:00+01:00": time.Date(2026, 12, 24, 5, 0, 0, 0, time.UTC),
	}
	for value, want := range cases {
		got, err := parseUntil(value, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("--until %s: %v, %v; want %v", value, got, err, want)
		}
	}
	for _, bad := range []string{"2026-12-01 06:00", "6am", "25:00", ""} {
		if _, err := parseUntil(bad, now); cli.ExitCode(err) != cli.ExitUsage || !strings.Contains(err.Error(), "--until") {
			t.Errorf("--until %q: %v, want a usage error naming --until", bad, err)
		}
	}
}

func TestLVMCacheFlushUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"storage/slowlv", "--until", "06:00", "--for", "1h"}, "--until and --for both given, expected one"},
		{[]string{"storage/slowlv", "--for", "0s"}, "--for 0s: expected a positive duration"},
		{[]string{"storage/slowlv", "--for", "-5m"}, "--for -5m0s: expected a positive duration"},
		{[]string{"storage/slowlv", "--until", "noon"}, `--until "noon": expected a time like 06:00`},
		{[]string{"storage/slowlv", "--resume", "--method", "threshold"}, "--resume takes the method from the journal"},
		{[]string{"slowlv"}, `VG/LV "slowlv": expected VG/LV`},
		{[]string{"storage/slowlv", "-o", "prometheus"}, "expected one of text, json"},
	} {
		_, stderr, code := runForTest(append([]string{"lvm", "cache", "flush"}, tc.args...)...)
		if code != cli.ExitUsage || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("flush %s: exit %d, %q; want exit 2 and %q", strings.Join(tc.args, " "), code, stderr, tc.want)
		}
	}
	_, stderr, code := runForTest("lvm", "cache", "status", "--textfile", t.TempDir())
	if code != cli.ExitUsage || !strings.Contains(stderr, "--textfile: only with -o prometheus") {
		t.Errorf("--textfile without -o prometheus: exit %d, %q", code, stderr)
	}
	_, stderr, code = runForTest("lvm", "--dmsetup", filepath.Join(t.TempDir(), "nodmsetup"), "cache", "status")
	if code != cli.ExitUsage || !strings.Contains(stderr, "--dmsetup: dmsetup executable") {
		t.Errorf("--dmsetup naming nothing: exit %d, %q", code, stderr)
	}
}

// TestLVMCacheFlushDryRunPrintsTheCommands: the plan of the testdata's
// cache (192 dirty blocks, runtime migration_threshold 0): the lvm2 and
// dmsetup command lines on stdout, the notes on stderr, nothing run.
func TestLVMCacheFlushDryRunPrintsTheCommands(t *testing.T) {
	lvm, log := recordingLVM(t)
	dmsetup := fakeDmsetup(t)
	out, stderr, code := runForTest("lvm", "--lvm", lvm, "--dmsetup", dmsetup, "--state-dir", t.TempDir(), "cache", "flush", "storage/slowlv", "--dry-run")
	want := "+ " + lvm + " lvchange --cachepolicy cleaner storage/slowlv\n+ " + lvm + " lvchange --cachepolicy smq storage/slowlv\n+ " + dmsetup + " message storage-slowlv 0 migration_threshold 0\n"
	if code != 0 || out != want {
		t.Errorf("flush --dry-run: exit %d\n%s\nwant\n%s\n%s", code, out, want, stderr)
	}
	if !strings.Contains(stderr, "write back 192 dirty blocks (12.00 MiB) of storage/slowlv") || !strings.Contains(stderr, "then put back policy smq (settings: none) and the runtime migration_threshold 0") {
		t.Errorf("notes: %q", stderr)
	}
	if changes := changesIn(t, log); len(changes) != 0 {
		t.Errorf("--dry-run ran %v", changes)
	}
}

// TestLVMCacheFlushOfAWritethroughCacheSaysSo: nothing to flush, exit 0,
// one line; -o json still prints the figures.
func TestLVMCacheFlushOfAWritethroughCacheSaysSo(t *testing.T) {
	data, err := filepath.Abs("../../pkg/lvmcache/testdata/lvm2-2.03.16")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lvs, err := os.ReadFile(filepath.Join(data, "lvs-cached.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lvs.json"), []byte(strings.ReplaceAll(string(lvs), `"writeback"`, `"writethrough"`)), 0o644); err != nil {
		t.Fatal(err)
	}
	lvm := filepath.Join(dir, "lvm")
	script := "#!/bin/sh\ncase \"$1\" in\nvgs) cat '" + data + "/vgs.json' ;;\npvs) cat '" + data + "/pvs.json' ;;\nlvs) cat '" + dir +
		"/lvs.json' ;;\n*) echo \"  fake lvm: $1 must not run in this test\" >&2; exit 5 ;;\nesac\n"
	if err := os.WriteFile(lvm, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := runForTest("lvm", "--lvm", lvm, "--state-dir", t.TempDir(), "cache", "flush", "storage/slowlv")
	if code != 0 || out != "" || stderr != "storage/slowlv has a writethrough cache, which holds no dirty block: nothing to flush\n" {
		t.Errorf("flush of a writethrough cache: exit %d, %q %q", code, out, stderr)
	}
	out, _, code = runForTest("lvm", "--lvm", lvm, "--state-dir", t.TempDir(), "cache", "flush", "storage/slowlv", "-o", "json")
	if code != 0 || !strings.Contains(out, `"complete": true`) || !strings.Contains(out, `"dirty_blocks_after": 0`) {
		t.Errorf("flush -o json of a writethrough cache: exit %d, %q", code, out)
	}
	_, stderr, code = runForTest("lvm", "--lvm", lvm, "--state-dir", t.TempDir(), "cache", "flush", "storage/plainlv")
	if code != cli.ExitFailure || !strings.Contains(stderr, "opsctl: lvm cache flush storage/plainlv: is not cached: nothing to flush") {
		t.Errorf("flush of a plain LV: exit %d, %q", code, stderr)
	}
}

// TestLVMCacheStatusPrometheusIsReadByPrometheusParser: -o prometheus of
// the testdata's cache, read back with Prometheus's text parser: the
// kernel's counters, labels lv and mode; for a VG and every VG alike.
func TestLVMCacheStatusPrometheusIsReadByPrometheusParser(t *testing.T) {
	lvm, dmsetup := fakeLVM(t), fakeDmsetup(t)
	for _, args := range [][]string{{}, {"storage"}, {"storage/slowlv"}} {
		out, stderr, code := runForTest(append([]string{"lvm", "--lvm", lvm, "--dmsetup", dmsetup, "cache", "status", "-o", "prometheus"}, args...)...)
		if code != 0 {
			t.Fatalf("status %v -o prometheus: exit %d %s", args, code, stderr)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(out))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		for name, want := range map[string]float64{
			"opsctl_lvm_cache_read_hits_total": 558, "opsctl_lvm_cache_read_misses_total": 917, "opsctl_lvm_cache_write_hits_total": 84,
			"opsctl_lvm_cache_write_misses_total": 0, "opsctl_lvm_cache_demotions_total": 3, "opsctl_lvm_cache_promotions_total": 205,
			"opsctl_lvm_cache_dirty_blocks": 192, "opsctl_lvm_cache_used_blocks": 192, "opsctl_lvm_cache_blocks": 256,
		} {
			family := families[name]
			if family == nil || len(family.Metric) != 1 {
				t.Errorf("%v: %s: %v", args, name, family)
				continue
			}
			metric := family.Metric[0]
			if v := metric.GetCounter().GetValue() + metric.GetGauge().GetValue(); v != want || len(metric.Label) != 2 ||
				metric.Label[0].GetValue() != "storage/slowlv" || metric.Label[1].GetValue() != "writeback" {
				t.Errorf("%v: %s = %v %v, want %v", args, name, v, metric.Label, want)
			}
		}
	}
	out, _, code := runForTest("lvm", "--lvm", lvm, "--dmsetup", dmsetup, "cache", "status", "storage/plainlv", "-o", "prometheus")
	if code != 0 || out != "" {
		t.Errorf("a plain LV: exit %d, %q; want no series", code, out)
	}
}

// TestLVMCacheStatusTextfile: --textfile writes opsctl_lvm_cache.prom in
// the folder; a folder that is missing, a file or a symbolic link is a
// usage error naming --textfile, and nothing is written.
func TestLVMCacheStatusTextfile(t *testing.T) {
	lvm, dmsetup := fakeLVM(t), fakeDmsetup(t)
	dir := t.TempDir()
	base := []string{"lvm", "--lvm", lvm, "--dmsetup", dmsetup, "cache", "status", "-o", "prometheus", "--textfile"}
	out, stderr, code := runForTest(append(base, dir)...)
	data, err := os.ReadFile(filepath.Join(dir, lvmcache.TextfileName))
	if code != 0 || out != "" || err != nil || !strings.Contains(string(data), `opsctl_lvm_cache_dirty_blocks{lv="storage/slowlv",mode="writeback"} 192`) {
		t.Errorf("--textfile: exit %d, %q %q; file %q %v", code, out, stderr, data, err)
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(dir, link)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"): "no such folder",
		file:                          "a regular file, expected a folder",
		link:                          "a symbolic link; give the folder itself",
	} {
		_, stderr, code := runForTest(append(base, path)...)
		if code != cli.ExitUsage || stderr != "opsctl: --textfile: "+path+": "+want+"\n" {
			t.Errorf("--textfile %s: exit %d, %q; want exit 2 and %q", path, code, stderr, want)
		}
	}
	// A folder on the way replaced by another user's link (to a folder of
	// root's): not followed, exit 2, nothing written there.
	if os.Geteuid() == 0 {
		users := t.TempDir()
		os.Chmod(users, 0o755)
		os.Chmod(filepath.Dir(users), 0o755)
		os.Chown(users, 65534, 65534)
		roots := t.TempDir()
		os.Mkdir(filepath.Join(roots, "cron.d"), 0o755)
		theirs := filepath.Join(users, "textfile")
		os.Symlink(roots, theirs)
		os.Lchown(theirs, 65534, 65534)
		path := filepath.Join(theirs, "cron.d")
		_, stderr, code := runForTest(append(base, path)...)
		if code != cli.ExitUsage || !strings.HasPrefix(stderr, "opsctl: --textfile: "+path+": leads through "+theirs+", a symbolic link") {
			t.Errorf("--textfile through another user's link: exit %d, %q; want exit 2", code, stderr)
		}
		if entries, _ := os.ReadDir(filepath.Join(roots, "cron.d")); len(entries) != 0 {
			t.Errorf("written through another user's link: %v", entries)
		}
	}
	// A FIFO where the file belongs: not replaced, exit 1.
	fifoDir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifoDir, lvmcache.TextfileName), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = runForTest(append(base, fifoDir)...)
	if code != cli.ExitFailure || !strings.Contains(stderr, "a FIFO there, not a file opsctl wrote") {
		t.Errorf("a FIFO in the textfile folder: exit %d, %q", code, stderr)
	}
}

// TestLVMCacheStatusTextfileCheckedFirst: --textfile "" is a usage error,
// not stdout in disguise, and a wrong folder is refused before lvm2 runs
// (before: with lvm2 missing, exit 1 for lvm2 hid the exit 2 of the
// folder; and --textfile "" wrote to stdout, exit 0).
func TestLVMCacheStatusTextfileCheckedFirst(t *testing.T) {
	missingLVM := filepath.Join(t.TempDir(), "no-lvm")
	missingDir := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "prometheus", "--textfile", ""}, "opsctl: --textfile: expected a folder, got an empty value\n"},
		{[]string{"-o", "text", "--textfile", ""}, "opsctl: --textfile: expected a folder, got an empty value\n"},
		{[]string{"-o", "prometheus", "--textfile", missingDir}, "opsctl: --textfile: " + missingDir + ": no such folder\n"},
	} {
		args := append([]string{"lvm", "cache", "status"}, tc.args...)
		var out, stderr bytes.Buffer
		streams := &cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &stderr}
		code := run(args, streams, func(k string) string { return map[string]string{"OPSCTL_LVM": missingLVM}[k] })
		if code != cli.ExitUsage || out.Len() != 0 || stderr.String() != tc.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, code, out.String(), stderr.String(), tc.want)
		}
	}
}
