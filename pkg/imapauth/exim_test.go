package imapauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// The Exim tests run Debian's Exim 4.96 as an SMTP daemon with the
// authenticators that docs/imap-auth.md tells admins to use, read from that
// file, and log in over SMTP with STARTTLS: Exim -> ${readsocket} ->
// `opsctl imap-auth serve` -> Dovecot.

const eximHost = "mx.test.example"

// exim is a running Exim daemon.
type exim struct {
	addr   string
	logDir string
	pool   *x509.CertPool
}

// docBlock returns the first ``` block after the heading of
// docs/imap-auth.md that starts with heading.
func docBlock(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "docs", "imap-auth.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "\n"+heading)
	if !ok {
		t.Fatalf("docs/imap-auth.md has no heading %q", heading)
	}
	_, rest, ok = strings.Cut(rest, "```\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatalf("docs/imap-auth.md: no ``` block under %q", heading)
	}
	return block
}

// startExim starts Exim in the foreground with authenticators (its "begin
// authenticators" section) and stops it at the end of the test.
func startExim(t *testing.T, pki *testPKI, authenticators string) *exim {
	t.Helper()
	binary := testenv.Need(t, "/usr/sbin/exim4", "exim4-daemon-light")
	testenv.NeedRoot(t)
	eximUser, err := user.Lookup("Debian-exim")
	if err != nil {
		testenv.Missing(t, "user Debian-exim (made by Debian's exim4 packages): "+err.Error())
	}
	uid, _ := strconv.Atoi(eximUser.Uid)
	gid, _ := strconv.Atoi(eximUser.Gid)

	dir := worldReadableTempDir(t)
	e := &exim{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), logDir: filepath.Join(dir, "log")}
	for _, sub := range []string{"spool", "log"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o750)
		os.Chown(filepath.Join(dir, sub), uid, gid)
	}
	cert := pki.issue(t, "exim", []string{eximHost}, nil, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
	// Exim's SMTP processes run as Debian-exim and read the key then.
	for _, f := range []string{cert.CertFile, cert.KeyFile, filepath.Dir(cert.KeyFile)} {
		os.Chown(f, uid, gid)
	}
	e.pool = x509.NewCertPool()
	e.pool.AddCert(pki.caCert)

	_, port, _ := net.SplitHostPort(e.addr)
	conf := fmt.Sprintf(`# written by the opsctl imap-auth tests
primary_hostname = %[2]s
spool_directory = %[1]s/spool
log_file_path = %[1]s/log/%%slog
pid_file_path = %[1]s/exim.pid
exim_user = Debian-exim
exim_group = Debian-exim
local_interfaces = 127.0.0.1
daemon_smtp_ports = %[3]s
host_lookup =
keep_environment =
tls_advertise_hosts = *
tls_certificate = %[4]s
tls_privatekey = %[5]s
acl_smtp_rcpt = rcpt
log_selector = +smtp_protocol_error +smtp_syntax_error

begin acl
rcpt:
  accept authenticated = *
  deny message = relay not permitted

%[6]s
`, dir, eximHost, port, cert.CertFile, cert.KeyFile, authenticators)
	confPath := filepath.Join(dir, "exim.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "-C", confPath, "-bV").CombinedOutput(); err != nil {
		t.Fatalf("exim -bV refuses the configuration: %v\n%s\n%s", err, out, conf)
	}
	daemon := startServe(t, exec.Command(binary, "-C", confPath, "-bdf"))
	stderr, exited := daemon.stderr, daemon.exited
	listening := testenv.WaitUntil(t, 15*time.Second, func() bool {
		if c, err := net.Dial("tcp", e.addr); err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			t.Fatalf("exim exited: %s\n%s", stderr, e.log())
		default:
		}
		return false
	})
	if !listening {
		t.Fatalf("exim not listening on %s within 15s: %s\n%s", e.addr, stderr, e.log())
	}
	return e
}

// log returns Exim's main, reject and panic logs.
func (e *exim) log() string {
	var b strings.Builder
	for _, name := range []string{"mainlog", "rejectlog", "paniclog"} {
		if raw, err := os.ReadFile(filepath.Join(e.logDir, name)); err == nil {
			fmt.Fprintf(&b, "--- %s\n%s", name, raw)
		}
	}
	return b.String()
}

// login connects, checks that AUTH is offered only after STARTTLS, and
// authenticates; it returns the SMTP code of the AUTH answer (235 on
// success). With auth nil it asks to relay without authenticating and
// returns the code of the RCPT answer.
func (e *exim) login(t *testing.T, auth smtp.Auth) int {
	t.Helper()
	c, err := smtp.Dial(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH offered before STARTTLS")
	}
	if err := c.StartTLS(&tls.Config{ServerName: eximHost, RootCAs: e.pool}); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "PLAIN") || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("after STARTTLS, AUTH %q offered: %v", mechs, ok)
	}
	if auth == nil {
		// No AUTH: the relay must be refused, or the checks after a
		// successful AUTH below prove nothing.
		if err := c.Mail("someone@client.test.example"); err != nil {
			t.Fatal(err)
		}
		return smtpCode(t, c.Rcpt("friend@elsewhere.example"))
	}
	code := smtpCode(t, c.Auth(auth))
	if code == 235 {
		// Exim treats the session as authenticated: it relays.
		if err := c.Mail("someone@client.test.example"); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("friend@elsewhere.example"); err != nil {
			t.Errorf("after AUTH succeeded, RCPT to another domain: %v", err)
		}
	}
	return code
}

// smtpCode is 250 or 235 for nil (the caller knows which), else the code
// of the SMTP error.
func smtpCode(t *testing.T, err error) int {
	t.Helper()
	var proto *textproto.Error
	switch {
	case err == nil:
		return 235
	case errors.As(err, &proto):
		return proto.Code
	}
	t.Fatalf("SMTP: %v", err)
	return 0
}

// loginAuth is the client side of AUTH LOGIN, which net/smtp lacks.
type loginAuth struct{ user, password string }

func (a loginAuth) Start(*smtp.ServerInfo) (string, []byte, error) { return "LOGIN", nil, nil }

func (a loginAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch string(challenge) {
	case "Username:":
		return []byte(a.user), nil
	case "Password:":
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("unexpected AUTH LOGIN challenge %q", challenge)
}

func TestEximAuthenticatesThroughServe(t *testing.T) {
	e, p := eximThroughServe(t, "Debian-exim")

	cases := []struct {
		name string
		auth smtp.Auth
		want int
	}{
		{"PLAIN, password with spaces", smtp.PlainAuth("", "alice", dovecotUsers["alice"], "127.0.0.1"), 235},
		{"PLAIN, quotes and backslashes", smtp.PlainAuth("", "bob", dovecotUsers["bob"], "127.0.0.1"), 235},
		{"LOGIN, UTF-8", loginAuth{"carol", dovecotUsers["carol"]}, 235},
		{"PLAIN, wrong password", smtp.PlainAuth("", "alice", "wrong", "127.0.0.1"), 535},
		{"LOGIN, wrong password", loginAuth{"bob", "wrong"}, 535},
		{"PLAIN, unknown user", smtp.PlainAuth("", "mallory", "x", "127.0.0.1"), 535},
	}
	if got := e.login(t, nil); got != 550 {
		t.Fatalf("RCPT to another domain without AUTH: %d, want 550 (relay not permitted)", got)
	}
	for _, c := range cases {
		if got := e.login(t, c.auth); got != c.want {
			t.Errorf("%s: AUTH answered %d, want %d\n%s\n%s", c.name, got, c.want, e.log(), p.stderr)
		}
	}

	// The daemon gone: a temporary error, never "wrong password".
	p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if got := e.login(t, smtp.PlainAuth("", "alice", dovecotUsers["alice"], "127.0.0.1")); got != 435 {
		t.Errorf("daemon stopped: AUTH answered %d, want Exim's 435 (temporary)\n%s", got, e.log())
	}

	log := e.log()
	for _, want := range []string{
		"plain_imap authenticator failed for (client.test.example) [127.0.0.1]: 535 Incorrect authentication data (set_id=alice)",
		"login_imap authenticator failed for (client.test.example) [127.0.0.1]: 535 Incorrect authentication data (set_id=bob)",
		"435 Unable to authenticate at present (set_id=alice): defer",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("Exim's log lacks %q:\n%s", want, log)
		}
	}
	for user, password := range dovecotUsers {
		if strings.Contains(log, password) {
			t.Errorf("the password of %s is in Exim's log", user)
		}
	}
}

// TestEximAnswersTemporaryWhenTheDaemonRefusesItsUID: with --allow-uid
// naming someone else than Exim's user (a typo, another distribution's
// user name), every login must be a temporary error, not "wrong password".
func TestEximAnswersTemporaryWhenTheDaemonRefusesItsUID(t *testing.T) {
	e, p := eximThroughServe(t, "nobody")
	if got := e.login(t, smtp.PlainAuth("", "alice", dovecotUsers["alice"], "127.0.0.1")); got != 435 {
		t.Errorf("Exim's uid not allowed: AUTH answered %d, want 435 (temporary)\n%s\n%s", got, e.log(), p.stderr)
	}
}

// TestEximRunRecipe runs the ${run} recipe of docs/imap-auth.md in Exim:
// `opsctl imap-auth check` started per login, the credentials passed as
// arguments. Exim 4.96 expands each argument on its own, so tainted
// $auth2 and $auth3 are accepted and arrive whole.
func TestEximRunRecipe(t *testing.T) {
	d, pki := dovecotWithAllCerts(t)
	// Exim runs the check as Debian-exim: the binary and the CA file go
	// where that user can reach them, wherever the test's own copies live
	// (a build in a 0700 temporary folder, a checkout under /root).
	runDir := worldReadableTempDir(t)
	binary, caFile := filepath.Join(runDir, "opsctl"), filepath.Join(runDir, "ca.pem")
	for from, to := range map[string]string{testenv.Opsctl(t): binary, pki.CAFile: caFile} {
		raw, err := os.ReadFile(from)
		if err == nil {
			err = os.WriteFile(to, raw, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	start := func(server string) *exim {
		condition := docBlock(t, "## Exim with ${run}")
		for old, new := range map[string]string{
			"/usr/local/bin/opsctl":     binary,
			"--server imap.example.org": "--server " + server + " --ca-file " + caFile,
		} {
			if !strings.Contains(condition, old) {
				t.Fatalf("the documented ${run} condition lacks %q:\n%s", old, condition)
			}
			condition = strings.ReplaceAll(condition, old, new)
		}
		return startExim(t, pki, `begin authenticators

run_imap:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_advertise_condition = ${if def:tls_in_cipher}
`+condition+`  server_set_id = $auth2

login_unused:
  driver = plaintext
  public_name = LOGIN
  server_prompts = Username:: : Password::
  server_advertise_condition = ${if def:tls_in_cipher}
  server_condition = no
`)
	}
	plain := func(user, password string) smtp.Auth { return smtp.PlainAuth("", user, password, "127.0.0.1") }

	e := start(d.Implicit("127.0.0.1"))
	cases := []struct {
		name string
		auth smtp.Auth
		want int
	}{
		{"password with spaces", plain("alice", dovecotUsers["alice"]), 235},
		{"quotes and backslashes", plain("bob", dovecotUsers["bob"]), 235},
		{"UTF-8", plain("carol", dovecotUsers["carol"]), 235},
		{"wrong password", plain("alice", "wrong"), 535},
		{"wrong password that looks like a flag", plain("alice", "--server=evil.example"), 535},
		{"unknown user", plain("mallory", "x"), 535},
	}
	for _, c := range cases {
		if got := e.login(t, c.auth); got != c.want {
			t.Errorf("%s: AUTH answered %d, want %d\n%s", c.name, got, c.want, e.log())
		}
	}

	// 127.0.0.3 presents a certificate for another name: the check
	// defers (exit 75) and Exim answers with a temporary error.
	bad := start(d.Implicit("127.0.0.3"))
	if got := bad.login(t, plain("alice", dovecotUsers["alice"])); got != 435 {
		t.Errorf("IMAP certificate for another name: AUTH answered %d, want 435\n%s", got, bad.log())
	}
	for user, password := range dovecotUsers {
		if strings.Contains(e.log()+bad.log(), password) {
			t.Errorf("the password of %s is in Exim's log", user)
		}
	}
}

// eximThroughServe starts `imap-auth serve` (allowing allowUID) in front of
// Dovecot, and Exim with the ${readsocket} authenticators of
// docs/imap-auth.md pointed at that daemon's socket.
func eximThroughServe(t *testing.T, allowUID string) (*exim, *daemonProcess) {
	t.Helper()
	d, pki := dovecotWithAllCerts(t)
	socket, p := serveDovecot(t, d, pki, "--allow-uid", allowUID)
	return eximForSocket(t, pki, socket), p
}

// eximForSocket starts Exim with the ${readsocket} authenticators of
// docs/imap-auth.md pointed at the daemon's socket.
func eximForSocket(t *testing.T, pki *testPKI, socket string) *exim {
	t.Helper()
	authenticators := docBlock(t, "## Exim with ${readsocket}")
	if !strings.Contains(authenticators, "/run/opsctl/imap-auth.sock") {
		t.Fatalf("the documented authenticators do not use /run/opsctl/imap-auth.sock:\n%s", authenticators)
	}
	return startExim(t, pki, strings.ReplaceAll(authenticators, "/run/opsctl/imap-auth.sock", socket))
}
