package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
)

func testFactory(stdin string) (*cli.Factory, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	f := &cli.Factory{
		IO:     &cli.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut},
		Getenv: func(string) string { return "" },
	}
	return f, &out, &errOut
}

func TestIMAPAuthCheckFlagsFillOptions(t *testing.T) {
	f, _, _ := testFactory("")
	var got *IMAPAuthCheckOptions
	cmd := NewCmdIMAPAuthCheck(f, func(o *IMAPAuthCheckOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--server", "imap.example.org:10993", "--tls", "starttls", "--ca-file", "/etc/ca.pem",
		"--server-name", "mail.example.org", "--timeout", "3s", "--password-stdin", "alice"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	cfg, err := got.Server.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "imap.example.org:10993" || cfg.TLS.String() != "starttls" || cfg.CAFile != "/etc/ca.pem" ||
		cfg.ServerName != "mail.example.org" || cfg.Timeout != 3*time.Second || !got.PasswordStdin || got.User != "alice" || got.passwordArg {
		t.Fatalf("options %+v, config %+v", got, cfg)
	}
}

func TestIMAPAuthServeFlagsFillOptions(t *testing.T) {
	f, _, _ := testFactory("")
	var got *IMAPAuthServeOptions
	cmd := NewCmdIMAPAuthServe(f, func(o *IMAPAuthServeOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--server", "imap.example.org", "--socket", "/run/a.sock", "--allow-uid", "Debian-exim",
		"--allow-uid", "0", "--cache-ttl", "1m", "--max-concurrent", "4", "--max-queue", "9", "--warm", "2", "--metrics-listen", "127.0.0.1:9127",
		"--max-connections", "300", "--max-connections-per-uid", "100"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Socket != "/run/a.sock" || strings.Join(got.AllowUIDs, ",") != "Debian-exim,0" || got.CacheTTL != time.Minute ||
		got.MaxConcurrent != 4 || got.MaxQueue != 9 || got.Warm != 2 || got.MetricsListen != "127.0.0.1:9127" || got.SocketMode != "0666" ||
		got.MaxConnections != 300 || got.MaxConnectionsPerUID != 100 {
		t.Fatalf("options %+v", got)
	}
}

func TestIMAPAuthServeRejectsBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"imap-auth", "serve", "--server", "imap.test"}, "--socket"},
		{[]string{"imap-auth", "serve", "--socket", "/tmp/x.sock"}, "--server"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--allow-uid", "no-such-user-here"}, "--allow-uid"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--socket-mode", "999"}, "--socket-mode"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--cache-ttl", "-1s"}, "--cache-ttl"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--warm", "-1"}, "--warm"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--max-concurrent", "0"}, "--max-concurrent"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--metrics-listen", "9127"}, "--metrics-listen"},
		// 0 used to be taken as "default" (256) without a word; the socket's
		// folder does not exist, so a flag accepted wrongly fails naming
		// --socket instead.
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/nonexistent/x.sock", "--max-queue", "0"}, "--max-queue 0: expected at least 1"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/nonexistent/x.sock", "--max-concurrent", "-3"}, "--max-concurrent -3: expected at least 1"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--max-connections", "-1"}, "--max-connections -1: expected 0"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--max-connections-per-uid", "-1"}, "--max-connections-per-uid -1: expected 0"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--max-connections", "1000000000"}, "--max-connections 1000000000: the descriptor limit"},
		{[]string{"imap-auth", "serve", "--server", "imap.test", "--socket", "/tmp/x.sock", "--max-connections", "10", "--max-connections-per-uid", "11"}, "--max-connections-per-uid 11: expected at most --max-connections (10)"},
		{[]string{"imap-auth", "check", "--server", "imap.test", "--tls", "none", "alice", "pw"}, "--tls"},
		{[]string{"imap-auth", "check", "--server", "imap.test", "alice", "pw", "extra"}, "accepts between 1 and 2 arg"},
	}
	for _, c := range cases {
		out, errOut, code := runForTest(c.args...)
		if code != cli.ExitUsage || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming %s", c.args, code, out, errOut, c.want)
		}
	}
}

func TestIMAPAuthCheckReadsPasswordFromStdinAndDefersWithoutServer(t *testing.T) {
	f, out, _ := testFactory("secret\n")
	opts := &IMAPAuthCheckOptions{Factory: f, User: "alice", PasswordStdin: true}
	opts.Server.server = "127.0.0.1:1" // nothing listens on port 1
	opts.Server.tls = "implicit"
	opts.Server.timeout = 2 * time.Second
	err := runIMAPAuthCheck(opts)
	if out.String() != "defer\n" || cli.ExitCode(err) != cli.ExitTemporary {
		t.Fatalf("stdout %q, exit %d (%v); want defer and 75", out.String(), cli.ExitCode(err), err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the password is in the reason: %v", err)
	}
}

func TestIMAPAuthHelpHasExamples(t *testing.T) {
	for _, sub := range []string{"check", "serve", "pin"} {
		out, _, code := runForTest("imap-auth", sub, "--help")
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("imap-auth %s --help: exit %d, no examples:\n%s", sub, code, out)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("input/output error") }

func TestIMAPAuthCheckPrintsDeferWhenStdinFails(t *testing.T) {
	f, out, _ := testFactory("")
	f.IO.In = failingReader{}
	opts := &IMAPAuthCheckOptions{Factory: f, User: "alice", PasswordStdin: true}
	opts.Server.server = "127.0.0.1:1"
	opts.Server.tls = "implicit"
	opts.Server.timeout = 2 * time.Second
	err := runIMAPAuthCheck(opts)
	if out.String() != "defer\n" || cli.ExitCode(err) != cli.ExitTemporary || !strings.Contains(err.Error(), "stdin") {
		t.Fatalf("stdout %q, exit %d (%v); want defer, 75 and a reason naming stdin", out.String(), cli.ExitCode(err), err)
	}
}

// The ${run} recipe in docs/imap-auth.md puts -- before the user and the
// password, so that a password starting with "-" is not taken for a flag.
func TestIMAPAuthCheckTakesDashedCredentialsAfterDoubleDash(t *testing.T) {
	out, errOut, code := runForTest("imap-auth", "check", "--server", "127.0.0.1:1", "--timeout", "2s", "--", "--server=elsewhere.test", "-secret")
	if code != cli.ExitTemporary || out != "defer\n" || !strings.Contains(errOut, "127.0.0.1:1") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the check made against 127.0.0.1:1 (defer, 75)", code, out, errOut)
	}
}

// The serve example starts a daemon and then tells root to try it by hand:
// the daemon it starts must answer root (an --allow-uid replaces the
// default of root and the daemon's uid), or the try gets defer.
func TestIMAPAuthServeExampleAnswersTheRootItTellsToTry(t *testing.T) {
	f, _, _ := testFactory("")
	example := NewCmdIMAPAuthServe(f, nil).Example
	if !strings.Contains(example, "(as root)") {
		t.Fatal("the example no longer has root try the socket: change this test with it")
	}
	_, argv, ok := strings.Cut(strings.ReplaceAll(example, "\\\n", " "), "opsctl imap-auth serve ")
	if !ok {
		t.Fatalf("the example starts no daemon: %q", example)
	}
	argv, _, _ = strings.Cut(argv, "\n")
	var got *IMAPAuthServeOptions
	cmd := NewCmdIMAPAuthServe(f, func(o *IMAPAuthServeOptions) error { got = o; return nil })
	cmd.SetArgs(strings.Fields(argv))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if len(got.AllowUIDs) > 0 && !slices.Contains(got.AllowUIDs, "root") && !slices.Contains(got.AllowUIDs, "0") {
		t.Errorf("the example's daemon allows only %v: root's try by hand gets defer", got.AllowUIDs)
	}
}

// TestIMAPAuthRequestByHandKeepsLongPasswordsOnOneLine: the by-hand request
// of the help and of docs/imap-auth.md must stay one line for a long
// password (plain base64 wraps at 76 characters: a password over 57 bytes
// became a malformed request, answered defer).
func TestIMAPAuthRequestByHandKeepsLongPasswordsOnOneLine(t *testing.T) {
	f, _, _ := testFactory("")
	doc, err := os.ReadFile("../../docs/imap-auth.md")
	if err != nil {
		t.Fatal(err)
	}
	password := strings.Repeat("long-password-", 8)
	for name, text := range map[string]string{"help": NewCmdIMAPAuthServe(f, nil).Example, "docs/imap-auth.md": string(doc)} {
		var pipeline string
		for _, line := range strings.Split(text, "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "printf '%s %s\\n'") {
				pipeline = strings.TrimSuffix(strings.TrimSpace(line), "|")
			}
		}
		if pipeline == "" {
			t.Fatalf("%s: no by-hand request (printf '%%s %%s\\n' ...)", name)
		}
		pipeline = strings.Replace(pipeline, "'secret'", "'"+password+"'", 1)
		out, err := exec.Command("sh", "-c", pipeline).Output()
		if err != nil {
			t.Fatalf("%s: %s: %v", name, pipeline, err)
		}
		fields := strings.Fields(string(out))
		if len(fields) < 2 {
			t.Fatalf("%s: the request is %q", name, out)
		}
		user, _ := base64.StdEncoding.DecodeString(fields[0])
		pass, _ := base64.StdEncoding.DecodeString(fields[len(fields)-1])
		if strings.Count(string(out), "\n") != 1 || len(fields) != 2 || string(user) != "alice" || string(pass) != password {
			t.Errorf("%s: the request for a %d-byte password is %q, want one line of two base64 fields", name, len(password), out)
		}
	}
}

// TestIMAPAuthCheckHelpShowsRunPassingThePasswordAsAnArgument: the help
// said Exim's ${run} passes the password on stdin, next to a
// --password-stdin example; ${run} gives the command no input, so a
// ${run} recipe built from it never sees a password (docs/imap-auth.md).
func TestIMAPAuthCheckHelpShowsRunPassingThePasswordAsAnArgument(t *testing.T) {
	out, _, code := runForTest("imap-auth", "check", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(out, "\n")
	var runExample string
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, "${run}") && i+1 < len(lines) {
			runExample = lines[i+1]
		}
	}
	if runExample == "" {
		t.Fatalf("no example for Exim's ${run}:\n%s", out)
	}
	if strings.Contains(runExample, "--password-stdin") || !strings.Contains(runExample, " -- ") {
		t.Errorf("the ${run} example reads the password from stdin or lacks -- before the credentials: %s", runExample)
	}
}

// TestReadmeNamesTheOneSecretTakenFromArgv: the README said secrets never
// come from argv, while imap-auth check takes PASSWORD.
func TestReadmeNamesTheOneSecretTakenFromArgv(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, bullet, ok := strings.Cut(string(readme), "\n- Secrets ")
	if !ok {
		t.Fatal("README.md has no bullet about secrets")
	}
	bullet, _, _ = strings.Cut(bullet, "\n- ")
	if strings.Contains(bullet, "never from argv") || !strings.Contains(bullet, "imap-auth check") {
		t.Errorf("the README's secrets bullet does not name imap-auth check's PASSWORD argument: %s", bullet)
	}
}

func TestIMAPAuthPinFlagsFillOptions(t *testing.T) {
	f, _, _ := testFactory("")
	var got *IMAPAuthPinOptions
	cmd := NewCmdIMAPAuthPin(f, func(o *IMAPAuthPinOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--server", "imap.example.org:10143", "--tls", "starttls", "--ca-file", "/etc/ca.pem",
		"--server-name", "mail.example.org", "--timeout", "3s", "-o", "json"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	cfg, err := got.Server.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server != "imap.example.org:10143" || cfg.TLS.String() != "starttls" || cfg.CAFile != "/etc/ca.pem" ||
		cfg.ServerName != "mail.example.org" || cfg.Timeout != 3*time.Second || !got.Output.JSON() {
		t.Fatalf("options %+v, config %+v", got, cfg)
	}
}

func TestIMAPAuthPinFlagsOfCheckAndServeFillOptions(t *testing.T) {
	pinArgs := []string{"--pin-sha256", "A", "--pin-sha256", "sha256//B;sha256//C", "--pin-file", "/etc/opsctl/imap-pins"}
	want := imapPinFlags{pins: []string{"A", "sha256//B;sha256//C"}, file: "/etc/opsctl/imap-pins"}
	f, _, _ := testFactory("")
	var check *IMAPAuthCheckOptions
	cmd := NewCmdIMAPAuthCheck(f, func(o *IMAPAuthCheckOptions) error { check = o; return nil })
	cmd.SetArgs(append([]string{"--server", "imap.example.org", "alice", "pw"}, pinArgs...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var serve *IMAPAuthServeOptions
	cmd = NewCmdIMAPAuthServe(f, func(o *IMAPAuthServeOptions) error { serve = o; return nil })
	cmd.SetArgs(append([]string{"--server", "imap.example.org", "--socket", "/run/a.sock"}, pinArgs...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]imapPinFlags{"check": check.Pins, "serve": serve.Pins} {
		if !slices.Equal(got.pins, want.pins) || got.file != want.file {
			t.Errorf("%s: pin flags %+v, want %+v", name, got, want)
		}
	}
}

// TestIMAPAuthPinsAreCheckedBeforeAnything: a malformed pin, or a pin file
// that is missing or not a file, is a usage error found before the socket
// is made or the server asked; a pin file that is there but holds no pin
// is a failure (exit 1; check: defer and 75, as for --ca-file).
func TestIMAPAuthPinsAreCheckedBeforeAnything(t *testing.T) {
	dir := t.TempDir()
	noPins := filepath.Join(dir, "pins")
	if err := os.WriteFile(noPins, []byte("# to do\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := []string{"imap-auth", "serve", "--server", "127.0.0.1:1", "--warm", "0", "--socket", filepath.Join(dir, "none", "x.sock")}
	check := []string{"imap-auth", "check", "--server", "127.0.0.1:1", "--timeout", "2s"}
	cases := []struct {
		args   []string
		code   int
		stdout string
		want   string
	}{
		{append(serve, "--pin-sha256", "sha256//abc"), cli.ExitUsage, "", `--pin-sha256 "sha256//abc": expected the base64 of a SHA-256 hash`},
		{append(serve, "--pin-file", filepath.Join(dir, "missing")), cli.ExitUsage, "", "--pin-file " + filepath.Join(dir, "missing") + ": no such file"},
		{append(serve, "--pin-file", dir), cli.ExitUsage, "", "--pin-file " + dir + ": not a regular file (a folder)"},
		{append(serve, "--pin-file", noPins), cli.ExitFailure, "", "--pin-file " + noPins + ": no pin in the file"},
		{append(check, "--pin-sha256", "", "alice", "pw"), cli.ExitUsage, "", `--pin-sha256 "": expected`},
		{append(check, "--pin-file", noPins, "alice", "pw"), cli.ExitTemporary, "defer\n", "--pin-file " + noPins + ": no pin in the file"},
		{[]string{"imap-auth", "pin", "--server", "imap.test", "-o", "yaml"}, cli.ExitUsage, "", "expected one of text, json"},
		{[]string{"imap-auth", "pin", "--server", "imap.test", "extra"}, cli.ExitUsage, "", `takes no arguments, got "extra"`},
		{[]string{"imap-auth", "pin"}, cli.ExitUsage, "", "--server: required"},
		{[]string{"imap-auth", "pin", "--server", "imap.test", "--pin-sha256", "x"}, cli.ExitUsage, "", "unknown flag: --pin-sha256"},
	}
	for _, c := range cases {
		out, errOut, code := runForTest(c.args...)
		if code != c.code || out != c.stdout || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d, stdout %q and one line with %q", c.args, code, out, errOut, c.code, c.stdout, c.want)
		}
	}
}

func TestIMAPAuthPinFailsInOneLineWithoutAServer(t *testing.T) {
	out, errOut, code := runForTest("imap-auth", "pin", "--server", "127.0.0.1:1", "--timeout", "2s")
	if code != cli.ExitFailure || out != "" || !strings.Contains(errOut, "imap-auth pin: connect:") ||
		strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and one line", code, out, errOut)
	}
}

// TestIMAPAuthPinTextKeepsEachCertificateOnOneLine: a subject is the
// server's to choose, and pkix leaves line breaks and terminal escapes in
// it; pin's text output must stay one line per certificate.
func TestIMAPAuthPinTextKeepsEachCertificateOnOneLine(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for _, cn := range []string{"imap.test\nsha256//forged  ca  CN=trust me\x1b[2K", "Example CA"} {
		template := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	var out bytes.Buffer
	if err := writePinsText(&out, chain); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || strings.Contains(out.String(), "\x1b") ||
		!strings.HasSuffix(lines[0], `"CN=imap.test\nsha256//forged  ca  CN=trust me\x1b[2K"`) || !strings.HasSuffix(lines[1], "  ca            CN=Example CA") {
		t.Fatalf("text output:\n%s", out.String())
	}
}
