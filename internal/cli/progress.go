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
	// ShowRate adds to each update what is left, the rate since the first
	// update and an estimate of the time left.
	ShowRate bool
	// first is the first update: when, and how much was done then.
	first     time.Time
	firstDone int64
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
	now := p.now()
	if p.first.IsZero() {
		p.first, p.firstDone = now, done
	}
	if p.terminal {
		// The rate's text changes length: erase what a longer line left.
		erase := ""
		if p.ShowRate {
			erase = "\x1b[K"
		}
		fmt.Fprintf(p.w, "\r%s %s%s%s", p.label, bar(done, p.total, 30), p.rate(done, now), erase)
		return
	}
	if !p.lastLine.IsZero() && now.Sub(p.lastLine) < p.LogEvery {
		return
	}
	p.lastLine = now
	fmt.Fprintf(p.w, "%s%s: %d/%d%s\n", p.priority, p.label, done, p.total, p.rate(done, now))
}

// rate is what ShowRate adds: " (N left, R/s, about D left)", the rate
// and estimate once a second has passed since the first update.
func (p *Progress) rate(done int64, now time.Time) string {
	if !p.ShowRate || p.total <= 0 {
		return ""
	}
	left := max(p.total-done, 0)
	elapsed := now.Sub(p.first)
	if elapsed < time.Second || done <= p.firstDone {
		return fmt.Sprintf(" (%d left)", left)
	}
	perSecond := float64(done-p.firstDone) / elapsed.Seconds()
	eta := time.Duration(float64(left) / perSecond * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf(" (%d left, %.1f/s, about %s left)", left, perSecond, eta)
}

// Stop ends the display where it stands, for a step that ends before its
// total (a window that closed, an interrupt): on a terminal the bar's line
// is ended, so that what follows starts on a line of its own.
func (p *Progress) Stop() {
	if p.terminal {
		fmt.Fprintln(p.w)
	}
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
