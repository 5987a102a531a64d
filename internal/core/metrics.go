package core

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are orgplane's Prometheus metrics.
type Metrics struct {
	Registry         *prometheus.Registry
	Decisions        *prometheus.CounterVec   // reason, action
	Restarts         *prometheus.CounterVec   // outcome
	RestartDuration  prometheus.Histogram     // seconds, claim to healthy
	PropagationLag   prometheus.Histogram     // seconds, write to healthy box
	BoxFailures      *prometheus.CounterVec   // cause
	Provisions       *prometheus.CounterVec   // runtime, outcome
	ProvisionLatency *prometheus.HistogramVec // runtime
	StaleWorkspaces  prometheus.Gauge
	RestartsInFlight prometheus.Gauge
	// The platform supervisor's: transitions of platform workspaces by the
	// status they moved to; recoveries it scheduled; the longest time any
	// org's platform has not been running (0 when all are; no org ids:
	// /metrics holds aggregates only); and how many have been down for
	// longer than the alert threshold (alert on > 0).
	PlatformTransitions *prometheus.CounterVec // to
	PlatformRecoveries  prometheus.Counter
	PlatformNotRunning  prometheus.Gauge
	PlatformsDown       prometheus.Gauge
	// Approvals and requests: transitions by kind ("approval", "request")
	// and the state they moved to; time from asking to the deciding
	// person's verdict (approved, denied, answered, declined).
	Approvals       *prometheus.CounterVec   // kind, state
	DecisionSeconds *prometheus.HistogramVec // kind
	// The listener of a shared store's notifications (Postgres): 1 while
	// connected; connections made (more than one: it reconnected).
	ListenerConnected prometheus.Gauge
	ListenerConnects  prometheus.Counter
	// Retention: rows pruned by table ("restart_jobs", and "changes" for
	// changes with their decision parts).
	PrunedRows *prometheus.CounterVec // table
}

// NewMetrics registers orgplane's metrics on a fresh registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgplane_propagation_decisions_total", Help: "Propagation decisions by reason code and action.",
		}, []string{"reason", "action"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgplane_restarts_total", Help: "Restart jobs finished, by outcome.",
		}, []string{"outcome"}),
		RestartDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orgplane_restart_duration_seconds", Help: "Time from a restart's start to its new box healthy.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		PropagationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orgplane_propagation_lag_seconds", Help: "Time from a secret write to the affected box healthy with it.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 12),
		}),
		BoxFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgplane_box_failures_total", Help: "Boxes that failed, by cause.",
		}, []string{"cause"}),
		Provisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgplane_provisions_total", Help: "Box provisions by runtime and outcome.",
		}, []string{"runtime", "outcome"}),
		ProvisionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orgplane_provision_seconds", Help: "Time from provision to healthy.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"runtime"}),
		StaleWorkspaces: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orgplane_stale_workspaces", Help: "Workspaces whose box runs with an env other than the current one (refreshed periodically).",
		}),
		RestartsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orgplane_restarts_in_flight", Help: "Restarts this replica is executing.",
		}),
		PlatformTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orgplane_platform_transitions_total", Help: "Status changes of platform workspaces, by the status they moved to.",
		}, []string{"to"}),
		PlatformRecoveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orgplane_platform_recoveries_total", Help: "Re-provisions of a dead platform box scheduled by the platform supervisor.",
		}),
		PlatformNotRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orgplane_platform_not_running_seconds", Help: "The longest time any org's platform workspace has not been running (0 when all are).",
		}),
		PlatformsDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "orgplane_platforms_down", Help: "Platform workspaces not running for longer than the alert threshold (default 1m).",
		}),
	}
	m.Approvals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orgplane_approvals_total", Help: "Approvals and requests entering a state, by kind and state.",
	}, []string{"kind", "state"})
	m.DecisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "orgplane_approval_decision_seconds", Help: "Time from an approval or request being asked to a person's deciding verdict.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	}, []string{"kind"})
	m.ListenerConnected = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "orgplane_store_listener_connected", Help: "1 while this replica receives the other replicas' notifications through the store (Postgres); 0 while it polls instead.",
	})
	m.ListenerConnects = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "orgplane_store_listener_connects_total", Help: "Connections the store's notification listener made (more than one: it reconnected).",
	})
	reg.MustRegister(m.Approvals, m.DecisionSeconds, m.ListenerConnected, m.ListenerConnects)
	m.PrunedRows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orgplane_pruned_rows_total", Help: "Rows of history deleted by retention, by table (changes: with their decision parts).",
	}, []string{"table"})
	reg.MustRegister(m.PrunedRows)
	reg.MustRegister(m.PlatformTransitions, m.PlatformRecoveries, m.PlatformNotRunning, m.PlatformsDown)
	reg.MustRegister(m.Decisions, m.Restarts, m.RestartDuration, m.PropagationLag, m.BoxFailures,
		m.Provisions, m.ProvisionLatency, m.RestartsInFlight, m.StaleWorkspaces,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}
