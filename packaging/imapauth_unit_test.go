package packaging_test

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opsctl/opsctl/internal/testenv"
)

// unitExecStart is the ExecStart= of a packaged service as systemd splits
// it, with the settings of env: ${VAR} is one word, $VAR is split on
// white space (an empty one gives no word).
func unitExecStart(t *testing.T, unit string, env map[string]string) []string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "packaging/systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(text), "\\\n", " ")
	var line string
	for _, l := range strings.Split(joined, "\n") {
		if rest, ok := strings.CutPrefix(l, "ExecStart="); ok {
			line = rest
		}
	}
	if line == "" {
		t.Fatalf("%s has no ExecStart=", unit)
	}
	var argv []string
	for _, word := range strings.Fields(line) {
		if m := regexp.MustCompile(`^\$\{(\w+)\}$`).FindStringSubmatch(word); m != nil {
			argv = append(argv, env[m[1]])
		} else if m := regexp.MustCompile(`^\$(\w+)$`).FindStringSubmatch(word); m != nil {
			argv = append(argv, strings.Fields(env[m[1]])...)
		} else {
			argv = append(argv, word)
		}
	}
	return argv
}

// defaultFile reads a packaged /etc/default file as systemd's
// EnvironmentFile= does (KEY=VALUE lines, # comments).
func defaultFile(t *testing.T, name string) map[string]string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "packaging/default", name))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(text), "\n") {
		if key, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			env[strings.TrimSpace(key)] = value
		}
	}
	return env
}

// The packaged settings say that Exim's user and root may ask the daemon
// (install.md: "the Exim user and root"); root is who tries it by hand.
func TestPackagedIMAPAuthServiceAnswersRoot(t *testing.T) {
	testenv.NeedRoot(t) // the client must be uid 0
	if _, err := user.Lookup("Debian-exim"); err != nil {
		testenv.Missing(t, "the user Debian-exim (exim4-base) named by the packaged settings")
	}
	env := defaultFile(t, "opsctl-imap-auth")
	// A closed port: the answer is defer either way; the log says whether
	// the client was refused.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env["OPSCTL_IMAP_SERVER"] = closed.Addr().String()
	closed.Close()
	argv := unitExecStart(t, "opsctl-imap-auth.service", env)
	if argv[0] != "/usr/bin/opsctl" {
		t.Fatalf("ExecStart runs %s", argv[0])
	}
	socket := filepath.Join(t.TempDir(), "imap-auth.sock")
	cmd := exec.Command(testenv.Opsctl(t), append(argv[1:], "--socket", socket)...)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if conn, err = net.Dial("unix", socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon of %v did not listen: %v\n%s", argv, err, stderr.String())
		}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	b64 := base64.StdEncoding.EncodeToString
	io.WriteString(conn, b64([]byte("alice"))+" "+b64([]byte("secret"))+"\n")
	reply, _ := io.ReadAll(bufio.NewReader(conn))
	if string(reply) != "defer" {
		t.Errorf("reply %q, want defer (the IMAP server is down)", reply)
	}
	if strings.Contains(stderr.String(), "uid not allowed") {
		t.Errorf("the packaged service refuses root (ExecStart %v):\n%s", argv, stderr.String())
	}
}

// The Exim authenticators and the examples of docs/imap-auth.md must name
// the socket the packaged socket unit listens on: an admin who installs the
// package and copies the documented authenticators gets 435 for every login
// when the paths differ.
func TestIMAPAuthDocsUseThePackagedSocket(t *testing.T) {
	unit, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "packaging/systemd/opsctl-imap-auth.socket"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ListenStream=(\S+)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("opsctl-imap-auth.socket has no ListenStream=")
	}
	packaged := string(m[1])
	for _, page := range []string{"docs/imap-auth.md", "docs/install.md"} {
		text, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), page))
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range regexp.MustCompile(`/run/[\w./-]+\.sock`).FindAllString(string(text), -1) {
			if path != packaged {
				t.Errorf("%s names the socket %s, the package listens on %s", page, path, packaged)
			}
		}
	}
}
