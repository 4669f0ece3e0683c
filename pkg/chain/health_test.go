package chain

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// smallTmpfs mounts a tmpfs of 4 MiB for a state file, unmounted after the
// test's other clean-ups (the engine's close among them).
func smallTmpfs(t *testing.T) string {
	t.Helper()
	testenv.NeedRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "opsctl-test", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "mount a tmpfs: "+strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillUp writes a file until the file system is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	block := make([]byte, 64<<10)
	for {
		if _, err := f.Write(block); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			// The last pages a smaller write still fits in.
			for _, err = f.Write(block[:512]); err == nil; _, err = f.Write(block[:512]) {
			}
			return
		}
	}
}

func healthz(t *testing.T, h http.Handler) (int, string) {
	t.Helper()
	rec := serveDirect(t, h, "GET", "/healthz", "", "", "")
	return rec.Code, rec.Body.String()
}

// TestHealthzReportsAFullDisk (issue 19 item 13): with the state file on a
// full file system every webhook gets 503, and so does /healthz, with one
// line saying why; once there is room again, both recover.
func TestHealthzReportsAFullDisk(t *testing.T) {
	dir := smallTmpfs(t)
	fx := &engineFixture{t: t, api: newFakePipelines(), path: filepath.Join(dir, "chain.db"), graph: testGraph("ops/base:", "ops/ruby: ops/base")}
	fx.open()
	fx.engine.health.every = 0 // a probe at every request
	h := fx.recv.Handler()
	if code, body := healthz(t, h); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("healthz with room: %d %q", code, body)
	}
	for i := range 20 {
		if code := fx.pipeline("ops/base", int64(100+i), "success", hookOpts{}); code != http.StatusOK {
			t.Fatalf("webhook with room: HTTP %d", code)
		}
	}
	filler := filepath.Join(dir, "filler")
	fillUp(t, filler)
	for i := range 5 {
		if code := fx.pipeline("ops/base", int64(1000+i), "success", hookOpts{}); code != http.StatusServiceUnavailable {
			t.Fatalf("webhook on a full disk: HTTP %d, want 503", code)
		}
	}
	code, body := healthz(t, h)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "unhealthy: state file cannot store events: ") ||
		!strings.Contains(body, "KiB free on the file system of "+dir) || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
		t.Errorf("healthz while every webhook gets 503: %d %q, want 503 and one line why", code, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, body := healthz(t, h); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz with room again: %d %q", code, body)
	}
	if code := fx.pipeline("ops/base", 2000, "success", hookOpts{}); code != http.StatusOK {
		t.Errorf("webhook with room again: HTTP %d", code)
	}
}

// TestHealthzProbesAtMostOnceASecond: between probes /healthz answers the
// last probe's result, or at once the failure of a webhook's write.
func TestHealthzProbesAtMostOnceASecond(t *testing.T) {
	dir := smallTmpfs(t)
	fx := &engineFixture{t: t, api: newFakePipelines(), path: filepath.Join(dir, "chain.db"), graph: testGraph("ops/base:", "ops/ruby: ops/base")}
	fx.open()
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	fx.engine.now = func() time.Time { return now }
	h := fx.recv.Handler()
	if code, _ := healthz(t, h); code != http.StatusOK {
		t.Fatalf("healthz with room: %d", code)
	}
	for i := range 20 {
		if code := fx.pipeline("ops/base", int64(100+i), "success", hookOpts{}); code != http.StatusOK {
			t.Fatalf("webhook with room: HTTP %d", code)
		}
	}
	filler := filepath.Join(dir, "filler")
	fillUp(t, filler)
	// Within the second of the last probe: its answer, no new look.
	if code, _ := healthz(t, h); code != http.StatusOK {
		t.Errorf("healthz within a second of an ok probe: %d, want the probe's 200", code)
	}
	if code := fx.pipeline("ops/base", 31, "success", hookOpts{}); code != http.StatusServiceUnavailable {
		t.Fatalf("webhook on a full disk: HTTP %d", code)
	}
	if code, body := healthz(t, h); code != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
		t.Errorf("healthz right after a webhook's write failed: %d %q, want 503", code, body)
	}
	os.Remove(filler)
	if code, _ := healthz(t, h); code != http.StatusServiceUnavailable {
		t.Errorf("healthz within a second of the failure: %d, want the failure until the next probe", code)
	}
	now = now.Add(healthProbeEvery)
	if code, body := healthz(t, h); code != http.StatusOK {
		t.Errorf("healthz a second later, with room: %d %q", code, body)
	}
}
