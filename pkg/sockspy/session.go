package sockspy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
)

// Session is one capture from start to finish: the proxy serving the plan,
// the capture written to its output, and the stop. Run serves until its
// context ends, the capture cannot be written any more, or the reader of a
// live output goes away; then it puts a swapped socket back first, closes
// the open connections, writes what is still queued and closes the output.
//
// Errors name the session's inputs: "Session.Output PATH" and
// "Session.Stdout" for the capture's destination, and the plan's inputs
// (Config.Swap...) for the socket.
type Session struct {
	Plan *Plan
	// Output is the capture file, opened by OpenOutput. Run closes it, and
	// removes a file that OpenOutput created when the proxy never served
	// (no empty capture is left behind).
	Output *Output
	// Stdout, when Output is nil, receives the capture instead, flushed
	// after every packet: a live reader such as Wireshark on a pipe.
	Stdout io.Writer
	// Format is the capture's file format.
	Format Format
	// Port is the server port of the synthetic connections (0: 80).
	Port uint16
	// Hexdump, when set, receives the traffic as socat -x -v prints it.
	Hexdump io.Writer
	// Watch, when set, is a pipe, FIFO or socket (the capture's or the
	// hexdump's destination) whose reader going away stops the session
	// as the end of Run's context does: a write finds the reader gone
	// only when there is traffic. Run then returns ErrReaderGone, unless
	// something else failed: a capture that could not be written because
	// its reader went away has not failed otherwise.
	Watch *os.File
	// Logger receives the session's log; nil discards it.
	Logger *slog.Logger
	// Copy makes every byte pass through user space instead of being
	// spliced (benchmarks).
	Copy bool
	// Ready, when set, is called once clients are accepted.
	Ready func()
	// StopAgain, once Run's context has ended, makes Run put the socket
	// back and return at once when it delivers, without waiting for the
	// capture to be written out: a reader that stopped reading without
	// going away (Wireshark paused) holds the capture.
	StopAgain <-chan os.Signal
}

// ErrReaderGone is returned by Session.Run when the reader of
// Session.Watch went away and nothing else failed.
var ErrReaderGone = errors.New("the reader of the capture went away")

// Run serves until ctx ends (or the capture cannot be written, or the
// reader of Watch goes away), then finishes the capture as Session says.
// A Session runs once.
func (s *Session) Run(ctx context.Context) error {
	capture, err := s.startCapture()
	if err != nil {
		return err
	}
	var served atomic.Bool
	proxy := &Proxy{
		Plan: s.Plan, Capture: capture, Port: s.Port, Logger: s.Logger, Copy: s.Copy,
		Ready: func() {
			served.Store(true)
			if s.Ready != nil {
				s.Ready()
			}
		},
	}
	if s.Hexdump != nil {
		proxy.Hexdump = NewHexdump(s.Hexdump)
	}
	var readerGone <-chan struct{}
	if s.Watch != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		readerGone = watchReaderGone(ctx, s.Watch, cancel)
	}
	finished := make(chan error, 1)
	var gone atomic.Bool // the reader of Watch was gone when the proxy stopped
	go func() { finished <- s.serveAndFinish(ctx, proxy, capture, served.Load, &gone) }()
	select {
	case err := <-finished:
		return orReaderGone(err, readerGone, &gone)
	case <-ctx.Done():
	}
	// Stopping. Finishing the capture may wait for a reader that stopped
	// reading without going away; asked to stop again, the socket is put
	// back and Run returns without waiting.
	select {
	case err := <-finished:
		return orReaderGone(err, readerGone, &gone)
	case <-s.StopAgain:
		return errors.Join(fmt.Errorf("stopped again while the capture was being finished: %s may lack its last packets", s.outputName()), proxy.Restore())
	}
}

// orReaderGone is err, or ErrReaderGone when there is none and the reader
// of Session.Watch went away: seen by the watch, or when the proxy
// stopped.
func orReaderGone(err error, watched <-chan struct{}, gone *atomic.Bool) error {
	if err != nil {
		return err
	}
	select {
	case <-watched:
		return ErrReaderGone
	default:
	}
	if gone.Load() {
		return ErrReaderGone
	}
	return nil
}

// startCapture writes the capture's file header to its destination and
// starts its writer; nil when there is nothing to write to (a hexdump
// alone). A file that cannot take the header is removed again.
func (s *Session) startCapture() (*Capture, error) {
	if s.Output == nil && s.Stdout == nil {
		return nil, nil
	}
	out, streaming := s.Stdout, true
	if s.Output != nil {
		out, streaming = s.Output.File, s.Output.Streaming()
	}
	// The file is read elsewhere: name the socket by its absolute path.
	iface := s.Plan.Socket
	if !isAbstract(iface) {
		if abs, err := filepath.Abs(iface); err == nil {
			iface = abs
		}
	}
	capture, err := NewCapture(out, CaptureOptions{Format: s.Format, Interface: iface, Streaming: streaming})
	if err != nil {
		if s.Output != nil {
			s.Output.Discard()
		}
		return nil, fmt.Errorf("%s: %w", s.outputInput(), err)
	}
	return capture, nil
}

// serveAndFinish serves until ctx ends, then writes what the capture still
// holds and closes the output; served tells whether the proxy got to
// serving (the file of a capture that never started is removed), gone is
// set when the reader of Watch was gone by then.
func (s *Session) serveAndFinish(ctx context.Context, proxy *Proxy, capture *Capture, served func() bool, gone *atomic.Bool) error {
	runErr := proxy.Run(ctx)
	var capErr error
	if capture != nil {
		capErr = capture.Close()
	}
	// Before the output is closed, while Watch is still open.
	readerGone := s.Watch != nil && readerIsGone(s.Watch)
	gone.Store(readerGone)
	if capture == nil {
		return runErr
	}
	if errors.Is(capErr, syscall.EPIPE) && readerGone {
		capErr = nil // Run says ErrReaderGone
	}
	if capErr != nil {
		capErr = fmt.Errorf("%s: %w", s.outputInput(), capErr)
	}
	// A failure to put the socket back after serving keeps what was
	// captured.
	neverServed := runErr != nil && !served()
	if s.Output != nil && neverServed {
		s.Output.Discard()
	} else if s.Output != nil {
		if err := s.Output.Close(); err != nil && capErr == nil {
			capErr = fmt.Errorf("%s: %w", s.outputInput(), err)
		}
	}
	if !neverServed && capErr == nil && !readerGone {
		s.logger().Info("capture complete", "packets", capture.Packets(), "output", s.outputName())
	}
	return errors.Join(runErr, capErr)
}

// outputInput names the capture's destination as an input of the session.
func (s *Session) outputInput() string {
	if s.Output != nil {
		return "Session.Output " + s.Output.path
	}
	return "Session.Stdout"
}

// outputName names the capture's destination for a person.
func (s *Session) outputName() string {
	if s.Output != nil {
		return s.Output.path
	}
	return "stdout"
}

func (s *Session) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
