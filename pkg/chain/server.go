package chain

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Server is the whole receiver (`chain serve`): GitLab's webhooks and the
// runs' endpoints (Receiver), the engine creating pipelines and polling
// the runs (Engine.Work), the graph scanned again every RescanInterval and
// after a push that changed a dependency file, the external base images
// checked every WatchExternal, and the runs pruned by Retention. Run starts
// them and stops them in order.
type Server struct {
	// Engine is the trigger engine on the state file. Run closes it when
	// it returns: the state file is the last thing to go.
	Engine *Engine
	// Scanner reads the graph: once before Run serves anything, then at
	// every rescan. A run keeps the plan it started with.
	Scanner Scanner
	// RescanInterval is the time between rescans; 0 rescans only after a
	// push that changed a dependency file.
	RescanInterval time.Duration

	// Secret and InsecureNoSecret are the Receiver's: the webhook secret,
	// or the admin's choice to run without one.
	Secret           string
	InsecureNoSecret bool
	// GitLabURL is the GitLab the engine talks to: the run pages link to
	// pipeline pages on its host only.
	GitLabURL string
	// Metrics are counted by the endpoints and the engine; Gatherer is what
	// GET /metrics serves (nil: no /metrics).
	Metrics  *Metrics
	Gatherer prometheus.Gatherer

	// WatchExternal, when above 0, is the time between two checks of the
	// external base images (see Watcher), whose digests Digests tells.
	WatchExternal time.Duration
	Digests       DigestSource
	// Retention says which runs the state file keeps; the others are
	// removed when Run starts and every pruneEvery.
	Retention Retention

	Logger *slog.Logger
}

// FirstScanError is the scan Run makes before it serves anything, failed:
// Run returns it at once.
type FirstScanError struct{ Err error }

func (e *FirstScanError) Error() string { return "first scan: " + e.Err.Error() }
func (e *FirstScanError) Unwrap() error { return e.Err }

// shutdownTimeout bounds how long Run waits, once stopped, for the HTTP
// requests under way.
const shutdownTimeout = 10 * time.Second

// pushSettle is how long a rescan asked for by a push waits, so that a
// burst of pushes makes one scan.
var pushSettle = 2 * time.Second

// Run scans the graph (a failure is a *FirstScanError), then serves ln
// and runs the engine and the loops until ctx ends or the HTTP server or
// the engine fails. It stops in order: the loops' context ends; the HTTP
// server stops accepting and finishes the requests under way (10 s at
// most); the engine finishes the pipeline creation under way (its grace);
// the loops return; the state file is closed. It returns the error that
// stopped it, or nil when ctx ended.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	log := s.logger()
	planner, err := ScanPlanner(ctx, s.Scanner)
	if err != nil {
		s.Engine.Close()
		return &FirstScanError{Err: err}
	}
	log.Info("graph scanned", "projects", len(planner.Graph.Projects), "cycles", len(planner.Graph.Cycles))
	s.Engine.SetPlanner(planner)
	if s.Secret == "" {
		log.Warn("running without a webhook secret (Server.InsecureNoSecret): anyone who reaches " + ln.Addr().String() + " can post webhooks that start chain runs; POST /runs is refused")
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	pushed := make(chan string, 1)
	server := &http.Server{Handler: s.receiver(log, pushed).Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	// Work outlives ctx by at most the engine's grace for a pipeline
	// creation under way; the state file is closed only after it returned.
	worked := make(chan error, 1)
	go func() { worked <- s.Engine.Work(ctx) }()
	var loops sync.WaitGroup
	loops.Go(func() { s.rescanLoop(ctx, pushed) })
	loops.Go(func() { s.pruneLoop(ctx) })
	if s.WatchExternal > 0 {
		loops.Go(func() { s.watchLoop(ctx) })
	}
	served := make(chan error, 1)
	go func() {
		if err := server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			served <- err
		}
	}()
	log.Info("chain receiver listening", "addr", ln.Addr().String(), "state", s.Engine.db.Path())

	select {
	case <-ctx.Done():
	case err = <-served:
	case err = <-worked:
		worked = nil
	}
	stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	server.Shutdown(shutdownCtx)
	cancel()
	if worked != nil {
		if workErr := <-worked; err == nil {
			err = workErr
		}
	}
	loops.Wait()
	// Everything was committed as it happened: closing has nothing left to
	// save, and its error changes nothing for the caller.
	s.Engine.Close()
	log.Info("chain receiver stopped")
	return err
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// receiver is the HTTP side, whose pushes that change a dependency file
// are sent on pushed (at most one waits: one rescan covers them all).
func (s *Server) receiver(log *slog.Logger, pushed chan<- string) *Receiver {
	return &Receiver{Engine: s.Engine, Secret: s.Secret, InsecureNoSecret: s.InsecureNoSecret, GitLabURL: s.GitLabURL,
		Metrics: s.Metrics, Gatherer: s.Gatherer, Log: log,
		DepsChanged: func(project string) {
			select {
			case pushed <- project:
			default:
			}
		}}
}

// rescanLoop scans the graph again every RescanInterval and soon after a
// push changed a dependency file. Runs in flight keep their plans; a scan
// that fails keeps the graph there is.
func (s *Server) rescanLoop(ctx context.Context, pushed <-chan string) {
	log := s.logger()
	var tick <-chan time.Time
	if s.RescanInterval > 0 {
		ticker := time.NewTicker(s.RescanInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case project := <-pushed:
			log.Info("dependency file changed, rescanning", "project", project)
			if !sleep(ctx, pushSettle) {
				return
			}
		}
		planner, err := ScanPlanner(ctx, s.Scanner)
		if err != nil {
			level := slog.LevelError
			if unresolved(err) {
				level = slog.LevelDebug // the GitLab client said it once
			}
			log.Log(ctx, level, "rescan failed, keeping the previous graph", "err", err)
			continue
		}
		s.Engine.SetPlanner(planner)
		log.Info("graph rescanned", "projects", len(planner.Graph.Projects))
	}
}

// pruneLoop removes the runs Retention does not keep, at once and every
// pruneEvery.
func (s *Server) pruneLoop(ctx context.Context) {
	for {
		s.Engine.pruneLogged(ctx, s.Retention)
		if !sleep(ctx, pruneEvery) {
			return
		}
	}
}

// watchLoop checks the external base images of the graph the engine plans
// on, at once and every WatchExternal; the runs a change starts are the
// engine's to create (Work).
func (s *Server) watchLoop(ctx context.Context) {
	log := s.logger()
	watcher := &Watcher{Engine: s.Engine, Digests: s.Digests}
	for {
		if planner, ok := s.Engine.Planner().(*GraphPlanner); ok {
			res, err := watcher.Check(ctx, planner.Graph)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("external image check failed", "err", err)
			case err == nil:
				log.Info("external images checked", "checked", res.Checked, "changed", len(res.Changed), "errors", len(res.Errors))
				for _, e := range res.Errors {
					log.Warn("external image not checked", "error", e)
				}
			}
		}
		if !sleep(ctx, s.WatchExternal) {
			return
		}
	}
}

// sleep waits d, and reports false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
