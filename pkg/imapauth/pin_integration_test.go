package imapauth

import (
	"encoding/json"
	"net/smtp"
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

// The pinning of issue 21 with the real peers: Dovecot serving the test
// PKI's certificates (dovecotWithAllCerts), the opsctl binary, openssl for
// the reference pins, Exim in front of serve.

// opensslPin is the pin of the PEM certificate in certFile as the
// pipeline of docs/imap-auth.md computes it with openssl.
func opensslPin(t *testing.T, certFile string) string {
	t.Helper()
	openssl := testenv.Need(t, "openssl", "openssl")
	sh := testenv.Need(t, "sh", "dash")
	script := `"$1" x509 -pubkey -noout < "$2" | "$1" pkey -pubin -outform der | "$1" dgst -sha256 -binary | base64`
	out, err := exec.Command(sh, "-c", script, "sh", openssl, certFile).Output()
	pin := strings.TrimSpace(string(out))
	if err != nil || len(pin) != 44 {
		t.Fatalf("openssl pipeline on %s: %q, %v", certFile, out, err)
	}
	return pin
}

// testPins are the pins of the certificates of dovecotWithAllCerts, as
// openssl computes them (base64, without sha256//).
type testPins struct{ leaf, ca, selfSigned, other string }

func pinsOfTestPKI(t *testing.T, pki *testPKI) testPins {
	return testPins{
		leaf:       opensslPin(t, filepath.Join(pki.dir, "good.crt")),
		ca:         opensslPin(t, pki.CAFile),
		selfSigned: opensslPin(t, filepath.Join(pki.dir, "selfsigned.crt")),
		other:      strings.TrimPrefix(someOtherPin.String(), "sha256//"),
	}
}

func TestCheckCommandPinsAgainstDovecot(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	pins := pinsOfTestPKI(t, pki)
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	leafFile := file("leaf.pins", "# the server's key\nsha256//"+pins.leaf+"\n")
	otherFile := file("other.pins", pins.other+" # not the server's\n")
	badFile := file("bad.pins", "sha256//"+pins.leaf+"\nsha256//"+pins.leaf[:20]+"\n")

	alice := dovecotUsers["alice"]
	implicit, ca := "--server="+d.Implicit("127.0.0.1"), "--ca-file="+pki.CAFile
	// The one line of a mismatch: the server, the pins expected, the keys
	// found in the verified chain.
	mismatch := d.Implicit("127.0.0.1") + ": server key not pinned: expected sha256//" + pins.other +
		", found sha256//" + pins.leaf + " (CN=localhost), sha256//" + pins.ca + " (CN=opsctl test CA)"
	cases := []struct {
		name   string
		args   []string
		stdout string
		code   int
		stderr string
	}{
		{"the server's key", []string{implicit, ca, "--pin-sha256=sha256//" + pins.leaf}, "yes\n", 0, ""},
		{"the server's key, bare base64", []string{implicit, ca, "--pin-sha256=" + pins.leaf}, "yes\n", 0, ""},
		{"the CA's key", []string{implicit, ca, "--pin-sha256=" + pins.ca}, "yes\n", 0, ""},
		{"two pins, one matching", []string{implicit, ca, "--pin-sha256=" + pins.other, "--pin-sha256=" + pins.leaf}, "yes\n", 0, ""},
		{"curl's list, one matching", []string{implicit, ca, "--pin-sha256=sha256//" + pins.other + ";sha256//" + pins.ca}, "yes\n", 0, ""},
		{"no pin matching", []string{implicit, ca, "--pin-sha256=" + pins.other}, "defer\n", 75, mismatch},
		{"STARTTLS, the CA's key", []string{"--server=" + d.Plain("127.0.0.1"), "--tls=starttls", ca, "--pin-sha256=" + pins.ca}, "yes\n", 0, ""},
		{"STARTTLS, no pin matching", []string{"--server=" + d.Plain("127.0.0.1"), "--tls=starttls", ca, "--pin-sha256=" + pins.other}, "defer\n", 75, "server key not pinned"},
		// The pin of the self-signed certificate that 127.0.0.5 serves:
		// the chain is still verified first.
		{"right pin, untrusted chain", []string{"--server=" + d.Implicit("127.0.0.5"), "--server-name=imap.test", ca, "--pin-sha256=" + pins.selfSigned}, "defer\n", 75, "not trusted"},
		{"pin file with the server's key", []string{implicit, ca, "--pin-file=" + leafFile}, "yes\n", 0, ""},
		{"pin file and a pin, one matching", []string{implicit, ca, "--pin-file=" + otherFile, "--pin-sha256=" + pins.ca}, "yes\n", 0, ""},
		{"pin file without the server's key", []string{implicit, ca, "--pin-file=" + otherFile}, "defer\n", 75, "server key not pinned"},
		// Usage errors, before any connection: nothing listens on port 1,
		// so a connection would have been a defer.
		{"malformed pin", []string{"--server=127.0.0.1:1", ca, "--pin-sha256=" + pins.leaf[:43]}, "", 2, `--pin-sha256 "` + pins.leaf[:43] + `": expected the base64 of a SHA-256 hash`},
		{"hex pin", []string{"--server=127.0.0.1:1", ca, "--pin-sha256=" + strings.Repeat("0f", 32)}, "", 2, "--pin-sha256"},
		{"missing pin file", []string{"--server=127.0.0.1:1", ca, "--pin-file=" + filepath.Join(dir, "none")}, "", 2, "--pin-file " + filepath.Join(dir, "none") + ": no such file"},
		{"pin file is a folder", []string{"--server=127.0.0.1:1", ca, "--pin-file=" + dir}, "", 2, "not a regular file (a folder)"},
		// A pin file that is there but unusable: defer, as for --ca-file.
		{"pin file with a bad line", []string{"--server=127.0.0.1:1", ca, "--pin-file=" + badFile}, "defer\n", 75, "--pin-file " + badFile + ": line 2:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := runOpsctl(t, nil, "", append([]string{"imap-auth", "check", "--timeout=5s"}, append(c.args, "alice", alice)...)...)
			if res.stdout != c.stdout || res.code != c.code {
				t.Fatalf("got %q exit %d, want %q exit %d; stderr: %s", res.stdout, res.code, c.stdout, c.code, res.stderr)
			}
			if !strings.Contains(res.stderr, c.stderr) || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
				t.Errorf("stderr %q: want one line with %q", res.stderr, c.stderr)
			}
			if strings.Contains(res.stderr, alice) {
				t.Errorf("the password is on stderr: %s", res.stderr)
			}
		})
	}
}

// TestWrongPinSendsNoLoginToDovecot: with a pin the server's chain does
// not hold, the check aborts the TLS handshake; Dovecot's own log shows
// the connections ended in the handshake by the client's alert, without
// any authentication attempt.
func TestWrongPinSendsNoLoginToDovecot(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	pins := pinsOfTestPKI(t, pki)
	// Only the readiness probe talks to 127.0.0.1: lip=127.0.0.2 is ours.
	servers := [][]string{{"--server=" + d.Implicit("127.0.0.2")}, {"--server=" + d.Plain("127.0.0.2"), "--tls=starttls"}}
	for _, server := range servers {
		args := append([]string{"imap-auth", "check", "--ca-file=" + pki.CAFile, "--pin-sha256=" + pins.other}, server...)
		res := runOpsctl(t, nil, "", append(args, "bob", dovecotUsers["bob"])...)
		if res.stdout != "defer\n" || res.code != 75 || !strings.Contains(res.stderr, "server key not pinned") {
			t.Fatalf("%v: got %q exit %d (%s), want defer for the pin", server, res.stdout, res.code, res.stderr)
		}
	}
	// Dovecot logs a disconnect when its login process notices it.
	ours := func() int {
		n := 0
		for _, line := range strings.Split(d.Log(t), "\n") {
			if strings.Contains(line, "no auth attempts") && strings.Contains(line, "lip=127.0.0.2") &&
				strings.Contains(line, "TLS handshaking") && strings.Contains(line, "alert bad certificate") {
				n++
			}
		}
		return n
	}
	if !testenv.WaitUntil(t, 10*time.Second, func() bool { return ours() == len(servers) }) {
		t.Fatalf("Dovecot did not log our %d connections as ended in the handshake without auth attempts:\n%s", len(servers), d.Log(t))
	}
	if log := d.Log(t); strings.Contains(log, "user=<bob>") || strings.Contains(log, "(bob") {
		t.Fatalf("a login of bob reached Dovecot:\n%s", log)
	}
}

func TestPinCommandPrintsWhatOpenSSLComputes(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	pins := pinsOfTestPKI(t, pki)
	want := []string{"sha256//" + pins.leaf + "  leaf          CN=localhost", "sha256//" + pins.ca + "  ca            CN=opsctl test CA"}
	for _, server := range [][]string{{"--server=" + d.Implicit("127.0.0.1")}, {"--server=" + d.Plain("127.0.0.1"), "--tls=starttls"}} {
		args := append([]string{"imap-auth", "pin", "--ca-file=" + pki.CAFile}, server...)
		res := runOpsctl(t, nil, "", args...)
		if res.code != 0 || res.stdout != strings.Join(want, "\n")+"\n" {
			t.Fatalf("%v: exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", server, res.code, res.stdout, strings.Join(want, "\n"), res.stderr)
		}
		res = runOpsctl(t, nil, "", append(args, "-o", "json")...)
		var out struct {
			Server string
			Chain  []struct {
				Pin, Place, Subject, Issuer string
				NotAfter                    time.Time `json:"not_after"`
			}
		}
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil || res.code != 0 || len(out.Chain) != 2 {
			t.Fatalf("%v -o json: exit %d, %v:\n%s%s", server, res.code, err, res.stdout, res.stderr)
		}
		leaf, ca := out.Chain[0], out.Chain[1]
		if leaf.Pin != "sha256//"+pins.leaf || leaf.Place != "leaf" || leaf.Issuer != "CN=opsctl test CA" ||
			ca.Pin != "sha256//"+pins.ca || ca.Place != "ca" || leaf.NotAfter.IsZero() || out.Server != strings.TrimPrefix(server[0], "--server=") {
			t.Errorf("%v -o json:\n%s", server, res.stdout)
		}
	}
	// What pin prints, check takes.
	res := runOpsctl(t, nil, "", "imap-auth", "pin", "--server="+d.Implicit("127.0.0.1"), "--ca-file="+pki.CAFile)
	first, _, _ := strings.Cut(res.stdout, " ")
	check := runOpsctl(t, nil, "", "imap-auth", "check", "--server="+d.Implicit("127.0.0.1"), "--ca-file="+pki.CAFile,
		"--pin-sha256="+first, "alice", dovecotUsers["alice"])
	if check.stdout != "yes\n" {
		t.Errorf("check with the pin that pin printed: %q (%s)", check.stdout, check.stderr)
	}
	// An untrusted chain: no pins, exit 1, the reason in one line.
	res = runOpsctl(t, nil, "", "imap-auth", "pin", "--server="+d.Implicit("127.0.0.5"), "--server-name=imap.test", "--ca-file="+pki.CAFile)
	if res.code != 1 || res.stdout != "" || !strings.Contains(res.stderr, "not trusted") || strings.Count(strings.TrimSpace(res.stderr), "\n") != 0 {
		t.Errorf("pin of a self-signed server: exit %d, stdout %q, stderr %q; want exit 1 and one line", res.code, res.stdout, res.stderr)
	}
	// The one login is check's: pin sends no credential.
	waitFor(t, func() bool { return strings.Contains(d.Log(t), "Login: user=<alice>") })
	if log := d.Log(t); strings.Count(log, "Login: user=<") != 1 || strings.Contains(log, "auth failed") {
		t.Errorf("Dovecot logged other logins than check's:\n%s", log)
	}
}

// TestServeReadsThePinFileAgainOnSIGHUP rotates the pins of a running
// daemon behind Exim: the server's key pinned (235), a file that no longer
// holds it (435, no LOGIN reaching Dovecot, counted), a file that cannot
// be used (the pins in force stay, one log line), the CA's key (235).
func TestServeReadsThePinFileAgainOnSIGHUP(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	pins := pinsOfTestPKI(t, pki)
	pinFile := filepath.Join(t.TempDir(), "imap-pins")
	setPins := func(content string) {
		t.Helper()
		if err := os.WriteFile(pinFile, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setPins(pins.leaf + "\n")
	metricsAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	socket, p := serveDovecot(t, d, pki, "--pin-file", pinFile, "--allow-uid", "Debian-exim", "--metrics-listen", metricsAddr)
	e := eximForSocket(t, pki, socket)
	plain := smtp.PlainAuth("", "alice", dovecotUsers["alice"], "127.0.0.1")
	logins := func() int { return strings.Count(d.Log(t), "Login: user=<alice>") }
	hangUpAndWait := func(line string, times int) {
		t.Helper()
		p.cmd.Process.Signal(syscall.SIGHUP)
		if !testenv.WaitUntil(t, 10*time.Second, func() bool { return strings.Count(p.stderr.String(), line) == times }) {
			t.Fatalf("no %d× %q in the log after SIGHUP:\n%s", times, line, p.stderr)
		}
	}

	if got := e.login(t, plain); got != 235 {
		t.Fatalf("the server's key pinned: AUTH answered %d, want 235\n%s", got, p.stderr)
	}
	waitFor(t, func() bool { return logins() == 1 })

	setPins("# rotated, but not on the server\n" + pins.other + "\n")
	hangUpAndWait("pin file read again", 1)
	// The ready connection, made under the old pins, must not be used.
	if got := e.login(t, plain); got != 435 {
		t.Fatalf("the server's key no longer pinned: AUTH answered %d, want 435\n%s", got, p.stderr)
	}
	if !strings.Contains(p.stderr.String(), "server key not pinned: expected sha256//"+pins.other) {
		t.Errorf("the log does not say why the login was deferred:\n%s", p.stderr)
	}
	if n := metric(t, metricsAddr, "opsctl_imap_auth_pin_mismatches_total"); n != 1 {
		t.Errorf("pin mismatches counted %v, want 1", n)
	}

	setPins("sha256//" + pins.ca[:30] + "\n") // a truncated copy
	hangUpAndWait("pin file not read again, the pins in force stay", 1)
	if got := e.login(t, plain); got != 435 {
		t.Fatalf("after a failed reload: AUTH answered %d, want 435 (the pins in force kept)", got)
	}

	setPins("sha256//" + pins.ca + " # the CA's key\n")
	hangUpAndWait("pin file read again", 2)
	if got := e.login(t, plain); got != 235 {
		t.Fatalf("the CA's key pinned: AUTH answered %d, want 235\n%s", got, p.stderr)
	}
	waitFor(t, func() bool { return logins() >= 2 })
	if n := logins(); n != 2 {
		t.Errorf("Dovecot logged %d logins of alice, want 2 (none while the key was not pinned)", n)
	}
	series := scrape(t, metricsAddr)
	if ok, failed := series[`opsctl_imap_auth_pin_reloads_total{result="ok"}`], series[`opsctl_imap_auth_pin_reloads_total{result="failed"}`]; ok != 2 || failed != 1 {
		t.Errorf("reloads counted ok %v failed %v, want 2 and 1", ok, failed)
	}
	if n := strings.Count(p.stderr.String(), "pin file not read again"); n != 1 {
		t.Errorf("%d log lines for the one failed reload, want 1:\n%s", n, p.stderr)
	}
	if strings.Contains(p.stderr.String(), dovecotUsers["alice"]) {
		t.Error("the password is in the daemon's log")
	}
}
