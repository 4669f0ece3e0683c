package imapauth

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peer is the process at the other end of a UNIX socket connection, as the
// kernel saw it when the connection was made (SO_PEERCRED).
type peer struct {
	pid int32
	uid uint32
}

func peerOf(conn *net.UnixConn) (peer, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	if credErr != nil {
		return peer{}, fmt.Errorf("SO_PEERCRED: %w", credErr)
	}
	return peer{pid: cred.Pid, uid: cred.Uid}, nil
}
