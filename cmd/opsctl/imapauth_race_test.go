package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/sockfile"
	"github.com/opsctl/opsctl/internal/testenv"
)

// TestIMAPAuthServeSymlinkRaceLeavesOtherFilesAlone: the attack of
// TestSockCaptureSymlinkRaceLeavesOtherFilesAlone against `imap-auth serve
// --socket` in a folder owned by another user. The daemon used to listen,
// then chmod the path: the racer's link turned a root-owned 0600 file into
// 0660.
func TestIMAPAuthServeSymlinkRaceLeavesOtherFilesAlone(t *testing.T) {
	testenv.NeedRoot(t)
	owned, victim := raceFolders(t)
	socket := filepath.Join(owned, "auth.sock")
	racer := startSymlinkRacer(t, racerSpec{dir: owned, victim: victim})
	served := 0
	for try := 1; try <= raceTries; try++ {
		undoRacer(owned)
		started, code, stderr := runUntilReady(t, "msg=serving", syscall.SIGTERM, func() {
			wantSocketFile(t, socket, 0o660, 0, 0, try)
		}, "imap-auth", "serve", "--socket", socket, "--socket-mode", "0660", "--server", "127.0.0.1:1", "--warm", "0")
		if started {
			served++
		} else {
			t.Logf("try %d: imap-auth serve did not serve: %s", try, stderr)
		}
		if code != 0 && code != 1 {
			t.Errorf("try %d: exit %d: %s", try, code, stderr)
		}
		if !victimUntouched(t, victim, try) {
			t.Fatalf("after %d tries; racer: %q; opsctl: %s", try, racer.lines(), stderr)
		}
	}
	wantPounces(t, racer, 0o660, 0, 0)
	if served != raceTries {
		t.Errorf("imap-auth serve served in %d of %d tries; the racer must not keep it from starting", served, raceTries)
	}
}

// TestIMAPAuthServeSocketPathErrors: a --socket that cannot be a socket (a
// missing folder, another kind of file, a path longer than a socket
// address) is a usage error in one line, exit 2; a socket another daemon
// serves is exit 1. Nothing there is changed.
func TestIMAPAuthServeSocketPathErrors(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	long := dir + "/" + strings.Repeat("x", sockfile.MaxPath-len(dir))
	cases := []struct {
		name, socket string
		code         int
		want         string
	}{
		{"missing folder", filepath.Join(dir, "none", "a.sock"), cli.ExitUsage, "folder " + filepath.Join(dir, "none") + " does not exist"},
		{"regular file", regular, cli.ExitUsage, "exists and is not a socket (it is a regular file)"},
		{"too long", long, cli.ExitUsage, fmt.Sprintf("%d bytes, more than the 107", len(long))},
		{"served", live, cli.ExitFailure, "another process is serving it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			started, code, stderr := runUntilReady(t, "msg=serving", syscall.SIGTERM, func() {},
				"imap-auth", "serve", "--socket", tc.socket, "--server", "127.0.0.1:1", "--warm", "0")
			if started || code != tc.code || !strings.Contains(stderr, "--socket "+tc.socket+": "+tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit %d, one line with %q", code, stderr, tc.code, tc.want)
			}
		})
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "keep me" {
		t.Errorf("the regular file was changed: %q, %v", b, err)
	}
	if conn, err := net.Dial("unix", live); err != nil {
		t.Errorf("the served socket was taken away: %v", err)
	} else {
		conn.Close()
	}
}

// TestIMAPAuthServeSocketStaysOutOfAFolderAUsersLinkLeadsTo: --socket's
// folder was opened following every symbolic link on the way, so the
// owner of a folder on the path could have the daemon (root) make its
// socket, or replace a stale one, in any folder. Such a link is not
// followed now: exit 2, one line, nothing made.
func TestIMAPAuthServeSocketStaysOutOfAFolderAUsersLinkLeadsTo(t *testing.T) {
	testenv.NeedRoot(t)
	owned, victim := raceFolders(t)
	rootDir := filepath.Dir(victim)
	nobodysLink(t, rootDir, filepath.Join(owned, "d"))
	socket := filepath.Join(owned, "d", "auth.sock")
	started, code, stderr := runUntilReady(t, "msg=serving", syscall.SIGTERM, func() {},
		"imap-auth", "serve", "--socket", socket, "--server", "127.0.0.1:1", "--warm", "0")
	want := "--socket " + socket + ": " + filepath.Join(owned, "d") + " leads through"
	if started || code != cli.ExitUsage || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("served %v, exit %d, stderr %q; want exit 2, one line with %q", started, code, stderr, want)
	}
	if _, err := os.Lstat(filepath.Join(rootDir, "auth.sock")); !os.IsNotExist(err) {
		t.Errorf("the daemon made its socket in root's folder: %v", err)
	}
}
