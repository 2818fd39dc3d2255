//! The auth event record, per-user history, feedback, and the sinks events are written to.
//!
//! Stages describe what happened in [`Pending`] events on the exchange; once the answer is on its way the
//! proxy hands them to the [`Recorder`], which writes each to the sinks, the per-user [`History`] and, when
//! the event asks for it, the webhook. When no stage made an event for a profiled auth operation (sign-in,
//! sign-up, password change or reset, SMS send or verification, MFA check), the recorder makes the basic
//! one from the exchange itself ([`recorder::basic_event`]). Where a `risk` section is configured, the risk
//! engine owns the events of sign-ins, sign-ups, password changes and multi-step flows that reach the
//! upstream (one per flow; none in mode `off`, as with Cognito's threat protection off). Sign-out and
//! `other` operations make no event.

pub mod file;
pub mod history;
pub mod links;
pub mod recorder;
pub mod settings;
pub mod sink;
pub mod webhook;

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use history::{History, HistoryError, HistoryLimits, Page};
pub use recorder::{FeedbackError, FeedbackHook, FeedbackSource, Recorder};
pub use settings::EventsConfig;

/// A field whose values come from a fixed vocabulary (a decision, a mode, an outcome, a level): the
/// proxy's own events borrow the words, events read back from the store own them.
pub type Word = Cow<'static, str>;

/// An event made while serving a request, waiting for the record step.
#[derive(Debug, Clone)]
pub struct Pending {
    pub event: Event,
    /// Whether the user should be notified (the risk level's notify flag).
    pub notify: bool,
}

/// What kind of auth event this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    SignIn,
    SignUp,
    PasswordChange,
    PasswordReset,
    SmsSend,
    SmsVerify,
    MfaVerify,
}

impl EventType {
    /// The snake_case name used in events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SignIn => "sign_in",
            EventType::SignUp => "sign_up",
            EventType::PasswordChange => "password_change",
            EventType::PasswordReset => "password_reset",
            EventType::SmsSend => "sms_send",
            EventType::SmsVerify => "sms_verify",
            EventType::MfaVerify => "mfa_verify",
        }
    }
}

/// Where the client was, from the GeoIP databases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventGeo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
}

/// The client's device: the proxy's device id and the user agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventDevice {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The client's fingerprint (`fp:` and a hash of its user agent, languages and TLS hello), which the
    /// history learns besides a device cookie: "not me" feedback distrusts both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// One risk signal that fired, with what it added to the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalHit {
    pub name: String,
    pub contribution: u32,
    /// A short, secret-free explanation (`7712 km in 10m: 46272 km/h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The risk assessment of an event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRisk {
    /// none, low, medium or high.
    pub level: Word,
    pub score: u32,
    pub signals: Vec<SignalHit>,
    pub compromised_credentials: bool,
}

/// A decision that a rule or mode would have taken but did not (audit mode, shadow rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowDecision {
    /// Who would have acted: `risk`, `compromised_credentials`, `waf:<rule>`, `sms:<check>`.
    pub source: String,
    /// What it would have done.
    pub decision: String,
}

/// The user's verdict on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackValue {
    /// "This was me."
    Valid,
    /// "This was not me."
    Invalid,
}

impl FeedbackValue {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackValue::Valid => "valid",
            FeedbackValue::Invalid => "invalid",
        }
    }
}

/// Feedback given on an event, and where it came from (`admin`, `link`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub value: FeedbackValue,
    /// RFC 3339.
    pub time: String,
    pub source: String,
}

/// One challenge answered during a multi-step sign-in (as Cognito's ChallengeResponses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChallengeStep {
    pub name: String,
    /// success, failure or challenge (another step follows).
    pub result: String,
}

/// The SMS part of an `sms_send` event.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventSms {
    /// Country calling code and the last two digits only (`+44 ******** 42`).
    pub number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The MFA part of an event: what happened to the step-up (never the code or the challenge id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMfa {
    /// `challenged` (the answer is held), `no_factor` (nothing to step up with), `backend` (left to the
    /// backend), `verified`, `wrong_code`, `replayed`, `locked`, `expired`, `refused` (another network or
    /// device) or `error`.
    pub result: String,
    /// Codes still allowed for the challenge, after a wrong one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
}

/// One auth event, the same in the history API and in the sinks. Never holds passwords, codes or tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, time-ordered (ULID-like: sortable text).
    pub event_id: String,
    /// RFC 3339 with milliseconds, UTC.
    pub time: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub ip: IpAddr,
    #[serde(default)]
    pub geo: EventGeo,
    #[serde(default)]
    pub device: EventDevice,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<EventRisk>,
    /// allow, optional_mfa, require_mfa or block.
    pub decision: Word,
    /// off, audit or enforce: the mode the decision was made in.
    pub mode: Word,
    /// success, failure, challenged or blocked.
    pub outcome: Word,
    /// The web-ACL rule that acted, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shadow: Vec<ShadowDecision>,
    /// Steps of a multi-step sign-in, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub challenges: Vec<ChallengeStep>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sms: Option<EventSms>,
    /// The MFA step-up, for sign-ins that asked for one and for `mfa_verify` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<EventMfa>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
    /// The request id, to join with the access log.
    pub request_id: String,
}

impl Event {
    /// An event of `kind` for this request, with the fields every event shares filled in from the
    /// exchange (who, from where, which device, what the web ACL did); `decision`, `mode` and `outcome`
    /// start as `allow`, `off` and `success` for the caller to set.
    pub fn for_exchange(ex: &crate::pipeline::Exchange, kind: EventType, now_ms: u64) -> Event {
        let fields = ex.profile.as_ref().map(|m| &m.fields);
        let geo = ex.ctx.geo();
        let user_agent = ex
            .request
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| first_chars(s, 256).to_string());
        let (rule, shadow) = match &ex.waf {
            Some(v) => (
                v.terminating.as_ref().map(|(r, _)| r.clone()),
                v.shadow
                    .iter()
                    .map(|(r, a)| ShadowDecision {
                        source: format!("waf:{r}"),
                        decision: (*a).to_string(),
                    })
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        let username = fields.and_then(|f| f.username.clone());
        Event {
            event_id: new_event_id(now_ms, username.as_deref()),
            time: format_time(now_ms),
            kind,
            username,
            client_id: fields.and_then(|f| f.client_id.clone()),
            ip: ex.ctx.client_ip,
            geo: EventGeo {
                country: geo.country.clone(),
                city: geo.city.clone(),
                latitude: geo.latitude,
                longitude: geo.longitude,
                asn: geo.asn,
            },
            device: EventDevice {
                id: None,
                fingerprint: None,
                user_agent,
            },
            risk: None,
            decision: "allow".into(),
            mode: "off".into(),
            outcome: "success".into(),
            rule,
            labels: ex.labels.clone(),
            shadow,
            challenges: Vec::new(),
            sms: None,
            mfa: None,
            feedback: None,
            request_id: ex.ctx.request_id.clone(),
        }
    }

    /// Makes the id carry its user's history tag (see [`history`]), keeping its time: a stage may have set
    /// the user after the event was made. The recorder calls it before the event goes anywhere.
    pub fn tag_id(&mut self) {
        let Some(user) = self.username.as_deref() else {
            return;
        };
        let Some((made, tag)) = history::parse_id(&self.event_id) else {
            return;
        };
        if tag != history::user_tag(user) {
            self.event_id = new_event_id(made, Some(user));
        }
    }
}

/// The first `n` characters of `s` (all of it if it has no more).
fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// A new time-ordered event id: a ULID (sortable by time) whose 80-bit random part is, for an event with a
/// username, that user's 64-bit history tag and 16 random bits (so the history finds an event from its
/// id, see [`history`]), and otherwise random.
pub fn new_event_id(now_ms: u64, username: Option<&str>) -> String {
    let random = match username {
        Some(u) => u128::from(history::user_tag(u)) << history::TAG_SHIFT | u128::from(rand::random::<u16>()),
        None => rand::random::<u128>(),
    };
    ulid::Ulid::from_parts(now_ms, random).to_string()
}

/// Calls `f` with `value`'s JSON, written into a per-thread buffer that is kept for the next call: no
/// allocation for the text itself once the buffer has grown to the size of the values written.
pub fn with_json<T, R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R, serde_json::Error>
where
    T: Serialize + ?Sized,
{
    /// A buffer that grew past this (an unusually large value) is not kept.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|cell| {
        // A value whose serialization itself writes JSON through here gets a buffer of its own.
        let Ok(mut buf) = cell.try_borrow_mut() else {
            return Ok(f(&serde_json::to_vec(value)?));
        };
        buf.clear();
        let written = serde_json::to_writer(&mut *buf, value);
        let out = written.map(|()| f(&buf));
        if buf.capacity() > KEEP {
            *buf = Vec::new();
        }
        out
    })
}

/// `value`'s JSON in `Bytes` of exactly its length: one allocation (see [`with_json`]; `Bytes` made from
/// a `Vec` with room to spare would allocate a second time for its shared header).
pub fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Result<bytes::Bytes, serde_json::Error> {
    with_json(value, bytes::Bytes::copy_from_slice)
}

/// RFC 3339 UTC with milliseconds.
pub fn format_time(now_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_sort_by_time_and_carry_their_users_tag() {
        let a = new_event_id(1_700_000_000_000, Some("alice"));
        let b = new_event_id(1_700_000_000_001, None);
        assert!(a < b, "{a} {b}");
        assert_eq!(a.len(), 26);
        let tag = |id: &str| history::parse_id(id).unwrap().1;
        // Same user, same millisecond: the same tag, yet distinct ids.
        let ids: std::collections::HashSet<String> = (0..50)
            .map(|_| new_event_id(1_700_000_000_000, Some("alice")))
            .collect();
        assert_eq!(ids.len(), 50);
        assert!(ids.iter().all(|id| tag(id) == history::user_tag("alice")));
        // One user to the risk engine, one history.
        assert_eq!(history::user_tag("alice"), history::user_tag(" Alice"));
        assert_ne!(history::user_tag("alice"), history::user_tag("alice2"));
        // A user set later: the id is re-tagged with its time kept; a tagged id stays as it is.
        let mut e = history::tests::event(None, 1_700_000_000_000);
        e.username = Some("bob".into());
        e.tag_id();
        assert_eq!(tag(&e.event_id), history::user_tag("bob"));
        assert_eq!(history::parse_id(&e.event_id).unwrap().0, 1_700_000_000_000);
        let id = e.event_id.clone();
        e.tag_id();
        assert_eq!(e.event_id, id);
    }

    #[test]
    fn user_agents_are_cut_to_256_characters() {
        for s in [
            "",
            "abc",
            "é",
            &"x".repeat(256),
            &"x".repeat(300),
            &"é€😀".repeat(200),
        ] {
            let want: String = s.chars().take(256).collect();
            assert_eq!(first_chars(s, 256), want);
        }
        assert_eq!(first_chars("é€😀", 2), "é€");
    }

    #[test]
    fn json_through_the_shared_buffer_is_serde_json_s() {
        let mut e = history::tests::event(Some("alice"), 1_700_000_000_123);
        e.device.user_agent = Some("Mozilla/5.0 \"quoted\" é \u{1}".into());
        e.labels = vec!["authward:operation:sign_in".into(), "x".repeat(70_000)];
        let want = serde_json::to_vec(&e).unwrap();
        for _ in 0..2 {
            assert_eq!(json_bytes(&e).unwrap(), want);
            e.labels.pop();
            let want = serde_json::to_vec(&e).unwrap();
            assert_eq!(
                &json_bytes(&e).unwrap()[..],
                &want[..],
                "a shorter value after a longer one"
            );
            e.labels.push("x".repeat(70_000));
        }
        let line = with_json(&e, |b| String::from_utf8(b.to_vec()).unwrap()).unwrap();
        assert_eq!(line, serde_json::to_string(&e).unwrap());
        // Nested use (a value whose serialization writes JSON itself) takes a buffer of its own.
        let nested = with_json(&e, |outer| with_json(&e, |inner| outer == inner).unwrap()).unwrap();
        assert!(nested);
    }

    #[test]
    fn time_is_rfc3339_millis() {
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
