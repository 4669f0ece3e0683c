package imapauth

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus series of a Server. Labels carry verdicts and
// sources only: never a user name or a password.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	refused   prometheus.Counter
	malformed prometheus.Counter
	inFlight  prometheus.Gauge
	queued    prometheus.Gauge
	open      prometheus.Gauge
	limit     *prometheus.GaugeVec
	overcap   *prometheus.CounterVec
	acceptErr prometheus.Counter
	notPinned prometheus.Counter
	pinReload *prometheus.CounterVec
}

// NewMetrics registers the server's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_requests_total",
			Help: "Answered readsocket requests by result (yes, no, defer) and source (imap, cache, local).",
		}, []string{"result", "source"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "opsctl_imap_auth_request_duration_seconds",
			Help:    "Time from a complete request line to the reply, by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_refused_clients_total",
			Help: "Connections refused because the client's uid is not allowed (or cannot be known).",
		}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opsctl_imap_auth_open_connections",
			Help: "Connections of allowed clients open now (waiting for their line or being answered).",
		}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "opsctl_imap_auth_connection_limit",
			Help: "Caps on the open connections of allowed clients: total, and per_uid (per client uid).",
		}, []string{"limit"}),
		overcap: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_connections_over_limit_total",
			Help: "Connections answered defer at once because a cap was reached: per_uid, total, or descriptors (the process had none left).",
		}, []string{"limit"}),
		acceptErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_accept_errors_total",
			Help: "Failed accepts on the socket that were retried (no descriptor or memory left).",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_malformed_requests_total",
			Help: "Requests that were not base64(user) SP base64(password) LF.",
		}),
		notPinned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_pin_mismatches_total",
			Help: "Logins answered defer because no certificate of the IMAP server's verified chain had a pinned key (the password was not sent).",
		}),
		pinReload: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_pin_reloads_total",
			Help: "Readings of the pin file on SIGHUP by result: ok (its pins in force) or failed (the pins in force kept).",
		}, []string{"result"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opsctl_imap_auth_imap_logins_in_flight",
			Help: "IMAP logins being made now.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opsctl_imap_auth_queued_requests",
			Help: "Requests waiting for a free IMAP login slot.",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.refused, m.malformed, m.inFlight, m.queued,
		m.open, m.limit, m.overcap, m.acceptErr, m.notPinned, m.pinReload)
	// Make every result visible from the start, so rate() works at once.
	for _, result := range []string{"yes", "no", "defer"} {
		m.latency.WithLabelValues(result)
		m.requests.WithLabelValues(result, "imap")
	}
	for _, limit := range []limitName{limitPerUID, limitTotal, limitDescriptors} {
		m.overcap.WithLabelValues(string(limit))
	}
	for _, result := range []string{"ok", "failed"} {
		m.pinReload.WithLabelValues(result)
	}
	return m
}

func (m *Metrics) observe(v Verdict, source string, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(v.String(), source).Inc()
	m.latency.WithLabelValues(v.String()).Observe(took.Seconds())
}

func (m *Metrics) refusedClient() {
	if m != nil {
		m.refused.Inc()
	}
}

func (m *Metrics) malformedRequest() {
	if m != nil {
		m.malformed.Inc()
	}
}

func (m *Metrics) addInFlight(d float64) {
	if m != nil {
		m.inFlight.Add(d)
	}
}

func (m *Metrics) addQueued(d float64) {
	if m != nil {
		m.queued.Add(d)
	}
}

func (m *Metrics) setLimits(limits ConnectionLimits) {
	if m != nil {
		m.limit.WithLabelValues(string(limitTotal)).Set(float64(limits.Total))
		m.limit.WithLabelValues(string(limitPerUID)).Set(float64(limits.PerUID))
	}
}

func (m *Metrics) overLimit(limit limitName) {
	if m != nil {
		m.overcap.WithLabelValues(string(limit)).Inc()
	}
}

func (m *Metrics) addOpen(d float64) {
	if m != nil {
		m.open.Add(d)
	}
}

func (m *Metrics) acceptFailed() {
	if m != nil {
		m.acceptErr.Inc()
	}
}

func (m *Metrics) pinMismatch() {
	if m != nil {
		m.notPinned.Inc()
	}
}

func (m *Metrics) pinsReloaded(ok bool) {
	if m != nil {
		result := "ok"
		if !ok {
			result = "failed"
		}
		m.pinReload.WithLabelValues(result).Inc()
	}
}
