package sockspy

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxSegment is the largest TCP payload that fits an IPv4 packet with
// 20-byte IP and TCP headers: 65535 - 40.
const maxSegment = 65495

// pipePair is one pipe(2), both ends blocking: the forwarding goroutines
// and the capture writer block in splice/tee on it, which is exactly the
// backpressure wanted.
type pipePair struct{ r, w int }

func newPipe(size int) (pipePair, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return pipePair{-1, -1}, fmt.Errorf("pipe: %w", err)
	}
	p := pipePair{fds[0], fds[1]}
	if size > 0 {
		p.grow(size)
	}
	return p, nil
}

// pipeFull is the size a connection's pipes grow to once a chunk fills
// them. They start at the kernel's default (64 KiB): pipe pages count
// against a per-user quota (/proc/sys/fs/pipe-user-pages-soft) beyond which
// an unprivileged user's new pipes get two pages, so connections that
// never send much must not hold megabytes of it.
const pipeFull = 1 << 20

// grow asks for a pipe of size bytes. Best effort: an unprivileged user's
// pipe quota may refuse it, and the smaller pipe still works, only slower.
func (p pipePair) grow(size int) bool {
	_, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, size)
	return err == nil
}

// size is the capacity of the pipe in bytes.
func (p pipePair) size() int {
	n, err := unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return 0
	}
	return n
}

func (p pipePair) close() {
	if p.r >= 0 {
		unix.Close(p.r)
	}
	if p.w >= 0 {
		unix.Close(p.w)
	}
}

// retryEINTR runs f until it does not fail with EINTR.
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// pendingFDs reports whether any message waiting in the receive queue of
// the UNIX stream socket fd carries file descriptors (SCM_RIGHTS). A
// zero-length MSG_PEEK walks the whole queue up to the first message with
// descriptors and hands out duplicates of them; those are closed here.
// splice(2) would silently drop such descriptors, so the caller copies
// through user space when this is true.
func pendingFDs(fd int, oob []byte) (bool, error) {
	msg := unix.Msghdr{Control: &oob[0]}
	msg.SetControllen(len(oob))
	_, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)),
		uintptr(unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC))
	if errno == unix.EAGAIN {
		return false, nil
	}
	if errno != 0 {
		return false, errno
	}
	if msg.Controllen == 0 {
		return false, nil
	}
	closeRights(oob[:msg.Controllen])
	return true, nil
}

// rights returns the descriptors carried in the control messages oob.
func rights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var fds []int
	for i := range msgs {
		if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return fds
}

func closeRights(oob []byte) {
	for _, fd := range rights(oob) {
		unix.Close(fd)
	}
}

// inQueue is the number of bytes waiting to be read on socket fd.
func inQueue(fd int) (int, error) {
	return unix.IoctlGetInt(fd, unix.SIOCINQ)
}

// writeFull writes all of b to the blocking descriptor fd.
func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := retryEINTR(func() (int, error) { return unix.Write(fd, b) })
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// maxStaged is how many stage pipes one direction of a connection may
// have waiting for the capture writer: while the writer empties one into
// the file, the forwarding fills the next. Beyond that the forwarding
// waits: backpressure, bounded at maxStaged pipes of payload.
const maxStaged = 4

// stagePool holds the stage pipes of one direction of a connection. A pipe
// belongs either to the forwarding goroutine (free, or being filled) or to
// the capture writer (queued); never to both, so neither ever waits on
// the other's pipe lock. The writer returns each pipe once it has written
// the records whose payload lies in it.
type stagePool struct {
	free    chan pipePair
	mu      sync.Mutex
	created int
	closed  bool
	// want is the size the pipes should have: that of the forwarding
	// pipe, whose chunks they take whole. sizes holds, by write end, the
	// size each pipe was last asked for (made or grown to, or refused:
	// a pipe is asked once).
	want  int
	sizes map[int]int
}

func newStagePool(size int) *stagePool {
	return &stagePool{free: make(chan pipePair, maxStaged), want: size, sizes: make(map[int]int, maxStaged)}
}

// get returns an empty pipe: a free one, a new one while fewer than
// maxStaged exist, or else the next one the writer returns. A pipe made
// before the forwarding pipe grew is grown first.
func (s *stagePool) get() (pipePair, error) {
	var p pipePair
	select {
	case p = <-s.free:
	default:
		s.mu.Lock()
		if s.created < maxStaged {
			s.created++
			want := s.want
			s.mu.Unlock()
			p, err := newPipe(want)
			s.mu.Lock()
			defer s.mu.Unlock()
			if err != nil {
				s.created--
				return p, err
			}
			s.sizes[p.w] = want
			return p, nil
		}
		s.mu.Unlock()
		p = <-s.free
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sizes[p.w] < s.want {
		// Once: a refusal is not asked again.
		p.grow(s.want)
		s.sizes[p.w] = s.want
	}
	return p, nil
}

// grow makes the pipes the pool hands out from now on size bytes large.
func (s *stagePool) grow(size int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = max(s.want, size)
}

// put gives an empty pipe back; after close it is closed instead.
func (s *stagePool) put(p pipePair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		p.close()
		return
	}
	s.free <- p // never blocks: at most maxStaged pipes exist
}

// close closes the free pipes now and every queued one once the writer
// returns it.
func (s *stagePool) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for {
		select {
		case p := <-s.free:
			p.close()
		default:
			return
		}
	}
}

// pipeLen is the number of bytes waiting in a pipe.
func pipeLen(fd int) (int, error) {
	return unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD
}
