package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// vmTimeout bounds one boot of the VM and everything test.sh does in it:
// some 3 minutes on an idle build machine (qemu TCG), more than twice that
// where other builds share its two cores. OPSCTL_LVM_VM_TIMEOUT (seconds)
// sets another bound.
func vmTimeout() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("OPSCTL_LVM_VM_TIMEOUT")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 900 * time.Second
}

// stepResult is one @@STEP line of the console, with its @@DATA check.
type stepResult struct {
	Code   int
	Stdout string
	Stderr string
	Uptime float64
	DataOK bool
	Data   string
}

type vmResults struct {
	steps    map[string]*stepResult
	order    []string
	journals map[string]string
	captures map[string][]byte
	ended    bool
	// signatures is what a plain lvcreate said on the SSD's free space
	// before the create over stale signatures.
	signatures string
	// times are the VM's uptimes of @@TIME lines, by name.
	times map[string]float64
}

func parseConsole(console []byte) (*vmResults, error) {
	res := &vmResults{steps: map[string]*stepResult{}, journals: map[string]string{}, captures: map[string][]byte{}, times: map[string]float64{}}
	scanner := bufio.NewScanner(bytes.NewReader(console))
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	for scanner.Scan() {
		line := strings.TrimRight(scanner.Text(), "\r")
		i := strings.Index(line, "@@")
		if i < 0 {
			continue
		}
		fields := strings.Fields(line[i:])
		switch fields[0] {
		case "@@STEP":
			if len(fields) < 6 {
				return nil, fmt.Errorf("short @@STEP line: %q", line)
			}
			r := &stepResult{}
			for _, kv := range fields[2:] {
				key, value, _ := strings.Cut(kv, "=")
				switch key {
				case "rc":
					r.Code, _ = strconv.Atoi(value)
				case "out", "err":
					decoded, err := base64.StdEncoding.DecodeString(value)
					if err != nil {
						return nil, fmt.Errorf("step %s: %s: %v", fields[1], key, err)
					}
					if key == "out" {
						r.Stdout = string(decoded)
					} else {
						r.Stderr = string(decoded)
					}
				case "t":
					r.Uptime, _ = strconv.ParseFloat(value, 64)
				}
			}
			res.steps[fields[1]] = r
			res.order = append(res.order, fields[1])
		case "@@DATA":
			if len(fields) >= 3 {
				if r := res.steps[fields[1]]; r != nil {
					r.DataOK = fields[2] == "ok"
					r.Data = strings.Join(fields[2:], " ")
				}
			}
		case "@@JOURNAL":
			if len(fields) >= 3 {
				res.journals[fields[1]] = fields[2]
			}
		case "@@CAPTURE":
			if len(fields) >= 3 {
				decoded, err := base64.StdEncoding.DecodeString(fields[2])
				if err == nil {
					res.captures[fields[1]] = decoded
				}
			}
		case "@@SIGNATURES":
			if len(fields) >= 2 {
				decoded, _ := base64.StdEncoding.DecodeString(fields[1])
				res.signatures = string(decoded)
			}
		case "@@TIME":
			if len(fields) >= 3 {
				res.times[fields[1]], _ = strconv.ParseFloat(fields[2], 64)
			}
		case "@@END":
			res.ended = true
		}
	}
	return res, scanner.Err()
}

// bootVM builds the initramfs (base from assets.sh plus test.sh and the
// opsctl binary) and runs the VM to its end, returning the console output.
func bootVM(t *testing.T, memory, extraAppend string) []byte {
	t.Helper()
	qemu := testenv.Need(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.Need(t, "busybox", "busybox-static")
	testenv.Need(t, "lvm", "lvm2")
	testenv.Need(t, "dmsetup", "dmsetup")
	testenv.Need(t, "cache_check", "thin-provisioning-tools")
	cpio := testenv.Need(t, "cpio", "cpio")
	opsctl := testenv.Opsctl(t)

	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	assets := exec.CommandContext(ctx, filepath.Join(here, "assets.sh"))
	var assetsErr bytes.Buffer
	assets.Stderr = &assetsErr
	out, err := assets.Output()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == 3 {
		testenv.Missing(t, strings.TrimSpace(assetsErr.String()))
	}
	if err != nil {
		t.Fatalf("assets.sh: %v\n%s", err, assetsErr.String())
	}
	paths := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			paths[k] = v
		}
	}
	if paths["KERNEL"] == "" || paths["INITRD"] == "" {
		t.Fatalf("assets.sh printed %q", out)
	}

	dir := t.TempDir()
	overlay := filepath.Join(dir, "overlay")
	if err := os.Mkdir(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(here, "test.sh"), filepath.Join(overlay, "test.sh"), 0o755)
	copyFile(t, opsctl, filepath.Join(overlay, "opsctl"), 0o755)
	base, err := os.ReadFile(paths["INITRD"])
	if err != nil {
		t.Fatal(err)
	}
	pack := exec.Command(cpio, "-o", "-H", "newc", "--quiet")
	pack.Dir = overlay
	pack.Stdin = strings.NewReader("test.sh\nopsctl\n")
	archive, err := pack.Output()
	if err != nil {
		t.Fatalf("cpio: %v", err)
	}
	// The kernel unpacks concatenated archives in order; each gzipped.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(archive); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, append(base, gz.Bytes()...), 0o644); err != nil {
		t.Fatal(err)
	}

	vmCtx, vmCancel := context.WithTimeout(context.Background(), vmTimeout())
	defer vmCancel()
	cmd := exec.CommandContext(vmCtx, qemu, "-accel", "tcg", "-cpu", "max", "-m", memory, "-smp", "1",
		"-nographic", "-no-reboot", "-kernel", paths["KERNEL"], "-initrd", initrd,
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 loglevel=1 "+extraAppend))
	cmd.WaitDelay = 5 * time.Second
	var console bytes.Buffer
	cmd.Stdout = &console
	cmd.Stderr = &console
	start := time.Now()
	err = cmd.Run()
	t.Logf("VM ran %.1fs", time.Since(start).Seconds())
	// The whole console is kept for a person to read when the test fails.
	logPath := filepath.Join(os.TempDir(), "opsctl-lvm-vm-console.log")
	t.Cleanup(func() {
		if t.Failed() {
			_ = os.WriteFile(logPath, console.Bytes(), 0o644)
			t.Logf("VM console: %s", logPath)
		}
	})
	if vmCtx.Err() != nil {
		t.Fatalf("the VM did not finish within %s (killed); console in %s, last lines:\n%s", vmTimeout(), logPath, tail(console.String(), 30))
	}
	if err != nil {
		t.Fatalf("qemu: %v; console in %s:\n%s", err, logPath, tail(console.String(), 30))
	}
	return console.Bytes()
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatal(err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func status(t *testing.T, r *stepResult) lvmcache.Status {
	t.Helper()
	var s lvmcache.Status
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, r.Stdout)
	}
	return s
}

const mib = 1 << 20

// TestLVMCacheOnRealLVM2InVM runs every opsctl lvm cache command against
// real lvm2 and dm-cache and checks exit codes, output, lvm2's state and the
// LV's data after each step.
func TestLVMCacheOnRealLVM2InVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	console := bootVM(t, "1024", "")
	res, err := parseConsole(console)
	if err != nil {
		t.Fatal(err)
	}
	if !res.ended {
		t.Errorf("test.sh did not reach its end; last lines:\n%s", tail(string(console), 30))
	}
	if dir := os.Getenv("OPSCTL_LVM_CAPTURE_DIR"); dir != "" {
		for name, data := range res.captures {
			if err := os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644); err != nil {
				t.Error(err)
			}
		}
	}

	get := func(name string) *stepResult {
		t.Helper()
		r, ok := res.steps[name]
		if !ok {
			t.Fatalf("step %s did not run", name)
		}
		return r
	}

	// Every step, whatever it did, left the data intact.
	for _, name := range res.order {
		if r := res.steps[name]; !r.DataOK {
			t.Errorf("step %s: data check: %s", name, r.Data)
		}
	}

	expect := []struct {
		step   string
		code   int
		stdout string // substring of stdout
		stderr string // substring of stderr
	}{
		{"bad-size-unit", 2, "", `size "12Q": expected a number with an optional unit`},
		{"bad-size-negative", 2, "", `size "-5G": shrinking is not supported`},
		{"bad-name", 2, "", `"not-a-name": expected VG/LV`},
		{"unknown-vg", 1, "", `volume group "nosuchvg" not found (volume groups: othervg, storage)`},
		{"unknown-lv", 1, "", "logical volume storage/nosuchlv not found (LVs of storage: plainlv, slowlv)"},
		{"pv-outside-vg", 1, "", "PV /dev/loop2 is not in volume group storage (its PVs: /dev/loop0, /dev/loop1)"},
		{"no-room", 1, "", "not enough free space on /dev/loop1 for a 300.00 MiB cache"},
		{"no-confirmation", 2, "", "stdin is not a terminal; pass -y"},
		{"resize-not-cached", 1, "", "storage/slowlv: is not cached"},
		{"remove-not-cached", 1, "", "is not cached: nothing to remove"},
		{"create-dry-run", 0, "+ lvm lvcreate --type cache --cachemode writeback --name slowlv_cache --size 16M storage/slowlv /dev/loop1\n", ""},
		{"create", 0, "storage/slowlv: cached by slowlv_cache (16.00 MiB writeback on /dev/loop1)", `argv="lvm lvcreate --type cache --cachemode writeback --name slowlv_cache --size 16M storage/slowlv /dev/loop1"`},
		{"create-cached", 1, "", "already cached by slowlv_cache_cpool"},
		{"resize-recache-dry-run", 0, "+ lvm lvconvert --uncache storage/slowlv\n+ lvm lvresize --size 64M storage/slowlv /dev/loop0\n+ lvm lvcreate --type cache --cachemode writeback --cachepolicy smq --chunksize 64K --poolmetadatasize 8M --name slowlv_cache --size 16M storage/slowlv /dev/loop1\n", ""},
		{"resize-recache", 0, "resized from 32.00 MiB to 64.00 MiB (recache, uncache", "flush storage/slowlv: blocks written back: 0/"},
		{"resize-online", 0, "resized from 64.00 MiB to 96.00 MiB (online, lvresize", ""},
		{"old-lvm-online", 1, "", "lvm2 2.03.11 cannot resize a cached LV online (that needs 2.03.12 or newer); use --strategy recache"},
		{"old-lvm-auto-dry-run", 0, "+ /tmp/lvm-old lvconvert --uncache storage/slowlv\n+ /tmp/lvm-old lvresize --size 128M storage/slowlv /dev/loop0\n", ""},
		{"resize-fails", 1, "", "the cache was re-attached with its recorded settings, storage/slowlv is as before"},
		{"resize-killed", 137, "", ""},
		{"remove-while-journaled", 1, "", "an interrupted resize of storage/slowlv is journaled in /tmp/state/storage-slowlv.json (a resize of storage/slowlv from 96.00 MiB to 128.00 MiB by recache; steps uncache done, lvresize running, recache pending"},
		{"abandon-dry-run", 0, "+ rm /tmp/state/storage-slowlv.json\n", "`opsctl lvm cache resize storage/slowlv --resume` would finish this"},
		{"resume-dry-run", 0, "+ lvm lvresize --size 128M storage/slowlv /dev/loop0\n+ lvm lvcreate --type cache", ""},
		{"resume", 0, "resized from 96.00 MiB to 128.00 MiB (recache, uncache (before --resume) ", ""},
		{"resize-recache-fails", 1, "", "injected failure: lvcreate refused; the journal /tmp/state/storage-slowlv.json records the remaining steps"},
		{"resume-after-recache-fails", 0, "resized from 128.00 MiB to 160.00 MiB (recache, uncache (before --resume) ", ""},
		{"resume-nothing", 1, "", "no interrupted resize of storage/slowlv is journaled in /tmp/state"},
		{"abandon-nothing", 1, "", "no interrupted resize of storage/slowlv is journaled in /tmp/state"},
		{"resize-ctrl-c", 1, "", "interrupted before lvresize; run `opsctl lvm cache resize storage/slowlv --resume` to finish"},
		{"resume-after-ctrl-c", 0, "resized from 160.00 MiB to 192.00 MiB (recache, uncache (before --resume) ", ""},
		{"remove-dry-run", 0, "+ lvm lvconvert --uncache storage/slowlv\n", ""},
		{"remove", 0, "storage/slowlv: cache slowlv_cache_cpool removed (", "flush storage/slowlv: blocks written back: 0/"},
	}
	for _, e := range expect {
		r := get(e.step)
		if r.Code != e.code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", e.step, r.Code, e.code, r.Stdout, r.Stderr)
			continue
		}
		if e.stdout != "" && !strings.Contains(r.Stdout, e.stdout) {
			t.Errorf("%s: stdout %q does not contain %q", e.step, r.Stdout, e.stdout)
		}
		if e.stderr != "" && !strings.Contains(r.Stderr, e.stderr) {
			t.Errorf("%s: stderr %q does not contain %q", e.step, r.Stderr, e.stderr)
		}
		if e.code != 0 && e.code != 137 {
			// Exactly one line: the error.
			if lines := strings.Split(strings.TrimSpace(lastNonLog(r.Stderr)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "opsctl: ") {
				t.Errorf("%s: stderr is not one error line: %q", e.step, r.Stderr)
			}
		}
		if strings.HasSuffix(e.step, "dry-run") && !strings.HasPrefix(r.Stdout, "+ ") {
			t.Errorf("%s: dry-run output does not start with \"+ \": %q", e.step, r.Stdout)
		}
	}

	// A flush shows its progress from the first dirty block to the last.
	for _, name := range []string{"resize-recache", "remove"} {
		stderr := get(name).Stderr
		i := strings.Index(stderr, "flush storage/slowlv: blocks written back: 0/")
		if i < 0 || !strings.Contains(stderr[i:], " done\n") {
			t.Errorf("%s: no flush progress from 0 to done in %q", name, stderr)
		}
	}

	// Dry runs and refusals changed nothing.
	for _, name := range []string{"status-not-cached", "status-after-dry-run"} {
		s := status(t, get(name))
		if s.Cached || s.OriginSizeBytes != 32*mib || len(s.CachePVs) != 0 {
			t.Errorf("%s: %+v, want storage/slowlv not cached, 32 MiB", name, s)
		}
	}
	wantCache := func(name string, origin int64) lvmcache.Status {
		t.Helper()
		s := status(t, get(name))
		if !s.Cached || s.LV != "storage/slowlv" || s.Mode != "writeback" || s.Policy != "smq" || s.ChunkSizeBytes != 65536 ||
			s.CacheSizeBytes != 16*mib || s.TotalBlocks != 256 || s.OriginSizeBytes != origin || strings.Join(s.CachePVs, ",") != "/dev/loop1" {
			t.Errorf("%s: %+v, want a 16 MiB writeback smq cache with 64 KiB chunks on /dev/loop1 and a %d MiB origin", name, s, origin/mib)
		}
		return s
	}
	wantCache("status-created", 32*mib)
	if dirty := wantCache("status-dirty-recache", 32*mib); dirty.DirtyBlocks < 100 {
		t.Errorf("status-dirty-recache: %d dirty blocks, want the 12 MiB just written (192)", dirty.DirtyBlocks)
	}
	if s := wantCache("status-recached", 64*mib); s.DirtyBlocks != 0 {
		t.Errorf("status-recached: %d dirty blocks after a recache", s.DirtyBlocks)
	}
	onlineDirty := wantCache("status-dirty-online", 64*mib).DirtyBlocks
	if onlineDirty < 100 {
		t.Errorf("status-dirty-online: %d dirty blocks, want about 192", onlineDirty)
	}
	wantCache("status-online", 96*mib)
	wantCache("status-after-resize-fails", 96*mib)
	wantCache("status-resumed", 128*mib)
	if s := status(t, get("status-uncached-resized")); s.Cached || s.OriginSizeBytes != 160*mib {
		t.Errorf("status-uncached-resized: %+v, want not cached, 160 MiB", s)
	}
	wantCache("status-after-resume2", 160*mib)
	if s := status(t, get("status-after-ctrl-c")); s.Cached || s.OriginSizeBytes != 160*mib {
		t.Errorf("status-after-ctrl-c: %+v, want the uncache finished (not cached), not resized (160 MiB)", s)
	}
	if raw, err := base64.StdEncoding.DecodeString(res.journals["after-ctrl-c"]); err != nil {
		t.Errorf("journal after Ctrl-C: %v", err)
	} else {
		var plan lvmcache.Plan
		if err := json.Unmarshal(raw, &plan); err != nil || len(plan.Steps) != 3 || plan.Steps[0].State != lvmcache.StateDone ||
			plan.Steps[1].State != lvmcache.StatePending || plan.Steps[0].DirtyBlocks == 0 {
			t.Errorf("journal after Ctrl-C: %v %s", err, raw)
		}
	}
	if s := wantCache("status-dirty-remove", 192*mib); s.DirtyBlocks < 100 {
		t.Errorf("status-dirty-remove: %d dirty blocks, want about 192", s.DirtyBlocks)
	}
	if s := status(t, get("status-removed")); s.Cached || s.OriginSizeBytes != 192*mib {
		t.Errorf("status-removed: %+v, want plain 192 MiB", s)
	}
	var all []lvmcache.Status
	if err := json.Unmarshal([]byte(get("status-all").Stdout), &all); err != nil || len(all) != 0 {
		t.Errorf("status-all after remove: %v %q, want []", err, get("status-all").Stdout)
	}
	if text := get("status-text").Stdout; !strings.Contains(text, "storage/slowlv: cached, writeback, policy smq") || !strings.Contains(text, "cache size    16.00 MiB on /dev/loop1, chunk 64.00 KiB") {
		t.Errorf("status-text: %q", text)
	}
	if final := string(res.captures["lvs-final"]); strings.Contains(final, "cpool") || strings.Contains(final, "cache") {
		t.Errorf("after remove, cache LVs are left: %s", final)
	}

	// A cache created over stale signatures (a removed LV's swap areas on
	// the SSD): lvcreate wipes them without a prompt nobody would answer.
	if !strings.Contains(res.signatures, "swap signature detected") {
		t.Errorf("lvm2 did not see the stale swap signatures (a plain lvcreate said %q): the step below proves nothing", res.signatures)
	}
	t.Logf("a plain lvcreate over the stale signatures: %q", res.signatures)
	if r := get("create-over-stale-signatures"); r.Code != 0 || !strings.Contains(r.Stdout, "storage/slowlv: cached by slowlv_cache") {
		t.Errorf("create over stale signatures: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if st := status(t, get("status-over-stale-signatures")); !st.Cached {
		t.Errorf("after the create over stale signatures: %+v", st)
	}

	// Journals: gone after a failure that was rolled back and after a
	// resume; after the kill, it records the uncache as done and lvresize
	// as running.
	if n := res.journals["after-resize-fails"]; n != "0" {
		t.Errorf("%s journals left after a rolled-back resize, want 0", n)
	}
	if n := res.journals["after-resume"]; n != "0" {
		t.Errorf("%s journals left after --resume, want 0", n)
	}
	if raw, err := base64.StdEncoding.DecodeString(res.journals["after-kill"]); err != nil {
		t.Errorf("journal after kill: %v", err)
	} else {
		var plan lvmcache.Plan
		if err := json.Unmarshal(raw, &plan); err != nil {
			t.Errorf("journal after kill: %v\n%s", err, raw)
		} else if len(plan.Steps) != 3 || plan.Steps[0].State != lvmcache.StateDone || plan.Steps[1].State != lvmcache.StateRunning ||
			plan.Cache == nil || plan.Cache.SizeBytes != 16*mib || plan.Cache.Policy != "smq" || plan.TargetSizeBytes != 128*mib {
			t.Errorf("journal after kill: %s", raw)
		}
	}

	checkFlushes(t, res)
	checkMetrics(t, res)

	// The measurement for docs/lvm.md: the same cached LV, about the same
	// number of dirty blocks, grown by recache and online.
	t.Logf("measurement: %s", strings.TrimSpace(get("resize-recache").Stdout))
	t.Logf("measurement: %s (with %d dirty blocks left in the cache)", strings.TrimSpace(get("resize-online").Stdout), onlineDirty)
	t.Logf("steps: %d, VM uptime at the end %.1fs", len(res.order), res.steps[res.order[len(res.order)-1]].Uptime)
}

// lastNonLog drops slog lines (time=... level=...) and progress lines, leaving
// what a person reads as the error.
func lastNonLog(stderr string) string {
	var keep []string
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(line, "time=") || strings.HasPrefix(line, "flush ") || line == "" {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// TestMeasureRecacheVsOnline is the measurement of docs/lvm.md, run by
// `make bench-lvm` (OPSCTL_LVM_MEASURE=MiB to dirty): the same cached LV with
// the same number of dirty blocks grown by recache, then online; then
// flushed by opsctl (the cleaner policy, then migration_threshold raised in
// steps) and by lvm2's own uncache; then flushed while a writer keeps the
// origin busy.
func TestMeasureRecacheVsOnline(t *testing.T) {
	mb := os.Getenv("OPSCTL_LVM_MEASURE")
	if mb == "" {
		t.Skip("a measurement: set OPSCTL_LVM_MEASURE=MiB (make bench-lvm)")
	}
	if _, err := strconv.Atoi(mb); err != nil {
		t.Fatalf("OPSCTL_LVM_MEASURE=%q: expected a number of MiB", mb)
	}
	delay := os.Getenv("OPSCTL_LVM_MEASURE_DELAY_MS")
	if _, err := strconv.Atoi(delay); err != nil && delay != "" {
		t.Fatalf("OPSCTL_LVM_MEASURE_DELAY_MS=%q: expected milliseconds", delay)
	}
	extra := "opsctl.measure=" + mb
	if delay != "" {
		extra += " opsctl.delay=" + delay
	}
	console := bootVM(t, "1536", extra)
	measures := parseMeasures(string(console))
	for _, name := range []string{"recache", "online", "flush-cleaner", "flush-threshold", "uncache", "busy-writer-alone", "busy-flush-cleaner", "busy-flush-threshold"} {
		m, ok := measures[name]
		if !ok {
			t.Fatalf("no measurement %s in the console:\n%s", name, tail(string(console), 30))
		}
		if m.values["rc"] != "0" {
			t.Errorf("%s: exit %s", name, m.values["rc"])
		}
		line := fmt.Sprintf("measure: %-20s dirty blocks before %6s, after %6s, wall %6.2fs", name, m.values["dirty_before"], m.values["dirty_after"], m.seconds)
		if m.clean > 0 {
			line += fmt.Sprintf(", clean after %6.2fs (write-back %5.2fs)", m.clean, m.clean-m.writeBack)
		}
		if writes, err := strconv.ParseFloat(m.values["writes"], 64); err == nil {
			line += fmt.Sprintf(", writer %5.0f writes (%.1f/s)", writes, writes/m.seconds)
		}
		fmt.Printf("%s: %s\n", line, m.out)
	}
	fmt.Printf("measure: recache  dirty blocks left as polled during the flush: %s\n", strings.TrimSuffix(measures["recache"].values["polls"], ","))
	ratio := func(what string, a, b string) {
		fmt.Printf("measure: %s %.2fx\n", what, measures[a].seconds/measures[b].seconds)
	}
	ratio("recache/online wall time ratio", "recache", "online")
	ratio("flush by opsctl (cleaner) / lvm2 uncache flush, wall time", "flush-cleaner", "uncache")
	ratio("flush by migration_threshold / by cleaner, wall time", "flush-threshold", "flush-cleaner")
	writeBack := func(name string) float64 { return measures[name].clean - measures[name].writeBack }
	fmt.Printf("measure: flush by opsctl (cleaner) / lvm2 uncache flush, write-back time %.2fx\n", writeBack("flush-cleaner")/writeBack("uncache"))
	fmt.Printf("measure: flush by migration_threshold / by cleaner, write-back time %.2fx\n", writeBack("flush-threshold")/writeBack("flush-cleaner"))
	rate := func(name string) float64 {
		writes, _ := strconv.ParseFloat(measures[name].values["writes"], 64)
		return writes / measures[name].seconds
	}
	for _, name := range []string{"busy-flush-cleaner", "busy-flush-threshold"} {
		before, _ := strconv.Atoi(measures[name].values["dirty_before"])
		after, _ := strconv.Atoi(measures[name].values["dirty_after"])
		fmt.Printf("measure: %s: %d of %d blocks written back in %.1fs; the writer at %.2fx its rate alone\n",
			name, before-after, before, measures[name].seconds, rate(name)/rate("busy-writer-alone"))
	}
}

type measure struct {
	values  map[string]string
	seconds float64
	// writeBack and clean are when the kernel showed fewer dirty blocks
	// first and none, from the start (the flushes of an idle LV).
	writeBack, clean float64
	out              string
}

// parseMeasures reads the @@MEASURE lines of test.sh's measurement mode.
func parseMeasures(console string) map[string]measure {
	measures := map[string]measure{}
	for _, line := range strings.Split(console, "\n") {
		i := strings.Index(line, "@@MEASURE ")
		if i < 0 {
			continue
		}
		fields := strings.Fields(line[i:])
		if len(fields) < 2 {
			continue
		}
		m := measure{values: map[string]string{}}
		for _, kv := range fields[2:] {
			k, v, _ := strings.Cut(kv, "=")
			m.values[k] = strings.TrimRight(v, "\r")
		}
		start, _ := strconv.ParseFloat(m.values["start"], 64)
		end, _ := strconv.ParseFloat(m.values["end"], 64)
		out, _ := base64.StdEncoding.DecodeString(m.values["out"])
		m.seconds, m.out = end-start, strings.TrimSpace(string(out))
		if clean, err := strconv.ParseFloat(m.values["clean_at"], 64); err == nil {
			m.clean = clean - start
		}
		if wb, err := strconv.ParseFloat(m.values["wb_at"], 64); err == nil {
			m.writeBack = wb - start
		}
		measures[fields[1]] = m
	}
	return measures
}

// step returns the result of a step of test.sh, failing the test when it
// did not run.
func (res *vmResults) step(t *testing.T, name string) *stepResult {
	t.Helper()
	r, ok := res.steps[name]
	if !ok {
		t.Fatalf("step %s did not run", name)
	}
	return r
}

// flushResult reads the JSON a flush printed.
func flushResult(t *testing.T, r *stepResult) lvmcache.FlushResult {
	t.Helper()
	var f lvmcache.FlushResult
	if err := json.Unmarshal([]byte(r.Stdout), &f); err != nil {
		t.Fatalf("flush JSON: %v\n%s", err, r.Stdout)
	}
	return f
}

// dmStatus reads a captured `dmsetup status`.
func dmStatus(t *testing.T, res *vmResults, name string) (*lvmcache.DMCacheStatus, int64) {
	t.Helper()
	s, err := lvmcache.ParseDMCacheStatus(string(res.captures[name]))
	if err != nil {
		t.Fatalf("%s: %v: %q", name, err, res.captures[name])
	}
	threshold, err := s.MigrationThreshold()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return s, threshold
}

// lvsRow reads the one LV row of a captured lvs report.
func lvsRow(t *testing.T, res *vmResults, name string) lvmcache.Row {
	t.Helper()
	report, err := lvmcache.ParseReport(res.captures[name])
	if err != nil || len(report["lv"]) != 1 {
		t.Fatalf("%s: %v %q", name, err, res.captures[name])
	}
	return report["lv"][0]
}

// checkFlushes checks the flushes of test.sh: storage/slowlv's, with
// dm-cache's writeback frozen and a persistent setting, and those of the
// delayed slowvg/data: a window, SIGTERM, SIGKILL and --resume.
func checkFlushes(t *testing.T, res *vmResults) {
	wantCode := func(name string, code int) *stepResult {
		t.Helper()
		r := res.step(t, name)
		if r.Code != code {
			t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", name, r.Code, code, r.Stdout, r.Stderr)
		}
		return r
	}
	if r := wantCode("flush-dry-run", 0); r.Stdout != "+ lvm lvchange --cachepolicy cleaner storage/slowlv\n+ lvm lvchange --cachepolicy smq storage/slowlv\n+ dmsetup message storage-slowlv 0 migration_threshold 0\n" {
		t.Errorf("flush --dry-run printed %q", r.Stdout)
	}
	before, beforeThreshold := dmStatus(t, res, "dm-before-flush")
	after, afterThreshold := dmStatus(t, res, "dm-after-flush")
	r := wantCode("flush", 0)
	f := flushResult(t, r)
	if !f.Complete || f.Stopped != lvmcache.StoppedClean || f.DirtyBlocksBefore != before.DirtyBlocks || f.DirtyBlocksAfter != 0 ||
		f.FlushedBlocks != before.DirtyBlocks || f.Policy != "smq" || f.Settings != "migration_threshold=4096" || f.MigrationThreshold != 0 {
		t.Errorf("flush: %+v; the kernel had %d dirty blocks", f, before.DirtyBlocks)
	}
	if before.DirtyBlocks < 100 || beforeThreshold != 0 {
		t.Errorf("before the flush: %d dirty blocks, migration_threshold %d; want about 192, frozen at 0", before.DirtyBlocks, beforeThreshold)
	}
	if after.DirtyBlocks != 0 || afterThreshold != 0 || after.Policy != "smq" || after.Mode() != "writeback" {
		t.Errorf("after the flush the kernel reports %d dirty blocks, migration_threshold %d, %s, %s; want 0, 0 (not left raised), smq, writeback",
			after.DirtyBlocks, afterThreshold, after.Policy, after.Mode())
	}
	if !strings.Contains(r.Stderr, "flush storage/slowlv: blocks written back: ") {
		t.Errorf("flush: no progress in %q", r.Stderr)
	}
	lvsBefore, lvsAfter := lvsRow(t, res, "lvs-before-flush"), lvsRow(t, res, "lvs-after-flush")
	for _, field := range []string{"cache_mode", "cache_policy", "cache_settings", "kernel_cache_policy"} {
		if lvsBefore[field] != lvsAfter[field] {
			t.Errorf("%s: %q before the flush, %q after", field, lvsBefore[field], lvsAfter[field])
		}
	}
	if lvsAfter["cache_settings"] != "migration_threshold=4096" || lvsAfter["cache_mode"] != "writeback" {
		t.Errorf("lvm's metadata after the flush: %v", lvsAfter)
	}
	if s := status(t, res.step(t, "status-flushed")); !s.Cached || s.Mode != "writeback" || s.Policy != "smq" || s.DirtyBlocks != 0 {
		t.Errorf("status after the flush: %+v", s)
	}
	if r := wantCode("flush-clean", 0); !strings.Contains(r.Stderr, "storage/slowlv has no dirty block: nothing to flush") {
		t.Errorf("flush of a clean cache: %q", r.Stderr)
	}

	// The delayed LV: the window of 5 s ends first. The command ends once
	// the settings are back: after the window, and not long after (the
	// 120 s are a guard against a flush that ignores its window, not a
	// measure).
	delayedBefore, _ := dmStatus(t, res, "dm-delayed-before")
	r = wantCode("flush-window", 0)
	f = flushResult(t, r)
	if f.Complete || f.Stopped != lvmcache.StoppedWindow || f.DirtyBlocksAfter == 0 || f.DirtyBlocksBefore != delayedBefore.DirtyBlocks {
		t.Errorf("flush --for 5s: %+v; want stopped by the window with blocks left of %d", f, delayedBefore.DirtyBlocks)
	}
	if took := r.Uptime - res.times["flush-window-start"]; took < 5 || took > 5+120 {
		t.Errorf("flush --for 5s ended %.1fs after it started", took)
	}
	checkDelayedBack := func(when string) {
		t.Helper()
		row := lvsRow(t, res, "lvs-delayed-after-"+when)
		if row["cache_policy"] != "smq" || row["kernel_cache_policy"] != "smq" || row["cache_mode"] != "writeback" || row["cache_settings"] != "" {
			t.Errorf("after the %s: lvs %v; want writeback, smq in lvm2 and the kernel, no settings", when, row)
		}
		if name := "dm-delayed-after-" + when; res.captures[name] != nil {
			if s, threshold := dmStatus(t, res, name); threshold != 0 || s.Policy != "smq" {
				t.Errorf("after the %s: the kernel runs %s with migration_threshold %d; want smq, 0 as found", when, s.Policy, threshold)
			}
		}
	}
	checkDelayedBack("window")

	// SIGTERM mid-flush: the settings back before exit 1.
	r = wantCode("flush-sigterm", 1)
	if !strings.Contains(r.Stderr, "opsctl: lvm cache flush slowvg/data: interrupted with ") ||
		!strings.Contains(r.Stderr, "dirty blocks left; the settings are back (policy smq, migration_threshold 0)") {
		t.Errorf("flush after SIGTERM: %q", r.Stderr)
	}
	if f := flushResult(t, r); f.Stopped != lvmcache.StoppedInterrupted || f.Complete {
		t.Errorf("flush after SIGTERM: %+v", f)
	}
	checkDelayedBack("sigterm")
	if n := res.journals["after-flush-sigterm"]; n != "0" {
		t.Errorf("%s journals after SIGTERM, want 0", n)
	}

	// SIGKILL mid-flush: the cleaner policy stays, the journal says what to
	// put back; other changes are refused; --resume finishes.
	wantCode("flush-killed", 137)
	if row := lvsRow(t, res, "lvs-delayed-after-kill"); row["cache_policy"] != "cleaner" {
		t.Errorf("after SIGKILL: lvs %v; want the cleaner policy the flush set", row)
	}
	if raw, err := base64.StdEncoding.DecodeString(res.journals["after-flush-kill"]); err != nil {
		t.Errorf("journal after SIGKILL: %v", err)
	} else if plan, err := lvmcache.ParseJournal(raw, lvmcache.Name{VG: "slowvg", LV: "data"}); err != nil || plan.Op != lvmcache.OpFlush ||
		plan.Steps[0].State != lvmcache.StateDone || plan.Steps[1].State != lvmcache.StateRunning || plan.Flush.MigrationThreshold != 0 || plan.Flush.Policy != "smq" {
		t.Errorf("journal after SIGKILL: %v\n%s", err, raw)
	}
	if r := wantCode("remove-while-flush-journaled", 1); !strings.Contains(r.Stderr, "an interrupted flush of slowvg/data is journaled in /tmp/state/slowvg-data.json") ||
		!strings.Contains(r.Stderr, "finish it with `opsctl lvm cache flush slowvg/data --resume`") {
		t.Errorf("remove while a flush is journaled: %q", r.Stderr)
	}
	if r := wantCode("flush-resume-dry-run", 0); r.Stdout != "+ lvm lvchange --cachepolicy smq slowvg/data\n+ dmsetup message slowvg-data 0 migration_threshold 0\n" {
		t.Errorf("flush --resume --dry-run printed %q", r.Stdout)
	}
	if f := flushResult(t, wantCode("flush-resume", 0)); !f.Complete || f.DirtyBlocksAfter != 0 || f.MigrationThreshold != 0 {
		t.Errorf("flush --resume: %+v", f)
	}
	checkDelayedBack("resume")
	if s, _ := dmStatus(t, res, "dm-delayed-after-resume"); s.DirtyBlocks != 0 {
		t.Errorf("after --resume: %d dirty blocks", s.DirtyBlocks)
	}
	if n := res.journals["after-flush-resume"]; n != "0" {
		t.Errorf("%s journals after --resume, want 0", n)
	}
	window := flushResult(t, res.step(t, "flush-window"))
	t.Logf("flush of storage/slowlv: %d blocks in %.2fs; window of 5 s on slowvg/data: %d of %d written back in %.2fs, the command took %.1fs",
		flushResult(t, res.step(t, "flush")).FlushedBlocks, flushResult(t, res.step(t, "flush")).Seconds, window.FlushedBlocks, window.DirtyBlocksBefore,
		window.Seconds, res.step(t, "flush-window").Uptime-res.times["flush-window-start"])
}

// checkMetrics reads -o prometheus with Prometheus's text parser: every
// value is what lvm2 (lvs) and dmsetup report for the same counters.
func checkMetrics(t *testing.T, res *vmResults) {
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(res.captures["prometheus"]))
	if err != nil {
		t.Fatalf("-o prometheus: %v\n%s", err, res.captures["prometheus"])
	}
	lvs := lvsRow(t, res, "lvs-counters")
	dm, _ := dmStatus(t, res, "dm-counters")
	want := map[string]float64{"opsctl_lvm_cache_promotions_total": float64(dm.Promotions), "opsctl_lvm_cache_demotions_total": float64(dm.Demotions)}
	for metric, field := range map[string]string{
		"opsctl_lvm_cache_read_hits_total": "cache_read_hits", "opsctl_lvm_cache_read_misses_total": "cache_read_misses",
		"opsctl_lvm_cache_write_hits_total": "cache_write_hits", "opsctl_lvm_cache_write_misses_total": "cache_write_misses",
		"opsctl_lvm_cache_dirty_blocks": "cache_dirty_blocks", "opsctl_lvm_cache_used_blocks": "cache_used_blocks", "opsctl_lvm_cache_blocks": "cache_total_blocks",
	} {
		n, err := lvs.Int(field)
		if err != nil {
			t.Fatal(err)
		}
		want[metric] = float64(n)
	}
	if want["opsctl_lvm_cache_read_hits_total"] == 0 {
		t.Errorf("no read hit to compare: %v", lvs)
	}
	for metric, value := range want {
		family := families[metric]
		if family == nil || family.GetHelp() == "" {
			t.Errorf("%s missing or without HELP", metric)
			continue
		}
		found := false
		for _, m := range family.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["lv"] != "storage/slowlv" {
				continue
			}
			found = true
			if got := m.GetCounter().GetValue() + m.GetGauge().GetValue(); got != value || labels["mode"] != lvs["cache_mode"] {
				t.Errorf("%s{lv=storage/slowlv,mode=%s} = %v; lvm2 and dmsetup say %v (mode %s)", metric, labels["mode"], got, value, lvs["cache_mode"])
			}
		}
		if !found {
			t.Errorf("%s: no sample of storage/slowlv", metric)
		}
	}
	if r := res.step(t, "status-textfile"); r.Code != 0 || r.Stdout != "" || !bytes.Contains(res.captures["textfile"], []byte(`opsctl_lvm_cache_blocks{lv="storage/slowlv",mode="writeback"} `)) {
		t.Errorf("--textfile: exit %d %q; file %q", r.Code, r.Stderr, res.captures["textfile"])
	}
	if r := res.step(t, "status-textfile-missing"); r.Code != 2 || r.Stderr != "opsctl: --textfile: /tmp/nosuchdir: no such folder\n" {
		t.Errorf("--textfile of a missing folder: exit %d %q", r.Code, r.Stderr)
	}
}
