//! The notification webhook: a bounded queue of signed JSON POSTs, delivered with retries and backoff.
//!
//! Each request carries `X-Authward-Timestamp: <unix seconds>` and
//! `X-Authward-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`; the receiver recomputes
//! the HMAC over the raw body, compares in constant time and refuses stale timestamps. The secret is never
//! logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

use super::Event;
pub use super::file::WebhookScope;
use super::settings::SecretKey;
use crate::clock::SharedClock;
use crate::metrics::Metrics;

/// Where notifications go and how they are signed (from the config current when the event was recorded).
#[derive(Debug)]
pub struct WebhookTarget {
    pub url: Uri,
    /// Which events are posted.
    pub scope: WebhookScope,
    pub key: SecretKey,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// Checks a webhook URL: http or https, with a host.
pub fn parse_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("url `{s}` is not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("url `{s}` needs http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("url `{s}` has no host"));
    }
    Ok(uri)
}

/// The "this was me" / "this was not me" links of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Links {
    pub valid: String,
    pub invalid: String,
}

/// The JSON body of a notification.
#[derive(Serialize)]
struct Payload<'a> {
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<&'a Links>,
}

/// The body of a notification for `event`.
pub fn payload(event: &Event, links: Option<&Links>) -> Result<Bytes, serde_json::Error> {
    serde_json::to_vec(&Payload { event, links }).map(Bytes::from)
}

/// `sha256=<hex>` of HMAC-SHA256 over `"<timestamp>.<body>"`.
pub fn signature(key: &SecretKey, timestamp: u64, body: &[u8]) -> String {
    let mac = crate::signing::hmac_sha256(key.expose(), &[timestamp.to_string().as_bytes(), b".", body]);
    format!("sha256={}", hex::encode(mac))
}

/// The wait before retry `n` (0-based): 200ms·2^n, at most 30 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1u64 << n.min(20))).min(Duration::from_secs(30))
}

/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

struct Job {
    target: Arc<WebhookTarget>,
    event_id: String,
    body: Bytes,
}

/// The queue and its delivery task.
pub struct Webhook {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

/// Why the webhook client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("webhook client: {0}")]
pub struct ClientError(String);

impl Webhook {
    /// Builds the client (system roots, HTTP/1.1 and HTTP/2) and starts the delivery task; at most `queue`
    /// notifications wait. Must run inside a tokio runtime.
    pub fn start(queue: usize, metrics: Arc<Metrics>, clock: SharedClock) -> Result<Webhook, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client: Client<Connector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let (tx, rx) = mpsc::channel::<Job>(queue.max(1));
        let worker = {
            let metrics = metrics.clone();
            tokio::spawn(async move {
                use futures_util::StreamExt;
                let jobs =
                    futures_util::stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|j| (j, rx)) },
                    );
                jobs.for_each_concurrent(CONCURRENCY, |job| {
                    let (client, metrics, clock) = (&client, &metrics, &clock);
                    async move {
                        let result = if deliver(client, &job, clock).await {
                            "ok"
                        } else {
                            "failed"
                        };
                        metrics.webhook_deliveries.with_label_values(&[result]).inc();
                    }
                })
                .await;
            })
        };
        Ok(Webhook {
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            metrics,
        })
    }

    /// Queues a notification; never waits. A full (or closed) queue drops it and counts it.
    pub fn enqueue(&self, target: Arc<WebhookTarget>, event: &Event, links: Option<&Links>) {
        let body = match payload(event, links) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(event_id = %event.event_id, error = %e, "cannot encode the webhook payload");
                return;
            }
        };
        let job = Job {
            target,
            event_id: event.event_id.clone(),
            body,
        };
        let sent = self.tx.lock().as_ref().is_some_and(|tx| tx.try_send(job).is_ok());
        if !sent {
            self.metrics
                .webhook_deliveries
                .with_label_values(&["dropped"])
                .inc();
            tracing::debug!(event_id = %event.event_id, "webhook queue full: notification dropped");
        }
    }

    /// Stops taking notifications and gives the queued ones until `within` to be delivered; what is left
    /// then is abandoned (and logged).
    pub async fn close(&self, within: Duration) {
        drop(self.tx.lock().take());
        let Some(mut worker) = self.worker.lock().take() else {
            return;
        };
        if tokio::time::timeout(within, &mut worker).await.is_err() {
            worker.abort();
            tracing::warn!("shutdown: webhook notifications still queued were abandoned");
        }
    }
}

/// Sends one notification, retrying connection errors, timeouts, 429 and 5xx; true when delivered.
async fn deliver(client: &Client<Connector, Full<Bytes>>, job: &Job, clock: &SharedClock) -> bool {
    let target = &job.target;
    for attempt in 0..=target.retries {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt - 1)).await;
        }
        let timestamp = clock.now_ms() / 1000;
        let request = Request::post(target.url.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(header::USER_AGENT, HeaderValue::from_static("authward"))
            .header("x-authward-timestamp", timestamp)
            .header(
                "x-authward-signature",
                signature(&target.key, timestamp, &job.body),
            )
            .body(Full::new(job.body.clone()));
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(event_id = %job.event_id, error = %e, "cannot build the webhook request");
                return false;
            }
        };
        let retry = match tokio::time::timeout(target.timeout, client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                if status.is_success() {
                    return true;
                }
                let status_code = status.as_u16();
                tracing::warn!(event_id = %job.event_id, status_code, attempt, "webhook answered an error");
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
            }
            Ok(Err(e)) => {
                tracing::warn!(event_id = %job.event_id, error = %e, attempt, "webhook request failed");
                true
            }
            Err(_) => {
                tracing::warn!(event_id = %job.event_id, attempt, "webhook did not answer in time");
                true
            }
        };
        if !retry {
            break;
        }
    }
    let host = target.url.host().unwrap_or("");
    tracing::warn!(event_id = %job.event_id, host, "webhook notification not delivered");
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec-test'
        let key = SecretKey::new(b"whsec-test".to_vec());
        assert_eq!(
            signature(&key, 1_700_000_000, br#"{"a":1}"#),
            "sha256=fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(0), Duration::from_millis(200));
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(4), Duration::from_millis(3200));
        assert_eq!(backoff(10), Duration::from_secs(30));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn urls_need_a_scheme_and_host() {
        assert!(parse_url("https://hooks.example.com/authward").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/").is_ok());
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("/relative").is_err());
        assert!(parse_url("not a url").is_err());
    }

    #[test]
    fn payload_has_the_event_and_links_only_when_given() {
        let e = crate::events::history::tests::event(Some("alice"), 1_700_000_000_000);
        let links = Links {
            valid: "https://l/v".into(),
            invalid: "https://l/i".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&payload(&e, Some(&links)).unwrap()).unwrap();
        assert_eq!(v["event"]["username"], "alice");
        assert_eq!(v["links"]["valid"], "https://l/v");
        let v: serde_json::Value = serde_json::from_slice(&payload(&e, None).unwrap()).unwrap();
        assert!(v.get("links").is_none());
    }
}
