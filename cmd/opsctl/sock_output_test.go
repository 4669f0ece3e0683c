package main

import (
	"bytes"
	"fmt"
	"io"
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
	"golang.org/x/sys/unix"
)

// TestSockCaptureOutputRefusesWhatIsNotAFile is item 3 of the security
// issue and the rule for files named on the command line: -w opened the
// path with O_TRUNC and followed a symbolic link, so a user who owns the
// folder where root writes the capture could have root truncate any file.
// A link, a device, a folder, a hard-linked file or a missing folder is now
// refused in one line naming -w, exit 2, and nothing is truncated.
func TestSockCaptureOutputRefusesWhatIsNotAFile(t *testing.T) {
	testenv.NeedRoot(t)
	// Each case gets the folders of raceFolders (a root-owned 0600 victim,
	// a folder owned by nobody) and returns the -w value.
	cases := []struct {
		name  string
		setup func(t *testing.T, owned, victim, dir string) string
		want  string // after "-w OUTPUT: "
	}{
		{"symbolic link to a root file", func(t *testing.T, owned, victim, dir string) string {
			link := filepath.Join(owned, "cap.pcap")
			if err := os.Symlink(victim, link); err != nil {
				t.Fatal(err)
			}
			os.Lchown(link, 65534, 65534)
			return link
		}, "is a symbolic link"},
		{"character device", func(t *testing.T, owned, victim, dir string) string {
			device := filepath.Join(dir, "zero")
			if err := unix.Mknod(device, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))); err != nil {
				t.Fatal(err)
			}
			return device
		}, "is a device"},
		{"folder", func(t *testing.T, owned, victim, dir string) string { return owned }, "is a folder"},
		{"hard link to a root file", func(t *testing.T, owned, victim, dir string) string {
			linked := filepath.Join(owned, "linked.pcap")
			if err := os.Link(victim, linked); err != nil {
				t.Fatal(err)
			}
			return linked
		}, "has 2 hard links"},
		{"missing folder", func(t *testing.T, owned, victim, dir string) string {
			return filepath.Join(owned, "none", "cap.pcap")
		}, "folder {owned}/none does not exist"},
		{"parent is a file", func(t *testing.T, owned, victim, dir string) string {
			return filepath.Join(victim, "cap.pcap")
		}, "{victim} is not a folder"},
		// The folder's owner points a link on the way at root's folder:
		// root truncated the file of that name there, or made a new one
		// there with what the capture records (traffic the user sends).
		{"user's link on the way to a root file", func(t *testing.T, owned, victim, dir string) string {
			nobodysLink(t, filepath.Dir(victim), filepath.Join(owned, "d"))
			return filepath.Join(owned, "d", filepath.Base(victim))
		}, "{owned}/d leads through {owned}/d, a symbolic link"},
		{"user's link on the way to a root folder", func(t *testing.T, owned, victim, dir string) string {
			nobodysLink(t, filepath.Dir(victim), filepath.Join(owned, "d"))
			return filepath.Join(owned, "d", "cron-job")
		}, "{owned}/d leads through {owned}/d, a symbolic link"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			owned, victim := raceFolders(t)
			dir := t.TempDir()
			srv := filepath.Join(dir, "srv.sock")
			startHTTPServer(t, srv)
			output := tc.setup(t, owned, victim, dir)
			want := "-w " + output + ": " + strings.NewReplacer("{owned}", owned, "{victim}", victim).Replace(tc.want)
			started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {},
				"sock", "capture", "--socket", srv, "--listen", filepath.Join(dir, "proxy.sock"), "-w", output)
			if started || code != cli.ExitUsage || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("served %v, exit %d, stderr %q; want exit 2, one line with %q", started, code, stderr, want)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "root's secret\n" {
				t.Errorf("the victim was changed: %q, %v", b, err)
			}
			victimUntouched(t, victim, 1)
			if names, _ := os.ReadDir(filepath.Dir(victim)); len(names) != 2 {
				t.Errorf("root's folder holds %v, want owned and victim alone", names)
			}
			if _, err := os.Lstat(filepath.Join(dir, "proxy.sock")); !os.IsNotExist(err) {
				t.Errorf("proxy socket left behind: %v", err)
			}
		})
	}
}

// TestSockCaptureOutputIntoAFIFOOrStdout: what a user names on purpose to
// read the capture live, a FIFO (Wireshark's -i FIFO) or /dev/stdout, is
// written to, flushed per packet.
func TestSockCaptureOutputIntoAFIFOOrStdout(t *testing.T) {
	for _, kind := range []string{"fifo", "/dev/stdout", "/dev/null"} {
		t.Run(strings.Trim(kind, "/"), func(t *testing.T) {
			dir := t.TempDir()
			srv := filepath.Join(dir, "srv.sock")
			startHTTPServer(t, srv)
			proxy := filepath.Join(dir, "proxy.sock")
			output := kind
			var live io.Reader
			cmd := exec.Command(testenv.Opsctl(t), "sock", "capture", "--socket", srv, "--listen", proxy, "-w", output)
			switch kind {
			case "fifo":
				output = filepath.Join(dir, "live.fifo")
				if err := unix.Mkfifo(output, 0o600); err != nil {
					t.Fatal(err)
				}
				cmd.Args[len(cmd.Args)-1] = output
			case "/dev/stdout":
				pr, pw, err := os.Pipe()
				if err != nil {
					t.Fatal(err)
				}
				defer pr.Close()
				cmd.Stdout = pw
				live = pr
				defer pw.Close()
			}
			stderr := &testenv.SyncBuffer{}
			cmd.Stderr = stderr
			done := startProcess(t, cmd)
			if kind == "fifo" {
				f, err := os.Open(output) // opsctl's open waits for this reader
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				live = f
			}
			if f, ok := cmd.Stdout.(*os.File); ok {
				f.Close() // the child holds its copy
			}
			var got bytes.Buffer
			copied := make(chan struct{})
			if live != nil {
				go func() { io.Copy(&got, live); close(copied) }()
			} else {
				close(copied)
			}
			waitServing(t, stderr, done)
			conn, err := net.Dial("unix", proxy)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(conn, "GET /live-fifo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			io.ReadAll(conn)
			conn.Close()
			cmd.Process.Signal(os.Interrupt)
			<-done
			<-copied
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if live != nil && (!bytes.HasPrefix(got.Bytes(), []byte{0x4d, 0x3c, 0xb2, 0xa1}) || !bytes.Contains(got.Bytes(), []byte("GET /live-fifo"))) {
				t.Errorf("%s got %d bytes without a pcap header or the request", kind, got.Len())
			}
			if st, err := os.Stat("/dev/null"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
				t.Errorf("/dev/null is no longer a character device: %v", err)
			}
		})
	}
}

// TestSockCaptureOutputTruncatesOnlyARegularFile: an earlier capture of the
// same name is replaced, not appended to.
func TestSockCaptureOutputTruncatesOnlyARegularFile(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	startHTTPServer(t, srv)
	file := filepath.Join(dir, "cap.pcap")
	if err := os.WriteFile(file, bytes.Repeat([]byte("an earlier, longer capture "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {},
		"sock", "capture", "--socket", srv, "--listen", filepath.Join(dir, "proxy.sock"), "-w", file)
	if !started || code != 0 {
		t.Fatalf("served %v, exit %d: %s", started, code, stderr)
	}
	b, _ := os.ReadFile(file)
	if len(b) != 24 || bytes.Contains(b, []byte("earlier")) {
		t.Errorf("capture file holds %d bytes, want the 24 of a pcap header alone", len(b))
	}
	var st syscall.Stat_t
	if syscall.Stat(file, &st); st.Mode&0o777 != 0o600 {
		t.Errorf("mode %04o, want 0600", st.Mode&0o777)
	}
}

// nobodysLink makes link, owned by nobody, a symbolic link to target: what
// nobody can do in a folder of theirs.
func nobodysLink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
}

// TestSockCaptureFileStaysPrivateFromOthers: the capture holds what
// clients say (passwords). An existing -w FILE was truncated and written
// in place, given mode 0600: a file another user owns stayed theirs (they
// chmod it back and read the capture), and a reader who opened a
// world-readable one before (an earlier capture) read the new capture
// through that descriptor. Now an existing file is replaced by a new one,
// root's, mode 0600, made aside and renamed over it.
func TestSockCaptureFileStaysPrivateFromOthers(t *testing.T) {
	testenv.NeedRoot(t)
	curl := testenv.Need(t, "curl", "curl")
	for _, tc := range []string{"the user's own file", "a reader holding it open"} {
		t.Run(tc, func(t *testing.T) {
			owned, _ := raceFolders(t)
			base, _ := opsctlForNobody(t)
			srv := filepath.Join(base, "srv.sock")
			startHTTPServer(t, srv)
			file := filepath.Join(owned, "cap.pcap")
			var reader *exec.Cmd
			var readerIn io.WriteCloser
			var readerOut bytes.Buffer
			var readerDone <-chan struct{}
			if tc == "the user's own file" {
				if out, err := asNobody(t, "sh", "-c", `umask 077 && echo "nobody's file" > "$1"`, "sh", file); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
			} else {
				if err := os.WriteFile(file, []byte("an earlier capture\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				os.Chmod(file, 0o644)
				reader = exec.Command("sh", "-c", `exec 3<"$1" && echo opened && read go && cat <&3`, "sh", file)
				reader.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
				readerIn, _ = reader.StdinPipe()
				opened := &testenv.SyncBuffer{}
				reader.Stdout = io.MultiWriter(opened, &readerOut)
				readerDone = startProcess(t, reader)
				if !testenv.WaitUntil(t, 10*time.Second, func() bool { return strings.Contains(opened.String(), "opened") }) {
					t.Fatal("the reader did not open the file")
				}
			}
			c := startCapture(t, "--socket", srv, "--listen", filepath.Join(base, "proxy.sock"), "-w", file)
			if out, err := exec.Command(curl, "-sS", "--unix-socket", filepath.Join(base, "proxy.sock"), "http://x/secret-request").CombinedOutput(); err != nil {
				t.Fatalf("curl: %v %s", err, out)
			}
			if code := c.stop(); code != 0 {
				t.Fatalf("exit %d: %s", code, c.stderr)
			}
			var seen string
			if reader != nil {
				fmt.Fprintln(readerIn, "go")
				readerIn.Close()
				// startProcess waits for it: a second Wait would race that one.
				<-readerDone
				seen = readerOut.String()
			} else {
				seen, _ = asNobody(t, "sh", "-c", `chmod 0644 "$1"; cat "$1"`, "sh", file)
			}
			if strings.Contains(seen, "secret-request") {
				t.Errorf("nobody read the capture: %q", seen)
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(file, &st); err != nil || st.Uid != 0 || st.Mode&0o777 != 0o600 {
				t.Errorf("the capture file: owner %d, mode %04o, %v; want root's, 0600", st.Uid, st.Mode&0o777, err)
			}
		})
	}
}
