package sockspy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// An abstract socket has no file: nothing gives it a mode or an owner, so
// the dry run must not promise them.
func TestPlanStepsGiveNoModeToAnAbstractProxy(t *testing.T) {
	// A socket every user may reach: only such a one may get an abstract
	// proxy (TestPlanNarrowsTheProxyToWhoMayReachTheSocket).
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	srv := filepath.Join(dir, "srv.sock")
	serveStream(t, srv, func(c net.Conn) { c.Close() })
	if err := os.Chmod(srv, 0o666); err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(Config{Socket: srv, Listen: fmt.Sprintf("@opsctl-plan-test-%d", 1+len(srv))})
	if err != nil {
		t.Fatal(err)
	}
	steps := strings.Join(plan.Steps(), "\n")
	if strings.Contains(steps, "mode") || strings.Contains(steps, "owner") {
		t.Errorf("steps for an abstract --listen name a mode or owner:\n%s", steps)
	}
}

// TestPlanNarrowsTheProxyToWhoMayReachTheSocket: the proxy connects with
// opsctl's rights, so it must let in no one whom the socket's folders keep
// out: the group and other bits of its mode go when a folder on the way
// denies them search permission, and an abstract proxy (no mode at all) is
// refused unless every user may reach the socket.
func TestPlanNarrowsTheProxyToWhoMayReachTheSocket(t *testing.T) {
	gid := os.Getgid()
	cases := []struct {
		folder   os.FileMode // the socket's own folder; those above are 0755
		sameGID  bool        // the folder has the socket's group
		wantMode os.FileMode // the proxy's, from a socket of mode 0666
		abstract bool        // an abstract proxy is allowed
	}{
		{0o755, true, 0o666, true},
		{0o750, true, 0o660, false},
		{0o750, false, 0o600, false},
		{0o700, true, 0o600, false},
		{0o711, false, 0o666, true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%04o same group %v", tc.folder, tc.sameGID), func(t *testing.T) {
			base := t.TempDir()
			if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
				t.Fatal(err)
			}
			os.Chmod(base, 0o755)
			dir := filepath.Join(base, "run")
			if err := os.Mkdir(dir, tc.folder); err != nil {
				t.Fatal(err)
			}
			os.Chmod(dir, tc.folder)
			srv := filepath.Join(dir, "srv.sock")
			serveStream(t, srv, func(c net.Conn) { c.Close() })
			os.Chmod(srv, 0o666)
			if !tc.sameGID {
				if os.Getuid() != 0 {
					t.Skip("giving the folder another group needs root")
				}
				os.Chown(dir, -1, gid+1)
			}
			plan, err := NewPlan(Config{Socket: srv, Listen: filepath.Join(base, "proxy.sock")})
			if err != nil {
				t.Fatal(err)
			}
			if plan.Mode != tc.wantMode || plan.SocketMode != 0o666 {
				t.Errorf("proxy mode %04o (socket %04o), want %04o", plan.Mode, plan.SocketMode, tc.wantMode)
			}
			if steps := strings.Join(plan.Steps(), "\n"); (tc.wantMode != 0o666) != strings.Contains(steps, "its folders keep out") {
				t.Errorf("the steps do not say why the mode is %04o:\n%s", plan.Mode, steps)
			}
			_, err = NewPlan(Config{Socket: srv, Listen: fmt.Sprintf("@opsctl-plan-reach-%d-%d", os.Getpid(), tc.folder)})
			var in *inputerr.Error
			if tc.abstract && err != nil || !tc.abstract && (!errors.As(err, &in) || in.Name != "Config.Listen") {
				t.Errorf("abstract proxy allowed %v: %v", tc.abstract, err)
			}
		})
	}
}
