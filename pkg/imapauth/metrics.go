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
			Help: "Connections refused because the client's uid is not allowed.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opsctl_imap_auth_malformed_requests_total",
			Help: "Requests that were not base64(user) SP base64(password) LF.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opsctl_imap_auth_imap_logins_in_flight",
			Help: "IMAP logins being made now.",
		}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "opsctl_imap_auth_queued_requests",
			Help: "Requests waiting for a free IMAP login slot.",
		}),
	}
	reg.MustRegister(m.requests, m.latency, m.refused, m.malformed, m.inFlight, m.queued)
	// Make every result visible from the start, so rate() works at once.
	for _, result := range []string{"yes", "no", "defer"} {
		m.latency.WithLabelValues(result)
		m.requests.WithLabelValues(result, "imap")
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
