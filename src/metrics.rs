//! The Prometheus registry and the metric definitions that every part reports into.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All of authward's metrics, registered once at start and kept across reloads.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by operation (`none` when no profile matched) and status code.
    pub requests: IntCounterVec,
    /// Whole-request latency by operation.
    pub request_duration: HistogramVec,
    /// Time to the upstream's response head.
    pub upstream_duration: Histogram,
    /// Upstream failures by kind (connect, timeout, protocol).
    pub upstream_errors: IntCounterVec,
    /// Profiled operations by profile, operation and outcome (success, failure, challenge, unknown).
    pub outcomes: IntCounterVec,
    /// Requests refused before forwarding by reason (body_too_large, body_timeout, bad_body, encoded_body, ambiguous_fields).
    pub rejected: IntCounterVec,
    /// Web-ACL rule matches by rule and action (`shadow_<action>` for rules in shadow mode).
    pub rule_matches: IntCounterVec,
    /// Config reloads by result (ok, error).
    pub config_reloads: IntCounterVec,
    /// Redis store batches that Redis did not answer, by what answered instead (`local`: this replica's
    /// memory, `none`: nothing, the operation failed).
    pub store_unavailable: IntCounterVec,
    /// Client connections open now.
    pub connections: IntGauge,
    /// Keys held by the state store.
    pub store_keys: IntGauge,
    /// Approximate bytes used by the state store.
    pub store_bytes: IntGauge,
    /// Risk decisions by level, decision and mode.
    pub risk_decisions: IntCounterVec,
    /// Risk signals that fired, by signal.
    pub risk_signals: IntCounterVec,
    /// Auth events recorded, by type and outcome.
    pub events: IntCounterVec,
    /// Events a sink did not take because its queue was full or it was closed, by sink (stdout, file,
    /// history).
    pub event_sink_dropped: IntCounterVec,
    /// Events waiting in each sink's queue.
    pub event_sink_queue_depth: IntGaugeVec,
    /// Webhook notifications by result (ok, failed, dropped).
    pub webhook_deliveries: IntCounterVec,
    /// Feedback recorded on events, by value (valid, invalid) and source (admin, link).
    pub feedback: IntCounterVec,
    /// SMS guard decisions by decision, reason and destination country.
    pub sms_decisions: IntCounterVec,
    /// Estimated SMS spend in the current budget window, by window (hour, day) and currency.
    pub sms_spend: GaugeVec,
    /// SMS codes verified / sent by destination country, over the conversion window.
    pub sms_conversion: GaugeVec,
    /// Policy decisions by policy and decision (pass, refuse, would_refuse).
    pub policy_decisions: IntCounterVec,
    /// Sign-ins that asked for MFA, by result (held, backend, no_factor_blocked, no_factor_allowed, error).
    pub mfa_challenges: IntCounterVec,
    /// Second-factor checks by result (verified, wrong_code, replayed, locked, expired, refused, error).
    pub mfa_verifications: IntCounterVec,
    /// TOTP enrollments by action (enroll and remove through the admin API, self_enroll by a signing-in user).
    pub mfa_enrollments: IntCounterVec,
    /// Answers made identical for user-enumeration protection, by the upstream's answer (unknown_user,
    /// wrong_password).
    pub enumeration_answers: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let requests = counter(
            "authward_requests_total",
            "Requests by operation and status",
            &["operation", "status"],
        );
        let upstream_errors = counter(
            "authward_upstream_errors_total",
            "Upstream failures by kind",
            &["kind"],
        );
        let outcomes = counter(
            "authward_profile_outcomes_total",
            "Profiled operations by outcome",
            &["profile", "operation", "outcome"],
        );
        let rejected = counter(
            "authward_rejected_requests_total",
            "Requests refused before forwarding",
            &["reason"],
        );
        let rule_matches = counter(
            "authward_rule_matches_total",
            "Web-ACL rule matches by rule and action",
            &["rule", "action"],
        );
        let risk_decisions = counter(
            "authward_risk_decisions_total",
            "Risk decisions by level, decision and mode",
            &["level", "decision", "mode"],
        );
        let risk_signals = counter(
            "authward_risk_signals_total",
            "Risk signals that fired, by signal",
            &["signal"],
        );
        let policy_decisions = counter(
            "authward_policy_decisions_total",
            "Policy decisions by policy and decision (pass, refuse, would_refuse)",
            &["policy", "decision"],
        );
        let config_reloads = counter(
            "authward_config_reloads_total",
            "Config reloads by result",
            &["result"],
        );
        let store_unavailable = counter(
            "authward_store_unavailable_total",
            "Redis store batches Redis did not answer, by the fallback that answered instead",
            &["fallback"],
        );
        let events = counter(
            "authward_events_total",
            "Auth events recorded by type and outcome",
            &["type", "outcome"],
        );
        let event_sink_dropped = counter(
            "authward_event_sink_dropped_total",
            "Events a sink dropped because its queue was full",
            &["sink"],
        );
        let webhook_deliveries = counter(
            "authward_webhook_deliveries_total",
            "Webhook notifications by result",
            &["result"],
        );
        let feedback = counter(
            "authward_feedback_total",
            "Feedback recorded on events by value and source",
            &["value", "source"],
        );
        let mfa_challenges = counter(
            "authward_mfa_challenges_total",
            "Sign-ins that asked for MFA, by result",
            &["result"],
        );
        let mfa_verifications = counter(
            "authward_mfa_verifications_total",
            "Second-factor checks by result",
            &["result"],
        );
        let mfa_enrollments = counter(
            "authward_mfa_enrollments_total",
            "TOTP enrollments, by action",
            &["action"],
        );
        let enumeration_answers = counter(
            "authward_enumeration_answers_total",
            "Answers made identical for user-enumeration protection, by the upstream's answer",
            &["answer"],
        );
        let event_sink_queue_depth = IntGaugeVec::new(
            Opts::new(
                "authward_event_sink_queue_depth",
                "Events waiting in each sink's queue",
            ),
            &["sink"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(event_sink_queue_depth.clone()))
            .expect("metric registered once");
        let request_duration = HistogramVec::new(
            HistogramOpts::new("authward_request_duration_seconds", "Whole-request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(request_duration.clone()))
            .expect("metric registered once");
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "authward_upstream_request_duration_seconds",
                "Time to the upstream's response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("static metric definition");
        registry
            .register(Box::new(upstream_duration.clone()))
            .expect("metric registered once");
        let connections = IntGauge::new("authward_connections_active", "Client connections open now")
            .expect("static metric");
        registry
            .register(Box::new(connections.clone()))
            .expect("metric registered once");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let sms_decisions = counter(
            "authward_sms_decisions_total",
            "SMS guard decisions by decision, reason and destination country",
            &["decision", "reason", "country"],
        );
        let float_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        let sms_spend = float_gauge(
            "authward_sms_estimated_spend",
            "Estimated SMS spend in the current budget window",
            &["window", "currency"],
        );
        let sms_conversion = float_gauge(
            "authward_sms_conversion_ratio",
            "SMS codes verified / sent over the conversion window, by destination country",
            &["country"],
        );
        let store_keys = gauge("authward_store_keys", "Keys held by the state store");
        let store_bytes = gauge(
            "authward_store_bytes",
            "Approximate bytes used by the state store",
        );
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            outcomes,
            rejected,
            rule_matches,
            config_reloads,
            store_unavailable,
            connections,
            store_keys,
            store_bytes,
            risk_decisions,
            risk_signals,
            events,
            event_sink_dropped,
            event_sink_queue_depth,
            webhook_deliveries,
            feedback,
            sms_decisions,
            sms_spend,
            sms_conversion,
            policy_decisions,
            mfa_challenges,
            mfa_verifications,
            mfa_enrollments,
            enumeration_answers,
        }
    }

    /// The registry, for parts that register metrics of their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_names() {
        let m = Metrics::new();
        m.requests.with_label_values(&["sign_in", "200"]).inc();
        m.config_reloads.with_label_values(&["error"]).inc();
        let text = m.render();
        assert!(
            text.contains("authward_requests_total{operation=\"sign_in\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("authward_config_reloads_total{result=\"error\"} 1"));
    }

    #[test]
    fn the_grafana_dashboard_queries_only_metrics_that_exist() {
        let dashboard = include_str!("../deploy/grafana/authward.json");
        let defined = include_str!("metrics.rs");
        let mut names: Vec<&str> = dashboard
            .match_indices("authward_")
            .map(|(i, _)| {
                let rest = &dashboard[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        assert!(names.len() > 10, "{names:?}");
        for name in names {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            assert!(
                defined.contains(&format!("\"{base}\"")),
                "the dashboard queries {name}, which is not defined"
            );
        }
    }
}
