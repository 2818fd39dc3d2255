//! Serde mirror types of the `events:` config section: history, sinks, webhook and feedback links.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::file::Positioned;
use crate::config::types::{ByteSize, Duration};

/// Auth events: the per-user history in the store, the sinks every event is written to, the webhook
/// that notifies of events worth a look, and the signed feedback links its payloads carry.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileEvents {
    /// The per-user event history kept in the store (the admin API reads it).
    pub history: FileHistory,
    /// Where every event is also written, one JSON object per line. Default: none. Fixed at start.
    pub sinks: Vec<FileSink>,
    /// Events waiting for each sink at most; when a sink falls behind, newer events are dropped for it and
    /// counted in `authward_event_sink_dropped_total`. Fixed at start.
    pub queue: usize,
    /// POST events whose risk level asks for a notification (or every event) to this URL, signed with
    /// HMAC-SHA256.
    pub webhook: Option<Positioned<FileWebhook>>,
    /// Signed "this was me" / "this was not me" links in webhook payloads. Without it, payloads carry no
    /// links.
    pub feedback_links: Option<Positioned<FileFeedbackLinks>>,
}

impl Default for FileEvents {
    fn default() -> Self {
        FileEvents {
            history: FileHistory::default(),
            sinks: Vec::new(),
            queue: 10_000,
            webhook: None,
            feedback_links: None,
        }
    }
}

/// Limits of the per-user event history.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FileHistory {
    /// Events kept per user, newest first; the oldest go beyond it.
    pub max_per_user: usize,
    /// How long an event is kept.
    pub ttl: Duration,
}

impl Default for FileHistory {
    fn default() -> Self {
        FileHistory {
            max_per_user: 100,
            ttl: Duration::from_secs(90 * 86_400),
        }
    }
}

/// One event sink.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FileSink {
    /// JSON lines on standard output (logs go to standard error).
    Stdout(FileStdoutSink),
    /// JSON lines appended to a file that is rotated by size.
    File(FileFileSink),
}

/// The stdout sink has no settings: write it as `{stdout: {}}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileStdoutSink {}

/// A file of JSON lines, rotated by size.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFileSink {
    /// The file (relative to the config file); created if absent, appended to if present.
    pub path: PathBuf,
    /// When the next line would take the file past this size, it is renamed to `PATH.1` (older ones to
    /// `PATH.2`...) and a new file is started.
    #[serde(default = "default_max_size")]
    pub max_size: ByteSize,
    /// Rotated files kept (`PATH.1` to `PATH.N`); 0 keeps none.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_max_size() -> ByteSize {
    ByteSize(100 * 1024 * 1024)
}
fn default_keep() -> usize {
    5
}

/// The notification webhook.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWebhook {
    /// The URL that receives `POST {"event": ..., "links": {...}}` (http or https).
    pub url: String,
    /// Which events are posted.
    #[serde(default)]
    pub scope: WebhookScope,
    /// Environment variable holding the signing secret: each request carries `X-Authward-Timestamp` and
    /// `X-Authward-Signature: sha256=HEX(HMAC-SHA256(secret, "TIMESTAMP.BODY"))`.
    pub secret_env: Positioned<String>,
    /// Time allowed for one delivery attempt.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Duration,
    /// Further attempts after a connection error, a timeout, a 429 or a 5xx, with exponential backoff.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Notifications waiting for delivery at most; beyond it new ones are dropped and counted. Fixed at
    /// start.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
}

/// Which events the webhook receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookScope {
    /// Only events whose risk level asks for the user to be notified.
    #[default]
    Notify,
    /// Every recorded event (for example to feed a SIEM), with feedback links all the same.
    All,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retries() -> u32 {
    5
}
pub(crate) fn default_webhook_queue() -> usize {
    1000
}

/// Signed one-click feedback links, served by the proxy under `/.authward/feedback/`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileFeedbackLinks {
    /// The public address of this proxy as users reach it: links are `BASE_URL/.authward/feedback/TOKEN`.
    pub base_url: String,
    /// Environment variable holding the key that signs the links (HMAC-SHA256).
    pub secret_env: Positioned<String>,
    /// How long a link stays valid.
    #[serde(default = "default_link_ttl")]
    pub ttl: Duration,
}

fn default_link_ttl() -> Duration {
    Duration::from_secs(7 * 86_400)
}
