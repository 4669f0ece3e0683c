package sockspy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/testenv"
)

// TestProxyRecordsConcurrentEchoConnections runs the proxy in-process (so
// the race detector sees it) against an echo server, in both the splice
// and the copy mode, and reassembles every connection from the file.
func TestProxyRecordsConcurrentEchoConnections(t *testing.T) {
	for _, copyMode := range []bool{false, true} {
		name := "splice"
		if copyMode {
			name = "copy"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			srvPath := filepath.Join(dir, "echo.sock")
			serveStream(t, srvPath, func(c net.Conn) { io.Copy(c, c); c.Close() })
			plan, capture, out := proxyToFile(t, dir, srvPath)
			stop := runProxy(&Proxy{Plan: plan, Capture: capture, Copy: copyMode})

			const conns = 6
			sent := make([][]byte, conns)
			var wg sync.WaitGroup
			for i := range conns {
				sent[i] = make([]byte, 1000+i*150_000)
				rand.Read(sent[i])
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := net.Dial("unix", plan.Listen)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					go func() {
						for rest := sent[i]; len(rest) > 0; {
							n := min(len(rest), 1+len(rest)/3)
							c.Write(rest[:n])
							rest = rest[n:]
						}
						c.(*net.UnixConn).CloseWrite()
					}()
					c.SetReadDeadline(time.Now().Add(20 * time.Second))
					got, err := io.ReadAll(c)
					if err != nil || !bytes.Equal(got, sent[i]) {
						t.Errorf("connection %d: echo of %d bytes came back as %d: %v", i, len(sent[i]), len(got), err)
					}
				}()
			}
			wg.Wait()
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if err := capture.Close(); err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(out.Name())
			segs := readSegments(t, raw)
			matched := map[int]bool{}
			for port := uint16(firstClientPort); port < firstClientPort+conns; port++ {
				toServer, toClient := reassemble(t, segs, port)
				if !bytes.Equal(toServer, toClient) {
					t.Errorf("port %d: %d bytes to the server, %d echoed", port, len(toServer), len(toClient))
				}
				for i := range sent {
					if bytes.Equal(sent[i], toServer) {
						matched[i] = true
					}
				}
			}
			if len(matched) != conns {
				t.Errorf("%d of %d connections found in the capture", len(matched), conns)
			}
			if _, err := os.Lstat(plan.Listen); !os.IsNotExist(err) {
				t.Errorf("proxy socket left behind")
			}
		})
	}
}

// panicWriter stands for any bug that panics on a connection's goroutine.
type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("injected: a bug on a connection goroutine") }

// TestSwapPutsTheSocketBackWhenAConnectionGoroutinePanics runs a swapping
// proxy in a child process whose connection goroutine panics: the process
// dies, as it should, but the original socket must be back at its path.
func TestSwapPutsTheSocketBackWhenAConnectionGoroutinePanics(t *testing.T) {
	if sock := os.Getenv("SOCKSPY_TEST_PANIC_SOCKET"); sock != "" {
		plan, err := NewPlan(Config{Socket: sock, Swap: true})
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		p := &Proxy{Plan: plan, Hexdump: NewHexdump(panicWriter{}), Ready: func() { fmt.Println("ready") }}
		p.Run(context.Background())
		os.Exit(4) // not reached: Run serves until the panic
	}
	dir := t.TempDir()
	srv := filepath.Join(dir, "app.sock")
	serveStream(t, srv, func(c net.Conn) { io.Copy(io.Discard, c); c.Close() })
	before, _ := os.Stat(srv)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSwapPutsTheSocketBackWhenAConnectionGoroutinePanics$")
	cmd.Env = append(os.Environ(), "SOCKSPY_TEST_PANIC_SOCKET="+srv)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("child did not start: %q %v", line, err)
	}
	conn, err := net.Dial("unix", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("boom"))
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err == nil || !strings.Contains(stderr.String(), "injected") {
		t.Fatalf("child did not panic: %v\n%s", err, stderr.String())
	}
	if after, err := os.Stat(srv); err != nil || !os.SameFile(before, after) {
		t.Fatalf("original socket not back at %s after the panic: %v", srv, err)
	}
	if _, err := os.Lstat(srv + asideSuffix); !os.IsNotExist(err) {
		t.Errorf("moved-aside name left behind: %v", err)
	}
}

// TestProxyWaitsForAServerWhoseBacklogIsFull: a client connecting directly
// to a busy server waits in connect(2). Through the proxy it must wait
// too, not be dropped because the proxy's non-blocking connect got EAGAIN.
func TestProxyWaitsForAServerWhoseBacklogIsFull(t *testing.T) {
	dir := t.TempDir()
	srvPath := filepath.Join(dir, "busy.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: srvPath}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // one pending connection at most
		t.Fatal(err)
	}
	lf := os.NewFile(uintptr(fd), srvPath)
	ln, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	plan, err := NewPlan(Config{Socket: srvPath, Listen: filepath.Join(dir, "proxy.sock")})
	if err != nil {
		t.Fatal(err)
	}
	capture, err := NewCapture(io.Discard, CaptureOptions{Format: FormatPcap})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	stop := runProxy(&Proxy{
		Plan: plan, Capture: capture,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	const clients = 3
	replies := make(chan string, clients)
	for i := range clients {
		c, err := net.Dial("unix", plan.Listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "client %d\n", i)
		go func() {
			line, _ := bufio.NewReader(c).ReadString('\n')
			replies <- line
		}()
	}
	// One proxied connection fills the backlog; the others must be waiting
	// (or, the defect, dropped) before the server starts accepting.
	waiting := testenv.WaitUntil(t, 20*time.Second, func() bool {
		out := logs.String()
		if strings.Contains(out, "client dropped") {
			t.Fatalf("proxy dropped a client of a busy server:\n%s", out)
		}
		return strings.Count(out, "backlog is full") >= clients-1
	})
	if !waiting {
		t.Fatalf("the proxy's connects never met the full backlog:\n%s", logs)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	got := map[string]bool{}
	for range clients {
		select {
		case line := <-replies:
			got[line] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("echoes %v; log:\n%s", got, logs)
		}
	}
	for i := range clients {
		if !got[fmt.Sprintf("client %d\n", i)] {
			t.Errorf("client %d got no echo (echoes %v); log:\n%s", i, got, logs)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	capture.Close()
}

// TestProxyLetsGoOfIdleUnnamedDatagramClients: every process that writes
// to a datagram socket like /dev/log from an unnamed socket is a client
// of its own, with an upstream socket and a goroutine. Replies can never
// reach such a client, so once it is idle they must be let go, or a long
// capture grows by one socket per process that ever logged.
func TestProxyLetsGoOfIdleUnnamedDatagramClients(t *testing.T) {
	dir := t.TempDir()
	srvPath := filepath.Join(dir, "log.sock")
	received := make(chan string, 10)
	serveDatagrams(t, srvPath, func(_ *net.UnixConn, msg []byte, _ *net.UnixAddr) { received <- string(msg) })
	plan, err := NewPlan(Config{Socket: srvPath, Listen: filepath.Join(dir, "proxy.sock")})
	if err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	stop := runProxy(&Proxy{
		Plan: plan, Hexdump: NewHexdump(io.Discard),
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
		now:    func() time.Time { return time.Unix(0, clock.Load()) },
	})

	client, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: plan.Listen, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	send := func(msg string) {
		t.Helper()
		if _, err := client.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-received:
			if got != msg {
				t.Fatalf("server received %q, want %q", got, msg)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%q never reached the server:\n%s", msg, logs)
		}
	}
	send("first")
	send("soon after")
	if n := strings.Count(logs.String(), `msg="datagram client"`); n != 1 {
		t.Fatalf("%d clients for one sender still active, want 1:\n%s", n, logs)
	}
	clock.Add(int64(2 * unnamedIdle))
	send("much later")
	if n := strings.Count(logs.String(), `msg="datagram client"`); n != 2 {
		t.Errorf("an unnamed client idle for %v was kept (%d clients, want 2: the old one let go):\n%s", 2*unnamedIdle, n, logs)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// listenFor binds the proxy's socket of a plan serving at listen (a path
// or @name) with the given mode, as Run does, and undoes it at the end of
// the test.
func listenFor(t *testing.T, typ SocketType, listen string, mode os.FileMode) io.Closer {
	t.Helper()
	p := &Proxy{Plan: &Plan{Type: typ, Listen: listen, Target: "unused", Mode: mode, UID: os.Getuid(), GID: os.Getgid(), HasOwner: true}}
	ln, b, err := p.listen()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		if b != nil {
			p.unbind(b)
			b.close()
		}
	})
	return ln
}

// TestProxySocketAppearsWithTheOriginalsMode: the proxy's socket file must
// never be reachable at its path with other permissions than the
// original's: bound with the umask's (srwxr-xr-x, or srwxrwxrwx under umask
// 0), any local user could reach, say, docker.sock through the proxy until
// the chmod. It is made in a private folder and moved into place with its
// mode; the umask does not change it.
func TestProxySocketAppearsWithTheOriginalsMode(t *testing.T) {
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	for _, typ := range []SocketType{Stream, SeqPacket, Datagram} {
		t.Run(typ.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "proxy.sock")
			listenFor(t, typ, path, 0o666)
			st, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o666 {
				t.Errorf("proxy socket has mode %v, want the original's 0666 whatever the umask", st.Mode())
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("folder holds %v, want the proxy socket alone (no private folder left)", entries)
			}
		})
	}
}

// TestDatagramSocketPassesCredentialsFromTheStart: a datagram sent as soon
// as the proxy's socket exists must carry its sender's credentials; one
// queued before SO_PASSCRED was set came as pid 0, uid 65534, and was taken
// for a client of its own.
func TestDatagramSocketPassesCredentialsFromTheStart(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "proxy.sock")
		if abstract {
			path = fmt.Sprintf("@opsctl-test-passcred-%d", os.Getpid())
		}
		ln := listenFor(t, Datagram, path, 0o600)
		client, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		if _, err := client.Write([]byte("first")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		_, oobn, _, _, err := ln.(*net.UnixConn).ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: the first datagram came with %d control messages (%v), want its credentials", path, len(msgs), err)
		}
		cred, err := unix.ParseUnixCredentials(&msgs[0])
		if err != nil || int(cred.Pid) != os.Getpid() {
			t.Fatalf("%s: the first datagram came from pid %v (%v), want %d", path, cred, err, os.Getpid())
		}
	}
}

// TestDatagramClientsOfAFileSocketGetTheirReplies: the proxy's datagram
// socket is bound under /proc/self/fd/N/NAME and forwards to the original
// through a descriptor (swap): a client connected to PATH, the usual way,
// still gets the server's replies, in both modes.
func TestDatagramClientsOfAFileSocketGetTheirReplies(t *testing.T) {
	for _, swap := range []bool{false, true} {
		t.Run(fmt.Sprintf("swap=%v", swap), func(t *testing.T) {
			dir := t.TempDir()
			srvPath := filepath.Join(dir, "echo.sock")
			serveDatagrams(t, srvPath, func(srv *net.UnixConn, msg []byte, from *net.UnixAddr) {
				srv.WriteToUnix(bytes.ToUpper(msg), from)
			})
			cfg := Config{Socket: srvPath, Swap: swap}
			if !swap {
				cfg.Listen = filepath.Join(dir, "proxy.sock")
			}
			plan, err := NewPlan(cfg)
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(srvPath)
			stop := runProxy(&Proxy{Plan: plan})
			client, err := net.DialUnix("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "client.sock"), Net: "unixgram"},
				&net.UnixAddr{Name: plan.Listen, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			client.Write([]byte("hello"))
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			n, err := client.Read(buf)
			if err != nil || string(buf[:n]) != "HELLO" {
				t.Errorf("reply %q, %v; want HELLO", buf[:n], err)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if after, err := os.Stat(srvPath); err != nil || !os.SameFile(before, after) {
				t.Errorf("the server's socket is not at %s after the capture: %v", srvPath, err)
			}
		})
	}
}

// openDescriptors counts this process's open file descriptors.
func openDescriptors(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestProxyHoldsABoundedNumberOfDatagramClients: each sender address of a
// datagram socket got an upstream socket, a goroutine and a 1 MiB buffer,
// and a named one was never let go. Any user who may send to the proxy
// (a capture of /dev/log, mode 0666) sent one byte each from 20,000
// autobound sockets: opsctl (root) then held 19,835 descriptors, 20 GB of
// address space and 200 MB of memory, for good. Now at most
// maxDatagramClients (1,024) are held; the one seen least recently is let
// go for a new one, and the latest still get their replies.
func TestProxyHoldsABoundedNumberOfDatagramClients(t *testing.T) {
	const senders = 3000
	dir := t.TempDir()
	srvPath := filepath.Join(dir, "echo.sock")
	var received atomic.Int64
	serveDatagrams(t, srvPath, func(srv *net.UnixConn, msg []byte, from *net.UnixAddr) {
		received.Add(1)
		srv.WriteToUnix(bytes.ToUpper(msg), from)
	})
	plan, err := NewPlan(Config{Socket: srvPath, Listen: filepath.Join(dir, "proxy.sock")})
	if err != nil {
		t.Fatal(err)
	}
	stop := runProxy(&Proxy{Plan: plan})
	before := openDescriptors(t)
	proxy := &net.UnixAddr{Name: plan.Listen, Net: "unixgram"}
	for range senders {
		// An autobound address of its own each: a new client each time.
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.WriteToUnix([]byte("x"), proxy); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if !testenv.WaitUntil(t, 60*time.Second, func() bool { return received.Load() == senders }) {
		t.Fatalf("the server received %d of %d datagrams", received.Load(), senders)
	}
	if held := openDescriptors(t) - before; held > 1024+16 {
		t.Errorf("after %d senders the process holds %d more descriptors; want at most 1,024 datagram clients", senders, held)
	}
	last, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer last.Close()
	last.WriteToUnix([]byte("still served"), proxy)
	last.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64)
	if n, _, err := last.ReadFromUnix(buf); err != nil || string(buf[:n]) != "STILL SERVED" {
		t.Errorf("reply %q, %v; want STILL SERVED", buf[:n], err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
