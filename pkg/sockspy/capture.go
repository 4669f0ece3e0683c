package sockspy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// Format is the file format of a capture.
type Format int

const (
	// FormatPcap is the classic libpcap format with nanosecond timestamps.
	FormatPcap Format = iota
	// FormatPcapng is pcapng: the interface is named after the socket and
	// each connection's first packet carries the client's pid, uid and
	// command as a comment.
	FormatPcapng
)

// ParseFormat accepts "pcap" and "pcapng".
func ParseFormat(s string) (Format, error) {
	switch s {
	case "pcap":
		return FormatPcap, nil
	case "pcapng":
		return FormatPcapng, nil
	}
	return 0, fmt.Errorf("format %q: expected pcap or pcapng", s)
}

func (f Format) String() string {
	if f == FormatPcapng {
		return "pcapng"
	}
	return "pcap"
}

// snapLen is what the file header promises: no packet is ever longer than
// an IPv4 packet can be.
const snapLen = 65535

// queueLen bounds the packets waiting for the writer. A full queue blocks
// the forwarding goroutines: traffic slows down, packets are never dropped.
const queueLen = 512

type recordKind uint8

const (
	recPacket recordKind = iota
	recClosePipe
)

// record is one packet waiting to be written, or a pipe to close once all
// packets whose payload waits in it are written.
type record struct {
	kind    recordKind
	ts      time.Time
	hdr     [40]byte // IPv4 + TCP, or IPv4 + UDP
	hdrLen  uint8
	payLen  int
	data    []byte // payload in memory, or nil
	pooled  bool   // data came from Capture.bufs
	pipe    pipePair
	comment string
}

// Capture writes packets to a pcap or pcapng stream from a goroutine of
// its own, fed through a bounded queue. Payload bytes that the proxy moved
// with splice(2) reach the file the same way, from a pipe, without being
// copied through user space.
type Capture struct {
	format    Format
	out       io.Writer
	outFD     int // -1 when out is not a file descriptor splice can write to
	bw        *bufio.Writer
	streaming bool

	queue chan record
	done  chan struct{}
	err   error // set by the writer goroutine only; read after done

	failed  chan struct{} // closed on the first write error
	packets int64         // written; read after Close
	bufs    sync.Pool     // *[]byte of maxSegment bytes
	tmp     []byte
}

// CaptureOptions describe the output of a capture.
type CaptureOptions struct {
	Format Format
	// Interface names the capture's interface in pcapng (the socket path).
	Interface string
	// Streaming flushes after every packet, for a live reader on a pipe.
	Streaming bool
}

// NewCapture writes the file header to out and starts the writer. When out
// is an *os.File, payloads are spliced into it. Close must be called to
// write what is queued.
func NewCapture(out io.Writer, opts CaptureOptions) (*Capture, error) {
	c := &Capture{
		format:    opts.Format,
		out:       out,
		outFD:     -1,
		bw:        bufio.NewWriterSize(out, 256<<10),
		streaming: opts.Streaming,
		queue:     make(chan record, queueLen),
		done:      make(chan struct{}),
		failed:    make(chan struct{}),
		tmp:       make([]byte, 64<<10),
	}
	c.bufs.New = func() any { b := make([]byte, maxSegment); return &b }
	if f, ok := out.(*os.File); ok {
		// Fd puts the file in blocking mode, which is what a writer
		// goroutine of its own wants.
		c.outFD = int(f.Fd())
	}
	if err := c.writeFileHeader(opts.Interface); err != nil {
		return nil, fmt.Errorf("writing capture header: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, fmt.Errorf("writing capture header: %w", err)
	}
	go c.run()
	return c, nil
}

func (c *Capture) writeFileHeader(iface string) error {
	if c.format == FormatPcap {
		return pcapgo.NewWriterNanos(c.bw).WriteFileHeader(snapLen, layers.LinkTypeRaw)
	}
	intf := pcapgo.DefaultNgInterface
	intf.Name = iface
	intf.Description = "UNIX socket " + iface + " as synthetic IPv4"
	intf.LinkType = layers.LinkTypeRaw
	intf.SnapLength = snapLen
	intf.OS = runtime.GOOS
	ng, err := pcapgo.NewNgWriterInterface(c.bw, intf, pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Application: "opsctl sock capture", OS: runtime.GOOS},
	})
	if err != nil {
		return err
	}
	return ng.Flush()
}

// Failed is closed when writing the capture has failed; Close returns why.
func (c *Capture) Failed() <-chan struct{} { return c.failed }

// Close writes every queued packet, flushes and reports the first write
// error. No packet may be queued after Close.
func (c *Capture) Close() error {
	close(c.queue)
	<-c.done
	return c.err
}

// Packets is the number of packets written; valid after Close.
func (c *Capture) Packets() int64 { return c.packets }

func (c *Capture) getBuf() []byte { return *(c.bufs.Get().(*[]byte)) }

func (c *Capture) enqueue(r record) { c.queue <- r }

func (c *Capture) run() {
	defer close(c.done)
	for r := range c.queue {
		if c.err == nil {
			if err := c.write(&r); err != nil {
				c.err = err
				close(c.failed)
			}
		} else if r.kind == recPacket && r.data == nil && r.payLen > 0 {
			c.drain(r.pipe.r, r.payLen)
		}
		switch {
		case r.kind == recClosePipe:
			r.pipe.close()
		case r.pooled:
			b := r.data[:cap(r.data)]
			c.bufs.Put(&b)
		}
	}
	if c.err == nil {
		if err := c.bw.Flush(); err != nil {
			c.err = err
		}
	}
}

// drain empties n bytes out of a pipe after a write error, so that the
// forwarding side never waits for a writer that stopped.
func (c *Capture) drain(fd, n int) {
	for n > 0 {
		k, err := retryEINTR(func() (int, error) { return unix.Read(fd, c.tmp[:min(n, len(c.tmp))]) })
		if err != nil || k == 0 {
			return
		}
		n -= k
	}
}

func (c *Capture) write(r *record) error {
	if r.kind != recPacket {
		return nil
	}
	total := int(r.hdrLen) + r.payLen
	ns := r.ts.UnixNano()
	var pre [28]byte
	var preLen int
	if c.format == FormatPcap {
		binary.LittleEndian.PutUint32(pre[0:], uint32(ns/1e9))
		binary.LittleEndian.PutUint32(pre[4:], uint32(ns%1e9))
		binary.LittleEndian.PutUint32(pre[8:], uint32(total))
		binary.LittleEndian.PutUint32(pre[12:], uint32(total))
		preLen = 16
	} else {
		binary.LittleEndian.PutUint32(pre[0:], 6) // enhanced packet block
		binary.LittleEndian.PutUint32(pre[4:], uint32(epbLen(total, r.comment)))
		binary.LittleEndian.PutUint32(pre[8:], 0) // interface 0
		binary.LittleEndian.PutUint32(pre[12:], uint32(uint64(ns)>>32))
		binary.LittleEndian.PutUint32(pre[16:], uint32(ns))
		binary.LittleEndian.PutUint32(pre[20:], uint32(total))
		binary.LittleEndian.PutUint32(pre[24:], uint32(total))
		preLen = 28
	}
	c.bw.Write(pre[:preLen])
	c.bw.Write(r.hdr[:r.hdrLen])
	if r.data != nil {
		c.bw.Write(r.data[:r.payLen])
	} else if r.payLen > 0 {
		if err := c.copyFromPipe(r.pipe.r, r.payLen); err != nil {
			return err
		}
	}
	if c.format == FormatPcapng {
		c.writeEPBTail(total, r.comment)
	}
	c.packets++
	if c.streaming {
		return c.bw.Flush()
	}
	if c.bw.Buffered() == 0 {
		return nil
	}
	// bufio keeps the first error; surface it now rather than at Close.
	if _, err := c.bw.Write(nil); err != nil {
		return err
	}
	return nil
}

// copyFromPipe moves n payload bytes from a pipe to the output: with
// splice(2) when the output allows it, else through a buffer.
func (c *Capture) copyFromPipe(fd, n int) error {
	if c.outFD >= 0 {
		if err := c.bw.Flush(); err != nil {
			return err
		}
		for n > 0 {
			k, err := retryEINTR(func() (int, error) {
				k, err := unix.Splice(fd, nil, c.outFD, nil, n, unix.SPLICE_F_MOVE)
				return int(k), err
			})
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EAGAIN) {
				// O_APPEND files, terminals, non-blocking outputs.
				c.outFD = -1
				break
			}
			if err != nil {
				return err
			}
			if k == 0 {
				return io.ErrUnexpectedEOF
			}
			n -= k
		}
		if n == 0 {
			return nil
		}
	}
	for n > 0 {
		k, err := retryEINTR(func() (int, error) { return unix.Read(fd, c.tmp[:min(n, len(c.tmp))]) })
		if err != nil {
			return fmt.Errorf("reading capture pipe: %w", err)
		}
		if k == 0 {
			return io.ErrUnexpectedEOF
		}
		if _, err := c.bw.Write(c.tmp[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

func pad4(n int) int { return (n + 3) &^ 3 }

// epbLen is the length of an enhanced packet block holding total bytes of
// packet and an optional comment.
func epbLen(total int, comment string) int {
	n := 28 + pad4(total) + 4
	if comment != "" {
		n += 4 + pad4(len(comment)) + 4 // opt_comment, opt_endofopt
	}
	return n
}

func (c *Capture) writeEPBTail(total int, comment string) {
	var zero [4]byte
	c.bw.Write(zero[:pad4(total)-total])
	var b [4]byte
	if comment != "" {
		binary.LittleEndian.PutUint16(b[0:], 1) // opt_comment
		binary.LittleEndian.PutUint16(b[2:], uint16(len(comment)))
		c.bw.Write(b[:])
		c.bw.WriteString(comment)
		c.bw.Write(zero[:pad4(len(comment))-len(comment)])
		c.bw.Write(zero[:]) // opt_endofopt
	}
	binary.LittleEndian.PutUint32(b[:], uint32(epbLen(total, comment)))
	c.bw.Write(b[:])
}
