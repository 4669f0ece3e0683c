// Package cli holds what every opsctl command shares: the I/O streams, the
// output formats, the mapping of errors to exit codes and progress reporting.
// It is internal to opsctl; the pkg/* packages never import it.
package cli

import (
	"context"
	"io"
	"log/slog"
	"os"

	"golang.org/x/term"
)

// IOStreams are the standard streams a command reads and writes. Commands take
// them from here, never from os.*, so tests can pass buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	// ErrIsTerminal reports whether ErrOut is a terminal: progress bars and
	// other redrawn output are shown only then.
	ErrIsTerminal bool
	// OutIsTerminal reports whether Out is a terminal.
	OutIsTerminal bool
	// ErrIsJournal reports whether ErrOut is systemd's journal (see
	// IsJournalStream): each line then starts with its priority.
	ErrIsJournal bool
}

// SystemStreams returns the process's own standard streams.
func SystemStreams() *IOStreams {
	return &IOStreams{
		In:            os.Stdin,
		Out:           os.Stdout,
		ErrOut:        os.Stderr,
		ErrIsTerminal: term.IsTerminal(int(os.Stderr.Fd())),
		OutIsTerminal: term.IsTerminal(int(os.Stdout.Fd())),
		ErrIsJournal:  IsJournalStream(os.Getenv("JOURNAL_STREAM"), os.Stderr),
	}
}

// Factory is handed to every command constructor. It carries what commands
// need from the process: streams, the logger and the build version.
type Factory struct {
	IO      *IOStreams
	Version string
	// Logger writes to IO.ErrOut at the level chosen with --log-level. It is
	// set by the root command before any RunE runs.
	Logger *slog.Logger
	// Getenv reads the environment; tests replace it.
	Getenv func(string) string
	// Context is what every command's context derives from (see
	// SignalContext); nil is context.Background. Tests cancel it.
	Context context.Context
}
