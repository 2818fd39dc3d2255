//! No user enumeration: the upstream's "unknown user" and "wrong password" answers, as a profile declares
//! them, leave authward as one identical answer, no sooner than the profile's `min_duration`.

use http::Response;

use crate::metrics::Metrics;
use crate::pipeline::Exchange;
use crate::profile::Outcome;
use crate::proxy::body::{self, Body, Capped};

/// Replaces a revealing answer with the profile's one answer and pads the time to it; anything else is
/// put back unchanged.
pub async fn apply(ex: &Exchange, response: &mut Response<Body>, metrics: &Metrics) {
    let Some(e) = ex.profile.as_ref().and_then(|m| m.profile.enumeration().cloned()) else {
        return;
    };
    // Only the upstream's own failures: never an answer that a stage made.
    if ex.upstream.status.is_none() || ex.rejected.is_some() || ex.outcome != Some(Outcome::Failure) {
        return;
    }
    let taken = std::mem::replace(response.body_mut(), body::empty());
    let bytes = match body::read_capped(taken, ex.config.listen.response_body_limit).await {
        Ok(Capped::Complete(b)) => b,
        Ok(Capped::TooLarge { body, .. }) => {
            *response.body_mut() = body;
            return;
        }
        Err(err) => {
            tracing::warn!(request_id = %ex.ctx.request_id, error = %err, "upstream body failed");
            return;
        }
    };
    let encoded = response
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let seen = (!encoded).then_some(bytes.as_ref());
    let Some(which) = e.classify(response.status(), response.headers(), seen) else {
        *response.body_mut() = body::full(bytes);
        return;
    };
    metrics
        .enumeration_answers
        .with_label_values(&[which.as_str()])
        .inc();
    *response = e.answer.to_response();
    let due = tokio::time::Instant::from_std(ex.ctx.received + e.min_duration);
    tokio::time::sleep_until(due).await;
}
