package chain

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the Prometheus metrics of the receiver and the engine.
type Metrics struct {
	// Events counts webhook deliveries by X-Gitlab-Event and result
	// (accepted, ignored, rejected).
	Events *prometheus.CounterVec
	// Triggers counts pipelines the engine created (result created or
	// reconciled: found after a crash) or failed to create.
	Triggers    *prometheus.CounterVec
	APIErrors   prometheus.Counter
	RunDuration prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsctl_chain_webhook_events_total",
			Help: "GitLab webhook deliveries received, by X-Gitlab-Event and result.",
		}, []string{"event", "result"}),
		Triggers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "opsctl_chain_triggers_total",
			Help: "Downstream pipelines created (created, reconciled after a crash) or not (failed).",
		}, []string{"result"}),
		APIErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "opsctl_chain_gitlab_api_errors_total",
			Help: "GitLab API calls of the engine that failed after their retries.",
		}),
		RunDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "opsctl_chain_run_duration_seconds",
			Help:    "Time from the start of a chain run to its success.",
			Buckets: prometheus.ExponentialBuckets(30, 2, 12),
		}),
	}
	reg.MustRegister(m.Events, m.Triggers, m.APIErrors, m.RunDuration)
	return m
}
