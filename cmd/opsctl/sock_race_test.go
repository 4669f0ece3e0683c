package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/opsctl/opsctl/internal/testenv"
)

// TestSockCaptureSymlinkRaceLeavesOtherFilesAlone is item 1 of the
// security issue, performed: a user who owns the folder where `sock
// capture` (as root) creates its socket renames a symbolic link to a
// root-owned 0600 file over every socket that appears there. opsctl used
// to bind, then chmod the path, following the link: the victim became
// 0660. Now the socket is made in a private folder, given its mode and
// owner there, and moved into place; the victim never changes, and the
// socket never appears at its name with another mode or owner.
func TestSockCaptureSymlinkRaceLeavesOtherFilesAlone(t *testing.T) {
	testenv.NeedRoot(t)
	cases := []struct {
		name       string
		swap       bool
		hijackDirs bool
	}{
		{"listen", false, false},
		{"swap", true, false},
		{"listen with private folders hijacked", false, true},
		{"swap with private folders hijacked", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			owned, victim := raceFolders(t)
			private := t.TempDir()
			const sockMode, sockUID, sockGID = 0o660, 1234, 1235
			var srv, placed string // the server's socket; the proxy's socket
			var leave []string
			if tc.swap {
				srv = filepath.Join(owned, "app.sock")
				placed = srv
				leave = []string{"app.sock", "app.sock.opsctl-orig"}
			} else {
				srv = filepath.Join(private, "srv.sock")
				placed = filepath.Join(owned, "proxy.sock")
			}
			startHTTPServer(t, srv)
			if err := os.Chmod(srv, sockMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(srv, sockUID, sockGID); err != nil {
				t.Fatal(err)
			}
			original, _ := os.Stat(srv)
			racer := startSymlinkRacer(t, racerSpec{dir: owned, victim: victim, leave: leave, hijackDirs: tc.hijackDirs})

			served := 0
			for try := 1; try <= raceTries; try++ {
				undoRacer(owned)
				if tc.swap {
					// A try that failed may leave the original at
					// .opsctl-orig too (rename does nothing then).
					if _, err := os.Lstat(srv + ".opsctl-orig"); err == nil {
						os.Rename(srv+".opsctl-orig", srv)
						os.Remove(srv + ".opsctl-orig")
					}
				}
				args := []string{"sock", "capture", "--socket", srv, "-w", filepath.Join(private, "cap.pcap")}
				if tc.swap {
					args = append(args, "--swap")
				} else {
					args = append(args, "--listen", placed)
				}
				started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {
					wantSocketFile(t, placed, sockMode, sockUID, sockGID, try)
				}, args...)
				if started {
					served++
				} else {
					t.Logf("try %d: opsctl did not serve: %s", try, stderr)
				}
				if code != 0 && code != 1 {
					t.Errorf("try %d: exit %d: %s", try, code, stderr)
				}
				if !victimUntouched(t, victim, try) {
					t.Fatalf("after %d tries; racer: %q; opsctl: %s", try, racer.lines(), stderr)
				}
				if tc.swap {
					if after, err := os.Stat(srv); err != nil || !os.SameFile(original, after) {
						t.Fatalf("try %d: the original socket is not back at %s: %v\n%s", try, srv, err, stderr)
					}
				}
			}
			wantPounces(t, racer, sockMode, sockUID, sockGID)
			if !tc.hijackDirs && served != raceTries {
				t.Errorf("opsctl served in %d of %d tries; the racer must not keep it from starting", served, raceTries)
			}
			t.Logf("served %d of %d tries; racer: %d actions", served, raceTries, len(racer.lines()))
		})
	}
}
