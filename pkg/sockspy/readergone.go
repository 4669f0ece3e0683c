package sockspy

import (
	"context"
	"os"

	"golang.org/x/sys/unix"
)

// watchReaderGone closes the returned channel and calls stop when the
// reader of out (a pipe, FIFO or socket) goes away, until ctx ends. A
// write would tell too, but only when there is traffic: an idle capture
// whose reader (Wireshark, less) went away must stop as well, and put a
// swapped socket back.
func watchReaderGone(ctx context.Context, out *os.File, stop func()) <-chan struct{} {
	gone := make(chan struct{})
	fd := int(out.Fd())
	go func() {
		for ctx.Err() == nil {
			// No events asked: only POLLERR (a pipe without reader) or
			// POLLHUP (a socket whose peer closed) wake it. The timeout
			// bounds how long it outlives ctx.
			fds := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(fds, 200)
			if err != nil && err != unix.EINTR {
				return
			}
			if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				close(gone)
				stop()
				return
			}
		}
	}()
	return gone
}

// readerIsGone reports whether the reader of out (a pipe, FIFO or socket)
// has gone away, now.
func readerIsGone(out *os.File) bool {
	fds := []unix.PollFd{{Fd: int32(out.Fd())}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
}
