package imapauth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/inputerr"
)

// TLSMode says how the connection to the IMAP server is secured.
type TLSMode int

const (
	// ImplicitTLS speaks TLS from the first byte (IMAPS, port 993).
	ImplicitTLS TLSMode = iota
	// StartTLS connects in clear text (port 143) and upgrades with STARTTLS
	// before anything secret is sent.
	StartTLS
)

// ParseTLSMode parses "implicit" or "starttls".
func ParseTLSMode(s string) (TLSMode, error) {
	switch s {
	case "implicit":
		return ImplicitTLS, nil
	case "starttls":
		return StartTLS, nil
	}
	return 0, inputerr.New("Config.TLS", strconv.Quote(s), "expected implicit or starttls")
}

func (m TLSMode) String() string {
	if m == StartTLS {
		return "starttls"
	}
	return "implicit"
}

// defaultPort is the IANA port of the mode.
func (m TLSMode) defaultPort() string {
	if m == StartTLS {
		return "143"
	}
	return "993"
}

// Config describes the IMAP server to check logins against.
type Config struct {
	// Server is HOST or HOST:PORT; an IPv6 address is written [ADDR]:PORT
	// or bare. The port defaults to 993 (implicit TLS) or 143 (STARTTLS).
	Server string
	TLS    TLSMode
	// CAFile is a PEM bundle of the certificate authorities to trust. Empty
	// means the system roots (which honour SSL_CERT_FILE and SSL_CERT_DIR).
	CAFile string
	// ServerName is the name the certificate must carry. Empty means the
	// host of Server; for an IP address the certificate's IP entries are
	// checked.
	ServerName string
	// Timeout bounds one whole check, from dial to answer. Zero means 10s.
	Timeout time.Duration
	// Warm is the number of connections kept ready for the next checks
	// (TLS up, greeting read); 0 connects per check. For daemons.
	Warm int
	// Pins, when there are any with those of PinFile, are the keys the
	// server's chain must hold: each value a pin as ParsePin reads it, or
	// several sha256//BASE64 joined by ";" as curl writes them. A
	// connection is then accepted only when the normal verification
	// succeeds and some certificate of the verified chain (the server's,
	// an intermediate's or the trusted CA's) has a pinned key; otherwise
	// the handshake is aborted, before any credential is sent, and the
	// check defers (PinMismatchError). Two pins allow a key rotation.
	Pins []string
	// PinFile is a file of more pins: one a line as ParsePin reads it,
	// blank lines and # comments skipped, at least one pin. NewChecker
	// reads it, and Checker.ReloadPins again.
	PinFile string
}

// DefaultTimeout is the time one check may take when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// splitServer returns the host and the dial address of server.
func splitServer(server string, mode TLSMode) (host, addr string, err error) {
	if server == "" {
		return "", "", inputerr.New("Config.Server", "", "empty, expected HOST or HOST:PORT")
	}
	if h, port, splitErr := net.SplitHostPort(server); splitErr == nil {
		if h == "" {
			return "", "", inputerr.New("Config.Server", strconv.Quote(server), "no host, expected HOST or HOST:PORT")
		}
		if n, convErr := strconv.Atoi(port); convErr != nil || n < 1 || n > 65535 {
			return "", "", inputerr.New("Config.Server", strconv.Quote(server), fmt.Sprintf("port %q is not a number from 1 to 65535", port))
		}
		return h, net.JoinHostPort(h, port), nil
	}
	h := strings.TrimSuffix(strings.TrimPrefix(server, "["), "]")
	if strings.ContainsAny(h, "[]/ ") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return "", "", inputerr.New("Config.Server", strconv.Quote(server), "expected HOST or HOST:PORT")
	}
	return h, net.JoinHostPort(h, mode.defaultPort()), nil
}

// newTLSConfig builds the one TLS configuration every connection of a
// Checker uses: TLS 1.2 or newer, the chain verified against roots and the
// name checked. There is deliberately no way to skip verification. The
// session cache lets later connections resume the TLS session and skip the
// certificate exchange.
func newTLSConfig(cfg Config, host string) (*tls.Config, error) {
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		pem, err := readCAFile(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, &CAFileError{Path: cfg.CAFile, Err: errors.New("no PEM certificate found, expected a CA bundle")}
		}
	}
	name := cfg.ServerName
	if name == "" {
		name = host
	}
	if strings.ContainsAny(name, " /") {
		return nil, inputerr.New("Config.ServerName", strconv.Quote(name), "expected a host name or IP address")
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            roots, // nil: the system roots
		ServerName:         name,  // an IP address here is checked against IP SANs
		NextProtos:         []string{"imap"},
		ClientSessionCache: tls.NewLRUClientSessionCache(64),
	}, nil
}

// CAFileError is a CA bundle (Config.CAFile) that cannot be used. It wraps
// fs.ErrNotExist when the file is missing and ErrNotRegularFile when the
// path names something else than a file: mistakes in the path given, as
// opposed to a file that cannot be read or holds no certificate.
type CAFileError struct {
	Path string
	Err  error
}

func (e *CAFileError) Error() string { return fmt.Sprintf("Config.CAFile %s: %v", e.Path, e.Err) }
func (e *CAFileError) Unwrap() error { return e.Err }

// ErrNotRegularFile is a path that names a folder, a device, a FIFO or a
// socket where a regular file is expected.
var ErrNotRegularFile = errors.New("not a regular file")

// maxCAFile bounds a CA bundle: Debian's whole ca-certificates.crt is
// about 220 KiB.
const maxCAFile = 16 << 20

// readCAFile reads the PEM bundle at path (see readRegularFile).
func readCAFile(path string) ([]byte, error) {
	data, err := readRegularFile(path, maxCAFile, "a PEM file of CA certificates")
	if errors.Is(err, errFileTooLarge) {
		err = fmt.Errorf("larger than %d MiB, expected a CA bundle", maxCAFile>>20)
	}
	if err != nil {
		return nil, &CAFileError{Path: path, Err: err}
	}
	return data, nil
}

// errFileTooLarge is a file larger than its reader takes.
var errFileTooLarge = errors.New("file too large")

// readRegularFile reads the file at path, up to limit bytes (more is
// errFileTooLarge). Anything but a regular file is refused before it is
// opened, as not being want: a FIFO would block the start for as long as
// no one writes to it (and opening it lets a writer waiting on it go on),
// a device such as /dev/zero never ends, and opening some devices does
// something (/dev/watchdog starts counting down to a reboot). So the file
// is looked at through an O_PATH descriptor, which opens nothing, and only
// a regular file is then opened, through /proc/self/fd: the very file
// that was looked at. Its errors do not repeat the path.
func readRegularFile(path string, limit int64, want string) ([]byte, error) {
	pathFD, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err // the caller names the path
	}
	defer unix.Close(pathFD)
	var st unix.Stat_t
	if err := unix.Fstat(pathFD, &st); err != nil {
		return nil, err
	}
	if mode := fileMode(st.Mode); !mode.IsRegular() {
		return nil, fmt.Errorf("%w (%s), expected %s", ErrNotRegularFile, fileKind(mode), want)
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pathFD), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	file := os.NewFile(uintptr(fd), path)
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errFileTooLarge
	}
	return data, nil
}

// fileMode turns the type bits of st_mode into an fs.FileMode's.
func fileMode(mode uint32) fs.FileMode {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return 0
	case unix.S_IFDIR:
		return fs.ModeDir
	case unix.S_IFIFO:
		return fs.ModeNamedPipe
	case unix.S_IFSOCK:
		return fs.ModeSocket
	case unix.S_IFCHR:
		return fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		return fs.ModeDevice
	}
	return fs.ModeIrregular
}

// fileKind names the kind of a file that is not a regular one.
func fileKind(mode fs.FileMode) string {
	switch mode.Type() {
	case fs.ModeDir:
		return "a folder"
	case fs.ModeNamedPipe:
		return "a FIFO"
	case fs.ModeSocket:
		return "a socket"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "a device"
	}
	return "not a file"
}
