package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"

	"golang.org/x/sys/unix"
)

// capture is a running `opsctl sock capture`.
type capture struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	stdout *testenv.SyncBuffer
	done   <-chan struct{}
}

// startCapture runs opsctl with args and waits until it serves.
func startCapture(t *testing.T, args ...string) *capture {
	t.Helper()
	c := &capture{t: t, stderr: &testenv.SyncBuffer{}, stdout: &testenv.SyncBuffer{}}
	c.cmd = exec.Command(testenv.Opsctl(t), append([]string{"sock", "capture"}, args...)...)
	c.cmd.Stderr = c.stderr
	c.cmd.Stdout = c.stdout
	c.done = startProcess(t, c.cmd)
	waitServing(t, c.stderr, c.done)
	return c
}

// startProcess starts cmd (opsctl, tshark) and returns a channel closed
// when it has exited; it is killed at the end of the test if it still runs.
func startProcess(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	return done
}

// waitServing waits until opsctl logs on stderr that the capture serves;
// it fails the test when opsctl exits before or does not get there in 10s.
func waitServing(t *testing.T, stderr fmt.Stringer, done <-chan struct{}) {
	t.Helper()
	serving := testenv.WaitUntil(t, 10*time.Second, func() bool {
		select {
		case <-done:
			t.Fatalf("opsctl exited early: %s", stderr)
		default:
		}
		return strings.Contains(stderr.String(), "capturing; stop with Ctrl-C")
	})
	if !serving {
		t.Fatalf("opsctl did not start: %s", stderr)
	}
}

// stop sends SIGINT and returns the exit code.
func (c *capture) stop() int {
	c.t.Helper()
	return c.stopWith(os.Interrupt)
}

// stopWith sends sig and returns the exit code (-1 when a signal killed
// opsctl).
func (c *capture) stopWith(sig os.Signal) int {
	c.t.Helper()
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		c.t.Fatalf("opsctl did not stop on %v: %s", sig, c.stderr)
	}
	return c.cmd.ProcessState.ExitCode()
}

func tshark(t *testing.T, args ...string) string {
	t.Helper()
	bin := testenv.Need(t, "tshark", "tshark")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	for _, l := range strings.Split(errOut.String(), "\n") {
		if l != "" && !strings.Contains(l, "Running as user") && !strings.Contains(l, "could be dangerous") {
			t.Errorf("tshark %s: %s", strings.Join(args, " "), l)
		}
	}
	return string(out)
}

// recordingListener remembers every byte each connection read and wrote.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*recordingConn
}

type recordingConn struct {
	net.Conn
	mu          sync.Mutex
	read, wrote bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	l.mu.Lock()
	l.conns = append(l.conns, rc)
	l.mu.Unlock()
	return rc, nil
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.wrote.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// startHTTPServer serves HTTP on a UNIX socket at path: it answers each
// request with its URI and the length of its body.
func startHTTPServer(t *testing.T, path string) *recordingListener {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: ln}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "uri=%s body=%d\n", r.RequestURI, len(body))
	})}
	go srv.Serve(rl)
	t.Cleanup(func() { srv.Close() })
	return rl
}

// followStreams reassembles every TCP stream of a capture with tshark's
// "follow tcp raw": client bytes and server bytes per stream.
func followStreams(t *testing.T, file string, streams int) [][2][]byte {
	t.Helper()
	args := []string{"-r", file, "-q"}
	for i := range streams {
		args = append(args, "-z", fmt.Sprintf("follow,tcp,raw,%d", i))
	}
	out := tshark(t, args...)
	var result [][2][]byte
	var cur *[2][]byte
	inData := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "Follow: tcp,raw"):
			result = append(result, [2][]byte{})
			cur = &result[len(result)-1]
			inData = false
		case strings.HasPrefix(line, "Node 1:"):
			inData = true
		case strings.HasPrefix(line, "====="):
			inData = false
		case inData && line != "":
			dir := 0
			if strings.HasPrefix(line, "\t") {
				dir = 1
			}
			b, err := hex.DecodeString(strings.TrimSpace(line))
			if err != nil {
				t.Fatalf("follow output line %q: %v", line, err)
			}
			cur[dir] = append(cur[dir], b...)
		}
	}
	return result
}

func TestSockCaptureCurlConnectionsReassembleInTshark(t *testing.T) {
	curl := testenv.Need(t, "curl", "curl")
	testenv.Need(t, "tshark", "tshark")
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	server := startHTTPServer(t, srv)
	proxy := filepath.Join(dir, "proxy.sock")
	file := filepath.Join(dir, "cap.pcap")
	c := startCapture(t, "--socket", srv, "--listen", proxy, "-w", file)

	const clients = 12
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bodies from nothing to several TCP segments.
			body := make([]byte, []int{0, 10, 70_000, 200_000}[i%4]+i)
			rand.Read(body)
			bodyFile := filepath.Join(dir, fmt.Sprintf("body%d", i))
			os.WriteFile(bodyFile, body, 0o600)
			uri := fmt.Sprintf("/item/%d?q=%d", i, i*i)
			out, err := exec.Command(curl, "-sS", "--unix-socket", proxy, "--data-binary", "@"+bodyFile,
				"http://localhost"+uri).CombinedOutput()
			if want := fmt.Sprintf("uri=%s body=%d\n", uri, len(body)); err != nil || string(out) != want {
				t.Errorf("curl %s: %v: got %q, want %q", uri, err, out, want)
			}
		}()
	}
	wg.Wait()
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, c.stderr)
	}

	uris := strings.Fields(tshark(t, "-r", file, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri"))
	slices.Sort(uris)
	var want []string
	for i := range clients {
		want = append(want, fmt.Sprintf("/item/%d?q=%d", i, i*i))
	}
	slices.Sort(want)
	if !slices.Equal(uris, want) {
		t.Errorf("tshark dissected request URIs %q, want %q", uris, want)
	}

	streams := followStreams(t, file, clients)
	if len(streams) != clients {
		t.Fatalf("tshark followed %d streams, want %d", len(streams), clients)
	}
	server.mu.Lock()
	defer server.mu.Unlock()
	if len(server.conns) != clients {
		t.Fatalf("server saw %d connections, want %d", len(server.conns), clients)
	}
	unmatched := slices.Clone(server.conns)
	for i, s := range streams {
		found := false
		for j, sc := range unmatched {
			if bytes.Equal(s[0], sc.read.Bytes()) && bytes.Equal(s[1], sc.wrote.Bytes()) {
				unmatched = slices.Delete(unmatched, j, j+1)
				found = true
				break
			}
		}
		if !found {
			t.Errorf("stream %d (%d bytes to server, %d back) matches no connection the server saw", i, len(s[0]), len(s[1]))
		}
	}
}

func TestSockCaptureSwapServesInPlaceAndRestores(t *testing.T) {
	curl := testenv.Need(t, "curl", "curl")
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	startHTTPServer(t, srv)
	if err := os.Chmod(srv, 0o660); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(srv)
	file := filepath.Join(dir, "cap.pcapng")
	c := startCapture(t, "--socket", srv, "--swap", "-w", file)

	during, err := os.Stat(srv)
	if err != nil || os.SameFile(before, during) {
		t.Fatalf("%s is not the proxy during the capture: %v", srv, err)
	}
	if during.Mode() != before.Mode() {
		t.Errorf("proxy socket mode %v, original %v", during.Mode(), before.Mode())
	}
	if aside, err := os.Stat(srv + ".opsctl-orig"); err != nil || !os.SameFile(before, aside) {
		t.Errorf("original not kept at .opsctl-orig: %v", err)
	}
	out, err := exec.Command(curl, "-sS", "--unix-socket", srv, "http://localhost/swapped").CombinedOutput()
	if err != nil || string(out) != "uri=/swapped body=0\n" {
		t.Fatalf("curl through the swapped socket: %v %q", err, out)
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, c.stderr)
	}
	wantSocketRestored(t, srv, before, c.stderr)
	out, err = exec.Command(curl, "-sS", "--unix-socket", srv, "http://localhost/after").CombinedOutput()
	if err != nil || string(out) != "uri=/after body=0\n" {
		t.Errorf("server unreachable after the restore: %v %q", err, out)
	}
	fields := tshark(t, "-r", file, "-T", "fields", "-e", "frame.interface_name", "-e", "frame.comment", "-e", "http.request.uri")
	if !strings.Contains(fields, srv) || !strings.Contains(fields, "command=") || !strings.Contains(fields, "curl") || !strings.Contains(fields, "/swapped") {
		t.Errorf("pcapng lacks the interface name, the client comment or the request:\n%s", fields)
	}
}

// TestSockCaptureSwapRestoresOnEveryStopSignal: SIGTERM (service managers),
// SIGHUP (the terminal or ssh session that ran opsctl went away) and SIGQUIT
// (Ctrl-\) must put the socket back like Ctrl-C does.
func TestSockCaptureSwapRestoresOnEveryStopSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			srv := filepath.Join(dir, "app.sock")
			startHTTPServer(t, srv)
			before, _ := os.Stat(srv)
			file := filepath.Join(dir, "cap.pcap")
			c := startCapture(t, "--socket", srv, "--swap", "-w", file)
			if code := c.stopWith(sig); code != 0 {
				t.Errorf("exit %d after %v: %s", code, sig, c.stderr)
			}
			wantSocketRestored(t, srv, before, c.stderr)
		})
	}
}

// liveCapture is `opsctl sock capture --swap -w -` with its stdout in a pipe
// whose reader (pr) the test holds, as Wireshark would.
type liveCapture struct {
	srv    string
	before os.FileInfo // the original socket
	cmd    *exec.Cmd
	pr     *os.File
	stderr *testenv.SyncBuffer
	done   <-chan struct{} // closed when opsctl exited
}

// startSwapToPipe starts a live capture of an HTTP server's socket and
// returns once opsctl serves and the file header was read from the pipe.
// opsctl is killed at the end of the test if it still runs.
func startSwapToPipe(t *testing.T) *liveCapture {
	t.Helper()
	lc := &liveCapture{srv: filepath.Join(t.TempDir(), "app.sock"), stderr: &testenv.SyncBuffer{}}
	startHTTPServer(t, lc.srv)
	lc.before, _ = os.Stat(lc.srv)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	lc.pr = pr
	t.Cleanup(func() { pr.Close() })
	lc.cmd = exec.Command(testenv.Opsctl(t), "sock", "capture", "--socket", lc.srv, "--swap", "-w", "-")
	lc.cmd.Stdout, lc.cmd.Stderr = pw, lc.stderr
	lc.done = startProcess(t, lc.cmd)
	pw.Close()
	// The file header is written before opsctl serves.
	if _, err := io.ReadFull(pr, make([]byte, 24)); err != nil {
		t.Fatalf("no pcap header on stdout: %v: %s", err, lc.stderr)
	}
	waitServing(t, lc.stderr, lc.done)
	return lc
}

// TestSockCaptureSwapRestoresWhenTheLiveReaderQuits: with -w - piped into
// Wireshark, closing Wireshark breaks the pipe. opsctl must stop with an
// error and put the socket back, not die of SIGPIPE with the socket moved
// aside.
func TestSockCaptureSwapRestoresWhenTheLiveReaderQuits(t *testing.T) {
	lc := startSwapToPipe(t)
	srv, before, cmd, pr, stderr, done := lc.srv, lc.before, lc.cmd, lc.pr, lc.stderr, lc.done
	pr.Close()
	// A client makes opsctl write to the broken pipe.
	if conn, err := net.Dial("unix", srv); err == nil {
		fmt.Fprint(conn, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		defer conn.Close()
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("opsctl did not stop when its stdout broke: %s", stderr)
	}
	if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Errorf("opsctl killed by %v: %s", ws.Signal(), stderr)
	} else if code := cmd.ProcessState.ExitCode(); code != cli.ExitFailure || !strings.Contains(stderr.String(), "broken pipe") {
		t.Errorf("exit %d, want 1 naming the broken pipe: %s", code, stderr)
	}
	wantSocketRestored(t, srv, before, stderr)
}

// TestSockCaptureSwapRestoresWhenTheLiveReaderQuitsWhileIdle: Wireshark
// closed while no client talks. opsctl must notice the reader is gone
// without waiting for traffic that may never come, and put the socket back.
func TestSockCaptureSwapRestoresWhenTheLiveReaderQuitsWhileIdle(t *testing.T) {
	lc := startSwapToPipe(t)
	lc.pr.Close()
	select {
	case <-lc.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("opsctl still runs, socket still swapped, 10s after its reader went away: %s", lc.stderr)
	}
	if code := lc.cmd.ProcessState.ExitCode(); code != cli.ExitFailure || !strings.Contains(lc.stderr.String(), "broken pipe") {
		t.Errorf("exit %d, want 1 naming the broken pipe: %s", code, lc.stderr)
	}
	if after, err := os.Stat(lc.srv); err != nil || !os.SameFile(lc.before, after) {
		t.Fatalf("original socket not restored: %v\n%s", err, lc.stderr)
	}
}

// TestSockCaptureHexdumpStopsWhenItsReaderQuits: --hexdump alone, piped
// into less or head, which then quits. Nothing is recorded any more, so
// opsctl must stop and put the swapped socket back, as socat -x -v stops.
func TestSockCaptureHexdumpStopsWhenItsReaderQuits(t *testing.T) {
	srv := filepath.Join(t.TempDir(), "app.sock")
	startHTTPServer(t, srv)
	before, _ := os.Stat(srv)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Opsctl(t), "sock", "capture", "--socket", srv, "--swap", "--hexdump")
	cmd.Stderr = pw
	done := startProcess(t, cmd)
	pw.Close()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if !strings.Contains(line, "capturing") {
		t.Fatalf("first line %q, %v", line, err)
	}
	pr.Close()
	if conn, err := net.Dial("unix", srv); err == nil {
		fmt.Fprint(conn, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		defer conn.Close()
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("opsctl still runs 10s after the reader of its hexdump went away")
	}
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	if after, err := os.Stat(srv); err != nil || !os.SameFile(before, after) {
		t.Fatalf("original socket not restored: %v", err)
	}
}

// TestSockCaptureListenRefusesTheDeadProxyOfAKilledSwap: after a --swap
// capture was killed, PATH is its dead proxy and the server sits at
// PATH.opsctl-orig. --listen on PATH would forward every client into
// nothing; it must refuse with the same recovery hint as --swap.
func TestSockCaptureListenRefusesTheDeadProxyOfAKilledSwap(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	startHTTPServer(t, srv)
	if err := os.Link(srv, srv+".opsctl-orig"); err != nil {
		t.Fatal(err)
	}
	os.Remove(srv)
	deadSocket(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Opsctl(t), "sock", "capture", "--socket", srv, "--listen", filepath.Join(dir, "proxy.sock"), "-w", filepath.Join(dir, "x.pcap"))
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	cmd.Run()
	stderr, code := errOut.String(), cmd.ProcessState.ExitCode()
	want := "mv -f " + srv + ".opsctl-orig " + srv
	if code != cli.ExitFailure || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("exit %d, stderr %q; want exit 1, one line with %q", code, stderr, want)
	}
}

// startSink serves a UNIX stream socket at path that reads and drops
// what each client sends, until the test ends. The channel gets one value
// per connection, once its first bytes arrived.
func startSink(t *testing.T, path string) <-chan struct{} {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	flowing := make(chan struct{}, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				if _, err := c.Read(buf); err != nil {
					return
				}
				flowing <- struct{}{}
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return flowing
}

// deadSocket leaves a socket file at path that nobody serves.
func deadSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

// TestSockCaptureSwapRefusesALeftover: a leftover PATH.opsctl-orig stops
// --swap with a one-line recovery hint that fits the case: after a killed
// capture (PATH a dead proxy, the server at the leftover) move it back;
// after a server restart during a capture (PATH served anew, the leftover
// dead) remove it. Moving a dead leftover over a live socket would cut the
// server off.
func TestSockCaptureSwapRefusesALeftover(t *testing.T) {
	cases := []struct {
		name      string
		killed    bool // else: the server made a new socket meanwhile
		linked    bool // killed after the link, before serving
		wantHint  func(srv, leftover string) string
		wantAlive string // which file the server must still be reached at
	}{
		{"capture killed", true, false, func(srv, leftover string) string { return "mv -f " + leftover + " " + srv }, ".opsctl-orig"},
		{"server restarted", false, false, func(srv, leftover string) string { return "rm " + leftover }, ""},
		// Both names are the original: mv would refuse to move it over
		// itself.
		{"capture killed before serving", false, true, func(srv, leftover string) string { return "rm " + leftover }, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			srv := filepath.Join(dir, "app.sock")
			startHTTPServer(t, srv)
			leftover := srv + ".opsctl-orig"
			if tc.linked {
				if err := os.Link(srv, leftover); err != nil {
					t.Fatal(err)
				}
			} else if tc.killed {
				if err := os.Link(srv, leftover); err != nil {
					t.Fatal(err)
				}
				os.Remove(srv)
				deadSocket(t, srv)
			} else {
				deadSocket(t, leftover)
			}
			before, _ := os.Stat(srv)
			_, stderr, code := testenv.Run(t, "", "sock", "capture", "--socket", srv, "--swap", "-w", filepath.Join(dir, "x.pcap"))
			if code != cli.ExitFailure {
				t.Fatalf("exit %d, want 1: %s", code, stderr)
			}
			if hint := tc.wantHint(srv, leftover); !strings.Contains(stderr, hint) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("no one-line recovery hint %q: %q", hint, stderr)
			}
			if after, err := os.Stat(srv); err != nil || !os.SameFile(before, after) {
				t.Errorf("socket changed although the capture refused to start")
			}
			if _, err := os.Stat(filepath.Join(dir, "x.pcap")); !os.IsNotExist(err) {
				t.Errorf("capture file created although the capture refused to start")
			}
			if conn, err := net.Dial("unix", srv+tc.wantAlive); err != nil {
				t.Errorf("server no longer reachable at %s: %v", srv+tc.wantAlive, err)
			} else {
				conn.Close()
			}
		})
	}
}

func TestSockCaptureDatagramsOnAbstractSockets(t *testing.T) {
	testenv.Need(t, "tshark", "tshark")
	dir := t.TempDir()
	name := fmt.Sprintf("@opsctl-test-%d", os.Getpid())
	srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() { // echo each datagram back upper-cased
		buf := make([]byte, 65536)
		for {
			n, from, err := srv.ReadFromUnix(buf)
			if err != nil {
				return
			}
			srv.WriteToUnix(bytes.ToUpper(buf[:n]), from)
		}
	}()
	file := filepath.Join(dir, "cap.pcap")
	proxy := name + "-proxy"
	c := startCapture(t, "--socket", name, "--listen", proxy, "-w", file, "--port", "5353")

	client, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name + "-client", Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	to := &net.UnixAddr{Name: proxy, Net: "unixgram"}
	msgs := []string{"one", "second datagram", strings.Repeat("x", 3000)}
	for _, m := range msgs {
		if _, err := client.WriteToUnix([]byte(m), to); err != nil {
			t.Fatal(err)
		}
		client.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 65536)
		n, _, err := client.ReadFromUnix(buf)
		if err != nil || string(buf[:n]) != strings.ToUpper(m) {
			t.Fatalf("reply to %.10q: %v %.10q", m, err, buf[:n])
		}
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, c.stderr)
	}
	out := tshark(t, "-r", file, "-T", "fields", "-e", "udp.srcport", "-e", "udp.dstport", "-e", "udp.payload")
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("tshark line %q", line)
		}
		b, _ := hex.DecodeString(f[2])
		if f[0] == "5353" {
			got = append(got, "< "+string(b))
		} else if f[1] == "5353" {
			got = append(got, "> "+string(b))
		}
	}
	var want []string
	for _, m := range msgs {
		want = append(want, "> "+m, "< "+strings.ToUpper(m))
	}
	if !slices.Equal(got, want) {
		t.Errorf("datagrams in the capture:\n%q\nwant\n%q", got, want)
	}
}

func TestSockCaptureSeqpacketKeepsMessageBoundaries(t *testing.T) {
	dir := t.TempDir()
	srvPath := filepath.Join(dir, "pkt.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: srvPath, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sizes := make(chan int, 10)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1<<20)
		for {
			n, err := c.Read(buf)
			if err != nil || n == 0 {
				close(sizes)
				return
			}
			sizes <- n
			c.Write(buf[:n])
		}
	}()
	proxy := filepath.Join(dir, "proxy.sock")
	c := startCapture(t, "--socket", srvPath, "--listen", proxy, "-w", filepath.Join(dir, "cap.pcap"))
	conn, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: proxy, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	sent := []int{1, 100_000, 7}
	for _, n := range sent {
		if _, err := conn.Write(bytes.Repeat([]byte{'m'}, n)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := conn.Read(buf); err != nil || got != n {
			t.Fatalf("echo of a %d-byte message: %d bytes, %v", n, got, err)
		}
	}
	conn.Close()
	var got []int
	for n := range sizes {
		got = append(got, n)
	}
	if !slices.Equal(got, sent) {
		t.Errorf("server received messages of %v bytes, sent %v", got, sent)
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, c.stderr)
	}
}

// TestSockCaptureForwardsFileDescriptors passes an open file through the
// proxy (stream socket, splice path) after plain data, the case splice(2)
// alone would lose.
func TestSockCaptureForwardsFileDescriptors(t *testing.T) {
	for _, network := range []string{"unix", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			dir := t.TempDir()
			srvPath := filepath.Join(dir, "fd.sock")
			secret := filepath.Join(dir, "passed.txt")
			os.WriteFile(secret, []byte("content of the passed file"), 0o600)
			got := make(chan string, 1)
			readPassed := func(oob []byte) {
				msgs, _ := syscall.ParseSocketControlMessage(oob)
				for _, m := range msgs {
					if fds, err := syscall.ParseUnixRights(&m); err == nil {
						for _, fd := range fds {
							f := os.NewFile(uintptr(fd), "passed")
							b, _ := io.ReadAll(f)
							f.Close()
							got <- string(b)
						}
					}
				}
			}
			if network == "unix" {
				ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: srvPath, Net: "unix"})
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				go func() {
					c, err := ln.AcceptUnix()
					if err != nil {
						return
					}
					defer c.Close()
					buf, oob := make([]byte, 4096), make([]byte, 1024)
					for {
						_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
						if err != nil {
							return
						}
						readPassed(oob[:oobn])
					}
				}()
			} else {
				srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: srvPath, Net: "unixgram"})
				if err != nil {
					t.Fatal(err)
				}
				defer srv.Close()
				go func() {
					buf, oob := make([]byte, 4096), make([]byte, 1024)
					for {
						_, oobn, _, _, err := srv.ReadMsgUnix(buf, oob)
						if err != nil {
							return
						}
						readPassed(oob[:oobn])
					}
				}()
			}
			proxy := filepath.Join(dir, "proxy.sock")
			c := startCapture(t, "--socket", srvPath, "--listen", proxy, "-w", filepath.Join(dir, "cap.pcap"))
			var uc *net.UnixConn
			var to *net.UnixAddr
			if network == "unix" {
				conn, err := net.Dial(network, proxy)
				if err != nil {
					t.Fatal(err)
				}
				uc = conn.(*net.UnixConn)
			} else {
				conn, err := net.ListenUnixgram(network, &net.UnixAddr{Name: filepath.Join(dir, "client.sock"), Net: network})
				if err != nil {
					t.Fatal(err)
				}
				uc, to = conn, &net.UnixAddr{Name: proxy, Net: network}
			}
			defer uc.Close()
			f, _ := os.Open(secret)
			defer f.Close()
			// Plain data first, queued together with the message carrying the
			// descriptor.
			if _, _, err := uc.WriteMsgUnix([]byte("plain data first"), nil, to); err != nil {
				t.Fatal(err)
			}
			if _, _, err := uc.WriteMsgUnix([]byte("here is a file"), syscall.UnixRights(int(f.Fd())), to); err != nil {
				t.Fatal(err)
			}
			select {
			case s := <-got:
				if s != "content of the passed file" {
					t.Errorf("server read %q from the passed descriptor", s)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no descriptor reached the server")
			}
			uc.Close()
			if code := c.stop(); code != 0 {
				t.Fatalf("exit %d: %s", code, c.stderr)
			}
		})
	}
}

func TestSockCaptureSIGINTMidTransferLeavesReadableFile(t *testing.T) {
	testenv.Need(t, "tshark", "tshark")
	dir := t.TempDir()
	srvPath := filepath.Join(dir, "sink.sock")
	flowing := startSink(t, srvPath)
	proxy := filepath.Join(dir, "proxy.sock")
	for _, format := range []string{"pcap", "pcapng"} {
		t.Run(format, func(t *testing.T) {
			file := filepath.Join(dir, "cap."+format)
			c := startCapture(t, "--socket", srvPath, "--listen", proxy, "-w", file)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			for range 3 {
				conn, err := net.Dial("unix", proxy)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() { // send until the proxy goes away
					defer wg.Done()
					defer conn.Close()
					// Paced, so that tshark has a few MB to read, not GBs.
					chunk := bytes.Repeat([]byte("stream "), 10000)
					for ctx.Err() == nil {
						if _, err := conn.Write(chunk); err != nil {
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			// Interrupt mid-transfer: every connection is through the proxy
			// and moving data.
			for range 3 {
				select {
				case <-flowing:
				case <-time.After(20 * time.Second):
					t.Fatalf("no data through the proxy: %s", c.stderr)
				}
			}
			if code := c.stop(); code != 0 {
				t.Fatalf("exit %d: %s", code, c.stderr)
			}
			cancel()
			wg.Wait()
			out := tshark(t, "-r", file, "-q", "-z", "conv,tcp")
			if strings.Count(out, "<->") != 3 {
				t.Errorf("expected 3 conversations in the interrupted capture:\n%s", out)
			}
			resets := tshark(t, "-r", file, "-Y", "tcp.flags.reset==1", "-T", "fields", "-e", "tcp.stream")
			if n := len(strings.Fields(resets)); n != 3 {
				t.Errorf("%d connections end in a reset, want 3 (open at SIGINT)", n)
			}
			if _, err := os.Lstat(proxy); !os.IsNotExist(err) {
				t.Errorf("proxy socket left behind: %v", err)
			}
		})
	}
}

func TestSockCaptureStreamsToStdoutPerPacket(t *testing.T) {
	// With --hexdump the bytes pass through user space; without, they are
	// spliced from the socket to the stdout pipe.
	for _, hexdump := range []bool{false, true} {
		t.Run(fmt.Sprintf("hexdump=%v", hexdump), func(t *testing.T) {
			dir := t.TempDir()
			srv := filepath.Join(dir, "srv.sock")
			startHTTPServer(t, srv)
			proxy := filepath.Join(dir, "proxy.sock")
			args := []string{"--socket", srv, "--listen", proxy, "-w", "-"}
			if hexdump {
				args = append(args, "--hexdump")
			}
			c := startCapture(t, args...)
			conn, err := net.Dial("unix", proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprint(conn, "GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
			reply, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil || !strings.HasPrefix(reply, "HTTP/1.1 200") {
				t.Fatalf("reply %q, %v", reply, err)
			}
			// Without stopping: request and reply are on stdout already.
			flushed := testenv.WaitUntil(t, 5*time.Second, func() bool {
				out := c.stdout.Bytes()
				return bytes.Contains(out, []byte("GET /live HTTP/1.1")) && bytes.Contains(out, []byte("uri=/live"))
			})
			if !flushed {
				t.Fatalf("request and reply not flushed to stdout (%d bytes there)", len(c.stdout.Bytes()))
			}
			hexLine := " 47 45 54 20 2f 6c 69 76 65 20 48 54 54 50 2f 31  GET /live HTTP/1\n"
			if hexdump && !testenv.WaitUntil(t, 5*time.Second, func() bool {
				return strings.Contains(c.stderr.String(), hexLine) && strings.Contains(c.stderr.String(), "\n< ")
			}) {
				t.Fatalf("--hexdump output lacks the request line or the reply:\n%s", c.stderr)
			}
			if !hexdump && strings.Contains(c.stderr.String(), hexLine) {
				t.Errorf("hexdump printed without --hexdump")
			}
			conn.Close()
			if code := c.stop(); code != 0 {
				t.Fatalf("exit %d", code)
			}
			live := filepath.Join(dir, "live.pcap")
			os.WriteFile(live, c.stdout.Bytes(), 0o600)
			if uri := strings.TrimSpace(tshark(t, "-r", live, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri")); uri != "/live" {
				t.Errorf("stdout capture holds request URIs %q, want /live", uri)
			}
		})
	}
}

func TestSockCaptureBadInput(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	startHTTPServer(t, srv)
	regular := filepath.Join(dir, "plain.txt")
	os.WriteFile(regular, nil, 0o600)
	link := filepath.Join(dir, "link.sock")
	os.Symlink(srv, link)
	out := filepath.Join(dir, "x.pcap")
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no socket", []string{"--listen", "p", "-w", out}, cli.ExitUsage, "--socket"},
		{"no mode", []string{"--socket", srv, "-w", out}, cli.ExitUsage, "--listen PROXY or --swap"},
		{"both modes", []string{"--socket", srv, "--swap", "--listen", "p", "-w", out}, cli.ExitUsage, "only one"},
		{"no output", []string{"--socket", srv, "--listen", "p"}, cli.ExitUsage, "-w FILE"},
		{"bad port", []string{"--socket", srv, "--listen", "p", "-w", out, "--port", "0"}, cli.ExitUsage, "--port 0"},
		{"bad format", []string{"--socket", srv, "--listen", "p", "-w", out, "--format", "xml"}, cli.ExitUsage, `--format "xml"`},
		// A path named on the command line that does not exist or is not
		// the kind expected is a usage error (exit 2).
		{"missing socket", []string{"--socket", filepath.Join(dir, "none.sock"), "--listen", "p", "-w", out}, cli.ExitUsage, "no such file"},
		{"not a socket", []string{"--socket", regular, "--listen", "p", "-w", out}, cli.ExitUsage, "not a UNIX socket (it is a regular file)"},
		{"swap a link", []string{"--socket", link, "--swap", "-w", out}, cli.ExitUsage, "--swap: " + link + " is a symbolic link to " + srv + ": swap the socket itself"},
		{"listen on itself", []string{"--socket", srv, "--listen", srv, "-w", out}, cli.ExitUsage, "is the socket to capture"},
		{"listen over a file", []string{"--socket", srv, "--listen", regular, "-w", out}, cli.ExitUsage, "--listen " + regular + ": already exists and is not a socket (it is a regular file)"},
		{"listen in a missing folder", []string{"--socket", srv, "--listen", filepath.Join(dir, "none", "p.sock"), "-w", out}, cli.ExitUsage, "--listen " + filepath.Join(dir, "none", "p.sock") + ": folder " + filepath.Join(dir, "none") + " does not exist"},
		{"swap abstract", []string{"--socket", "@nothing-here-opsctl", "--swap", "-w", out}, cli.ExitFailure, "@nothing-here-opsctl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A capture that starts although the input is bad is stopped
			// rather than left to run until the test times out.
			started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {},
				append([]string{"sock", "capture"}, tc.args...)...)
			if started || code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("served %v, exit %d, stderr %q; want exit %d mentioning %q", started, code, stderr, tc.code, tc.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("more than one line: %q", stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("capture file created on bad input")
				os.Remove(out) // not to blame the next case
			}
		})
	}
}

// TestSockCaptureBusyAbstractListenKeepsAnEarlierCapture: an abstract
// --listen name that another process serves is bad input, refused before
// -w truncates (and then removes) an earlier capture of the same name.
func TestSockCaptureBusyAbstractListenKeepsAnEarlierCapture(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	startHTTPServer(t, srv)
	busy := fmt.Sprintf("@opsctl-test-busy-%d", os.Getpid())
	ln, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	earlier := filepath.Join(dir, "earlier.pcap")
	if err := os.WriteFile(earlier, []byte("an earlier capture"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := testenv.Run(t, "", "sock", "capture", "--socket", srv, "--listen", busy, "-w", earlier)
	if code != cli.ExitFailure || !strings.Contains(stderr, "--listen "+busy) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Errorf("exit %d, stderr %q; want exit 1, one line naming --listen %s", code, stderr, busy)
	}
	if b, err := os.ReadFile(earlier); err != nil || string(b) != "an earlier capture" {
		t.Errorf("earlier capture file lost: %q, %v", b, err)
	}
}

// TestSockCaptureFileIsPrivateEvenWhenItExisted: the capture holds
// passwords; overwriting a world-readable file must not leave it readable.
func TestSockCaptureFileIsPrivateEvenWhenItExisted(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	startHTTPServer(t, srv)
	file := filepath.Join(dir, "cap.pcap")
	if err := os.WriteFile(file, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(file, 0o644)
	c := startCapture(t, "--socket", srv, "--listen", filepath.Join(dir, "proxy.sock"), "-w", file)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("capture file has mode %04o while capturing, want 0600", st.Mode().Perm())
	}
	if code := c.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, c.stderr)
	}
}

// TestSockCaptureWithoutRightsKeepsAnEarlierCapture: --swap or --listen by
// a user who may not write the folder of the socket it must create (sudo
// forgotten) fails in one line naming the folder, before -w truncates (and
// then removes) an earlier capture of that name.
func TestSockCaptureWithoutRightsKeepsAnEarlierCapture(t *testing.T) {
	testenv.NeedRoot(t)
	setpriv := testenv.Need(t, "setpriv", "util-linux")
	for _, mode := range []string{"swap", "listen"} {
		t.Run(mode, func(t *testing.T) {
			base, opsctl := opsctlForNobody(t)
			run := filepath.Join(base, "run") // root's: nobody cannot create a socket there
			out := filepath.Join(base, "out") // nobody's
			os.Mkdir(run, 0o755)
			os.Mkdir(out, 0o755)
			os.Chown(out, 65534, 65534)
			srv := filepath.Join(run, "app.sock")
			args := []string{"--swap"}
			if mode == "listen" {
				srv = filepath.Join(out, "app.sock")
				args = []string{"--listen", filepath.Join(run, "proxy.sock")}
			}
			startHTTPServer(t, srv)
			os.Chmod(srv, 0o666)
			before, _ := os.Stat(srv)
			earlier := filepath.Join(out, "app.pcap")
			if err := os.WriteFile(earlier, []byte("an earlier capture"), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(earlier, 65534, 65534)
			cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
				opsctl, "sock", "capture", "--socket", srv, "-w", earlier}, args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != cli.ExitFailure || !strings.Contains(stderr.String(), run) ||
				strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("exit %d, stderr %q; want exit 1, one line naming the folder %s", code, stderr.String(), run)
			}
			if b, err := os.ReadFile(earlier); err != nil || string(b) != "an earlier capture" {
				t.Errorf("earlier capture file lost: %q, %v", b, err)
			}
			if after, err := os.Stat(srv); err != nil || !os.SameFile(before, after) {
				t.Errorf("socket changed although the capture could not start")
			}
		})
	}
}

// opsctlForNobody is a folder of root's that every user may enter, base,
// holding a copy of opsctl that every user may run (the test binary's own
// folder may not be open to them).
func opsctlForNobody(t *testing.T) (base, opsctl string) {
	t.Helper()
	base = t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := os.ReadFile(testenv.Opsctl(t))
	if err != nil {
		t.Fatal(err)
	}
	opsctl = filepath.Join(base, "opsctl")
	if err := os.WriteFile(opsctl, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return base, opsctl
}

func TestSockCaptureDryRunChangesNothing(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	startHTTPServer(t, srv)
	out := filepath.Join(dir, "x.pcap")
	stdout, stderr, code := testenv.Run(t, "", "sock", "capture", "--socket", srv, "--swap", "-w", out, "--dry-run")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "+ link "+srv+" to "+srv+".opsctl-orig") || !strings.Contains(stdout, "move "+srv+".opsctl-orig back") {
		t.Errorf("dry run output:\n%s", stdout)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dry run changed the folder: %v", entries)
	}
}

// TestSockCaptureSecondStopLeavesAStalledReader: a reader of -w - that
// stops reading without going away holds the capture; the first SIGINT puts
// the socket back and waits for the capture to be finished, a second one
// ends opsctl without waiting (exit 1, saying the capture may be short).
func TestSockCaptureSecondStopLeavesAStalledReader(t *testing.T) {
	lc := startSwapToPipe(t)
	srv, before, cmd, pr, stderr, done := lc.srv, lc.before, lc.cmd, lc.pr, lc.stderr, lc.done
	// A client sends far more than stdout's pipe holds.
	conn, err := net.Dial("unix", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		fmt.Fprintf(conn, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 64<<20)
		conn.Write(make([]byte, 64<<20))
	}()
	// Wait until the stalled reader holds the capture: stdout's pipe full.
	pipeFull := testenv.WaitUntil(t, 20*time.Second, func() bool {
		exitedEarly(t, done, "before its stdout filled up", stderr)
		n, err := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
		if err != nil {
			t.Fatal(err)
		}
		return n >= 60<<10
	})
	if !pipeFull {
		t.Fatalf("stdout's pipe did not fill up: %s", stderr)
	}
	cmd.Process.Signal(os.Interrupt)
	// The socket is put back although the capture cannot be finished.
	restored := testenv.WaitUntil(t, 20*time.Second, func() bool {
		exitedEarly(t, done, "after the first SIGINT with a stalled reader", stderr)
		after, err := os.Stat(srv)
		return err == nil && os.SameFile(before, after)
	})
	if !restored {
		t.Fatalf("the socket was not put back after the first SIGINT: %s", stderr)
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("opsctl still waits for the stalled reader after a second SIGINT: %s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != cli.ExitFailure || !strings.Contains(stderr.String(), "stopped again while the capture was being finished: stdout may lack its last packets") {
		t.Errorf("exit %d, want 1 saying the capture may be short: %s", code, stderr)
	}
	wantSocketRestored(t, srv, before, stderr)
}

// exitedEarly fails the test when opsctl has exited (done closed) at a
// point where it must still run.
func exitedEarly(t *testing.T, done <-chan struct{}, when string, stderr fmt.Stringer) {
	t.Helper()
	select {
	case <-done:
		t.Fatalf("opsctl exited %s: %s", when, stderr)
	default:
	}
}

// The pcapng interface names the socket; a path given relative to where
// opsctl ran means nothing to whoever opens the file elsewhere.
func TestSockCapturePcapngNamesTheSocketByItsAbsolutePath(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "srv.sock")
	startHTTPServer(t, srv)
	cmd := exec.Command(testenv.Opsctl(t), "sock", "capture", "--socket", "srv.sock", "--listen", "proxy.sock", "-w", "x.pcapng")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	served := testenv.WaitUntil(t, 10*time.Second, func() bool {
		conn, err := net.Dial("unix", filepath.Join(dir, "proxy.sock"))
		if err != nil {
			return false
		}
		fmt.Fprint(conn, "GET /abs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		io.ReadAll(conn)
		conn.Close()
		return true
	})
	if !served {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("proxy never served: %s", stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	names := tshark(t, "-r", filepath.Join(dir, "x.pcapng"), "-T", "fields", "-e", "frame.interface_name", "-e", "frame.interface_description", "-c", "1")
	if fields := strings.Split(strings.TrimSpace(names), "\t"); len(fields) != 2 || fields[0] != srv || !strings.Contains(fields[1], srv) {
		t.Errorf("interface name and description %q, want both to name %s", names, srv)
	}
}

// wantSocketRestored: the original socket is back at srv (the same file as
// before the swap) and no moved-aside name is left; log is opsctl's stderr.
func wantSocketRestored(t *testing.T, srv string, before os.FileInfo, log fmt.Stringer) {
	t.Helper()
	if after, err := os.Stat(srv); err != nil || !os.SameFile(before, after) {
		t.Fatalf("original socket not restored: %v\n%s", err, log)
	}
	if _, err := os.Lstat(srv + ".opsctl-orig"); !os.IsNotExist(err) {
		t.Errorf("moved-aside name left behind: %v", err)
	}
}

// socketPathOfLength returns a path of exactly n bytes in a folder of its
// own under /tmp (t.TempDir's names are too long for the short ones).
func socketPathOfLength(t *testing.T, n int) string {
	t.Helper()
	base, err := os.MkdirTemp("/tmp", "opsctl-len-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	// base/ddd.../s.sock: a folder name that makes up the length.
	pad := n - len(base) - len("/") - len("/s.sock")
	if pad < 1 || pad > 255 {
		t.Fatalf("cannot make a %d-byte path under %s", n, base)
	}
	dir := filepath.Join(base, strings.Repeat("d", pad))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	if len(path) != n {
		t.Fatalf("made %d bytes, want %d", len(path), n)
	}
	return path
}

// TestSockCaptureSwapsSocketsUpToTheLongestPath: --swap bound its proxy at
// PATH.opsctl-new and forwarded to PATH.opsctl-orig, which fails with a
// bare "invalid argument" for a PATH over 96 bytes (108 is the size of
// sun_path, with its NUL). Any PATH a client can connect to (107 bytes) is
// now swapped; a longer one is refused in one line.
func TestSockCaptureSwapsSocketsUpToTheLongestPath(t *testing.T) {
	for _, n := range []int{97, 107} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			srv := socketPathOfLength(t, n)
			startHTTPServer(t, srv)
			before, _ := os.Stat(srv)
			file := filepath.Join(t.TempDir(), "cap.pcap")
			c := startCapture(t, "--socket", srv, "--swap", "-w", file)
			conn, err := net.Dial("unix", srv)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprint(conn, "GET /long HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			reply, _ := io.ReadAll(conn)
			conn.Close()
			if !bytes.Contains(reply, []byte("uri=/long")) {
				t.Errorf("reply through the swapped %d-byte socket: %q\n%s", n, reply, c.stderr)
			}
			if code := c.stop(); code != 0 {
				t.Fatalf("exit %d: %s", code, c.stderr)
			}
			wantSocketRestored(t, srv, before, c.stderr)
		})
	}
	t.Run("108", func(t *testing.T) {
		dir := filepath.Dir(socketPathOfLength(t, 107))
		srv := filepath.Join(dir, "s.sock1")
		// A server can bind a path too long for sun_path through a
		// descriptor of its folder.
		dirFD, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(dirFD)
		ln, err := net.Listen("unix", fmt.Sprintf("/proc/self/fd/%d/%s", dirFD, filepath.Base(srv)))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		short := filepath.Join(t.TempDir(), "short.sock")
		startHTTPServer(t, short)
		file := filepath.Join(t.TempDir(), "cap.pcap")
		for _, args := range [][]string{
			{"--socket", srv, "--swap"},
			{"--socket", srv, "--listen", filepath.Join(t.TempDir(), "p.sock")},
			{"--socket", short, "--listen", srv + "x"},
		} {
			started, code, stderr := runUntilReady(t, "capturing; stop with Ctrl-C", os.Interrupt, func() {},
				append([]string{"sock", "capture", "-w", file}, args...)...)
			want := srv + ": 108 bytes"
			if args[2] == "--listen" && args[1] == short {
				want = srv + "x: 109 bytes"
			}
			if started || code != cli.ExitUsage || !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("%q: served %v, exit %d, stderr %q; want exit 2, one line with %q", args, started, code, stderr, want)
			}
		}
		if _, err := os.Stat(file); !os.IsNotExist(err) {
			t.Errorf("capture file created for a refused path")
		}
	})
}

// TestSockCaptureSwapKeepsASocketTheServerMadeMeanwhile: a server that
// restarted during a --swap capture made a new socket at PATH. On exit
// opsctl must leave it, keep the old one at PATH.opsctl-orig and say so
// (exit 1), not move the old one back over the live server.
func TestSockCaptureSwapKeepsASocketTheServerMadeMeanwhile(t *testing.T) {
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	old := startHTTPServer(t, srv)
	before, _ := os.Stat(srv)
	c := startCapture(t, "--socket", srv, "--swap", "-w", filepath.Join(dir, "cap.pcap"))
	// The restart: closing, the server (Go's listener) removes PATH, which
	// is the proxy's socket now; then it binds PATH again.
	old.Close()
	if _, err := os.Lstat(srv); !os.IsNotExist(err) {
		t.Fatalf("the server's close did not remove %s: %v", srv, err)
	}
	startHTTPServer(t, srv)
	restarted, _ := os.Stat(srv)
	if code := c.stop(); code != cli.ExitFailure || !strings.Contains(c.stderr.String(), srv+" was replaced during the capture; the original socket was left at "+srv+".opsctl-orig") {
		t.Errorf("exit %d, want 1 saying the socket was replaced: %s", code, c.stderr)
	}
	if after, err := os.Stat(srv); err != nil || !os.SameFile(restarted, after) {
		t.Errorf("the restarted server's socket was not kept: %v", err)
	}
	if aside, err := os.Stat(srv + ".opsctl-orig"); err != nil || !os.SameFile(before, aside) {
		t.Errorf("the old socket is not at .opsctl-orig: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("folder holds %d entries, want app.sock, its leftover and cap.pcap: %v", len(entries), entries)
	}
}
