package imapauth

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// daemonProcess is a daemon a test started: `opsctl imap-auth serve`, or
// Exim.
type daemonProcess struct {
	cmd    *exec.Cmd
	stderr *testenv.SyncBuffer
	exited chan struct{}
}

// startServe starts the daemon through cmd (already set up; its stderr is
// collected) and stops it at the end of the test if the test did not.
func startServe(t *testing.T, cmd *exec.Cmd) *daemonProcess {
	t.Helper()
	p := &daemonProcess{cmd: cmd, stderr: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

func waitForSocket(t *testing.T, p *daemonProcess, path string) {
	t.Helper()
	served := testenv.WaitUntil(t, 10*time.Second, func() bool {
		if conn, err := net.Dial("unix", path); err == nil {
			conn.Close()
			return true
		}
		select {
		case <-p.exited:
			t.Fatalf("serve exited: %s", p.stderr.String())
		default:
		}
		return false
	})
	if !served {
		t.Fatalf("socket %s not served within 10s: %s", path, p.stderr.String())
	}
}

// serveDovecot starts `opsctl imap-auth serve` with args on a socket in a
// temporary folder that other uids (Exim's) can enter, asking d (the first
// good address) with the CA of pki, and waits until it serves.
func serveDovecot(t *testing.T, d *dovecot, pki *testPKI, args ...string) (socket string, p *daemonProcess) {
	t.Helper()
	socket = filepath.Join(worldReadableTempDir(t), "imap-auth.sock")
	cmd := exec.Command(testenv.Opsctl(t), append([]string{"imap-auth", "serve", "--socket", socket,
		"--server", d.Implicit("127.0.0.1"), "--ca-file", pki.CAFile}, args...)...)
	p = startServe(t, cmd)
	waitForSocket(t, p, socket)
	return socket, p
}

func TestServeCommandAgainstDovecot(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	socket, p := serveDovecot(t, d, pki, "--metrics-listen", metricsAddr)
	cmd := p.cmd

	steps := []struct{ name, raw, want string }{
		{"good password with spaces", request("alice", dovecotUsers["alice"]), "yes"},
		{"quotes and backslashes", request("bob", dovecotUsers["bob"]), "yes"},
		{"UTF-8", request("carol", dovecotUsers["carol"]), "yes"},
		{"wrong password", request("alice", "wrong"), "no"},
		{"unknown user", request("mallory", "x"), "no"},
		{"malformed", "alice secret\n", "defer"},
	}
	for _, step := range steps {
		if got := ask(t, socket, step.raw); got != step.want {
			t.Errorf("%s: %q, want %q", step.name, got, step.want)
		}
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metrics := string(body)
	for _, want := range []string{
		`opsctl_imap_auth_requests_total{result="yes",source="imap"} 3`,
		`opsctl_imap_auth_requests_total{result="no",source="imap"} 2`,
		`opsctl_imap_auth_requests_total{result="defer",source="local"} 1`,
		`opsctl_imap_auth_malformed_requests_total 1`,
		`opsctl_imap_auth_request_duration_seconds_count{result="yes"} 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for user, password := range dovecotUsers {
		if strings.Contains(metrics, password) || strings.Contains(p.stderr.String(), password) {
			t.Errorf("the password of %s appears in metrics or log", user)
		}
	}

	// SIGTERM: exit 0, socket removed.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM: %s", code, p.stderr.String())
	}
	if _, err := os.Lstat(socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind after SIGTERM: %v", err)
	}
}

func TestServeCommandCacheSparesIMAPUntilALoginFails(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	socket, _ := serveDovecot(t, d, pki, "--cache-ttl", "1m")
	logins := func() int { return strings.Count(d.Log(t), "Login: user=<alice>") }
	steps := []struct {
		password, want string
		dovecotLogins  int
	}{
		{dovecotUsers["alice"], "yes", 1},
		{dovecotUsers["alice"], "yes", 1}, // from the cache
		{"wrong", "no", 1},                // asks Dovecot, which refuses
		{dovecotUsers["alice"], "yes", 2}, // the failure emptied the cache
		{dovecotUsers["alice"], "yes", 2},
	}
	for i, step := range steps {
		if got := ask(t, socket, request("alice", step.password)); got != step.want {
			t.Fatalf("step %d: %q, want %q", i, got, step.want)
		}
		// Dovecot logs a login asynchronously: wait for the logins expected
		// so far; one too many shows up here or, late, at the next step.
		waitFor(t, func() bool { return logins() >= step.dovecotLogins })
		if n := logins(); n != step.dovecotLogins {
			t.Fatalf("step %d: Dovecot logged %d logins of alice, want %d", i, n, step.dovecotLogins)
		}
	}
}

func TestServeCommandRefusesUIDsNotAllowed(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	socket, p := serveDovecot(t, d, pki, "--allow-uid", "nobody", "--allow-uid", "4242")
	if got, err := eximSees(socket, request("alice", dovecotUsers["alice"])); got != "defer" {
		t.Fatalf("root, not in --allow-uid: Exim would see %q (%v); want defer (an empty reply is a 535 in Exim)", got, err)
	}
	// The log line may come just after the connection is closed.
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "uid not allowed") })
	if strings.Contains(d.Log(t), "user=<alice>") {
		t.Error("a refused client's request reached Dovecot")
	}
}

// TestServeCommandUnderSocketActivation passes the listening socket as
// systemd does: fd 3, LISTEN_FDS=1 and LISTEN_PID the daemon's own pid.
func TestServeCommandUnderSocketActivation(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	sh := testenv.Need(t, "sh", "dash")
	socket := filepath.Join(t.TempDir(), "activated.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // systemd keeps the path; so do we
	defer ln.Close()
	file, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	cmd := exec.Command(sh, "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"`, "sh", testenv.Opsctl(t),
		"imap-auth", "serve", "--server", d.Implicit("127.0.0.1"), "--ca-file", pki.CAFile)
	cmd.ExtraFiles = []*os.File{file}
	p := startServe(t, cmd)
	// Ask only once the daemon said it serves: until then the kernel queues
	// connections on the socket we created, which proves nothing.
	waitForLog(t, p, "serving")
	ln.Close() // only the daemon's copy is left
	if got := ask(t, socket, request("alice", dovecotUsers["alice"])); got != "yes" {
		t.Fatalf("activated daemon answered %q: %s", got, p.stderr.String())
	}
	line, _ := bufio.NewReader(strings.NewReader(p.stderr.String())).ReadString('\n')
	if !strings.Contains(line, "activated.sock") {
		t.Errorf("first log line does not name the activated socket: %s", line)
	}
}

// copyExecutable copies the program at src into dir with mode 0755, for a
// process that runs as another user and cannot reach the original.
func copyExecutable(t *testing.T, src, dir string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// askAs sends one request to the socket at path from a process running
// as uid and returns what Exim would see (see eximSees): the test binary runs
// TestHelperAskAsAnotherUser with the socket in its environment.
func askAs(t *testing.T, testBinary string, uid uint32, path, raw string) string {
	t.Helper()
	cmd := exec.Command(testBinary, "-test.run=^TestHelperAskAsAnotherUser$")
	cmd.Env = append(os.Environ(), "OPSCTL_TEST_ASK_SOCKET="+path, "OPSCTL_TEST_ASK_REQUEST="+raw)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
	}
	_, reply, ok := strings.Cut(string(out), "reply=")
	if !ok {
		t.Fatalf("client as uid %d printed no reply:\n%s", uid, out)
	}
	reply, _, _ = strings.Cut(reply, "\n")
	return reply
}

// TestHelperAskAsAnotherUser is the client process of askAs.
func TestHelperAskAsAnotherUser(t *testing.T) {
	path := os.Getenv("OPSCTL_TEST_ASK_SOCKET")
	if path == "" {
		t.Skip("helper process of askAs, not a test by itself")
	}
	reply, err := eximSees(path, os.Getenv("OPSCTL_TEST_ASK_REQUEST"))
	fmt.Printf("reply=%s\n(%v)\n", reply, err)
}

// TestServeCommandDefaultAllowsRootAndOwnUIDOnly runs the daemon as nobody
// without --allow-uid and asks as root, as nobody and as a third uid: only
// the third is refused.
func TestServeCommandDefaultAllowsRootAndOwnUIDOnly(t *testing.T) {
	testenv.NeedRoot(t)
	const nobody, stranger = 65534, 65533
	dir := worldReadableTempDir(t)
	if err := os.Chmod(dir, 0o777); err != nil { // the daemon (nobody) creates its socket here
		t.Fatal(err)
	}
	opsctl := copyExecutable(t, testenv.Opsctl(t), dir)
	testBinary := copyExecutable(t, os.Args[0], dir)
	socket := filepath.Join(dir, "imap-auth.sock")
	// Nothing listens on port 1: every request answered gets defer.
	cmd := exec.Command(opsctl, "imap-auth", "serve", "--socket", socket, "--server", "127.0.0.1:1", "--warm", "0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: 65534}}
	p := startServe(t, cmd)
	waitForSocket(t, p, socket)

	raw := request("alice", "pw")
	if got := ask(t, socket, raw); got != "defer" {
		t.Errorf("root got %q, want an answer (defer)", got)
	}
	if got := askAs(t, testBinary, nobody, socket, raw); got != "defer" {
		t.Errorf("the daemon's own uid got %q, want an answer (defer)", got)
	}
	// A refused client gets defer too: the log tells them apart.
	if strings.Contains(p.stderr.String(), "uid not allowed") {
		t.Errorf("root or the daemon's own uid was refused:\n%s", p.stderr)
	}
	if got := askAs(t, testBinary, stranger, socket, raw); got != "defer" {
		t.Errorf("uid %d got %q, want defer", stranger, got)
	}
	waitFor(t, func() bool { return strings.Contains(p.stderr.String(), "uid not allowed") })
}
