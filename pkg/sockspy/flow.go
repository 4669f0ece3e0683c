package sockspy

import (
	"net"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Direction of a packet within a synthetic connection.
type Direction int

const (
	// ToServer is data from the UNIX client to the server.
	ToServer Direction = 0
	// ToClient is data from the server back to the client.
	ToClient Direction = 1
)

func (d Direction) String() string {
	if d == ToClient {
		return "to client"
	}
	return "to server"
}

var loopback = net.IPv4(127, 0, 0, 1).To4()

// maxComment keeps a pcapng comment within its 16-bit option length.
const maxComment = 4000

// tcpFlow turns one UNIX connection into one synthetic TCP connection from
// 127.0.0.1:clientPort to 127.0.0.1:serverPort. The mutex orders "read the
// sequence numbers, queue the packet, advance" across both directions, so
// every acknowledgement refers to data already in the file.
type tcpFlow struct {
	mu         sync.Mutex
	capture    *Capture
	clientPort uint16
	serverPort uint16
	next       [2]uint32 // next sequence number per direction
	finSent    [2]bool
	closed     bool

	ip      layers.IPv4
	tcp     layers.TCP
	buf     gopacket.SerializeBuffer
	scratch []byte
}

func newTCPFlow(c *Capture, clientPort, serverPort uint16, isn uint32) *tcpFlow {
	return &tcpFlow{
		capture:    c,
		clientPort: clientPort,
		serverPort: serverPort,
		next:       [2]uint32{isn, isn ^ 0x5a5a5a5a},
		buf:        gopacket.NewSerializeBuffer(),
	}
}

// header serializes the IPv4 and TCP headers of a segment from dir with
// payLen bytes of payload into r. The TCP checksum covers the payload, so it
// is computed only when the payload is in memory; spliced segments carry 0,
// which Wireshark does not check by default.
func (f *tcpFlow) header(r *record, dir Direction, flags tcpFlags, seq, ack uint32, payload []byte, payLen int) {
	f.ip = layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment,
		Protocol: layers.IPProtocolTCP, Length: uint16(40 + payLen),
		SrcIP: loopback, DstIP: loopback,
	}
	f.tcp = layers.TCP{
		Seq: seq, Ack: ack, DataOffset: 5, Window: 65535,
		SYN: flags&flagSYN != 0, ACK: flags&flagACK != 0, FIN: flags&flagFIN != 0,
		PSH: flags&flagPSH != 0, RST: flags&flagRST != 0,
	}
	if dir == ToServer {
		f.tcp.SrcPort, f.tcp.DstPort = layers.TCPPort(f.clientPort), layers.TCPPort(f.serverPort)
	} else {
		f.tcp.SrcPort, f.tcp.DstPort = layers.TCPPort(f.serverPort), layers.TCPPort(f.clientPort)
	}
	f.tcp.SetNetworkLayerForChecksum(&f.ip)
	serialize(f.buf, r, payload, payLen, &f.ip, &f.tcp)
}

type tcpFlags uint8

const (
	flagSYN tcpFlags = 1 << iota
	flagACK
	flagFIN
	flagPSH
	flagRST
)

// serialize writes the headers for payload into r.hdr. With the payload in
// memory gopacket computes every checksum over it; without, the transport
// checksum (offset 16 of TCP, 6 of UDP) is cleared.
func serialize(buf gopacket.SerializeBuffer, r *record, payload []byte, payLen int, ip *layers.IPv4, l4 gopacket.SerializableLayer) {
	opts := gopacket.SerializeOptions{ComputeChecksums: true}
	buf.Clear()
	var err error
	if payload != nil {
		err = gopacket.SerializeLayers(buf, opts, ip, l4, gopacket.Payload(payload[:payLen]))
	} else {
		err = gopacket.SerializeLayers(buf, opts, ip, l4)
	}
	if err != nil {
		panic("sockspy: serializing a synthetic header: " + err.Error()) // only on a programming error
	}
	hdr := buf.Bytes()
	if payload != nil {
		hdr = hdr[:len(hdr)-payLen]
	}
	r.hdrLen = uint8(copy(r.hdr[:], hdr))
	if payload == nil && payLen > 0 {
		off := 20 + 16
		if ip.Protocol == layers.IPProtocolUDP {
			off = 20 + 6
		}
		r.hdr[off], r.hdr[off+1] = 0, 0
	}
}

// emit queues a packet without payload; f.mu must be held.
func (f *tcpFlow) emit(dir Direction, flags tcpFlags, comment string) {
	r := record{ts: time.Now(), comment: comment}
	f.header(&r, dir, flags, f.next[dir], f.next[1-dir], nil, 0)
	f.capture.enqueue(r)
}

// Open queues the three-way handshake. comment goes on the SYN (pcapng).
func (f *tcpFlow) Open(comment string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(comment) > maxComment {
		comment = comment[:maxComment]
	}
	r := record{ts: time.Now(), comment: comment}
	f.header(&r, ToServer, flagSYN, f.next[ToServer], 0, nil, 0)
	f.capture.enqueue(r)
	f.next[ToServer]++
	f.emit(ToClient, flagSYN|flagACK, "")
	f.next[ToClient]++
	f.emit(ToServer, flagACK, "")
}

// Data queues payload sent in direction dir, split into segments of at most
// maxSegment bytes. The Capture takes ownership of payload when pooled.
func (f *tcpFlow) Data(dir Direction, payload []byte, pooled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for first := true; len(payload) > 0 || first; first = false {
		n := min(len(payload), maxSegment)
		r := record{ts: time.Now(), payLen: n, data: payload[:n]}
		// A pooled buffer goes back to the pool only whole.
		r.pooled = pooled && first && n == len(payload)
		// PSH ends what was read at once (a seqpacket message): only
		// on its last segment.
		flags := flagACK
		if n == len(payload) {
			flags |= flagPSH
		}
		f.header(&r, dir, flags, f.next[dir], f.next[1-dir], payload, n)
		f.capture.enqueue(r)
		f.next[dir] += uint32(n)
		payload = payload[n:]
	}
}

// Spliced queues a segment of n <= maxSegment bytes that waits in the
// pipe stage, next after the segments queued before it from that pipe. The
// writer writes the record's header, splices the payload from stage into
// the file and writes the trailer. With release set, this is the pipe's
// last segment: the writer gives the pipe back to release afterwards.
func (f *tcpFlow) Spliced(dir Direction, stage pipePair, release *stagePool, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := record{ts: time.Now(), payLen: n, pipe: stage, inPipe: true, release: release}
	f.header(&r, dir, flagACK|flagPSH, f.next[dir], f.next[1-dir], nil, n)
	f.capture.enqueue(r)
	f.next[dir] += uint32(n)
}

// SplicedChunk queues the n bytes waiting in stage as segments of at most
// maxSegment bytes; the pipe goes back to pool after the last one.
func (f *tcpFlow) SplicedChunk(dir Direction, stage pipePair, pool *stagePool, n int) {
	for off := 0; off < n; off += maxSegment {
		seg := min(maxSegment, n-off)
		var release *stagePool
		if off+seg == n {
			release = pool
		}
		f.Spliced(dir, stage, release, seg)
	}
}

// Fin queues a FIN from dir and the other side's acknowledgement.
func (f *tcpFlow) Fin(dir Direction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.finSent[dir] || f.closed {
		return
	}
	f.finSent[dir] = true
	f.emit(dir, flagFIN|flagACK, "")
	f.next[dir]++
	f.emit(1-dir, flagACK, "")
}

// Reset queues a RST from dir unless both sides have closed already; used
// when a connection breaks or the capture stops while it is open.
func (f *tcpFlow) Reset(dir Direction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || (f.finSent[0] && f.finSent[1]) {
		f.closed = true
		return
	}
	f.closed = true
	f.emit(dir, flagRST|flagACK, "")
}

// udpFlow turns the datagrams of one UNIX client address into UDP packets
// between 127.0.0.1:clientPort and 127.0.0.1:serverPort.
type udpFlow struct {
	mu         sync.Mutex
	capture    *Capture
	clientPort uint16
	serverPort uint16
	comment    string // put on the first packet only

	ip  layers.IPv4
	udp layers.UDP
	buf gopacket.SerializeBuffer
}

// maxDatagram is the largest UDP payload an IPv4 packet carries. Longer
// UNIX datagrams are recorded truncated to it.
const maxDatagram = 65535 - 28

func newUDPFlow(c *Capture, clientPort, serverPort uint16, comment string) *udpFlow {
	if len(comment) > maxComment {
		comment = comment[:maxComment]
	}
	return &udpFlow{capture: c, clientPort: clientPort, serverPort: serverPort, comment: comment, buf: gopacket.NewSerializeBuffer()}
}

// Datagram queues one datagram sent in direction dir; the payload is copied.
// It reports whether the datagram had to be truncated.
func (f *udpFlow) Datagram(dir Direction, payload []byte) (truncated bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(payload) > maxDatagram {
		payload, truncated = payload[:maxDatagram], true
	}
	data := append([]byte(nil), payload...)
	f.ip = layers.IPv4{
		Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment,
		Protocol: layers.IPProtocolUDP, Length: uint16(28 + len(data)),
		SrcIP: loopback, DstIP: loopback,
	}
	f.udp = layers.UDP{Length: uint16(8 + len(data))}
	if dir == ToServer {
		f.udp.SrcPort, f.udp.DstPort = layers.UDPPort(f.clientPort), layers.UDPPort(f.serverPort)
	} else {
		f.udp.SrcPort, f.udp.DstPort = layers.UDPPort(f.serverPort), layers.UDPPort(f.clientPort)
	}
	f.udp.SetNetworkLayerForChecksum(&f.ip)
	r := record{ts: time.Now(), payLen: len(data), data: data, comment: f.comment}
	f.comment = ""
	serialize(f.buf, &r, data, len(data), &f.ip, &f.udp)
	f.capture.enqueue(r)
	return truncated
}
