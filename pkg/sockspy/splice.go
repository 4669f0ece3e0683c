package sockspy

import (
	"errors"
	"fmt"
	"io"
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
	if size > 0 {
		// Best effort: an unprivileged user's pipe quota may refuse it,
		// and the default 64 KiB pipe still works, only slower.
		_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, size)
	}
	return pipePair{fds[0], fds[1]}, nil
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

// movePipe moves n bytes from one pipe to another with splice(2): the
// pages change hands, nothing is copied.
func movePipe(from, to, n int) error {
	for n > 0 {
		k, err := retryEINTR(func() (int, error) {
			k, err := unix.Splice(from, nil, to, nil, n, unix.SPLICE_F_MOVE)
			return int(k), err
		})
		if err != nil {
			return err
		}
		if k == 0 {
			return io.ErrUnexpectedEOF
		}
		n -= k
	}
	return nil
}
