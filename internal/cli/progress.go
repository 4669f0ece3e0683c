package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"
)

// Progress reports the advance of a long step (a cache flush, a scan) on
// stderr. On a terminal it redraws one line with a bar; elsewhere it writes a
// plain line at most every LogEvery, so logs of a systemd unit stay readable.
type Progress struct {
	w        io.Writer
	terminal bool
	// priority starts each plain line when stderr is the journal.
	priority string
	label    string
	total    int64
	lastLine time.Time
	now      func() time.Time
	// LogEvery is how often a non-terminal writer gets a line.
	LogEvery time.Duration
}

// NewProgress returns a Progress for a step of total units writing to the
// error stream of s.
func NewProgress(s *IOStreams, label string, total int64) *Progress {
	p := &Progress{w: s.ErrOut, terminal: s.ErrIsTerminal, label: label, total: total, now: time.Now, LogEvery: 10 * time.Second}
	if s.ErrIsJournal {
		p.priority = JournalPriority(slog.LevelInfo)
	}
	return p
}

// SetTotal changes the number of units of the step.
func (p *Progress) SetTotal(total int64) { p.total = total }

// Update shows that done of total units are finished.
func (p *Progress) Update(done int64) {
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s %s", p.label, bar(done, p.total, 30))
		return
	}
	now := p.now()
	if !p.lastLine.IsZero() && now.Sub(p.lastLine) < p.LogEvery {
		return
	}
	p.lastLine = now
	fmt.Fprintf(p.w, "%s%s: %d/%d\n", p.priority, p.label, done, p.total)
}

// Done ends the progress display.
func (p *Progress) Done() {
	if p.terminal {
		fmt.Fprintf(p.w, "\r%s %s\n", p.label, bar(p.total, p.total, 30))
		return
	}
	fmt.Fprintf(p.w, "%s%s: %d/%d done\n", p.priority, p.label, p.total, p.total)
}

func bar(done, total int64, width int) string {
	if total <= 0 {
		return fmt.Sprintf("[%s] %d", strings.Repeat("?", width), done)
	}
	done = min(max(done, 0), total)
	filled := int(done * int64(width) / total)
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
}
