package imapauth

import (
	"context"
	"errors"
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

// dovecotWithAllCerts runs one Dovecot that serves a different certificate
// on each local address: 127.0.0.1 and .2 a good one, .3 one for another
// name, .4 an expired one, .5 a self-signed one.
func dovecotWithAllCerts(t *testing.T) (*dovecot, *testPKI) {
	t.Helper()
	pki := newTestPKI(t)
	good := pki.good(t)
	d := startDovecot(t, dovecotOptions{certs: map[string]pair{
		"":          good,
		"127.0.0.3": pki.wrongName(t),
		"127.0.0.4": pki.expired(t),
		"127.0.0.5": pki.selfSigned(t),
	}})
	return d, pki
}

func TestCheckCommandAgainstDovecot(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	ca := "--ca-file=" + pki.CAFile
	closedPort := freePort(t)
	emptyBundle := t.TempDir() + "/empty.pem"
	writePEM(t, emptyBundle, "CERTIFICATE", nil)

	type check struct {
		name   string
		env    []string
		stdin  string
		args   []string
		stdout string
		code   int
		stderr string // a part of the reason
	}
	alice, bob, carol := dovecotUsers["alice"], dovecotUsers["bob"], dovecotUsers["carol"]
	implicit := "--server=" + d.Implicit("127.0.0.1")
	checks := []check{
		{"good password with spaces", nil, "", []string{implicit, ca, "alice", alice}, "yes", 0, ""},
		{"good password on stdin", nil, alice + "\n", []string{implicit, ca, "--password-stdin", "alice"}, "yes", 0, ""},
		{"quotes and backslashes", nil, bob + "\n", []string{implicit, ca, "--password-stdin", "bob"}, "yes", 0, ""},
		{"quotes and backslashes in argv", nil, "", []string{implicit, ca, "bob", bob}, "yes", 0, ""},
		{"UTF-8 password", nil, carol, []string{implicit, ca, "--password-stdin", "carol"}, "yes", 0, ""},
		{"wrong password", nil, "", []string{implicit, ca, "alice", alice + "x"}, "no", 1, "AUTHENTICATIONFAILED"},
		{"password of another user", nil, "", []string{implicit, ca, "alice", bob}, "no", 1, "AUTHENTICATIONFAILED"},
		{"unknown user", nil, "", []string{implicit, ca, "mallory", alice}, "no", 1, "AUTHENTICATIONFAILED"},
		{"stdin newline is stripped only once", nil, alice + "\n\n", []string{implicit, ca, "--password-stdin", "alice"}, "no", 1, ""},
		{"stdin CRLF is a newline", nil, alice + "\r\n", []string{implicit, ca, "--password-stdin", "alice"}, "yes", 0, ""},
		{"stdin CR alone is no newline", nil, alice + "\r", []string{implicit, ca, "--password-stdin", "alice"}, "no", 1, "CR"},
		{"system roots with the test CA", []string{"SSL_CERT_FILE=" + pki.CAFile, "SSL_CERT_DIR=/nonexistent"}, "", []string{implicit, "alice", alice}, "yes", 0, ""},
		{"system roots without the test CA", []string{"SSL_CERT_FILE=" + emptyBundle, "SSL_CERT_DIR=/nonexistent"}, "", []string{implicit, "alice", alice}, "defer", 75, "not trusted"},
		{"host name checked", nil, "", []string{"--server=localhost:" + portOf(d.Implicit("x")), ca, "alice", alice}, "yes", 0, ""},
		{"--server-name in the certificate", nil, "", []string{implicit, ca, "--server-name=imap.test", "alice", alice}, "yes", 0, ""},
		{"--server-name not in the certificate", nil, "", []string{implicit, ca, "--server-name=mail.example.org", "alice", alice}, "defer", 75, "does not match"},
		{"wrong name", nil, "", []string{"--server=" + d.Implicit("127.0.0.3"), ca, "alice", alice}, "defer", 75, "does not match"},
		{"wrong name never says no", nil, "", []string{"--server=" + d.Implicit("127.0.0.3"), ca, "alice", "wrong"}, "defer", 75, "does not match"},
		{"expired", nil, "", []string{"--server=" + d.Implicit("127.0.0.4"), "--server-name=imap.test", ca, "alice", alice}, "defer", 75, "expired"},
		{"self-signed", nil, "", []string{"--server=" + d.Implicit("127.0.0.5"), "--server-name=imap.test", ca, "alice", alice}, "defer", 75, "not trusted"},
		{"closed port", nil, "", []string{"--server=127.0.0.1:" + strconv.Itoa(closedPort), ca, "alice", alice}, "defer", 75, "refused"},
		{"implicit TLS on the clear-text port", nil, "", []string{"--server=" + d.Plain("127.0.0.1"), ca, "alice", alice}, "defer", 75, "TLS"},
		{"STARTTLS", nil, "", []string{"--server=" + d.Plain("127.0.0.1"), "--tls=starttls", ca, "alice", alice}, "yes", 0, ""},
		{"STARTTLS wrong password", nil, "", []string{"--server=" + d.Plain("127.0.0.1"), "--tls=starttls", ca, "alice", "nope"}, "no", 1, "AUTHENTICATIONFAILED"},
		// From 127.0.0.1 to 127.0.0.2 Dovecot sees an insecure client and
		// advertises LOGINDISABLED before TLS; after STARTTLS it must not.
		{"STARTTLS where LOGINDISABLED before TLS", nil, "", []string{"--server=" + d.Plain("127.0.0.2"), "--tls=starttls", ca, "alice", alice}, "yes", 0, ""},
		{"STARTTLS with wrong name", nil, "", []string{"--server=" + d.Plain("127.0.0.3"), "--tls=starttls", ca, "alice", alice}, "defer", 75, "does not match"},
		{"STARTTLS expired", nil, "", []string{"--server=" + d.Plain("127.0.0.4"), "--tls=starttls", "--server-name=imap.test", ca, "alice", alice}, "defer", 75, "expired"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			res := runOpsctl(t, c.env, c.stdin, append([]string{"imap-auth", "check", "--timeout=5s"}, c.args...)...)
			if strings.TrimSpace(res.stdout) != c.stdout || res.code != c.code {
				t.Fatalf("got %q exit %d, want %q exit %d; stderr: %s", res.stdout, res.code, c.stdout, c.code, res.stderr)
			}
			if res.stdout != c.stdout+"\n" {
				t.Errorf("stdout %q, want exactly %q and a newline", res.stdout, c.stdout)
			}
			if !strings.Contains(res.stderr, c.stderr) {
				t.Errorf("stderr %q does not give the reason %q", res.stderr, c.stderr)
			}
			for _, password := range dovecotUsers {
				if strings.Contains(res.stderr, password) {
					t.Errorf("a password appears on stderr: %s", res.stderr)
				}
			}
		})
	}
	if log := d.Log(t); !strings.Contains(log, "Login: user=<bob>") || !strings.Contains(log, "Login: user=<carol>") {
		t.Errorf("Dovecot did not log the logins the checks reported:\n%s", log)
	}
}

func TestCheckSendsNoLoginToAServerWithoutSTARTTLS(t *testing.T) {
	d := startDovecot(t, dovecotOptions{noSSL: true})
	// 127.0.0.1 -> 127.0.0.1 counts as secure for Dovecot, so a LOGIN sent
	// in clear text would succeed there: only a defer shows none was sent.
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		res := runOpsctl(t, nil, "", "imap-auth", "check", "--tls=starttls", "--server="+d.Plain(host), "alice", dovecotUsers["alice"])
		if res.stdout != "defer\n" || res.code != 75 || !strings.Contains(res.stderr, "STARTTLS") {
			t.Fatalf("%s: got %q exit %d (%s), want defer naming STARTTLS", host, res.stdout, res.code, res.stderr)
		}
	}
	log := d.Log(t)
	if strings.Contains(log, "user=<alice>") || strings.Contains(log, "passwd-file(alice") {
		t.Fatalf("a login reached Dovecot without TLS:\n%s", log)
	}
	// The readiness probe only talks to 127.0.0.1: this line is ours.
	// Dovecot writes it when the login process notices the close, which
	// may be after our process exited: give its log a moment.
	sawOurs := testenv.WaitUntil(t, 10*time.Second, func() bool {
		log = d.Log(t)
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "no auth attempts") && strings.Contains(line, "lip=127.0.0.2") {
				return true
			}
		}
		return false
	})
	if !sawOurs {
		t.Fatalf("Dovecot did not log our connection to 127.0.0.2 as one without auth attempts:\n%s", log)
	}
}

func TestCheckCommandUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--server=imap.test", "alice"}, "no password"},
		{[]string{"--server=imap.test", "--password-stdin", "alice", "pw"}, "both given"},
		{[]string{"alice", "pw"}, "--server"},
		{[]string{"--server=imap.test", "--tls=ssl", "alice", "pw"}, "--tls"},
		{[]string{"--server=imap.test", "--timeout=0s", "alice", "pw"}, "--timeout"},
		{[]string{"--server=imap.test", "--ca-file=/nonexistent.pem", "alice", "pw"}, "--ca-file"},
		{[]string{"--server=imap.test:99999", "alice", "pw"}, "--server"},
		{[]string{"--server=imap.test"}, "arg"},
	}
	for _, c := range cases {
		res := runOpsctl(t, nil, "", append([]string{"imap-auth", "check"}, c.args...)...)
		if res.code != 2 || res.stdout != "" || !strings.Contains(res.stderr, c.want) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
			t.Errorf("%v: exit %d stdout %q stderr %q; want exit 2 and one line naming %s", c.args, res.code, res.stdout, res.stderr, c.want)
		}
	}
}

func portOf(addr string) string {
	i := strings.LastIndex(addr, ":")
	return addr[i+1:]
}

// TestFilesNamedOnTheCommandLineFollowTheExitCodeRule: a --ca-file or
// --socket that does not exist (or whose folder does not), or that is not
// the kind of file expected, is a usage error (exit 2, one line naming the
// flag), found without reading it: a FIFO used to block the check until
// its time-out. A CA file that is there but holds no certificate is a
// failure: defer and 75 for check (its exit 1 means "wrong password"),
// exit 1 for serve.
func TestFilesNamedOnTheCommandLineFollowTheExitCodeRule(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "ca.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "notes.txt")
	regular := filepath.Join(dir, "file")
	for _, path := range []string{notPEM, regular} {
		if err := os.WriteFile(path, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := []string{"imap-auth", "check", "--server", "127.0.0.1:1", "--timeout", "2s"}
	serve := []string{"imap-auth", "serve", "--server", "127.0.0.1:1", "--warm", "0"}
	sock := filepath.Join(dir, "auth.sock")
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"check, missing CA file", append(check, "--ca-file", filepath.Join(dir, "none.pem"), "alice", "pw"), 2, "", "--ca-file"},
		{"check, CA file in a missing folder", append(check, "--ca-file", filepath.Join(dir, "none", "ca.pem"), "alice", "pw"), 2, "", "--ca-file"},
		{"check, CA file is a folder", append(check, "--ca-file", dir, "alice", "pw"), 2, "", "not a regular file (a folder)"},
		{"check, CA file is a FIFO", append(check, "--ca-file", fifo, "alice", "pw"), 2, "", "not a regular file (a FIFO)"},
		{"check, CA file is a device", append(check, "--ca-file", "/dev/zero", "alice", "pw"), 2, "", "not a regular file (a device)"},
		{"check, CA file without a certificate", append(check, "--ca-file", notPEM, "alice", "pw"), 75, "defer\n", "no PEM certificate"},
		{"serve, CA file without a certificate", append(serve, "--socket", sock, "--ca-file", notPEM), 1, "", "no PEM certificate"},
		{"serve, CA file is a FIFO", append(serve, "--socket", sock, "--ca-file", fifo), 2, "", "--ca-file"},
		{"serve, socket in a missing folder", append(serve, "--socket", filepath.Join(dir, "none", "auth.sock")), 2, "", "does not exist"},
		{"serve, socket path is a file", append(serve, "--socket", regular), 2, "", "exists and is not a socket"},
		{"serve, socket path is a folder", append(serve, "--socket", dir), 2, "", "exists and is not a socket"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, testenv.Opsctl(t), c.args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("%s: still running after 10s", c.name)
			continue
		}
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		}
		if code != c.code || stdout.String() != c.stdout || !strings.Contains(stderr.String(), c.stderr) ||
			strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d, stdout %q and one line naming %q",
				c.name, code, stdout.String(), stderr.String(), c.code, c.stdout, c.stderr)
		}
	}
	if data, _ := os.ReadFile(regular); string(data) != "not a certificate\n" {
		t.Error("serve changed the file named by --socket")
	}
}
