package main

import (
	"fmt"
	"net"
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

// asNobody runs name with args as nobody (uid and gid 65534, no groups):
// the hostile local user of an attack. It returns the combined output.
func asNobody(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	testenv.NeedRoot(t)
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// rootOnlyServer serves HTTP at a socket of mode 0600 in a folder of mode
// 0700, both root's: nobody but root may connect to it. It records every
// connection it accepts.
func rootOnlyServer(t *testing.T) (string, *recordingListener) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "root-only.sock")
	ln := startHTTPServer(t, path)
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, ln
}

// accepted is the number of connections ln accepted so far.
func (l *recordingListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// TestSockCaptureListenForwardsOnlyToTheSocketItChecked: with --listen,
// opsctl (root) connected every client to --socket by its path, looked up
// again at each connection. The user who owns the socket's folder renamed
// a symbolic link to a socket only root may use over it, connected to the
// proxy (which has the mode of their own socket), and reached that socket
// as root: a root shell through /run/docker.sock. Now the proxy connects
// to the very file it checked at the start, whatever is at its name since.
func TestSockCaptureListenForwardsOnlyToTheSocketItChecked(t *testing.T) {
	testenv.NeedRoot(t)
	curl := testenv.Need(t, "curl", "curl")
	t.Run("stream", func(t *testing.T) {
		owned, _ := raceFolders(t)
		rootOnly, rootLn := rootOnlyServer(t)
		app := filepath.Join(owned, "app.sock") // nobody's server
		appLn := startHTTPServer(t, app)
		os.Chmod(app, 0o666)
		os.Chown(app, 65534, 65534)
		base, _ := opsctlForNobody(t)
		proxy := filepath.Join(base, "proxy.sock")
		c := startCapture(t, "--socket", app, "--listen", proxy, "--hexdump")

		// The attack: nobody renames a link to root's socket over its own,
		// then asks through the proxy.
		swapForLink(t, rootOnly, app)
		out, _ := asNobody(t, curl, "-sS", "--max-time", "10", "--unix-socket", proxy, "http://x/root-only-data")
		c.stop()
		if rootLn.accepted() != 0 {
			t.Errorf("nobody reached the root-only socket through the proxy (%d connections); curl: %q\n%s", rootLn.accepted(), out, c.stderr)
		}
		if appLn.accepted() != 1 {
			t.Errorf("the socket checked at the start got %d connections, want 1; curl: %q\n%s", appLn.accepted(), out, c.stderr)
		}
	})
	t.Run("datagram", func(t *testing.T) {
		owned, _ := raceFolders(t)
		rootDir := t.TempDir() // 0700, root's
		rootOnly := filepath.Join(rootDir, "root-only.dgram")
		app := filepath.Join(owned, "app.dgram")
		received := make(chan string, 4)
		for _, path := range []string{rootOnly, app} {
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			go func() {
				buf := make([]byte, 4096)
				for {
					n, _, err := conn.ReadFromUnix(buf)
					if err != nil {
						return
					}
					received <- filepath.Base(path) + ": " + string(buf[:n])
				}
			}()
		}
		os.Chmod(rootOnly, 0o600)
		os.Chmod(app, 0o666)
		os.Chown(app, 65534, 65534)
		base, _ := opsctlForNobody(t)
		proxy := filepath.Join(base, "proxy.dgram")
		c := startCapture(t, "--socket", app, "--listen", proxy, "--hexdump")

		swapForLink(t, rootOnly, app)
		client, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: proxy, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if _, err := client.Write([]byte("for root only")); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-received:
			if got != "app.dgram: for root only" {
				t.Errorf("the proxy forwarded the datagram elsewhere than to the socket it checked: %q\n%s", got, c.stderr)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("the datagram reached no socket\n%s", c.stderr)
		}
		c.stop()
	})
}

// swapForLink is the hostile user's move: as nobody, rename a symbolic
// link to target over name, in a folder nobody owns.
func swapForLink(t *testing.T, target, name string) {
	t.Helper()
	if out, err := asNobody(t, "sh", "-c", `ln -s "$1" "$2.new" && mv -Tf "$2.new" "$2"`, "sh", target, name); err != nil {
		t.Fatalf("nobody's rename: %v: %s", err, out)
	}
}

// TestSockCaptureProxyAdmitsOnlyWhoMayReachTheSocket: the proxy connects
// to --socket as root, so whoever may connect to the proxy reaches the
// socket with root's rights. It got the socket file's own mode, which is
// not all that keeps users out: an abstract --listen name has no mode at
// all (every local user could connect), and a socket of mode 0666 in a
// folder of mode 0700 (/run/user/UID/bus) is closed to everyone else by
// its folder. Now an abstract proxy of a socket that not everyone may
// reach is refused (exit 2), and the proxy's mode loses the group and
// other bits that the socket's folders take away.
func TestSockCaptureProxyAdmitsOnlyWhoMayReachTheSocket(t *testing.T) {
	testenv.NeedRoot(t)
	curl := testenv.Need(t, "curl", "curl")
	t.Run("abstract proxy of a root-only socket", func(t *testing.T) {
		rootOnly, rootLn := rootOnlyServer(t)
		proxy := fmt.Sprintf("@opsctl-test-reach-%d", os.Getpid())
		var out string
		started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {
			out, _ = asNobody(t, curl, "-sS", "--max-time", "10", "--abstract-unix-socket", proxy[1:], "http://x/root-only-data")
		}, "sock", "capture", "--socket", rootOnly, "--listen", proxy, "--hexdump")
		if rootLn.accepted() != 0 {
			t.Errorf("nobody reached the root-only socket through the abstract proxy: curl %q\n%s", out, stderr)
		}
		want := "--listen " + proxy + ": "
		if started || code != cli.ExitUsage || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("served %v, exit %d, stderr %q; want exit 2, one line with %q", started, code, stderr, want)
		}
	})
	t.Run("file proxy of a socket in a private folder", func(t *testing.T) {
		rootOnly, rootLn := rootOnlyServer(t) // 0600 in a 0700 folder
		if err := os.Chmod(rootOnly, 0o666); err != nil {
			t.Fatal(err)
		}
		base, _ := opsctlForNobody(t)
		proxy := filepath.Join(base, "proxy.sock")
		var out string
		var mode os.FileMode
		started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {
			if st, err := os.Lstat(proxy); err == nil {
				mode = st.Mode().Perm()
			}
			out, _ = asNobody(t, curl, "-sS", "--max-time", "10", "--unix-socket", proxy, "http://x/root-only-data")
		}, "sock", "capture", "--socket", rootOnly, "--listen", proxy, "--hexdump")
		if !started || code != 0 {
			t.Fatalf("served %v, exit %d: %s", started, code, stderr)
		}
		if rootLn.accepted() != 0 || mode != 0o600 {
			t.Errorf("the proxy has mode %04o, and nobody reached the socket of the private folder %d times (curl %q); want mode 0600, no connection\n%s",
				mode, rootLn.accepted(), out, stderr)
		}
	})
	t.Run("abstract proxy of a socket open to all", func(t *testing.T) {
		base, _ := opsctlForNobody(t)
		open := filepath.Join(base, "open.sock")
		openLn := startHTTPServer(t, open)
		if err := os.Chmod(open, 0o666); err != nil {
			t.Fatal(err)
		}
		proxy := fmt.Sprintf("@opsctl-test-open-%d", os.Getpid())
		var out string
		started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {
			out, _ = asNobody(t, curl, "-sS", "--max-time", "10", "--abstract-unix-socket", proxy[1:], "http://x/open")
		}, "sock", "capture", "--socket", open, "--listen", proxy, "--hexdump")
		if !started || code != 0 || openLn.accepted() != 1 || !strings.Contains(out, "uri=/open") {
			t.Errorf("served %v, exit %d, %d connections, curl %q; want the capture to serve nobody's request\n%s", started, code, openLn.accepted(), out, stderr)
		}
	})
}

// TestSockCaptureSocketsStayOutOfFoldersAUsersLinkLeadsTo: the proxy's
// socket (--listen) and a swap (--swap) go into the folder of the path
// given, which opsctl opened following every symbolic link on the way. A
// user who owns a folder on that path pointed a link at a folder of root's:
// root made its socket there, or swapped the socket of that name. Now such
// a link is not followed (exit 2, one line), and root's folder is left as
// it was.
func TestSockCaptureSocketsStayOutOfFoldersAUsersLinkLeadsTo(t *testing.T) {
	testenv.NeedRoot(t)
	for _, mode := range []string{"listen", "swap"} {
		t.Run(mode, func(t *testing.T) {
			owned, victim := raceFolders(t)
			rootDir := filepath.Dir(victim)
			srv := filepath.Join(t.TempDir(), "srv.sock")
			startHTTPServer(t, srv)
			nobodysLink(t, rootDir, filepath.Join(owned, "d"))
			args := []string{"sock", "capture", "--hexdump"}
			flag := "--listen " + filepath.Join(owned, "d", "proxy.sock")
			if mode == "listen" {
				args = append(args, "--socket", srv, "--listen", filepath.Join(owned, "d", "proxy.sock"))
			} else {
				// root's own socket, in root's folder, where nobody's link leads
				rootSrv := filepath.Join(rootDir, "app.sock")
				startHTTPServer(t, rootSrv)
				args = append(args, "--socket", filepath.Join(owned, "d", "app.sock"), "--swap")
				flag = "--socket " + filepath.Join(owned, "d", "app.sock")
			}
			before, _ := os.ReadDir(rootDir)
			started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {}, args...)
			want := flag + ": " + filepath.Join(owned, "d") + " leads through " + filepath.Join(owned, "d") + ", a symbolic link"
			if started || code != cli.ExitUsage || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("served %v, exit %d, stderr %q; want exit 2, one line with %q", started, code, stderr, want)
			}
			after, _ := os.ReadDir(rootDir)
			if fmt.Sprint(before) != fmt.Sprint(after) {
				t.Errorf("root's folder held %v, now %v", before, after)
			}
		})
	}
}
