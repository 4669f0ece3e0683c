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

// record is one packet waiting to be written.
type record struct {
	ts      time.Time
	hdr     [40]byte // IPv4 + TCP, or IPv4 + UDP
	hdrLen  uint8
	payLen  int
	data    []byte // payload in memory, or nil
	pooled  bool   // data came from Capture.bufs
	comment string
	// inPipe: the payload waits in pipe, behind the payloads of the
	// records queued before from that pipe (see tcpFlow.Spliced).
	inPipe  bool
	pipe    pipePair
	release *stagePool // the pipe goes back here after this record
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
	scratch []byte
	packets int64     // written; read after Close
	bufs    sync.Pool // *[]byte of maxSegment bytes
	tmp     []byte

	// gather is the writer's own pipe, non-blocking: the records of
	// spliced payloads are assembled in it (headers written, payload
	// pages moved from the stage pipes) and go into the file with one
	// splice per pipeful, not two writes per segment. Large writes let
	// the file system allocate its page cache in large folios. Absent
	// (fd -1) when the output cannot be spliced to.
	gather   pipePair
	gathered int // bytes waiting in gather

	// prealloc: the file's blocks are reserved with fallocate(2) ahead of
	// the writes, up to allocEnd (see preallocates).
	prealloc bool
	allocEnd int64
	fileFD   int // the file's descriptor, kept when outFD gives up splicing
}

// gatherSize is asked for the gather pipe; without the privilege to exceed
// /proc/sys/fs/pipe-max-size, 1 MiB, and failing that the kernel's default.
var gatherSize = 4 << 20

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
		gather:    pipePair{-1, -1},
	}
	c.bufs.New = func() any { b := make([]byte, maxSegment); return &b }
	if f, ok := out.(*os.File); ok {
		// Fd puts the file in blocking mode, which is what a writer
		// goroutine of its own wants.
		c.outFD = int(f.Fd())
		c.openGather()
		if preallocates(c.outFD) {
			c.prealloc, c.fileFD = true, c.outFD
		}
	}
	err := c.writeFileHeader(opts.Interface)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		c.gather.close()
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
			var err error
			if r.inPipe {
				err = c.writeSpliced(&r)
			} else {
				err = c.write(&r)
			}
			if err != nil {
				c.fail(err)
			}
		}
		switch {
		case r.release != nil:
			if c.err != nil {
				// Whatever the failed write left in the pipe, and the
				// payloads of the records skipped since.
				c.emptyPipe(r.pipe.r)
			}
			r.release.put(r.pipe)
		case r.pooled:
			b := r.data[:cap(r.data)]
			c.bufs.Put(&b)
		}
		if len(c.queue) == 0 && c.err == nil {
			// Nothing more to add right now: out with what is gathered.
			if err := c.flushGather(); err != nil {
				c.fail(err)
			}
		}
	}
	if c.err == nil {
		if err := c.flushGather(); err != nil {
			c.err = err
		} else if err := c.bw.Flush(); err != nil {
			c.err = err
		}
	}
	c.gather.close()
	c.releasePrealloc()
}

// preallocStep is how far ahead of the writes the file's blocks are
// reserved.
const preallocStep = 64 << 20

// preallocates reports whether fd is a regular file on ext4. There, a
// write into blocks reserved with fallocate(2) skips the delayed
// allocation's per-block bookkeeping: with the capture's writes of a
// pipeful, splicing into a file ran at 4.9 instead of 3.6 GB/s here. On
// tmpfs, which must zero the pages it reserves, it gained nothing.
func preallocates(fd int) bool {
	var st unix.Stat_t
	var fs unix.Statfs_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	return unix.Fstatfs(fd, &fs) == nil && fs.Type == unix.EXT4_SUPER_MAGIC
}

// preallocate reserves the blocks for the next n bytes and preallocStep
// beyond, without changing the file's size. Should the file system refuse
// (ENOSPC with less than the step left), preallocation stops and the
// writes go on as before; blocks it reserved in part are given back.
func (c *Capture) preallocate(n int) {
	pos, err := unix.Seek(c.fileFD, 0, io.SeekCurrent)
	if err != nil || pos+int64(n) <= c.allocEnd {
		if err != nil {
			c.prealloc = false
		}
		return
	}
	from := max(pos, c.allocEnd)
	end := pos + int64(n) + preallocStep
	if err := fallocate(c.fileFD, unix.FALLOC_FL_KEEP_SIZE, from, end-from); err != nil {
		// ext4 keeps what it did reserve before running out of space,
		// maybe all the free space: give it back now, not only at the
		// end, so that the disk does not stay full meanwhile.
		c.prealloc = false
		c.allocEnd = end
		c.releasePrealloc()
		return
	}
	c.allocEnd = end
}

// fallocate is unix.Fallocate; tests make it fail.
var fallocate = unix.Fallocate

// releasePrealloc gives back the blocks reserved beyond the end of the
// file: ext4 frees them on a truncate to the file's own size.
func (c *Capture) releasePrealloc() {
	if c.allocEnd == 0 {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(c.fileFD, &st) == nil && st.Size < c.allocEnd {
		_ = unix.Ftruncate(c.fileFD, st.Size)
	}
}

func (c *Capture) openGather() {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return // records are then written one by one
	}
	c.gather = pipePair{fds[0], fds[1]}
	// Only the write end: splice(2) from a non-blocking pipe into another
	// pipe (stdout piped into a live reader) would not wait for that
	// reader either.
	if err := unix.SetNonblock(fds[1], true); err != nil {
		c.gather.close()
		c.gather = pipePair{-1, -1}
		return
	}
	if _, err := unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, gatherSize); err != nil {
		_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, min(gatherSize, 1<<20))
	}
}

// flushGather splices what waits in the gather pipe into the file.
func (c *Capture) flushGather() error {
	if c.gathered == 0 {
		return nil
	}
	n := c.gathered
	c.gathered = 0
	return c.copyFromPipe(c.gather.r, n)
}

// toGather writes b into the gather pipe.
func (c *Capture) toGather(b []byte) error {
	return c.intoGather(len(b), func(n int) (int, error) {
		k, err := unix.Write(c.gather.w, b[len(b)-n:])
		return max(k, 0), err
	})
}

// moveToGather moves n payload bytes from a stage pipe into the gather
// pipe: the pages change hands, nothing is copied.
func (c *Capture) moveToGather(from, n int) error {
	return c.intoGather(n, func(n int) (int, error) {
		k, err := unix.Splice(from, nil, c.gather.w, nil, n, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		return int(k), err
	})
}

// intoGather calls put, which adds at most n bytes to the non-blocking
// gather pipe, until n bytes are in; whenever the pipe is full, what it
// holds goes into the file first.
func (c *Capture) intoGather(n int, put func(n int) (int, error)) error {
	for n > 0 {
		k, err := put(n)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN && c.gathered > 0:
			if err := c.flushGather(); err != nil {
				return err
			}
			continue
		case err != nil:
			return fmt.Errorf("capture gather pipe: %w", err)
		case k == 0:
			return fmt.Errorf("capture gather pipe: %w", io.ErrUnexpectedEOF)
		}
		c.gathered += k
		n -= k
	}
	return nil
}

func (c *Capture) fail(err error) {
	c.err = err
	close(c.failed)
}

// emptyPipe discards what waits in a pipe after a write error, so that
// the forwarding side never waits for a writer that stopped. Only the
// writer holds the pipe now: nothing is added while it is emptied.
func (c *Capture) emptyPipe(fd int) {
	for {
		n, err := pipeLen(fd)
		if err != nil || n == 0 {
			return
		}
		if _, err := retryEINTR(func() (int, error) { return unix.Read(fd, c.tmp[:min(n, len(c.tmp))]) }); err != nil {
			return
		}
	}
}

// appendPrefix appends the record header (pcap) or the start of the
// enhanced packet block (pcapng) and the IP/transport headers of r.
func (c *Capture) appendPrefix(b []byte, r *record) []byte {
	total := int(r.hdrLen) + r.payLen
	ns := r.ts.UnixNano()
	if c.format == FormatPcap {
		b = binary.LittleEndian.AppendUint32(b, uint32(ns/1e9))
		b = binary.LittleEndian.AppendUint32(b, uint32(ns%1e9))
		b = binary.LittleEndian.AppendUint32(b, uint32(total))
		b = binary.LittleEndian.AppendUint32(b, uint32(total))
	} else {
		b = binary.LittleEndian.AppendUint32(b, 6) // enhanced packet block
		b = binary.LittleEndian.AppendUint32(b, uint32(epbLen(total, r.comment)))
		b = binary.LittleEndian.AppendUint32(b, 0) // interface 0
		b = binary.LittleEndian.AppendUint32(b, uint32(uint64(ns)>>32))
		b = binary.LittleEndian.AppendUint32(b, uint32(ns))
		b = binary.LittleEndian.AppendUint32(b, uint32(total))
		b = binary.LittleEndian.AppendUint32(b, uint32(total))
	}
	return append(b, r.hdr[:r.hdrLen]...)
}

// appendTrailer appends what follows the packet data: nothing for pcap;
// padding, the comment option and the block length for pcapng.
func (c *Capture) appendTrailer(b []byte, r *record) []byte {
	if c.format == FormatPcap {
		return b
	}
	total := int(r.hdrLen) + r.payLen
	var zero [4]byte
	b = append(b, zero[:pad4(total)-total]...)
	if r.comment != "" {
		b = binary.LittleEndian.AppendUint16(b, 1) // opt_comment
		b = binary.LittleEndian.AppendUint16(b, uint16(len(r.comment)))
		b = append(b, r.comment...)
		b = append(b, zero[:pad4(len(r.comment))-len(r.comment)]...)
		b = append(b, zero[:]...) // opt_endofopt
	}
	return binary.LittleEndian.AppendUint32(b, uint32(epbLen(total, r.comment)))
}

// write writes a record whose payload is in memory.
func (c *Capture) write(r *record) error {
	if err := c.flushGather(); err != nil {
		return err
	}
	c.scratch = c.appendPrefix(c.scratch[:0], r)
	c.bw.Write(c.scratch)
	c.bw.Write(r.data[:r.payLen])
	c.scratch = c.appendTrailer(c.scratch[:0], r)
	c.bw.Write(c.scratch)
	c.packets++
	return c.flushIfStreaming()
}

// writeSpliced writes a record whose payload waits in a pipe.
func (c *Capture) writeSpliced(r *record) error {
	if c.gather.w >= 0 && c.outFD >= 0 {
		if err := c.bw.Flush(); err != nil {
			return err
		}
		c.scratch = c.appendPrefix(c.scratch[:0], r)
		if err := c.toGather(c.scratch); err != nil {
			return err
		}
		if err := c.moveToGather(r.pipe.r, r.payLen); err != nil {
			return err
		}
		c.scratch = c.appendTrailer(c.scratch[:0], r)
		if err := c.toGather(c.scratch); err != nil {
			return err
		}
		c.packets++
		if c.streaming {
			return c.flushGather()
		}
		return nil
	}
	// The output may have refused splice(2) in the middle of a record
	// whose rest went on into the gather pipe: that comes first.
	if err := c.flushGather(); err != nil {
		return err
	}
	c.scratch = c.appendPrefix(c.scratch[:0], r)
	c.bw.Write(c.scratch)
	if err := c.copyFromPipe(r.pipe.r, r.payLen); err != nil {
		return err
	}
	c.scratch = c.appendTrailer(c.scratch[:0], r)
	c.bw.Write(c.scratch)
	c.packets++
	return c.flushIfStreaming()
}

func (c *Capture) flushIfStreaming() error {
	if c.streaming {
		return c.bw.Flush()
	}
	// bufio keeps the first error; surface it now rather than at Close.
	_, err := c.bw.Write(nil)
	return err
}

// copyFromPipe moves n payload bytes from a pipe to the output: with
// splice(2) when the output allows it, else through a buffer.
func (c *Capture) copyFromPipe(fd, n int) error {
	if c.outFD >= 0 {
		if err := c.bw.Flush(); err != nil {
			return err
		}
		if c.prealloc {
			c.preallocate(n)
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
