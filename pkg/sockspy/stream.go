package sockspy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// oobSize holds the most descriptors one message can carry (SCM_MAX_FD).
var oobSize = unix.CmsgSpace(253 * 4)

// spliceChunk is the most one splice from a socket takes: several
// segments, so that the syscalls per byte stay few.
const spliceChunk = 1 << 20

// sockBuf is the send buffer asked for on both of the proxy's sockets.
var sockBuf = 1 << 20

// seqpacketMax is the largest seqpacket message forwarded whole.
const seqpacketMax = 1 << 20

// serveConn forwards one stream or seqpacket client to the target as one
// synthetic TCP connection.
func (p *Proxy) serveConn(client *net.UnixConn) {
	id := int(p.connID.Add(1))
	log := p.logger().With("conn", id)
	server, err := p.dialTarget(log)
	if err != nil {
		log.Warn("cannot connect to the socket; client dropped", "socket", p.Plan.Target, "err", unwrapOpError(err))
		return
	}
	defer server.Close()
	if !p.track(server) {
		return
	}
	defer p.untrack(server)

	if p.Plan.Type == Stream {
		// What opsctl sends waits in its own socket's send buffer; a deep
		// one lets a whole spliced chunk go out in one call. Best effort:
		// the kernel caps it at net.core.wmem_max.
		_ = server.SetWriteBuffer(sockBuf)
		_ = client.SetWriteBuffer(sockBuf)
	}
	rc, _ := client.SyscallConn()
	peer, _ := peerOf(rc)
	port := p.clientPort()
	var flow *tcpFlow
	if p.Capture != nil {
		flow = newTCPFlow(p.Capture, port, p.serverPort(), uint32(id)*0x01000193)
		flow.Open(peer.String())
	}
	log.Info("client connected", "peer", peer.String(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))

	pumps := [2]*pump{
		{p: p, conn: id, flow: flow, dir: ToServer, src: client, dst: server},
		{p: p, conn: id, flow: flow, dir: ToClient, src: server, dst: client},
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, pm := range pumps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.restoreOnPanic()
			errs[i] = pm.run()
			if errs[i] != nil {
				// One side broke: the other has nothing left to do.
				client.Close()
				server.Close()
				if flow != nil {
					flow.Reset(pm.dir)
				}
				return
			}
			pm.dst.CloseWrite()
			if flow != nil {
				flow.Fin(pm.dir)
			}
		}()
	}
	wg.Wait()
	attrs := []any{"sent", pumps[0].bytes, "received", pumps[1].bytes}
	if err := errors.Join(errs...); err != nil && !errors.Is(err, net.ErrClosed) {
		attrs = append(attrs, "err", err)
	}
	log.Info("client disconnected", attrs...)
}

// dialTarget connects to the captured socket. A listener whose backlog is
// full refuses a non-blocking connect with EAGAIN where the client's own
// blocking connect would have waited for the server to accept: wait the
// same way, until the proxy stops.
func (p *Proxy) dialTarget(log *slog.Logger) (*net.UnixConn, error) {
	network := p.Plan.Type.network()
	addr := &net.UnixAddr{Name: p.target(), Net: network}
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		c, err := net.DialUnix(network, nil, addr)
		if !errors.Is(err, syscall.EAGAIN) || p.stopping() {
			return c, err
		}
		if wait == time.Millisecond {
			log.Debug("the socket's backlog is full; waiting for the server to accept", "socket", p.Plan.Target)
		}
		time.Sleep(wait)
	}
}

// pump moves one direction of a connection.
type pump struct {
	p        *Proxy
	conn     int
	flow     *tcpFlow
	dir      Direction
	src, dst *net.UnixConn
	bytes    int64
	oob      []byte
}

// run forwards until the source's end of file (nil) or an error.
func (pm *pump) run() error {
	pm.oob = make([]byte, oobSize)
	if pm.p.Plan.Type == SeqPacket {
		return pm.copyLoop(true)
	}
	if pm.p.Copy || pm.p.Hexdump != nil {
		return pm.copyLoop(false)
	}
	return pm.spliceLoop()
}

func (pm *pump) copyLoop(messages bool) error {
	size := maxSegment
	if messages {
		size = seqpacketMax
	}
	buf := make([]byte, size)
	for {
		eof, err := pm.copyStep(buf, messages)
		if eof || err != nil {
			return err
		}
	}
}

// copyStep forwards one read through user space, descriptors included.
func (pm *pump) copyStep(buf []byte, messages bool) (eof bool, err error) {
	n, oobn, flags, _, err := pm.src.ReadMsgUnix(buf, pm.oob)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	fds := rights(pm.oob[:oobn])
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if n == 0 && len(fds) == 0 {
		return true, nil
	}
	if flags&unix.MSG_CTRUNC != 0 {
		pm.p.logger().Warn("file descriptors lost: more than one message can carry", "conn", pm.conn)
	}
	if messages && flags&unix.MSG_TRUNC != 0 {
		return false, fmt.Errorf("message longer than %d bytes", len(buf))
	}
	data := buf[:n]
	pm.p.Hexdump.Dump(pm.conn, pm.dir, pm.bytes, data)
	if pm.flow != nil {
		// The record gets a copy: buf is reused as soon as it is sent,
		// and the packet must be queued before the peer can answer.
		rec := data
		if n <= maxSegment {
			rec = pm.p.Capture.getBuf()[:n]
			copy(rec, data)
			pm.flow.Data(pm.dir, rec, true)
		} else {
			pm.flow.Data(pm.dir, append([]byte(nil), data...), false)
		}
	}
	pm.bytes += int64(n)
	if len(fds) > 0 {
		pm.p.logger().Info("file descriptors passed", "conn", pm.conn, "direction", pm.dir.String(), "count", len(fds), "at", pm.bytes-int64(n))
		w, _, err := pm.dst.WriteMsgUnix(data, unix.UnixRights(fds...), nil)
		if err != nil {
			return false, err
		}
		data = data[w:]
		if messages {
			return false, nil
		}
	} else if messages {
		_, _, err := pm.dst.WriteMsgUnix(data, nil, nil)
		return false, err
	}
	_, err = pm.dst.Write(data)
	return false, err
}

// spliceLoop forwards with splice(2): socket -> pipe -> socket, and with
// tee(2) a duplicate of each chunk goes to a second pipe from which the
// capture writer splices it into the file. Payload never enters user
// space. A chunk carrying file descriptors, which splice would drop, goes
// through copyStep instead.
func (pm *pump) spliceLoop() error {
	srcRC, err := pm.src.SyscallConn()
	if err != nil {
		return err
	}
	dstRC, err := pm.dst.SyscallConn()
	if err != nil {
		return err
	}
	fwd, err := newPipe(0)
	if err != nil {
		return err
	}
	defer fwd.close()
	fwdSize, growAsked := fwd.size(), false
	var staged *stagePool
	if pm.flow != nil {
		staged = newStagePool(fwdSize)
		// Pipes still queued are closed once the writer is done with them.
		defer staged.close()
	}
	var one [1]byte
	var copyBuf []byte
	for {
		var n int
		var eof, withFDs, busy bool
		var opErr error
		err := srcRC.Read(func(fd uintptr) bool {
			q, err := inQueue(int(fd))
			if err != nil {
				opErr = err
				return true
			}
			if q == 0 {
				// Nothing queued: end of file, an error, or nothing yet.
				k, _, err := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				switch {
				case err == unix.EAGAIN:
					return false
				case err != nil:
					opErr = err
				case k == 0:
					eof = true
				}
				return true
			}
			if withFDs, opErr = pendingFDs(int(fd), pm.oob); withFDs || opErr != nil {
				return true
			}
			// At most q bytes: all were queued before the peek above found
			// no descriptors, so the splice cannot swallow any.
			want := min(q, spliceChunk)
			k, err := unix.Splice(int(fd), nil, fwd.w, nil, want, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			if err == unix.EAGAIN {
				return false
			}
			n, opErr = int(k), err
			busy = err == nil && busyConnection(int(k), q, fwdSize)
			return true
		})
		if err != nil {
			return err
		}
		switch {
		case errors.Is(opErr, unix.EINVAL) && pm.bytes == 0:
			// No splice for this kind of socket: copy instead.
			return pm.copyLoop(false)
		case opErr == unix.EINTR:
			continue
		case opErr != nil:
			return fmt.Errorf("reading: %w", opErr)
		case eof:
			return nil
		case withFDs:
			if copyBuf == nil {
				copyBuf = make([]byte, maxSegment)
			}
			if eof, err := pm.copyStep(copyBuf, false); eof || err != nil {
				return err
			}
			continue
		}
		if err := pm.forward(fwd, staged, dstRC, n); err != nil {
			return err
		}
		if busy && !growAsked {
			// Its pipes grow, asked once: a refusal is not asked again.
			growAsked = true
			if fwd.grow(pipeFull) {
				fwdSize = fwd.size()
				if staged != nil {
					staged.grow(fwdSize)
				}
			}
		}
	}
}

// busyConnection tells from one splice of took bytes out of queued
// waiting in the socket, into a pipe of pipeSize bytes, whether the
// connection's pipes should grow: a pipeful or more was waiting and the
// pipe could not take it all. A pipe fills by buffers, not bytes (one per
// client write here): many small writes fill it with a few kilobytes,
// which is no reason to take pipe quota.
func busyConnection(took, queued, pipeSize int) bool {
	return took < queued && queued >= pipeSize
}

// forward moves n bytes that wait in fwd to the destination socket. When
// capturing, tee(2) first duplicates them into an empty stage pipe, which
// goes to the capture writer with one record per segment. A stage pipe is
// as large as fwd, so tee takes everything; should it take less, the
// chunk goes out in several parts.
func (pm *pump) forward(fwd pipePair, staged *stagePool, dst syscall.RawConn, n int) error {
	for n > 0 {
		k := n
		if staged != nil {
			stage, err := staged.get()
			if err != nil {
				return err
			}
			t, err := retryEINTR(func() (int, error) {
				t, err := unix.Tee(fwd.r, stage.w, n, 0)
				return int(t), err
			})
			if err != nil || t == 0 {
				staged.put(stage)
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("tee: %w", err)
			}
			k = t
			pm.flow.SplicedChunk(pm.dir, stage, staged, k)
		}
		if err := spliceToSocket(fwd.r, dst, k); err != nil {
			return err
		}
		pm.bytes += int64(k)
		n -= k
	}
	return nil
}

func spliceToSocket(from int, dst syscall.RawConn, n int) error {
	var opErr error
	err := dst.Write(func(fd uintptr) bool {
		for n > 0 {
			k, err := unix.Splice(from, nil, int(fd), nil, n, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil:
				opErr = fmt.Errorf("writing: %w", err)
				return true
			case k == 0:
				opErr = fmt.Errorf("writing: %w", io.ErrUnexpectedEOF)
				return true
			}
			n -= int(k)
		}
		return true
	})
	if err != nil {
		return err
	}
	return opErr
}
