package sockspy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// dgramMax is the largest datagram forwarded; longer ones are refused by
// the kernel's default buffer sizes long before.
const dgramMax = 1 << 20

// unnamedIdle is how long an unnamed datagram client keeps its upstream
// socket after its last datagram. Replies cannot reach such a client, and
// each process writing to a socket like /dev/log is one: without a limit a
// long capture keeps one socket and goroutine per process that ever wrote.
const unnamedIdle = time.Minute

// maxDatagramClients bounds the datagram clients held at once, each with
// an upstream socket, a goroutine and a reply buffer. Any user who may
// send to the proxy can make a new sender address at will (an autobound
// socket per datagram): 20,000 of them held 19,835 descriptors and 200 MB
// of opsctl (root) for good. Beyond it the client seen least recently is
// let go; a reply to it can no longer be returned, and its next datagram
// makes it a client anew.
const maxDatagramClients = 1024

// dgramClient is one sender address, with an upstream socket of its own so
// that the server's replies can be told apart and returned.
type dgramClient struct {
	key  string // the client's address, or "unnamed pid N"
	addr *net.UnixAddr
	up   *net.UnixConn
	flow *udpFlow
	id   int
	sent int64
	// lastSeen is when the client last sent a datagram.
	lastSeen time.Time
}

// serveDatagrams forwards datagrams from clients to the target, each
// client through its own autobound upstream socket, and replies back.
func (p *Proxy) serveDatagrams(ctx context.Context, ln *net.UnixConn) error {
	// SCM_CREDENTIALS come with every datagram (SO_PASSCRED, set by
	// listenUnix before bind): who sent it.
	clients := map[string]*dgramClient{}
	var replies sync.WaitGroup
	defer func() {
		for _, c := range clients {
			c.up.Close()
		}
		replies.Wait()
	}()
	buf := make([]byte, dgramMax)
	oob := make([]byte, oobSize+unix.CmsgSpace(unix.SizeofUcred))
	var lastSweep time.Time
	for {
		n, oobn, flags, from, err := ln.ReadMsgUnix(buf, oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("receiving at %s: %w", p.Plan.Listen, unwrapOpError(err))
		}
		peer, fds := parseDatagramOOB(oob[:oobn])
		if flags&unix.MSG_TRUNC != 0 {
			p.logger().Warn("datagram longer than the proxy's buffer dropped", "bytes", n, "peer", peer.String())
			closeAll(fds)
			continue
		}
		key := ""
		var addr *net.UnixAddr
		if from != nil && from.Name != "" {
			key, addr = from.Name, from
		} else {
			key = fmt.Sprintf("unnamed pid %d", peer.PID)
		}
		now := p.clock()
		if now.Sub(lastSweep) >= unnamedIdle {
			for k, idle := range clients {
				if idle.addr == nil && now.Sub(idle.lastSeen) >= unnamedIdle {
					p.logger().Debug("idle unnamed datagram client let go", "conn", idle.id)
					idle.up.Close() // its relayReplies returns
					delete(clients, k)
				}
			}
			lastSweep = now
		}
		c := clients[key]
		if c == nil {
			if len(clients) >= maxDatagramClients {
				p.letGoOfLeastRecent(clients)
			}
			if c, err = p.newDgramClient(key, addr, peer); err != nil {
				p.logger().Warn("cannot reach the socket; datagram dropped", "socket", p.Plan.Target, "err", err)
				closeAll(fds)
				continue
			}
			clients[key] = c
			replies.Add(1)
			go func() {
				defer replies.Done()
				defer p.restoreOnPanic()
				p.relayReplies(ln, c)
			}()
		}
		c.lastSeen = now
		data := buf[:n]
		p.Hexdump.Dump(c.id, ToServer, c.sent, data)
		if c.flow != nil && c.flow.Datagram(ToServer, data) {
			p.logger().Warn("datagram recorded truncated to fit UDP", "conn", c.id, "bytes", n)
		}
		c.sent += int64(n)
		var rights []byte
		if len(fds) > 0 {
			rights = unix.UnixRights(fds...)
			p.logger().Info("file descriptors passed", "conn", c.id, "direction", ToServer.String(), "count", len(fds))
		}
		if _, _, err := c.up.WriteMsgUnix(data, rights, nil); err != nil {
			p.logger().Warn("forwarding a datagram failed", "conn", c.id, "err", unwrapOpError(err))
		}
		closeAll(fds)
	}
}

// letGoOfLeastRecent closes the upstream socket of the client of clients
// that sent last the longest ago (its relayReplies returns) and forgets it.
func (p *Proxy) letGoOfLeastRecent(clients map[string]*dgramClient) {
	var oldest *dgramClient
	for _, c := range clients {
		if oldest == nil || c.lastSeen.Before(oldest.lastSeen) {
			oldest = c
		}
	}
	if oldest == nil {
		return
	}
	p.logger().Debug("datagram client let go: too many at once", "conn", oldest.id, "limit", maxDatagramClients)
	oldest.up.Close()
	delete(clients, oldest.key)
}

func (p *Proxy) newDgramClient(key string, addr *net.UnixAddr, peer Peer) (*dgramClient, error) {
	up, err := dialDatagram(p.target())
	if err != nil {
		return nil, err
	}
	c := &dgramClient{key: key, addr: addr, up: up, id: int(p.connID.Add(1))}
	if peer.PID > 0 {
		peer.Command = commandOf(peer.PID)
	}
	port := p.clientPort()
	if p.Capture != nil {
		c.flow = newUDPFlow(p.Capture, port, p.serverPort(), peer.String())
	}
	p.logger().Info("datagram client", "conn", c.id, "address", key, "peer", peer.String(), "udp", fmt.Sprintf("127.0.0.1:%d", port))
	return c, nil
}

// relayReplies returns the server's datagrams to the client until the
// upstream socket is closed. Replies to an unnamed client are recorded but
// cannot be delivered.
func (p *Proxy) relayReplies(ln *net.UnixConn, c *dgramClient) {
	buf := make([]byte, dgramMax)
	oob := make([]byte, oobSize)
	var received int64
	for {
		n, oobn, _, _, err := c.up.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		fds := rights(oob[:oobn])
		data := buf[:n]
		p.Hexdump.Dump(c.id, ToClient, received, data)
		if c.flow != nil {
			c.flow.Datagram(ToClient, data)
		}
		received += int64(n)
		if c.addr == nil {
			p.logger().Debug("reply to an unnamed client cannot be delivered", "conn", c.id)
		} else {
			var r []byte
			if len(fds) > 0 {
				r = unix.UnixRights(fds...)
			}
			if _, _, err := ln.WriteMsgUnix(data, r, c.addr); err != nil {
				p.logger().Debug("returning a reply failed", "conn", c.id, "err", unwrapOpError(err))
			}
		}
		closeAll(fds)
	}
}

// dialDatagram connects an autobound datagram socket (an abstract address
// the kernel picks) to target, so the server has an address to reply to.
func dialDatagram(target string) (*net.UnixConn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("autobind: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: target}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", target, err)
	}
	f := os.NewFile(uintptr(fd), target)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

func parseDatagramOOB(oob []byte) (Peer, []int) {
	var peer Peer
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return peer, nil
	}
	for i := range msgs {
		if cred, err := unix.ParseUnixCredentials(&msgs[i]); err == nil {
			peer = Peer{PID: int(cred.Pid), UID: int(cred.Uid), GID: int(cred.Gid)}
		} else if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
			fds = append(fds, got...)
		}
	}
	return peer, fds
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}
