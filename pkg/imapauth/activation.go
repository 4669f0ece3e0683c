package imapauth

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// sdListenFDsStart is the first file descriptor systemd passes (SD_LISTEN_FDS_START).
const sdListenFDsStart = 3

// ActivationListener returns the listening UNIX socket that systemd passed
// by socket activation (LISTEN_PID and LISTEN_FDS), or nil when the process
// was not socket-activated. getenv is os.Getenv in production. Exactly one
// socket is expected: a unit that passes more is a configuration error.
// The file descriptor is marked close-on-exec.
func ActivationListener(getenv func(string) string) (net.Listener, error) {
	pidText, fdsText := getenv("LISTEN_PID"), getenv("LISTEN_FDS")
	if pidText == "" || fdsText == "" {
		return nil, nil
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil {
		return nil, fmt.Errorf("LISTEN_PID %q: expected a process id", pidText)
	}
	if pid != os.Getpid() {
		return nil, nil // meant for another process (our parent)
	}
	count, err := strconv.Atoi(fdsText)
	if err != nil || count < 0 {
		return nil, fmt.Errorf("LISTEN_FDS %q: expected a count of file descriptors", fdsText)
	}
	if count != 1 {
		return nil, fmt.Errorf("LISTEN_FDS=%d: expected exactly one socket (ListenStream=) in the socket unit", count)
	}
	syscall.CloseOnExec(sdListenFDsStart)
	file := os.NewFile(sdListenFDsStart, "systemd-socket")
	defer file.Close() // FileListener dups it
	ln, err := net.FileListener(file)
	if err != nil {
		return nil, fmt.Errorf("socket from systemd (fd %d): %w", sdListenFDsStart, err)
	}
	if _, ok := ln.(*net.UnixListener); !ok {
		ln.Close()
		return nil, fmt.Errorf("socket from systemd is %s, expected a UNIX stream socket (ListenStream=/path)", ln.Addr().Network())
	}
	return ln, nil
}
