//! The recorder (stage 10 for auth events): history, sinks and notifications, and feedback on events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use prometheus::IntGauge;
use tokio::sync::mpsc;

use super::history::{History, HistoryError};
use super::sink::{SinkError, Sinks};
use super::webhook::{ClientError, Webhook, WebhookScope};
use super::{Event, EventType, EventsConfig, Feedback, FeedbackValue, Pending, format_time};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Exchange;
use crate::profile::{Operation, Outcome};
use crate::store::Store;

/// Told of every feedback that changed an event, once it is stored (the risk engine trusts or distrusts
/// devices with it).
#[async_trait::async_trait]
pub trait FeedbackHook: Send + Sync {
    async fn on_feedback(&self, event: &Event, value: FeedbackValue);
}

/// Where feedback came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackSource {
    /// `POST /admin/v1/events/{id}/feedback`.
    Admin,
    /// A signed link from a notification.
    Link,
}

impl FeedbackSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackSource::Admin => "admin",
            FeedbackSource::Link => "link",
        }
    }
}

/// Why feedback was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// No live event has this id.
    #[error("no such event")]
    NotFound,
    #[error(transparent)]
    History(HistoryError),
}

impl From<HistoryError> for FeedbackError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::NotFound(_) => FeedbackError::NotFound,
            e => FeedbackError::History(e),
        }
    }
}

/// Why the recorder could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Webhook(#[from] ClientError),
}

/// Store writes (history, then the notification) in flight at once.
const STORE_CONCURRENCY: usize = 16;

/// One recorded event on its way to the store.
struct Job {
    pending: Pending,
    /// The event's JSON, when the sinks were sent it: the history stores the same text.
    json: Option<Bytes>,
    /// The config the request ran with: its history limits, webhook and link settings apply.
    config: Arc<Config>,
}

/// What the store-writing task needs.
struct Core {
    history: History,
    webhook: Webhook,
    metrics: Arc<Metrics>,
    /// `authward_event_sink_queue_depth{sink="history"}`.
    queue_depth: IntGauge,
    clock: SharedClock,
}

/// Process-wide: built once at start, kept across reloads. The sinks and the queue sizes are the ones of
/// the config at start; history limits, the webhook target and secret, and the feedback links are read
/// from the config each event's request ran with, so a reload changes them for the next request.
pub struct Recorder {
    core: Arc<Core>,
    sinks: Arc<Sinks>,
    /// The settings fixed at start, to warn when a reload asks for others.
    fixed: Fixed,
    queue: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    hook: RwLock<Option<Arc<dyn FeedbackHook>>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fixed {
    sinks: Vec<super::sink::SinkSpec>,
    queue: usize,
    webhook_queue: usize,
}

impl Fixed {
    fn of(c: &EventsConfig) -> Self {
        Fixed {
            sinks: c.sinks.clone(),
            queue: c.queue,
            webhook_queue: c.webhook_queue,
        }
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("sinks", &self.sinks)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Opens the sinks and starts the writers. Must run inside a tokio runtime.
    pub fn start(
        config: &EventsConfig,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Result<Recorder, StartError> {
        let sinks = Arc::new(Sinks::start(&config.sinks, config.queue, &metrics)?);
        let webhook = Webhook::start(config.webhook_queue, metrics.clone(), clock.clone())?;
        let core = Arc::new(Core {
            history: History::new(store, clock.clone()),
            webhook,
            queue_depth: metrics.event_sink_queue_depth.with_label_values(&["history"]),
            metrics,
            clock,
        });
        let (tx, rx) = mpsc::channel::<Job>(config.queue.max(1));
        let writer = {
            let core = core.clone();
            tokio::spawn(async move {
                use futures_util::StreamExt;
                let jobs =
                    futures_util::stream::unfold(
                        rx,
                        |mut rx| async move { rx.recv().await.map(|j| (j, rx)) },
                    );
                jobs.for_each_concurrent(STORE_CONCURRENCY, |job| {
                    let core = &core;
                    async move {
                        core.queue_depth.dec();
                        core.store(job).await;
                    }
                })
                .await;
            })
        };
        Ok(Recorder {
            core,
            sinks,
            fixed: Fixed::of(config),
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            hook: RwLock::new(None),
        })
    }

    /// Sets (or replaces) the hook told of feedback.
    pub fn set_feedback_hook(&self, hook: Arc<dyn FeedbackHook>) {
        *self.hook.write() = Some(hook);
    }

    /// The event history.
    pub fn history(&self) -> &History {
        &self.core.history
    }

    /// The recorder's clock, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.core.clock.now_ms()
    }

    /// Warns when a reloaded config changes what only a restart changes.
    pub fn check_reload(&self, config: &EventsConfig) {
        if Fixed::of(config) != self.fixed {
            tracing::warn!(
                "events.sinks, events.queue or events.webhook.queue changed: takes effect at the next restart"
            );
        }
    }

    /// Records the events of one finished request: to the sinks now (never waiting), to the history and
    /// the webhook in the background (a bounded queue: when it is full the event is dropped for the
    /// history and counted as `authward_event_sink_dropped_total{sink="history"}`).
    ///
    /// When no stage made an event for a profiled auth operation, the recorder makes the basic one itself,
    /// so that every sign-in, sign-up, password change or reset, SMS send or verification and MFA check is
    /// recorded even with risk scoring off (see [`basic_event`]).
    pub fn record(&self, ex: &Exchange, mut events: Vec<Pending>) {
        if events.is_empty() {
            if let Some(event) = basic_event(ex, self.now_ms()) {
                events.push(Pending { event, notify: false });
            }
        }
        let metrics = &self.core.metrics;
        for mut pending in events {
            // Stages may set the user after making the event: its id must carry that user's tag.
            pending.event.tag_id();
            let e = &pending.event;
            metrics
                .events
                .with_label_values(&[e.kind.as_str(), &e.outcome])
                .inc();
            let mut json = None;
            if !self.sinks.is_empty() {
                // The history's bytes and the sinks' line, each copied once from the shared buffer.
                let encoded = super::with_json(e, |b| {
                    std::str::from_utf8(b).map(|line| (Bytes::copy_from_slice(b), Arc::<str>::from(line)))
                });
                match encoded {
                    Ok(Ok((bytes, line))) => {
                        json = Some(bytes);
                        self.sinks.send(&line);
                    }
                    Ok(Err(err)) => {
                        tracing::error!(event_id = %e.event_id, error = %err, "cannot encode an event")
                    }
                    Err(err) => {
                        tracing::error!(event_id = %e.event_id, error = %err, "cannot encode an event")
                    }
                }
            }
            let notifies = pending.notify
                || ex
                    .config
                    .events
                    .webhook
                    .as_ref()
                    .is_some_and(|w| w.scope == WebhookScope::All);
            if e.username.is_none() && !notifies {
                // Neither kept in the history nor posted: the sinks have it.
                continue;
            }
            let job = Job {
                pending,
                json,
                config: ex.config.clone(),
            };
            let depth = &self.core.queue_depth;
            depth.inc();
            if self
                .queue
                .lock()
                .as_ref()
                .is_none_or(|q| q.try_send(job).is_err())
            {
                depth.dec();
                metrics.event_sink_dropped.with_label_values(&["history"]).inc();
            }
        }
    }

    /// Records feedback on a stored event (source `admin` or `link`) and, when it changed the event, tells
    /// the hook. The same value given again changes nothing and is not counted twice.
    pub async fn feedback(
        &self,
        config: &EventsConfig,
        event_id: &str,
        value: FeedbackValue,
        source: FeedbackSource,
    ) -> Result<Event, FeedbackError> {
        let feedback = Feedback {
            value,
            time: format_time(self.now_ms()),
            source: source.as_str().to_string(),
        };
        let (event, changed) = self
            .core
            .history
            .set_feedback(event_id, feedback, &config.history)
            .await?;
        if changed {
            self.core
                .metrics
                .feedback
                .with_label_values(&[value.as_str(), source.as_str()])
                .inc();
            tracing::info!(
                event_id,
                value = value.as_str(),
                source = source.as_str(),
                "feedback recorded"
            );
            let hook = self.hook.read().clone();
            if let Some(hook) = hook {
                hook.on_feedback(&event, value).await;
            }
        }
        Ok(event)
    }

    /// On shutdown, once no request is in flight: writes every queued event to the sinks and flushes them,
    /// then gives the history writes and webhook deliveries still queued until `within` to finish.
    pub async fn shutdown(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        drop(self.queue.lock().take());
        let writer = self.writer.lock().take();
        let sinks = {
            // Plain blocking joins of the writer threads: off the async workers.
            let sinks = self.sinks.clone();
            async move {
                if tokio::task::spawn_blocking(move || sinks.close()).await.is_err() {
                    tracing::error!("closing the event sinks failed");
                }
            }
        };
        let history = async {
            if let Some(mut w) = writer {
                if tokio::time::timeout_at(deadline, &mut w).await.is_err() {
                    w.abort();
                    tracing::warn!("shutdown: event history writes still queued were abandoned");
                }
            }
        };
        tokio::join!(sinks, history);
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.core.webhook.close(left).await;
    }
}

impl Core {
    async fn store(&self, job: Job) {
        let Job {
            pending,
            json,
            config,
        } = job;
        let event = &pending.event;
        let events = &config.events;
        let stored = match self.history.append_encoded(event, json, &events.history).await {
            Ok(stored) => stored,
            Err(e) => {
                self.metrics
                    .event_sink_dropped
                    .with_label_values(&["history"])
                    .inc();
                tracing::warn!(event_id = %event.event_id, error = %e, "cannot store the event");
                false
            }
        };
        let Some(target) = events.webhook.clone() else {
            return;
        };
        if !pending.notify && target.scope != WebhookScope::All {
            return;
        }
        // Links only for stored events: feedback is recorded on the stored record.
        let links = events
            .links
            .as_ref()
            .filter(|_| stored)
            .map(|l| l.links(&event.event_id, self.clock.now_ms()));
        self.webhook.enqueue(target, event, links.as_ref());
    }
}

/// The event type of a profiled operation; sign-out and `other` make no event.
pub fn event_type(op: Operation) -> Option<EventType> {
    Some(match op {
        Operation::SignIn => EventType::SignIn,
        Operation::SignUp => EventType::SignUp,
        Operation::PasswordChange => EventType::PasswordChange,
        Operation::PasswordReset => EventType::PasswordReset,
        Operation::SmsSend => EventType::SmsSend,
        Operation::SmsVerify => EventType::SmsVerify,
        Operation::MfaVerify => EventType::MfaVerify,
        Operation::SignOut | Operation::Other => return None,
    })
}

/// The event of a profiled auth operation that no stage described: `blocked` (decision `block`) when the
/// web ACL or a stage refused it (`challenged` for a browser challenge or CAPTCHA), else the upstream's
/// outcome (`success`, `failure`, `challenged`). An answer that says neither (an upstream error, an
/// unreadable answer) makes no event.
pub fn basic_event(ex: &Exchange, now_ms: u64) -> Option<Event> {
    let matched = ex.profile.as_ref()?;
    if ex.rejected.is_none() && ex.config.risk.as_ref().is_some_and(|r| r.owns(matched)) {
        // The risk engine records these itself (once per multi-step flow), or nothing in mode `off`.
        return None;
    }
    let kind = event_type(matched.profile.operation())?;
    let (outcome, decision) = if ex.rejected.is_some() {
        let challenged = ex
            .waf
            .as_ref()
            .is_some_and(|v| matches!(v.action_name(), "challenge" | "captcha"));
        (if challenged { "challenged" } else { "blocked" }, "block")
    } else {
        match ex.outcome? {
            Outcome::Success => ("success", "allow"),
            Outcome::Failure => ("failure", "allow"),
            Outcome::Challenge => ("challenged", "allow"),
            Outcome::Unknown => return None,
        }
    };
    let mut event = Event::for_exchange(ex, kind, now_ms);
    event.outcome = outcome.into();
    event.decision = decision.into();
    Some(event)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::{EmbeddedSources, Mode, load_from};
    use crate::context::{Connection, Context};
    use crate::pipeline::RequestBody;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    const T0: u64 = 1_700_000_000_000;

    fn config(dir: &std::path::Path) -> Arc<Config> {
        let yaml = format!(
            "events:\n  sinks: [{{file: {{path: {}/e.jsonl}}}}]\nprofiles:
  - {{name: login, operation: sign_in, match: {{path: {{exact: /login}}}}, fields: {{username: [{{json: /u}}], password: [{{json: /p}}]}}}}
  - {{name: logout, operation: sign_out, match: {{path: {{exact: /logout}}}}, fields: {{username: [{{json: /u}}]}}}}
",
            dir.display()
        );
        let mut s = EmbeddedSources::default();
        s.files.insert(PathBuf::from("a.yaml"), yaml.into_bytes());
        Arc::new(load_from(&PathBuf::from("a.yaml"), Mode::Check, &s).unwrap())
    }

    fn exchange(config: &Arc<Config>, path: &str, body: &str) -> Exchange {
        let (parts, ()) = http::Request::post(path).body(()).unwrap().into_parts();
        let conn = Connection {
            peer: "192.0.2.7:5000".parse().unwrap(),
            tls: false,
            slot: None,
            ja4: None,
        };
        let ctx = Context::new(config, &conn, &parts);
        let profile = config
            .profiles
            .candidates(&parts.method, &ctx.path, &parts.headers)
            .and_then(|c| c.resolve(None, &parts.headers, body.as_bytes()).unwrap());
        Exchange {
            profile,
            ..Exchange::new(
                config.clone(),
                ctx,
                parts,
                RequestBody::Buffered(bytes::Bytes::new()),
            )
        }
    }

    struct Setup {
        recorder: Recorder,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        dir: tempfile::TempDir,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone()));
        let metrics = Arc::new(Metrics::new());
        let recorder = Recorder::start(&config.events, store, metrics.clone(), clock).unwrap();
        Setup {
            recorder,
            config,
            metrics,
            dir,
        }
    }

    /// Waits for the background history writes to land.
    async fn history_of(r: &Recorder, user: &str, n: usize) -> Vec<Event> {
        for _ in 0..200 {
            let limits = crate::events::history::HistoryLimits {
                max_per_user: 100,
                ttl: Duration::from_secs(3600),
            };
            let events = r.history().list(user, 100, None, &limits).await.unwrap().events;
            if events.len() >= n {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{user}'s history never reached {n} events");
    }

    #[tokio::test]
    async fn basic_events_for_profiled_auth_operations_only() {
        let s = setup();
        let login = r#"{"u": "alice", "p": "hunter2-secret"}"#;
        let mut ok = exchange(&s.config, "/login", login);
        ok.outcome = Some(Outcome::Success);
        let mut failed = exchange(&s.config, "/login", login);
        failed.outcome = Some(Outcome::Failure);
        let mut blocked = exchange(&s.config, "/login", login);
        blocked.rejected = Some("web_acl");
        let mut unknown = exchange(&s.config, "/login", login);
        unknown.outcome = Some(Outcome::Unknown);
        let mut logout = exchange(&s.config, "/logout", r#"{"u": "alice"}"#);
        logout.outcome = Some(Outcome::Success);
        let mut unprofiled = exchange(&s.config, "/other", "");
        unprofiled.outcome = Some(Outcome::Success);
        for ex in [&ok, &failed, &blocked, &unknown, &logout, &unprofiled] {
            s.recorder.record(ex, Vec::new());
        }
        let events = history_of(&s.recorder, "alice", 3).await;
        let got: Vec<(&str, &str)> = events.iter().map(|e| (&*e.outcome, &*e.decision)).collect();
        assert_eq!(
            got,
            vec![("blocked", "block"), ("failure", "allow"), ("success", "allow")]
        );
        assert!(events.iter().all(|e| e.kind == EventType::SignIn));
        assert_eq!(events[2].request_id, ok.ctx.request_id);
        assert_eq!(events[2].ip.to_string(), "192.0.2.7");
        s.recorder.shutdown(Duration::from_secs(5)).await;
        let lines = std::fs::read_to_string(s.dir.path().join("e.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 3, "{lines}");
        assert!(!lines.contains("hunter2-secret"));
        let m = s.metrics.render();
        assert!(
            m.contains("authward_events_total{outcome=\"success\",type=\"sign_in\"} 1"),
            "{m}"
        );
    }

    #[tokio::test]
    async fn stage_events_replace_the_basic_one() {
        let s = setup();
        let mut ex = exchange(&s.config, "/login", r#"{"u": "bob", "p": "x"}"#);
        ex.outcome = Some(Outcome::Success);
        let mut e = Event::for_exchange(&ex, EventType::SignIn, T0);
        e.decision = "require_mfa".into();
        e.outcome = "challenged".into();
        s.recorder.record(
            &ex,
            vec![Pending {
                event: e,
                notify: false,
            }],
        );
        let events = history_of(&s.recorder, "bob", 1).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].decision, "require_mfa");
    }

    #[tokio::test]
    async fn an_event_whose_user_a_stage_set_later_is_found_by_id() {
        // The MFA verification and the risk engine's flows name the user after the event was made.
        let s = setup();
        let ex = exchange(&s.config, "/login", r#"{"u": "bob", "p": "x"}"#);
        let mut e = Event::for_exchange(&ex, EventType::MfaVerify, T0);
        e.username = Some("carol".into());
        s.recorder.record(
            &ex,
            vec![Pending {
                event: e,
                notify: false,
            }],
        );
        let listed = history_of(&s.recorder, "carol", 1).await;
        let limits = s.config.events.history;
        let found = s
            .recorder
            .history()
            .get(&listed[0].event_id, &limits)
            .await
            .unwrap();
        assert_eq!(found.as_ref(), Some(&listed[0]));
        let fed = s
            .recorder
            .feedback(
                &s.config.events,
                &listed[0].event_id,
                FeedbackValue::Invalid,
                FeedbackSource::Admin,
            )
            .await
            .unwrap();
        assert_eq!(fed.feedback.unwrap().value, FeedbackValue::Invalid);
    }

    struct CountingHook(Mutex<Vec<(String, FeedbackValue)>>);

    #[async_trait::async_trait]
    impl FeedbackHook for CountingHook {
        async fn on_feedback(&self, event: &Event, value: FeedbackValue) {
            self.0.lock().push((event.event_id.clone(), value));
        }
    }

    #[tokio::test]
    async fn feedback_is_stored_counted_and_told_to_the_hook_once() {
        let s = setup();
        let hook = Arc::new(CountingHook(Mutex::new(Vec::new())));
        s.recorder.set_feedback_hook(hook.clone());
        let mut ex = exchange(&s.config, "/login", r#"{"u": "carol", "p": "x"}"#);
        ex.outcome = Some(Outcome::Success);
        s.recorder.record(&ex, Vec::new());
        let id = history_of(&s.recorder, "carol", 1).await[0].event_id.clone();
        let events = &s.config.events;
        for _ in 0..2 {
            let e = s
                .recorder
                .feedback(events, &id, FeedbackValue::Invalid, FeedbackSource::Link)
                .await
                .unwrap();
            let fb = e.feedback.unwrap();
            assert_eq!((fb.value, fb.source.as_str()), (FeedbackValue::Invalid, "link"));
        }
        s.recorder
            .feedback(events, &id, FeedbackValue::Valid, FeedbackSource::Admin)
            .await
            .unwrap();
        assert_eq!(
            *hook.0.lock(),
            vec![
                (id.clone(), FeedbackValue::Invalid),
                (id.clone(), FeedbackValue::Valid)
            ]
        );
        let m = s.metrics.render();
        assert!(
            m.contains("authward_feedback_total{source=\"link\",value=\"invalid\"} 1"),
            "{m}"
        );
        assert!(m.contains("authward_feedback_total{source=\"admin\",value=\"valid\"} 1"));
        assert!(matches!(
            s.recorder
                .feedback(
                    events,
                    "01HF0000000000000000000000",
                    FeedbackValue::Valid,
                    FeedbackSource::Admin
                )
                .await,
            Err(FeedbackError::NotFound)
        ));
    }
}
