package cli

import (
	"fmt"
	"log/slog"
)

// The lines a command writes on stderr for the person who runs it, outside
// the logger: what was done ("wrote /boot/grub/menu.lst"), a warning about
// the input ("warning: ..."), the final error ("opsctl: ..."). Each is one
// line in one format wherever stderr goes; when stderr is the journal it
// starts with its syslog priority, as the logger's lines do, so that
// `journalctl -p warning` finds the warnings however they were written.

// Sayf writes one line of what the command did or is doing (priority info).
func (s *IOStreams) Sayf(format string, args ...any) {
	s.line(slog.LevelInfo, "", format, args...)
}

// Warnf writes one "warning: ..." line (priority warning).
func (s *IOStreams) Warnf(format string, args ...any) {
	s.line(slog.LevelWarn, "warning: ", format, args...)
}

// Failf writes the "opsctl: ..." line of an error that ends the command
// (priority error).
func (s *IOStreams) Failf(format string, args ...any) {
	s.line(slog.LevelError, "opsctl: ", format, args...)
}

func (s *IOStreams) line(level slog.Level, prefix, format string, args ...any) {
	priority := ""
	if s.ErrIsJournal {
		priority = JournalPriority(level)
	}
	msg := fmt.Sprintf(format, args...)
	if s.ErrIsJournal {
		msg = oneLine(msg)
	}
	fmt.Fprintln(s.ErrOut, priority+prefix+msg)
}
