//! The compiled `events:` section: history limits, sink specs, the webhook target and the link signer.

use std::path::Path;
use std::sync::Arc;

use super::file::{FileEvents, FileSink};
use super::history::HistoryLimits;
use super::links::LinkSigner;
use super::sink::SinkSpec;
use super::webhook::WebhookTarget;
use crate::config::file::Positioned;
use crate::config::{ConfigError, Sources};

/// What the recorder runs on. Sinks and queue sizes are taken once at start; the rest follows reloads.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub history: HistoryLimits,
    pub sinks: Vec<SinkSpec>,
    /// Capacity of each sink's queue.
    pub queue: usize,
    pub webhook: Option<Arc<WebhookTarget>>,
    /// Capacity of the webhook queue (also set without a webhook, so one added by a reload has a queue).
    pub webhook_queue: usize,
    pub links: Option<Arc<LinkSigner>>,
}

/// Key material read from an environment variable; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// Wraps key bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        SecretKey(bytes.into())
    }

    /// The key bytes, for HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Compiles the section; every problem is reported at its `FILE:LINE:COL`.
pub fn compile(
    section: &Positioned<FileEvents>,
    file: &Path,
    base: &Path,
    sources: &dyn Sources,
) -> Result<EventsConfig, Vec<ConfigError>> {
    let at = |line: u32, column: u32, message: String| ConfigError {
        file: file.display().to_string(),
        line,
        column,
        message,
    };
    let f = &section.value;
    let mut errors = Vec::new();
    let mut section_err = |m: &str| errors.push(at(section.line, section.column, format!("events.{m}")));
    if f.history.max_per_user == 0 {
        section_err("history.max_per_user: keep at least 1 event");
    }
    if f.history.ttl.get().is_zero() {
        section_err("history.ttl: must be longer than zero");
    }
    if f.queue == 0 {
        section_err("queue: must be at least 1");
    }
    let mut sinks = Vec::new();
    for s in &f.sinks {
        match s {
            FileSink::Stdout(_) => sinks.push(SinkSpec::Stdout),
            FileSink::File(fs) => {
                if fs.max_size.0 == 0 {
                    section_err("sinks: a file sink's max_size must be above 0");
                }
                sinks.push(SinkSpec::File {
                    path: base.join(&fs.path),
                    max_size: fs.max_size.0,
                    keep: fs.keep,
                });
            }
        }
    }
    let mut webhook = None;
    if let Some(w) = &f.webhook {
        let key = secret("webhook", &w.value.secret_env, sources, &at, &mut errors);
        let mut bad = |m: String| errors.push(at(w.line, w.column, format!("events.webhook: {m}")));
        let url = super::webhook::parse_url(&w.value.url).map_err(&mut bad).ok();
        if w.value.timeout.get().is_zero() {
            bad("timeout: must be longer than zero".into());
        }
        if w.value.queue == 0 {
            bad("queue: must be at least 1".into());
        }
        if let (Some(url), Some(key)) = (url, key) {
            webhook = Some(Arc::new(WebhookTarget {
                url,
                scope: w.value.scope,
                key,
                timeout: w.value.timeout.get(),
                retries: w.value.retries,
            }));
        }
    }
    let mut links = None;
    if let Some(l) = &f.feedback_links {
        let key = secret("feedback_links", &l.value.secret_env, sources, &at, &mut errors);
        let mut bad = |m: String| errors.push(at(l.line, l.column, format!("events.feedback_links: {m}")));
        let base_url = super::links::parse_base_url(&l.value.base_url)
            .map_err(&mut bad)
            .ok();
        if l.value.ttl.get().is_zero() {
            bad("ttl: must be longer than zero".into());
        }
        if let (Some(base_url), Some(key)) = (base_url, key) {
            links = Some(Arc::new(LinkSigner::new(base_url, key, l.value.ttl.get())));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EventsConfig {
        history: HistoryLimits {
            max_per_user: f.history.max_per_user,
            ttl: f.history.ttl.get(),
        },
        sinks,
        queue: f.queue,
        webhook_queue: f
            .webhook
            .as_ref()
            .map_or_else(super::file::default_webhook_queue, |w| w.value.queue),
        webhook,
        links,
    })
}

/// Reads the key from the environment variable named at `env`; a missing one is an error at that key.
fn secret(
    section: &str,
    env: &Positioned<String>,
    sources: &dyn Sources,
    at: &dyn Fn(u32, u32, String) -> ConfigError,
    errors: &mut Vec<ConfigError>,
) -> Option<SecretKey> {
    let var = env.value.trim();
    let mut fail = |m: String| {
        errors.push(at(
            env.line,
            env.column,
            format!("events.{section}.secret_env: {m}"),
        ));
        None
    };
    if var.is_empty() {
        return fail("name an environment variable".into());
    }
    match sources.env(var) {
        Some(v) if !v.trim().is_empty() => Some(SecretKey::new(v.trim().as_bytes())),
        _ => fail(format!("the environment variable `{var}` is unset or empty")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::{EmbeddedSources, Mode, load_from};

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<crate::config::Config, crate::config::ConfigErrors> {
        let mut s = EmbeddedSources::default();
        s.files
            .insert(PathBuf::from("conf/a.yaml"), yaml.as_bytes().to_vec());
        for (k, v) in env {
            s.env.insert((*k).into(), (*v).into());
        }
        load_from(&PathBuf::from("conf/a.yaml"), Mode::Check, &s)
    }

    #[test]
    fn defaults_without_a_section() {
        let c = load("listen: {http: []}\n", &[]).unwrap().events;
        assert_eq!(c.history.max_per_user, 100);
        assert_eq!(c.history.ttl, Duration::from_secs(90 * 86_400));
        assert!(c.sinks.is_empty() && c.webhook.is_none() && c.links.is_none());
        assert_eq!((c.queue, c.webhook_queue), (10_000, 1000));
    }

    #[test]
    fn the_whole_section() {
        let yaml = "events:
  history: {max_per_user: 50, ttl: 30d}
  sinks:
    - stdout: {}
    - file: {path: logs/events.jsonl, max_size: 1MiB, keep: 3}
  queue: 500
  webhook:
    url: https://hooks.example.com/authward
    secret_env: HOOK_SECRET
    timeout: 2s
    retries: 3
    queue: 10
  feedback_links:
    base_url: https://login.example.com/
    secret_env: LINK_SECRET
";
        let c = load(
            yaml,
            &[("HOOK_SECRET", "h-secret\n"), ("LINK_SECRET", "l-secret")],
        )
        .unwrap()
        .events;
        assert_eq!(c.history.max_per_user, 50);
        assert_eq!(c.history.ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(
            c.sinks,
            vec![
                crate::events::sink::SinkSpec::Stdout,
                crate::events::sink::SinkSpec::File {
                    path: PathBuf::from("conf/logs/events.jsonl"),
                    max_size: 1 << 20,
                    keep: 3
                }
            ]
        );
        assert_eq!((c.queue, c.webhook_queue), (500, 10));
        let w = c.webhook.unwrap();
        assert_eq!(w.url.to_string(), "https://hooks.example.com/authward");
        assert_eq!(w.key.expose(), b"h-secret", "trimmed");
        assert_eq!((w.timeout, w.retries), (Duration::from_secs(2), 3));
        assert!(
            !format!("{w:?}").contains("h-secret"),
            "the secret is never printed"
        );
        let links = c.links.unwrap().links("01HF0000000000000000000000", 0);
        assert!(
            links
                .valid
                .starts_with("https://login.example.com/.authward/feedback/")
        );
    }

    #[test]
    fn a_missing_secret_is_an_error_at_its_key() {
        let yaml = "events:\n  webhook:\n    url: https://h.example/\n    secret_env: NOPE\n";
        let e = load(yaml, &[]).unwrap_err().to_string();
        assert!(
            e.contains("conf/a.yaml:4:17: events.webhook.secret_env: the environment variable `NOPE` is unset or empty"),
            "{e}"
        );
        let yaml = "events:\n  feedback_links:\n    base_url: https://l.example\n    secret_env: \"\"\n";
        let e = load(yaml, &[]).unwrap_err().to_string();
        assert!(
            e.contains("conf/a.yaml:4:17: events.feedback_links.secret_env"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        for (yaml, want) in [
            (
                "events: {history: {max_per_user: 0}}\n",
                "events.history.max_per_user",
            ),
            ("events: {queue: 0}\n", "events.queue"),
            ("events: {sinks: [{file: {path: x, max_size: 0}}]}\n", "max_size"),
            ("events: {sinks: [{syslog: {}}]}\n", "syslog"),
            ("events: {sinks: [{stdout: {color: true}}]}\n", "color"),
            (
                "events: {webhook: {url: ftp://x, secret_env: S}}\n",
                "events.webhook: url `ftp://x`",
            ),
            (
                "events: {webhook: {url: 'https://x', secret_env: S, timeout: 0s}}\n",
                "timeout",
            ),
            (
                "events: {feedback_links: {base_url: 'login', secret_env: S}}\n",
                "base_url",
            ),
            ("events: {history: {ttl: 90}}\n", "bare number"),
            ("events: {nope: 1}\n", "nope"),
        ] {
            let e = load(yaml, &[("S", "s")]).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
            assert!(e.starts_with("conf/a.yaml:1:"), "{yaml}: {e}");
        }
    }
}
