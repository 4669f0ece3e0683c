// Package testenv gives integration tests the real components they run
// against (Dovecot, Exim, tshark, libvirtd, pygrub, qemu, lvm2, ...) and the built opsctl
// binary, with one policy for a missing component: under CI=true the test
// fails with a line naming the Debian package; elsewhere it is skipped and
// the skip is recorded for the summary that `make test` prints at its end.
//
// `make test` installs the components listed in scripts/testdeps/*.list
// before the tests run, so a skip means the install was not possible (not
// root, not Debian).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where nothing may be skipped.
func InCI() bool { return os.Getenv("CI") == "true" }

// Need makes sure the program or file named by what exists, and returns its
// path. what is a command looked up on PATH, or an absolute path. pkg is the
// Debian package that provides it.
func Need(t testing.TB, what, pkg string) string {
	t.Helper()
	if filepath.IsAbs(what) {
		if _, err := os.Stat(what); err == nil {
			return what
		}
	} else if path, err := exec.LookPath(what); err == nil {
		return path
	} else if path := inSbin(what); path != "" {
		return path
	}
	Missing(t, fmt.Sprintf("%s not found (Debian package %s)", what, pkg))
	return ""
}

// inSbin finds daemons that live in sbin directories not on a user's PATH.
func inSbin(name string) string {
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		path := filepath.Join(dir, name)
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			return path
		}
	}
	return ""
}

// NeedRoot skips or fails a test that needs root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// Missing fails the test under CI and skips it elsewhere, recording why in
// the file named by OPSCTL_SKIP_LOG for the end-of-run summary.
func Missing(t testing.TB, why string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s: %s (CI=true: a missing test component is a failure)", t.Name(), why)
	}
	if log := os.Getenv("OPSCTL_SKIP_LOG"); log != "" {
		if f, err := os.OpenFile(log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(f, "%s: %s\n", t.Name(), why)
			f.Close()
		}
	}
	t.Skipf("SKIPPED: %s", why)
}

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// Opsctl returns the path of the opsctl binary under test: $OPSCTL_BIN when
// set (make test sets it to bin/opsctl), otherwise one built once per test
// process, static as `make` builds it, into the user's cache folder
// (opsctl-test-bin/opsctl there, replaced by each build: no copy per test
// run is left behind).
func Opsctl(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("OPSCTL_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("OPSCTL_BIN=%s: %v", bin, err)
		}
		return bin
	}
	buildOnce.Do(func() { buildOnce.path, buildOnce.err = buildOpsctl() })
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// buildOpsctl builds the binary under a name of its own and renames it into
// place, so that test processes building at the same time never run a
// half-written file.
func buildOpsctl() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("building opsctl for the tests: %w", err)
	}
	dir := filepath.Join(cache, "opsctl-test-bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("building opsctl for the tests: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "opsctl-*")
	if err != nil {
		return "", fmt.Errorf("building opsctl for the tests: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // after a failed build; a no-op after the rename
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/opsctl")
	cmd.Dir = ModuleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/opsctl: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "opsctl")
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("building opsctl for the tests: %w", err)
	}
	return path, nil
}

// ModuleRoot is the folder holding go.mod.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Run runs the opsctl binary with args and returns stdout, stderr and the
// exit code. stdin may be empty.
func Run(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(Opsctl(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err := cmd.Run()
	code = 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("opsctl %s: %v", strings.Join(args, " "), err)
		}
		code = exitErr.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// SyncBuffer collects the output of a process that tests read while it
// still runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Bytes is a copy of what was written so far.
func (s *SyncBuffer) Bytes() []byte { return []byte(s.String()) }

// WaitUntil asks cond every 10 ms until it says true, for at most limit, and
// reports whether it did. It is for waiting on something another process or
// goroutine does (a line in a log, a file appearing), never for measuring
// time: the caller fails the test with what it waited for. cond runs in the
// test's goroutine, so it may call t.Fatal itself (opsctl exited early).
func WaitUntil(t testing.TB, limit time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
