package chain

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// WatchLoop is the watch of external base images without a receiver
// (`chain watch`): each check scans the graph, asks the registries
// (Watcher.Check), creates the pipelines of the runs a change started and
// removes the runs Retention does not keep; Run checks every Interval.
// A receiver continues the runs it starts (it adopts them by their run
// id), so here they have ended once their pipelines are created.
type WatchLoop struct {
	// Watcher checks the images; with Watcher.DryRun a check records,
	// creates and removes nothing.
	Watcher  *Watcher
	Scanner  Scanner
	Interval time.Duration
	// Retention says which runs the state file keeps.
	Retention Retention
	Logger    *slog.Logger
}

// Check is one check. pending is how many pipelines of the runs it (or an
// earlier check, or a crash) started are still to be created: GitLab
// failed them, and the next check tries again.
func (l *WatchLoop) Check(ctx context.Context) (res *WatchResult, pending int, err error) {
	engine := l.Watcher.Engine
	planner, err := ScanPlanner(ctx, l.Scanner)
	if err != nil {
		return nil, 0, err
	}
	engine.SetPlanner(planner)
	if res, err = l.Watcher.Check(ctx, planner.Graph); err != nil || l.Watcher.DryRun {
		return res, 0, err
	}
	if pending, err = engine.FireDue(ctx); err != nil {
		return res, 0, err
	}
	keep := l.Retention
	keep.HandedOver = true
	engine.pruneLogged(ctx, keep)
	return res, pending, nil
}

// Run checks at once and then every Interval until ctx ends, and hands
// each result to report. A check that failed for a while (GitLab or the
// network down, or GitLab's name no longer resolving after it did) is
// logged and the next one runs; another failure, or report's, ends Run
// with its error. Run returns nil when ctx ends.
func (l *WatchLoop) Run(ctx context.Context, report func(*WatchResult) error) error {
	log := l.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	next := "check failed, next check in " + l.Interval.String()
	for checked := false; ; checked = true {
		res, _, err := l.Check(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && checked && unresolved(err):
			// The GitLab client said once that the name stopped resolving.
			log.Debug("external images: "+next, "err", err)
		case err != nil && temporary(err):
			log.Error("external images: "+next, "err", err)
		case err != nil:
			return err
		default:
			if err := report(res); err != nil {
				return err
			}
		}
		if !sleep(ctx, l.Interval) {
			return nil
		}
	}
}

// temporary reports whether err may go away by itself: it says so, or it
// is a time-out.
func temporary(err error) bool {
	var temp interface{ Temporary() bool }
	if errors.As(err, &temp) && temp.Temporary() {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}
