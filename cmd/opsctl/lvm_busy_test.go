package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
)

// blockingLVM writes an lvm stand-in that answers reports like fakeLVM
// (a cached storage/slowlv with dirty blocks) and whose lvconvert touches
// dir/started, then waits until dir/release exists and fails: an uncache
// that is still flushing while the test looks at the other opsctl.
func blockingLVM(t *testing.T, dir string) string {
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
lvconvert)
	: >'` + dir + `/started'
	while [ ! -e '` + dir + `/release' ]; do sleep 0.05; done
	echo "  released" >&2; exit 5 ;;
*) echo "  fake lvm: $1 must not run in this test" >&2; exit 5 ;;
esac
`
	path := filepath.Join(dir, "lvm")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitForFile waits until path exists or the process exits; the minute is
// only a guard against a hung test.
func waitForFile(t *testing.T, path string, exited <-chan struct{}) {
	t.Helper()
	appeared := testenv.WaitUntil(t, time.Minute, func() bool {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		select {
		case <-exited:
			t.Fatalf("opsctl exited before %s appeared", path)
		default:
		}
		return false
	})
	if !appeared {
		t.Fatalf("%s did not appear", path)
	}
}

// TestLVMCacheChangeOfAnLVAnotherOpsctlIsChangingIsBusy: while one opsctl
// resizes storage/slowlv (its journal is there, it holds the LV's lock), a
// second one asked to change the same LV answers 75 (try again), not "an
// interrupted resize, finish it with --resume" (1). Once the first is
// gone (SIGKILL mid-uncache), the journal is an interrupted resize: 1.
func TestLVMCacheChangeOfAnLVAnotherOpsctlIsChangingIsBusy(t *testing.T) {
	dir := t.TempDir()
	lvm := blockingLVM(t, dir)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	first := exec.CommandContext(ctx, testenv.Opsctl(t), "lvm", "--lvm", lvm, "--state-dir", state,
		"cache", "resize", "storage/slowlv", "--size", "+8M", "--strategy", "recache", "-y")
	var firstErr testenv.SyncBuffer
	first.Stderr = &firstErr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { first.Wait(); close(exited) }()
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "release"), nil, 0o644)
		first.Process.Kill()
		<-exited
	})
	waitForFile(t, filepath.Join(dir, "started"), exited)

	for _, args := range [][]string{
		{"cache", "remove", "storage/slowlv", "-y"},
		{"cache", "remove", "storage/slowlv", "--dry-run"},
		{"cache", "resize", "storage/slowlv", "--size", "+16M", "-y"},
		{"cache", "resize", "storage/slowlv", "--resume", "-y"},
		{"cache", "resize", "storage/slowlv", "--abandon", "-y"},
		{"cache", "resize", "storage/slowlv", "--abandon", "--dry-run"},
		{"cache", "create", "storage/slowlv", "--size", "8M", "--cache-pv", "/dev/loop1", "-y"},
	} {
		_, stderr, code := testenv.Run(t, "", append([]string{"lvm", "--lvm", lvm, "--state-dir", state}, args...)...)
		if code != cli.ExitTemporary || !strings.Contains(stderr, "another opsctl is changing storage/slowlv") ||
			strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s while another opsctl resizes: exit %d, %q; want exit 75, one line saying another opsctl is changing it",
				strings.Join(args[1:], " "), code, stderr)
		}
	}

	first.Process.Kill()
	<-exited
	_, stderr, code := testenv.Run(t, "", "lvm", "--lvm", lvm, "--state-dir", state, "cache", "remove", "storage/slowlv", "-y")
	if code != cli.ExitFailure || !strings.Contains(stderr, "--resume") {
		t.Errorf("remove after the resizing opsctl was killed: exit %d, %q; want exit 1 pointing to --resume", code, stderr)
	}
}

// TestLVMCacheStateDirFlag: a --state-dir that is not there or not a
// folder is a usage error (2); one that others could change is refused
// (1) before lvm2 changes anything.
func TestLVMCacheStateDirFlag(t *testing.T) {
	lvm := fakeLVM(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	for _, tc := range []struct {
		stateDir string
		code     int
		want     string
	}{
		{filepath.Join(dir, "missing"), cli.ExitUsage, "--state-dir " + filepath.Join(dir, "missing") + ": no such folder"},
		{file, cli.ExitUsage, "--state-dir " + file + ": not a folder"},
		{open, cli.ExitFailure, "state dir " + open + " is writable by others (mode 0777)"},
	} {
		for _, args := range [][]string{
			{"cache", "remove", "storage/slowlv", "-y"},
			{"cache", "resize", "storage/slowlv", "--size", "+8M", "--dry-run"},
			{"cache", "create", "storage/slowlv", "--size", "8M", "--cache-pv", "/dev/loop1", "-y"},
		} {
			_, stderr, code := runForTest(append([]string{"lvm", "--lvm", lvm, "--state-dir", tc.stateDir}, args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("%s with --state-dir %s: exit %d, %q; want exit %d and %q", args[1], tc.stateDir, code, stderr, tc.code, tc.want)
			}
		}
	}
}

// TestLVMCacheStatusOfAHungLVM2ExitsTemporary: an lvm2 that never answers
// (waiting on a lock, a dead device) no longer hangs status: after
// --report-timeout it is killed with its process group (here a child that
// holds its output open) and status says so in one line, exit 75.
func TestLVMCacheStatusOfAHungLVM2ExitsTemporary(t *testing.T) {
	dir := t.TempDir()
	lvm := filepath.Join(dir, "lvm")
	script := "#!/bin/sh\nsleep 600 &\necho $! >'" + dir + "/child'\nwait\n"
	if err := os.WriteFile(lvm, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"cache", "status", "storage/slowlv"},
		{"cache", "status", "-o", "json"},
		{"cache", "remove", "storage/slowlv", "--dry-run"},
	} {
		os.Remove(filepath.Join(dir, "child"))
		out, stderr, code := testenv.Run(t, "", append([]string{"lvm", "--lvm", lvm, "--report-timeout", "1s", "--state-dir", dir}, args...)...)
		if code != cli.ExitTemporary || out != "" || !strings.Contains(stderr, "did not answer within 1s and was killed") ||
			strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%s with a hung lvm2: exit %d, %q %q; want exit 75 and one line", strings.Join(args[1:], " "), code, out, stderr)
		}
		data, err := os.ReadFile(filepath.Join(dir, "child"))
		if err != nil {
			t.Fatalf("the hung lvm2 started no child: %v", err)
		}
		pid := strings.TrimSpace(string(data))
		gone := testenv.WaitUntil(t, time.Minute, func() bool {
			stat, err := os.ReadFile("/proc/" + pid + "/stat")
			return err != nil || strings.Contains(string(stat), ") Z")
		})
		if !gone {
			t.Fatalf("the hung lvm2's child %s still runs: its process group was not killed", pid)
		}
	}
	if _, stderr, code := runForTest("lvm", "--report-timeout", "0s", "cache", "status"); code != cli.ExitUsage || !strings.Contains(stderr, "--report-timeout 0s: expected a positive duration") {
		t.Errorf("--report-timeout 0s: exit %d %q", code, stderr)
	}
}

// TestLVMCacheSecondInterruptStopsWaitingForLVM2: Ctrl-C during a long
// lvm2 change (a flush) lets lvm2 finish and says that opsctl waits for
// it; a second Ctrl-C ends opsctl at once, lvm2 going on in its own process
// group, the journal kept for --resume.
func TestLVMCacheSecondInterruptStopsWaitingForLVM2(t *testing.T) {
	dir := t.TempDir()
	lvm := blockingLVM(t, dir)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	opsctl := exec.Command(testenv.Opsctl(t), "lvm", "--lvm", lvm, "--state-dir", state,
		"cache", "resize", "storage/slowlv", "--size", "+8M", "--strategy", "recache", "-y")
	var stderr testenv.SyncBuffer
	opsctl.Stderr = &stderr
	if err := opsctl.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { opsctl.Wait(); close(exited) }()
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(dir, "release"), nil, 0o644)
		opsctl.Process.Kill()
		<-exited
	})
	waitForFile(t, filepath.Join(dir, "started"), exited)

	opsctl.Process.Signal(os.Interrupt)
	said := testenv.WaitUntil(t, time.Minute, func() bool {
		select {
		case <-exited:
			t.Fatalf("the first interrupt ended opsctl while lvm2 ran: %s", stderr.String())
		default:
		}
		return strings.Contains(stderr.String(), "interrupt again to stop waiting")
	})
	if !said {
		t.Fatalf("no word about waiting for lvm2 after the first interrupt: %q", stderr.String())
	}
	opsctl.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(30 * time.Second): // a guard: opsctl still waits for lvm2
		t.Fatalf("the second interrupt did not end opsctl: %q", stderr.String())
	}
	if status, ok := opsctl.ProcessState.Sys().(syscall.WaitStatus); !ok || !status.Signaled() || status.Signal() != syscall.SIGINT {
		t.Errorf("opsctl ended with %v, want killed by the second SIGINT", opsctl.ProcessState)
	}
	journal, err := os.ReadFile(filepath.Join(state, "storage-slowlv.json"))
	if err != nil || !strings.Contains(string(journal), `"state": "running"`) {
		t.Errorf("journal after the second interrupt: %v %s; want the uncache running", err, journal)
	}
	if _, err := os.Stat(filepath.Join(dir, "release")); err == nil {
		t.Fatal("released too early")
	}
}

// TestLVMCacheLVMFlagNamingNoExecutableIsAUsageError: --lvm naming nothing,
// a folder or a file that cannot run is exit 2 for every command.
func TestLVMCacheLVMFlagNamingNoExecutableIsAUsageError(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"): `--lvm: lvm2 executable "` + filepath.Join(dir, "missing") + `" not found`,
		dir:                           "--lvm " + dir + ": not an executable file",
		plain:                         "--lvm " + plain + ": not an executable file",
	} {
		for _, args := range [][]string{
			{"cache", "status"},
			{"cache", "remove", "storage/slowlv", "--dry-run"},
			{"cache", "resize", "storage/slowlv", "--resume", "--dry-run"},
			{"cache", "create", "storage/slowlv", "--size", "8M", "--cache-pv", "/dev/loop1", "--dry-run"},
		} {
			_, stderr, code := runForTest(append([]string{"lvm", "--lvm", path, "--state-dir", dir}, args...)...)
			if code != cli.ExitUsage || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("%s with --lvm %s: exit %d, %q; want exit 2 and %q", args[1], path, code, stderr, want)
			}
		}
	}
}
