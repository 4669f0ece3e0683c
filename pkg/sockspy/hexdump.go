package sockspy

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Hexdump prints traffic the way `socat -x -v` does: a header line per
// chunk with its direction (> client to server, < server to client), time,
// length and byte offsets within the connection, then hex and printable
// characters, 16 bytes a line (fewer when a newline ends it), then "--". The connection number follows
// the offsets since several connections may be open at once.
type Hexdump struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// NewHexdump returns a Hexdump writing to w (stderr in opsctl).
func NewHexdump(w io.Writer) *Hexdump { return &Hexdump{w: w} }

// Dump prints one chunk of connection conn; offset is the number of bytes
// sent in that direction before it.
func (h *Hexdump) Dump(conn int, dir Direction, offset int64, data []byte) {
	if h == nil || len(data) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	arrow := byte('>')
	if dir == ToClient {
		arrow = '<'
	}
	b := h.buf[:0]
	b = fmt.Appendf(b, "%c %s  length=%d from=%d to=%d  conn=%d\n", arrow,
		time.Now().Format("2006/01/02 15:04:05.000000"), len(data), offset, offset+int64(len(data))-1, conn)
	b = appendHexLines(b, data)
	b = append(b, "--\n"...)
	h.buf = b
	_, _ = h.w.Write(b)
}

const hexDigits = "0123456789abcdef"

func appendHexLines(b, data []byte) []byte {
	for len(data) > 0 {
		// Like socat, a line ends after 16 bytes or after a newline.
		line := data[:min(16, len(data))]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i+1]
		}
		data = data[len(line):]
		for _, c := range line {
			b = append(b, ' ', hexDigits[c>>4], hexDigits[c&15])
		}
		for range 16 - len(line) {
			b = append(b, "   "...)
		}
		b = append(b, ' ', ' ')
		for _, c := range line {
			if c < 0x20 || c > 0x7e {
				c = '.'
			}
			b = append(b, c)
		}
		b = append(b, '\n')
	}
	return b
}
