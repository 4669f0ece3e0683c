package sockspy

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a UNIX connection, as the
// kernel reported it when the connection was made (SO_PEERCRED) or with a
// datagram (SCM_CREDENTIALS).
type Peer struct {
	PID, UID, GID int
	// Command is the peer's command line from /proc, or "" when the
	// process is gone or not visible.
	Command string
}

func (p Peer) String() string {
	s := fmt.Sprintf("pid=%d uid=%d gid=%d", p.PID, p.UID, p.GID)
	if p.Command != "" {
		s += " command=" + strconv.Quote(p.Command)
	}
	return s
}

// peerOf reads SO_PEERCRED of a connected socket.
func peerOf(rc syscall.RawConn) (Peer, bool) {
	var cred *unix.Ucred
	var err error
	if cerr := rc.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); cerr != nil || err != nil || cred == nil {
		return Peer{}, false
	}
	return peerFromCred(cred), true
}

func peerFromCred(cred *unix.Ucred) Peer {
	p := Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
	if p.PID > 0 {
		p.Command = commandOf(p.PID)
	}
	return p
}

// commandOf is the command line of pid with arguments joined by spaces, or
// its comm name for kernel threads and zombies.
func commandOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && len(b) > 0 {
		b = bytes.TrimRight(b, "\x00")
		s := strings.ReplaceAll(string(b), "\x00", " ")
		if len(s) > 512 {
			s = s[:512] + "..."
		}
		return s
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil {
		return "[" + strings.TrimSpace(string(b)) + "]"
	}
	return ""
}
