package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unicode"
)

// IsJournalStream reports whether f is the stream that systemd connected to
// its journal. systemd.exec(5): a service whose stdout or stderr goes to the
// journal gets JOURNAL_STREAM=DEVICE:INODE (decimal) of that stream. The
// variable is inherited by every child and survives a shell's redirection,
// so only a file with that very device and inode counts.
func IsJournalStream(journalStream string, f *os.File) bool {
	devText, inoText, ok := strings.Cut(journalStream, ":")
	if !ok {
		return false
	}
	dev, devErr := strconv.ParseUint(devText, 10, 64)
	ino, inoErr := strconv.ParseUint(inoText, 10, 64)
	if devErr != nil || inoErr != nil {
		return false
	}
	info, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && uint64(st.Dev) == dev && st.Ino == ino
}

// NewLogger is the logger of opsctl's commands: records at level or above
// go to w in slog's text format, or, when journal is set (stderr is the
// journal), one line each in the form the journal reads from a service:
// the sd-daemon(3) priority prefix, the message, then key=value pairs, e.g.
// "<4>refused a client uid=1000". No time= and level=: the journal records
// both, and a second timestamp only makes lines longer.
func NewLogger(w io.Writer, level slog.Leveler, journal bool) *slog.Logger {
	if !journal {
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	}
	buf := new(bytes.Buffer)
	attrs := slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
			return slog.Attr{}
		}
		return a
	}})
	return slog.New(&journalHandler{out: w, mu: new(sync.Mutex), buf: buf, attrs: attrs})
}

// journalHandler formats the priority and the message itself and lets a
// text handler (writing into buf, under mu) format the attributes, groups
// and escaping included.
type journalHandler struct {
	out   io.Writer
	mu    *sync.Mutex
	buf   *bytes.Buffer
	attrs slog.Handler
}

func (h *journalHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.attrs.Enabled(ctx, level)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf.Reset()
	if err := h.attrs.Handle(ctx, r); err != nil {
		return err
	}
	var line strings.Builder
	line.WriteString(JournalPriority(r.Level))
	line.WriteString(oneLine(r.Message))
	if attrs := bytes.TrimSpace(h.buf.Bytes()); len(attrs) > 0 {
		line.WriteByte(' ')
		line.Write(attrs)
	}
	line.WriteByte('\n')
	_, err := io.WriteString(h.out, line.String())
	return err
}

func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &journalHandler{out: h.out, mu: h.mu, buf: h.buf, attrs: h.attrs.WithAttrs(attrs)}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{out: h.out, mu: h.mu, buf: h.buf, attrs: h.attrs.WithGroup(name)}
}

// JournalPriority is the sd-daemon(3) prefix of a line at level: <3> error,
// <4> warning, <6> info, <7> debug.
func JournalPriority(level slog.Level) string {
	switch {
	case level >= slog.LevelError:
		return "<3>"
	case level >= slog.LevelWarn:
		return "<4>"
	case level >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// oneLine quotes a message holding a line break or another control
// character: the journal would take what follows a newline for a record of
// its own, without a priority.
func oneLine(msg string) string {
	if strings.ContainsFunc(msg, unicode.IsControl) {
		return strconv.Quote(msg)
	}
	return msg
}
