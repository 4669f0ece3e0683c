package imapauth

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// reloadOnHangup reads checker's pin file again at each SIGHUP (see
// Checker.ReloadPins) until stop is called, and logs the outcome of each
// in one line. SIGHUP is caught even without a pin file: its default
// action would end the daemon, and under systemd a death by SIGHUP counts
// as a clean exit, not restarted, so a reload sent to a daemon without
// pins would stop Exim's logins.
func (s *Server) reloadOnHangup(checker *Checker) (stop func()) {
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hangups:
				s.reloadPins(checker)
			}
		}
	}()
	return func() {
		signal.Stop(hangups)
		cancel()
		<-done
	}
}

// reloadPins reloads checker's pins and logs how that went.
func (s *Server) reloadPins(checker *Checker) {
	pins, err := checker.ReloadPins()
	var fileErr *PinFileError
	switch {
	case errors.Is(err, ErrNoPinFile):
		s.Logger.Warn("SIGHUP: nothing to read again without a pin file (see --pin-file)", "pins", pins)
	case errors.As(err, &fileErr):
		s.Metrics.pinsReloaded(false)
		s.Logger.Error("pin file not read again, the pins in force stay", "file", fileErr.Path, "err", fileErr.Err, "pins", pins)
	case err != nil:
		s.Metrics.pinsReloaded(false)
		s.Logger.Error("pin file not read again, the pins in force stay", "err", err, "pins", pins)
	default:
		s.Metrics.pinsReloaded(true)
		s.Logger.Info("pin file read again", "file", checker.pinFile, "pins", pins)
	}
}
