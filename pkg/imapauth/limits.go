package imapauth

import (
	"fmt"
	"strconv"
	"sync"
	"syscall"

	"github.com/opsctl/opsctl/internal/inputerr"

	"golang.org/x/sys/unix"
)

// Connection limits. Every connection of an allowed client holds a
// descriptor, a goroutine and a request buffer until its line has arrived
// (at most ReadTimeout) and been answered. Without a cap, one allowed uid
// opening idle connections ran the daemon out of descriptors (21,000 of
// them hit EMFILE), and from then on nobody was answered. Clients whose
// uid is not allowed never hold a slot: they are answered and closed in
// the accept loop itself (see turnAway), so every slot below is kept for
// the allowed uids.
const (
	// maxConnectionsCeiling bounds the default cap where the descriptor
	// limit is high (systemd's services get 524288): 4096 connections
	// waiting for their line are some 40 MB of buffers and stacks, far
	// more than Exim's smtp_accept_max of SMTP sessions can ask at once.
	maxConnectionsCeiling = 4096
	// baseDescriptors are the descriptors of everything but clients and
	// IMAP connections: stdio, the listener, the spare descriptor, the
	// runtime's epoll and wake-up pipe, the log, and room for the accept
	// loop to take one more client than the caps allow and turn it away.
	baseDescriptors = 32
)

// ConnectionLimits are the caps Serve applies to the connections of allowed
// clients.
type ConnectionLimits struct {
	// Total bounds the connections open at once, all uids together.
	Total int
	// PerUID bounds those of one uid, so that one client cannot take
	// every slot from the others.
	PerUID int
	// OpenFiles is the descriptor limit (soft RLIMIT_NOFILE) of the process
	// and Reserved the part of it kept for everything but client
	// connections; Total never exceeds OpenFiles - Reserved.
	OpenFiles uint64
	Reserved  int
}

// ConnectionLimits returns the caps Serve applies: MaxConnections and
// MaxConnectionsPerUID, or for those left at zero the defaults sized from
// the process's descriptor limit. It fails when a cap cannot be kept: more
// connections than the descriptor limit leaves room for, or a per-uid cap
// above the total.
func (s *Server) ConnectionLimits() (ConnectionLimits, error) {
	s.init()
	var rlimit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rlimit); err != nil {
		return ConnectionLimits{}, fmt.Errorf("reading the descriptor limit (RLIMIT_NOFILE): %w", err)
	}
	return sizeConnectionLimits(rlimit.Cur, s.reservedDescriptors(), s.MaxConnections, s.MaxConnectionsPerUID)
}

// reservedDescriptors are those kept for everything but client
// connections. An IMAP login counts twice: the LOGOUT of one connection
// overlaps the login on the next.
func (s *Server) reservedDescriptors() int {
	return baseDescriptors + 2*s.MaxConcurrent + s.OtherDescriptors
}

func sizeConnectionLimits(openFiles uint64, reserved, total, perUID int) (ConnectionLimits, error) {
	limits := ConnectionLimits{OpenFiles: openFiles, Reserved: reserved, Total: total, PerUID: perUID}
	var room int
	if openFiles > uint64(reserved) {
		room = int(min(openFiles-uint64(reserved), 1<<30))
	}
	if room < 1 {
		return limits, fmt.Errorf("the descriptor limit (RLIMIT_NOFILE %d) leaves no room for client connections: %d are kept for the rest of the daemon", openFiles, reserved)
	}
	switch {
	case total < 0:
		return limits, inputerr.New("Server.MaxConnections", strconv.Itoa(total), "expected 0 (sized from the descriptor limit) or more")
	case total == 0:
		limits.Total = min(room, maxConnectionsCeiling)
	case total > room:
		return limits, inputerr.New("Server.MaxConnections", strconv.Itoa(total), fmt.Sprintf("the descriptor limit (RLIMIT_NOFILE %d) leaves room for %d client connections (%d are kept for the rest of the daemon); raise the limit (LimitNOFILE=) or lower the cap", openFiles, room, reserved))
	}
	switch {
	case perUID < 0:
		return limits, inputerr.New("Server.MaxConnectionsPerUID", strconv.Itoa(perUID), "expected 0 (half of Server.MaxConnections) or more")
	case perUID == 0:
		// Half: with two uids allowed (Exim's and root), either keeps
		// half of the slots whatever the other does.
		limits.PerUID = max(1, limits.Total/2)
	case perUID > limits.Total:
		return limits, inputerr.New("Server.MaxConnectionsPerUID", strconv.Itoa(perUID), fmt.Sprintf("expected at most Server.MaxConnections (%d)", limits.Total))
	}
	return limits, nil
}

// RaiseOpenFileLimit sets the soft descriptor limit (RLIMIT_NOFILE) of the
// process to its hard limit, as systemd advises for services that hold many
// descriptors (its default soft limit, 1024, is kept low only for programs
// that use select(2)), and returns the soft limit now in force. Go's
// runtime already raises it to one below the hard limit at start; this
// makes the whole hard limit usable and the figure explicit.
func RaiseOpenFileLimit() (uint64, error) {
	var rlimit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rlimit); err != nil {
		return 0, fmt.Errorf("reading the descriptor limit (RLIMIT_NOFILE): %w", err)
	}
	if rlimit.Cur < rlimit.Max {
		raised := syscall.Rlimit{Cur: rlimit.Max, Max: rlimit.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return rlimit.Cur, fmt.Errorf("raising the descriptor limit (RLIMIT_NOFILE) from %d to %d: %w", rlimit.Cur, rlimit.Max, err)
		}
		rlimit.Cur = rlimit.Max
	}
	return rlimit.Cur, nil
}

// connSlots counts the open connections of allowed clients, in total and
// per uid. Only allowed uids reach it, so the map holds a handful of keys.
type connSlots struct {
	limits ConnectionLimits

	mu     sync.Mutex
	total  int
	perUID map[uint32]int
}

// limitName is the label of the cap a connection was turned away by.
type limitName string

const (
	limitNone        limitName = ""
	limitTotal       limitName = "total"
	limitPerUID      limitName = "per_uid"
	limitDescriptors limitName = "descriptors"
)

// take counts one more connection of uid, or reports the cap it would
// exceed.
func (c *connSlots) take(uid uint32) limitName {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perUID[uid] >= c.limits.PerUID {
		return limitPerUID
	}
	if c.total >= c.limits.Total {
		return limitTotal
	}
	if c.perUID == nil {
		c.perUID = make(map[uint32]int)
	}
	c.perUID[uid]++
	c.total++
	return limitNone
}

func (c *connSlots) give(uid uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	if c.perUID[uid]--; c.perUID[uid] <= 0 {
		delete(c.perUID, uid)
	}
}

// spareDescriptor is a descriptor held in reserve. When the process has
// none left, accept(2) fails with EMFILE before it even looks at the
// queue, so the clients waiting there would hang until Exim's time-out and
// the accept loop would spin. Giving the spare back lets the loop accept
// one client, answer it "defer" and close it, then take the spare again
// (see Server.acceptOnSpare).
type spareDescriptor struct{ fd int }

func openSpare() spareDescriptor {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return spareDescriptor{fd: -1}
	}
	return spareDescriptor{fd: fd}
}

// release closes the spare, if held, and reports whether it was.
func (s *spareDescriptor) release() bool {
	if s.fd < 0 {
		return false
	}
	unix.Close(s.fd)
	s.fd = -1
	return true
}

func (s *spareDescriptor) held() bool { return s.fd >= 0 }

// retake opens the spare again when it is not held (it may fail while the
// process still has no descriptor free; the next EMFILE tries again).
func (s *spareDescriptor) retake() {
	if s.fd < 0 {
		*s = openSpare()
	}
}
