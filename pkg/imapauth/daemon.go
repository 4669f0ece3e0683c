package imapauth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// MetricsMaxConns bounds the connections the metrics endpoint serves at
// once. The endpoint is open to every local user (and to the network if the
// admin says so): without a bound, idle connections to it took descriptors
// until the socket's accept failed (EMFILE) and Exim's logins with it. The
// others wait in the kernel's listen queue, holding no descriptor of the
// daemon, and a connection that sends nothing is closed within seconds.
// Count 1+MetricsMaxConns in Server.OtherDescriptors when metrics are served.
const MetricsMaxConns = 8

// Run is the whole daemon: it answers ln as Serve does and, with metrics
// not nil, serves Prometheus /metrics there (the Server's counters, Go's and
// the process's). The Checker, when it is a *Checker, is warmed first and
// closed after the last answer, and each SIGHUP reads its Config.PinFile
// again (Checker.ReloadPins; a file that cannot be used keeps the pins in
// force), logged in one line. When ctx ends Run stops accepting, lets the
// answers under way finish, stops the metrics endpoint and returns what
// Serve returned.
func (s *Server) Run(ctx context.Context, ln, metrics net.Listener) error {
	s.init()
	var metricsServer *http.Server
	if metrics != nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		s.Metrics = NewMetrics(reg)
		metricsServer = newMetricsServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		go func() {
			if err := metricsServer.Serve(netutil.LimitListener(metrics, MetricsMaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.Logger.Error("metrics endpoint stopped", "err", err)
			}
		}()
	}
	checker, _ := s.Checker.(*Checker)
	if checker != nil {
		stopReloading := s.reloadOnHangup(checker)
		defer stopReloading()
		checker.Prewarm()
	}
	err := s.Serve(ctx, ln)
	if checker != nil {
		checker.Close()
	}
	if metricsServer != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		metricsServer.Shutdown(shutdownCtx)
		cancel()
	}
	return err
}

func newMetricsServer(metrics http.Handler) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
}
