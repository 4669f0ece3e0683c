package imapauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// someOtherPin is a pin no test certificate has.
var someOtherPin = Pin(sha256.Sum256([]byte("no key of the tests")))

func TestParsePinReadsBothFormsAndNothingElse(t *testing.T) {
	pin := Pin(sha256.Sum256([]byte("a key")))
	encoded := base64.StdEncoding.EncodeToString(pin[:])
	for _, s := range []string{encoded, "sha256//" + encoded} {
		got, err := ParsePin(s)
		if err != nil || got != pin {
			t.Errorf("ParsePin(%q) = %v, %v; want %v", s, got, err, pin)
		}
	}
	if got := pin.String(); got != "sha256//"+encoded {
		t.Errorf("String() = %q, want sha256//BASE64", got)
	}
	hexPin := strings.Repeat("ab", 32)
	bad := []string{
		"", "sha256//", encoded[:43], encoded + "=", encoded[:20] + "\n" + encoded[20:],
		"sha1//" + encoded, "SHA256//" + encoded, hexPin, " " + encoded, encoded + " ",
		base64.StdEncoding.EncodeToString(make([]byte, 20)), // a SHA-1 size
		strings.TrimRight(encoded, "="),                     // unpadded
		base64.URLEncoding.EncodeToString(pin[:]) + "-_",
	}
	for _, s := range bad {
		if _, err := ParsePin(s); err == nil || !strings.Contains(err.Error(), "expected the base64 of a SHA-256 hash") {
			t.Errorf("ParsePin(%q): %v, want an error saying what a pin is", s, err)
		}
	}
}

func TestConfigPinsTakeCurlsListsAndNameTheInput(t *testing.T) {
	a, b := Pin(sha256.Sum256([]byte("a"))), Pin(sha256.Sum256([]byte("b")))
	checker, err := NewChecker(Config{Server: "imap.test", Pins: []string{a.String() + ";" + b.String()}})
	if err != nil || !slices.Equal(checker.Pins(), []Pin{a, b}) {
		t.Fatalf("curl's list form: %v, %v; want [%v %v]", checker, err, a, b)
	}
	_, err = NewChecker(Config{Server: "imap.test", Pins: []string{a.String(), "sha256//nope"}})
	if err == nil || !strings.HasPrefix(err.Error(), `Config.Pins "sha256//nope": expected the base64`) {
		t.Fatalf("malformed pin: %v, want an error naming Config.Pins and the value", err)
	}
}

func TestPinFileErrorsNameTheFileAndTheLine(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pins.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cases := []struct {
		name, path string
		is         error // wrapped by the error, when not nil
		want       string
	}{
		{"missing", filepath.Join(dir, "none"), fs.ErrNotExist, "no such file"},
		{"folder", dir, ErrNotRegularFile, "(a folder)"},
		{"FIFO, without blocking", fifo, ErrNotRegularFile, "(a FIFO)"},
		{"empty", write("empty", ""), errNoPins, "no pin in the file"},
		{"comments only", write("comments", "# nothing yet\n\n"), errNoPins, "no pin in the file"},
		{"a bad line", write("bad", "# ok\n"+someOtherPin.String()+"\nsha256//nope # typo\n"), nil, `line 3: "sha256//nope": expected`},
		{"too large", write("large", strings.Repeat("#", maxPinFile+1)), nil, "larger than 64 KiB"},
	}
	for _, c := range cases {
		_, err := NewChecker(Config{Server: "imap.test", PinFile: c.path})
		var fileErr *PinFileError
		if !errors.As(err, &fileErr) || !strings.HasPrefix(err.Error(), "Config.PinFile "+c.path+": ") ||
			!strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line naming Config.PinFile %s and %q", c.name, err, c.path, c.want)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v does not wrap %v", c.name, err, c.is)
		}
	}
}

func TestParsePinFileSkipsCommentsAndBlankLines(t *testing.T) {
	a, b := Pin(sha256.Sum256([]byte("a"))), Pin(sha256.Sum256([]byte("b")))
	content := "# imap.test, 2026\r\n\r\n  " + a.String() + "  # this year's key\r\n\t" +
		strings.TrimPrefix(b.String(), "sha256//") + "\n#" + someOtherPin.String() + "\n"
	pins, err := parsePinFile([]byte(content))
	if err != nil || !slices.Equal(pins, []Pin{a, b}) {
		t.Fatalf("pins %v, %v; want [%v %v]", pins, err, a, b)
	}
	many := strings.Repeat(a.String()+"\n", maxPins+1)
	if _, err := parsePinFile([]byte(many)); err == nil || !strings.Contains(err.Error(), "more than 64 pins") {
		t.Fatalf("%d pins: %v, want an error", maxPins+1, err)
	}
}

// FuzzParsePinFile: whatever the file holds, the parser returns pins that
// read back the same, or an error of one line; never a panic, never an
// empty list without an error.
func FuzzParsePinFile(f *testing.F) {
	pin := Pin(sha256.Sum256([]byte("a")))
	f.Add([]byte(pin.String() + "\n"))
	f.Add([]byte("# comment\n" + strings.TrimPrefix(pin.String(), "sha256//") + " # key\r\n\n"))
	f.Add([]byte("sha256//nope\n"))
	f.Add([]byte(""))
	f.Add([]byte(pin.String() + ";" + pin.String()))
	f.Fuzz(func(t *testing.T, data []byte) {
		pins, err := parsePinFile(data)
		if err != nil {
			if pins != nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("pins %v with error %q", pins, err)
			}
			return
		}
		if len(pins) == 0 || len(pins) > maxPins {
			t.Fatalf("%d pins without an error", len(pins))
		}
		var again strings.Builder
		for _, p := range pins {
			again.WriteString(p.String() + "\n")
		}
		reread, err := parsePinFile([]byte(again.String()))
		if err != nil || !slices.Equal(reread, pins) {
			t.Fatalf("pins written out read back as %v, %v; want %v", reread, err, pins)
		}
	})
}

// pinnedScripted serves a scripted server (TLS up to maxVersion; 0: Go's
// default) with a good certificate of a new test PKI, and returns it with
// the pins of its leaf and its CA.
func pinnedScripted(t *testing.T, maxVersion uint16) (server *scriptedServer, addr, caFile string, leaf, ca Pin) {
	t.Helper()
	pki := newTestPKI(t)
	good := pki.good(t)
	server = &scriptedServer{
		greeting: "* OK [CAPABILITY IMAP4rev1] ready", loginReply: "OK Logged in",
		tlsConfig: &tls.Config{Certificates: []tls.Certificate{good.TLS}, MaxVersion: maxVersion},
	}
	cert, _ := x509.ParseCertificate(good.TLS.Certificate[0])
	return server, server.start(t), pki.CAFile, PinOf(cert), PinOf(pki.caCert)
}

func TestCheckerAcceptsAChainWithAPinnedKeyOnly(t *testing.T) {
	server, addr, caFile, leaf, ca := pinnedScripted(t, 0)
	cases := []struct {
		name string
		pins []string
		want Verdict
	}{
		{"the server's key", []string{leaf.String()}, Yes},
		{"the CA's key", []string{ca.String()}, Yes},
		{"two pins, the second matching", []string{someOtherPin.String(), leaf.String()}, Yes},
		{"no pin matching", []string{someOtherPin.String()}, Defer},
	}
	for _, c := range cases {
		checker := newTestChecker(t, Config{Server: addr, CAFile: caFile, Pins: c.pins})
		got, err := checker.Check(context.Background(), "alice", "pw")
		checker.Close()
		if got != c.want {
			t.Errorf("%s: %v (%v), want %v", c.name, got, err, c.want)
		}
		if c.want != Defer {
			continue
		}
		var mismatch *PinMismatchError
		if !errors.As(err, &mismatch) {
			t.Errorf("%s: %v, want a PinMismatchError", c.name, err)
			continue
		}
		// One line: the server, the pins expected, the keys found.
		for _, want := range []string{addr + ": server key not pinned: expected " + someOtherPin.String(),
			"found " + leaf.String() + " (CN=localhost), " + ca.String() + " (CN=opsctl test CA)"} {
			if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s: %q does not say %q in one line", c.name, err, want)
			}
		}
	}
	if log := server.log(); strings.Count(log, "LOGIN") != 3 {
		t.Errorf("commands %s: want the LOGIN of the 3 pinned checks only", log)
	}
}

func TestWrongPinSendsNoLoginOverSTARTTLS(t *testing.T) {
	pki := newTestPKI(t)
	addr, commands := startTLSScript(t, pki.good(t).TLS, "IMAP4rev1 AUTH=PLAIN")
	checker := newTestChecker(t, Config{Server: addr, TLS: StartTLS, CAFile: pki.CAFile, Pins: []string{someOtherPin.String()}})
	defer checker.Close()
	got, err := checker.Check(context.Background(), "alice", "pw")
	var mismatch *PinMismatchError
	if got != Defer || !errors.As(err, &mismatch) {
		t.Fatalf("%v (%v), want defer for the pin", got, err)
	}
	if seen := commands(); len(seen) != 0 {
		t.Fatalf("commands sent over TLS to a server whose key is not pinned: %v", seen)
	}
}

// writePins writes a pin file of pins.
func writePins(t *testing.T, path string, pins ...Pin) {
	t.Helper()
	var b strings.Builder
	for _, p := range pins {
		b.WriteString(p.String() + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadedPinsApplyToResumedSessionsAndReadyConnections: a reload
// applies at once, to a connection made ready before it and to a resumed
// TLS session (whose certificates were verified before it): a reload that
// keeps the server's key still logs in on a resumed session, one that
// drops it sends no LOGIN.
func TestReloadedPinsApplyToResumedSessionsAndReadyConnections(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, warm := range []int{0, 1} {
			server, addr, caFile, leaf, _ := pinnedScripted(t, version)
			pinFile := filepath.Join(t.TempDir(), "pins")
			writePins(t, pinFile, leaf)
			checker := newTestChecker(t, Config{Server: addr, CAFile: caFile, PinFile: pinFile, Warm: warm})
			if got, err := checker.Check(context.Background(), "alice", "pw"); got != Yes {
				t.Fatalf("TLS %x, warm %d, pinned key: %v (%v), want yes", version, warm, got, err)
			}
			waitFor(t, func() bool { return server.conns.Load() == int32(1+warm) }) // the replacement is ready

			writePins(t, pinFile, someOtherPin, leaf)
			if n, err := checker.ReloadPins(); n != 2 || err != nil {
				t.Fatalf("TLS %x, warm %d: reload: %d pins, %v", version, warm, n, err)
			}
			if got, err := checker.Check(context.Background(), "alice", "pw"); got != Yes {
				t.Fatalf("TLS %x, warm %d, key still pinned: %v (%v), want yes", version, warm, got, err)
			}
			server.mu.Lock()
			resumed := server.resumed[len(server.resumed)-1]
			server.mu.Unlock()
			if !resumed {
				t.Fatalf("TLS %x, warm %d: the check after the reload did not resume the TLS session", version, warm)
			}

			writePins(t, pinFile, someOtherPin)
			if n, err := checker.ReloadPins(); n != 1 || err != nil {
				t.Fatalf("TLS %x, warm %d: reload: %d pins, %v", version, warm, n, err)
			}
			got, err := checker.Check(context.Background(), "alice", "pw")
			var mismatch *PinMismatchError
			if got != Defer || !errors.As(err, &mismatch) {
				t.Fatalf("TLS %x, warm %d, key no longer pinned: %v (%v), want defer for the pin", version, warm, got, err)
			}
			checker.Close()
			if log := server.log(); strings.Count(log, "LOGIN") != 2 {
				t.Fatalf("TLS %x, warm %d: commands %s, want the two LOGINs while the key was pinned", version, warm, log)
			}
		}
	}
}

func TestFailedReloadKeepsThePinsInForce(t *testing.T) {
	_, addr, caFile, leaf, _ := pinnedScripted(t, 0)
	pinFile := filepath.Join(t.TempDir(), "pins")
	writePins(t, pinFile, leaf)
	checker := newTestChecker(t, Config{Server: addr, CAFile: caFile, PinFile: pinFile})
	defer checker.Close()
	for _, broken := range []string{"sha256//truncat", "", "# all commented out\n"} {
		os.WriteFile(pinFile, []byte(broken), 0o644)
		n, err := checker.ReloadPins()
		var fileErr *PinFileError
		if !errors.As(err, &fileErr) || n != 1 || !slices.Equal(checker.Pins(), []Pin{leaf}) {
			t.Fatalf("file %q: reload %d, %v, pins %v; want an error and the pin in force kept", broken, n, err, checker.Pins())
		}
		if got, err := checker.Check(context.Background(), "alice", "pw"); got != Yes {
			t.Fatalf("after a failed reload: %v (%v), want yes", got, err)
		}
	}
	os.Remove(pinFile)
	if _, err := checker.ReloadPins(); !errors.Is(err, fs.ErrNotExist) || !slices.Equal(checker.Pins(), []Pin{leaf}) {
		t.Fatalf("file removed: %v, pins %v", err, checker.Pins())
	}
	without := newTestChecker(t, Config{Server: addr, CAFile: caFile})
	if _, err := without.ReloadPins(); !errors.Is(err, ErrNoPinFile) {
		t.Fatalf("reload without a pin file: %v", err)
	}
}

func TestDaemonCountsPinMismatches(t *testing.T) {
	_, addr, caFile, _, _ := pinnedScripted(t, 0)
	metrics := NewMetrics(prometheus.NewRegistry())
	checker := newTestChecker(t, Config{Server: addr, CAFile: caFile, Pins: []string{someOtherPin.String()}, Timeout: 5 * time.Second})
	path := startDaemon(t, &Server{Checker: checker, Metrics: metrics})
	if got := ask(t, path, request("alice", "pw")); got != "defer" {
		t.Fatalf("key not pinned: %q, want defer", got)
	}
	if n := testutil.ToFloat64(metrics.notPinned); n != 1 {
		t.Fatalf("pin mismatches counted %v, want 1", n)
	}
}

func TestVerifiedChainIsLeafFirstAndSendsNoCredential(t *testing.T) {
	server, addr, caFile, leaf, ca := pinnedScripted(t, 0)
	checker := newTestChecker(t, Config{Server: addr, CAFile: caFile})
	chain, err := checker.VerifiedChain(context.Background())
	checker.Close()
	if err != nil || len(chain) != 2 || PinOf(chain[0]) != leaf || PinOf(chain[1]) != ca {
		t.Fatalf("chain %v, %v; want the leaf then the CA", chain, err)
	}
	if log := server.log(); strings.Contains(log, "LOGIN") {
		t.Fatalf("commands %s: LOGIN sent", log)
	}
}

// certWithSubject is a self-signed certificate whose common name is cn.
func certWithSubject(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	pair := newTestPKI(t).issue(t, "subject", []string{cn}, nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), true)
	cert, err := x509.ParseCertificate(pair.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestPinMismatchErrorIsOneLineWhateverTheSubject: the subjects come from
// the server's certificates, and pkix leaves line breaks and terminal
// escapes in them as they are.
func TestPinMismatchErrorIsOneLineWhateverTheSubject(t *testing.T) {
	hostile := certWithSubject(t, "imap.test\nopsctl: imap-auth check: all fine\x1b[2K")
	plain := certWithSubject(t, "imap.test")
	msg := (&PinMismatchError{Expected: []Pin{someOtherPin}, Found: []*x509.Certificate{hostile, plain}}).Error()
	if strings.ContainsAny(msg, "\n\x1b") {
		t.Fatalf("the error is not one line of text: %q", msg)
	}
	if !strings.Contains(msg, `("CN=imap.test\nopsctl: imap-auth check: all fine\x1b[2K")`) || !strings.Contains(msg, "(CN=imap.test)") {
		t.Fatalf("the subjects are not shown (quoted where needed): %s", msg)
	}
}

// TestFilesThatAreNotRegularAreNeverOpened: a --ca-file or --pin-file was
// opened (O_RDONLY|O_NONBLOCK) and then found to be a FIFO or a device.
// Opening does things: it lets a writer waiting on the FIFO go on, and
// /dev/watchdog, once opened, reboots the machine unless it is fed. A pin
// file in a folder another user owns could be made a link to it before a
// SIGHUP. Now the kind is looked at through an O_PATH descriptor, which
// opens nothing (inotify sees no IN_OPEN), and only a regular file is
// opened.
func TestFilesThatAreNotRegularAreNeverOpened(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pins.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	paths := []string{fifo}
	if os.Geteuid() == 0 {
		null := filepath.Join(dir, "null") // /dev/null's numbers: opening it is harmless
		if err := unix.Mknod(null, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, null)
	}
	inotify, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(inotify)
	for _, path := range paths {
		if _, err := unix.InotifyAddWatch(inotify, path, unix.IN_OPEN); err != nil {
			t.Fatal(err)
		}
		for _, cfg := range []Config{{Server: "imap.test", PinFile: path}, {Server: "imap.test", CAFile: path}} {
			if _, err := NewChecker(cfg); !errors.Is(err, ErrNotRegularFile) {
				t.Errorf("%+v: %v; want ErrNotRegularFile", cfg, err)
			}
		}
	}
	buf := make([]byte, 4096)
	if n, _ := unix.Read(inotify, buf); n > 0 {
		t.Errorf("a FIFO or device was opened (%d bytes of inotify IN_OPEN events) before it was found not to be a regular file", n)
	}
}
