package imapauth

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// How a reply reaches Exim intact. Closing a UNIX stream socket whose
// receive queue still holds data makes the kernel report ECONNRESET to the
// peer once it has read what was queued for it; Exim's ${readsocket} reads
// with stdio, whose fgets(3) then returns nothing at all, so a "defer" sent
// just before such a close reached server_condition as an empty string: a
// failed authentication (535). Measured with Exim 4.96: "" for the close
// with unread input, "defer" for the sequence below.
//
// The sequence: write the reply, shut the connection down in both
// directions, read what is queued without waiting, close. After the
// shutdown the kernel accepts nothing more from the peer (its write fails
// with EPIPE, which ${readsocket} turns into its fail string: "defer" in
// the recipe of docs/imap-auth.md), so the queue can be emptied for good
// and the close resets nothing. Nothing in it waits for the client, so it
// can run in the accept loop: a refused client costs a few system calls,
// no goroutine, no timer.

// drainReads bounds the reads that empty the queue. The peer can queue no
// more than its send buffer (208 KiB by default); a peer that somehow got
// more in is reset, which is its own doing.
const drainReads = 64

// hangUp writes reply (unless empty) without waiting, then shuts conn down,
// discards what the client had sent and closes it. It returns the error of
// the write (EPIPE: the client left before its answer). drain is a scratch
// buffer: the accept loop passes its own so that turning clients away
// allocates nothing.
func hangUp(conn *net.UnixConn, reply string, drain []byte) error {
	defer conn.Close()
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var writeErr error
	err = raw.Control(func(fd uintptr) {
		if reply != "" {
			// Nothing was ever written on the connection: its send
			// buffer is empty and 5 bytes always fit, so MSG_DONTWAIT
			// never drops the reply.
			writeErr = unix.Sendto(int(fd), []byte(reply), unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil)
		}
		unix.Shutdown(int(fd), unix.SHUT_RDWR)
		for range drainReads {
			n, _, err := unix.Recvfrom(int(fd), drain, unix.MSG_DONTWAIT)
			if n <= 0 || err != nil {
				break
			}
		}
	})
	if err != nil {
		return err
	}
	if writeErr != nil {
		return fmt.Errorf("writing the reply: %w", writeErr)
	}
	return nil
}
