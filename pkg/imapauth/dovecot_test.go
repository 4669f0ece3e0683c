package imapauth

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// dovecotUsers are the accounts of the test Dovecot: passwords with spaces,
// quotes, backslashes and UTF-8, the characters an IMAP client must quote
// or send as a literal.
var dovecotUsers = map[string]string{
	"alice": "correct horse battery staple",
	"bob":   `say "hi" \ to 'me' \\ "`,
	"carol": "pässwörd ✓ 密码",
}

// dovecotOptions choose the Dovecot a test needs.
type dovecotOptions struct {
	// certs maps a local address (127.0.0.x) to the certificate served
	// there; "" is the default certificate. Ignored with noSSL.
	certs map[string]pair
	// noSSL runs Dovecot without TLS: no STARTTLS, no implicit TLS port.
	noSSL bool
	// fast keeps login and imap processes alive between connections, as a
	// busy production server runs (for the benchmark).
	fast bool
}

// dovecot is a Dovecot 2.3 run by the test in the foreground, all its
// files in a temporary folder.
type dovecot struct {
	dir          string
	ImplicitPort int // implicit TLS (0 with noSSL)
	PlainPort    int // clear text, STARTTLS when TLS is on
	logPath      string
}

// Implicit and Plain are the addresses of the listeners on host.
func (d *dovecot) Implicit(host string) string {
	return net.JoinHostPort(host, fmt.Sprint(d.ImplicitPort))
}
func (d *dovecot) Plain(host string) string { return net.JoinHostPort(host, fmt.Sprint(d.PlainPort)) }

// Log is what Dovecot logged so far.
func (d *dovecot) Log(t testing.TB) string {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// worldReadableTempDir is a temporary folder the unprivileged Dovecot
// processes (nobody) can enter.
func worldReadableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func startDovecot(t testing.TB, opts dovecotOptions) *dovecot {
	t.Helper()
	binary := testenv.Need(t, "dovecot", "dovecot-imapd")
	testenv.Need(t, "/usr/lib/dovecot/imap-login", "dovecot-imapd")
	testenv.NeedRoot(t)

	dir := worldReadableTempDir(t)
	d := &dovecot{dir: dir, PlainPort: freePort(t), logPath: filepath.Join(dir, "dovecot.log")}
	var passwd strings.Builder
	for user, password := range dovecotUsers {
		sum := sha256.Sum256([]byte(password))
		fmt.Fprintf(&passwd, "%s:{SHA256}%s::::::\n", user, base64.StdEncoding.EncodeToString(sum[:]))
	}
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte(passwd.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"run", "state", "mail"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o755)
	}
	os.Chmod(filepath.Join(dir, "mail"), 0o777)

	var conf strings.Builder
	fmt.Fprintf(&conf, `# written by the opsctl imap-auth tests
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
instance_name = opsctl-test-%[2]d
protocols = imap
listen = 127.0.0.1, 127.0.0.2, 127.0.0.3, 127.0.0.4, 127.0.0.5
default_internal_user = nobody
default_internal_group = nogroup
default_login_user = nobody
auth_failure_delay = 0
auth_verbose = yes
auth_mechanisms = plain login
disable_plaintext_auth = yes
login_trusted_networks =
mail_location = maildir:%[1]s/mail/%%u
passdb {
  driver = passwd-file
  args = username_format=%%u %[1]s/passwd
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=%[1]s/mail/%%u
}
# no anvil penalty: a few wrong passwords must not slow every later login
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
`, dir, d.PlainPort)
	loginTuning := ""
	if opts.fast {
		loginTuning = "  service_count = 0\n  process_min_avail = 2\n"
		conf.WriteString("service imap {\n  service_count = 0\n  process_min_avail = 2\n}\n")
	}
	if opts.noSSL {
		fmt.Fprintf(&conf, `ssl = no
service imap-login {
%s  inet_listener imap {
    port = %d
  }
  inet_listener imaps {
    port = 0
  }
}
`, loginTuning, d.PlainPort)
	} else {
		d.ImplicitPort = freePort(t)
		def := opts.certs[""]
		fmt.Fprintf(&conf, `ssl = required
ssl_min_protocol = TLSv1.2
ssl_cert = <%s
ssl_key = <%s
service imap-login {
%s  inet_listener imap {
    port = %d
  }
  inet_listener imaps {
    port = %d
    ssl = yes
  }
}
`, def.CertFile, def.KeyFile, loginTuning, d.PlainPort, d.ImplicitPort)
		for addr, cert := range opts.certs {
			if addr == "" {
				continue
			}
			fmt.Fprintf(&conf, "local %s {\n  ssl_cert = <%s\n  ssl_key = <%s\n}\n", addr, cert.CertFile, cert.KeyFile)
		}
	}
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(binary, "-F", "-c", confPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		// The master kills its children; make sure none outlives the test.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})

	// Ready when the auth process answers: the greeting then says "ready".
	ready := testenv.WaitUntil(t, 15*time.Second, func() bool {
		select {
		case <-exited:
			t.Fatalf("dovecot exited at start:\n%s\n%s", out.String(), readFile(d.logPath))
		default:
		}
		return strings.Contains(readGreeting(d.Plain("127.0.0.1")), "ready.")
	})
	if !ready {
		t.Fatalf("dovecot not ready within 15s:\n%s\n%s", out.String(), readFile(d.logPath))
	}
	return d
}

func readGreeting(addr string) string {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return line
}

func readFile(path string) string {
	data, _ := os.ReadFile(path)
	return string(data)
}

// opsctlResult is what one run of the opsctl binary did.
type opsctlResult struct {
	stdout, stderr string
	code           int
}

// runOpsctl runs the built opsctl with extra environment variables.
func runOpsctl(t testing.TB, env []string, stdin string, args ...string) opsctlResult {
	t.Helper()
	cmd := exec.Command(testenv.Opsctl(t), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("opsctl %s: %v", strings.Join(args, " "), err)
		}
		code = exitErr.ExitCode()
	}
	return opsctlResult{out.String(), errOut.String(), code}
}
