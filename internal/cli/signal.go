package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext is the one way an opsctl command learns that it was asked to
// stop. The context it returns is cancelled by the first SIGINT or SIGTERM,
// or by one of extra (sock capture adds SIGQUIT and SIGHUP, so that a
// swapped socket is put back however the terminal goes away).
//
// From the first signal on, what happens to the next ones is the caller's
// choice: with again nil they are no longer caught, so a second Ctrl-C ends
// opsctl at once while it finishes what was under way (a pipeline creation
// given a grace, a capture being flushed); with again non-nil they are
// delivered there, for a command that must do something of its own first
// (lvm stops waiting for a change and says what state it left).
//
// The context derives from f.Context (context.Background when nil), which
// tests cancel instead of sending signals.
func (f *Factory) SignalContext(again chan<- os.Signal, extra ...os.Signal) (context.Context, context.CancelFunc) {
	parent := f.BaseContext()
	signals := append([]os.Signal{os.Interrupt, syscall.SIGTERM}, extra...)
	ctx, stop := signal.NotifyContext(parent, signals...)
	stopAgain := func() {}
	if again != nil {
		stopAgain = func() { signal.Stop(again) }
		context.AfterFunc(ctx, func() { signal.Notify(again, signals...) })
	} else {
		context.AfterFunc(ctx, stop)
	}
	return ctx, func() {
		stop()
		stopAgain()
	}
}

// BaseContext is f.Context, or context.Background when none is set: for a
// command that does not catch signals (a second's check that Ctrl-C may
// simply end).
func (f *Factory) BaseContext() context.Context {
	if f.Context == nil {
		return context.Background()
	}
	return f.Context
}
