//! The risk engine's pipeline stage: scores sign-ins before the upstream sees them (5), blocks what is
//! known to be bad, and decides on the upstream's answer (8): act, count failures, update history.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, SET_COOKIE};
use http::{Response, StatusCode};
use icu_properties::CodePointSetData;
use icu_properties::props::DefaultIgnorableCodePoint;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::device::{self, DeviceKey};
use super::file::{CookieSecure, FileHistory, RiskAction, RiskMode};
use super::flow::{self, FlowState};
use super::user::{Place, UserHistory};
use super::{Assessment, Facts, Level, Policy, Risk};
use crate::context::IpText;
use crate::events::{ChallengeStep, Event, EventType, Pending, ShadowDecision};
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, Flow, Hooks, Services, Stage};
use crate::profile::file::FlowStep;
use crate::profile::{Operation, Outcome};
use crate::proxy::body::{self, Body, Capped};
use crate::proxy::json_error;
use crate::store::{Op, Reply, Store, StoreError, hex_key, record_key};
use crate::waf::file::StoreFailure;

/// Where the device-cookie key lives when the config names no environment variable for it.
const DEVICE_KEY_RECORD: &str = "meta";

/// The headers that tell the upstream the score and the decision.
const RISK_HEADER: HeaderName = HeaderName::from_static("x-authward-risk");
const DECISION_HEADER: HeaderName = HeaderName::from_static("x-authward-decision");

/// What the request hook found, for the response hook.
#[derive(Debug)]
pub struct Assessed {
    pub kind: EventType,
    pub policy: Arc<Policy>,
    /// The mode this attempt is decided in (`custom_auth_mode` for custom flows).
    pub mode: RiskMode,
    pub assessment: Assessment,
    /// What the level (or the compromised-password check) calls for.
    pub decision: RiskAction,
    pub notify: bool,
    /// The user's key (normalized username), when there is one.
    pub user: Option<String>,
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub history: Option<UserHistory>,
    /// What the history, as read before this sign-in, said of its device (MFA self-enrollment).
    pub familiarity: Familiarity,
    pub device_id: Option<String>,
    pub fingerprint: String,
    /// This attempt belongs to a multi-step flow: its state so far (a continue step's, or a start's).
    pub flow: Option<FlowState>,
    /// The session value the request presented (continue steps), to forget it once answered.
    pub session: Option<String>,
    /// Answered by this stage before the upstream (an event was made then).
    pub answered: bool,
    /// Audit mode: what enforce would have done.
    pub shadow: Vec<ShadowDecision>,
}

/// What a user's history, as read before a sign-in, says of the sign-in's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Familiarity {
    /// The user has no history: a first sign-in (or one after the history expired).
    FirstSignIn,
    /// The device (its cookie, or the fingerprint for a client without one) had signed in as the user.
    KnownDevice,
    /// Anything else: a new device, no username, a history that could not be read, a sign-in not scored.
    Other,
}

impl Familiarity {
    /// Familiarity from a history that was read (`None`: the user has none).
    pub fn of(history: Option<&UserHistory>, device_id: Option<&str>, fingerprint: &str) -> Familiarity {
        match history.filter(|h| h.has_succeeded()) {
            None => Familiarity::FirstSignIn,
            Some(h) if h.knows_device(device_id.unwrap_or(fingerprint)) => Familiarity::KnownDevice,
            Some(_) => Familiarity::Other,
        }
    }
}

/// Stages 5 and 8: one stage placed after the outcome stage, so that its request hook runs before the
/// upstream and its response hook after the answer is classified.
pub struct RiskStage {
    risk: Option<Arc<Risk>>,
    store: Arc<dyn Store>,
    clock: crate::clock::SharedClock,
    metrics: Arc<Metrics>,
    key: OnceCell<DeviceKey>,
}

impl RiskStage {
    pub fn new(risk: Option<Arc<Risk>>, services: &Services) -> Self {
        RiskStage {
            risk,
            store: services.store.clone(),
            clock: services.clock.clone(),
            metrics: services.metrics.clone(),
            key: OnceCell::new(),
        }
    }

    /// The device-cookie key: the configured one, or one made once and kept as a durable record so that
    /// cookies stay valid across restarts and replicas.
    async fn device_key(&self, risk: &Risk) -> Result<&DeviceKey, StoreError> {
        self.key
            .get_or_try_init(|| async {
                if let Some(k) = &risk.device_key {
                    return Ok(DeviceKey::new(k));
                }
                let key = record_key(DEVICE_KEY_RECORD, "device-cookie-key");
                let fresh = bytes::Bytes::copy_from_slice(&rand::random::<[u8; 32]>());
                self.store.put_if_absent(&key, fresh, None).await?;
                match self.store.get(&key).await? {
                    Some(k) if k.len() == 32 => Ok(DeviceKey::new(&k)),
                    _ => Err(StoreError::Corrupt("device cookie key".into())),
                }
            })
            .await
    }
}

/// The user key of a username: trimmed of spaces and of control and invisible (default-ignorable)
/// characters at either end, NFKC-normalized and lowercased, so that neither case, spaces, invisible
/// characters nor compatibility spellings dodge the counters or start a fresh history: Python's `strip()`
/// drops `\x1c`-`\x1f`, Java's `trim()` every control character, JavaScript's `\u{feff}`, and Django's
/// `UsernameField` reads fullwidth `ａlice` as `alice`. Inside a name they stay: backends keep them there,
/// so `al\u{200b}ice` is another account, which must not share alice's history. Plain ASCII names (most)
/// take none of these steps but the lowercasing.
pub fn user_key(username: &str) -> String {
    if username.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        return username.to_ascii_lowercase();
    }
    let ignorable = CodePointSetData::new::<DefaultIgnorableCodePoint>();
    let name = username.trim_matches(|c: char| c.is_whitespace() || c.is_control() || ignorable.contains(c));
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    icu_normalizer::ComposingNormalizerBorrowed::new_nfkc()
        .normalize(name)
        .trim()
        .to_lowercase()
}

/// A short hash for counter keys (usernames and addresses are attacker input of any length).
fn h(parts: &[&str]) -> [u8; 12] {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p.as_bytes());
        d.update([0]);
    }
    let mut out = [0; 12];
    out.copy_from_slice(&d.finalize()[..12]);
    out
}

/// The velocity counters' keys of one attempt, and the hashes of its user and address (the members of
/// the distinct-count sets).
struct Keys {
    failures_user: String,
    failures_ip: String,
    failures_user_ip: String,
    users_per_ip: String,
    ips_per_user: String,
    user: [u8; 12],
    ip: [u8; 12],
}

fn keys(user: Option<&str>, ip: &str) -> Keys {
    let u = user.unwrap_or("");
    let (hu, hi) = (h(&[u]), h(&[ip]));
    Keys {
        failures_user: hex_key("risk:fu:", &hu),
        failures_ip: hex_key("risk:fi:", &hi),
        failures_user_ip: hex_key("risk:fui:", &h(&[u, ip])),
        users_per_ip: hex_key("risk:dui:", &hi),
        ips_per_user: hex_key("risk:diu:", &hu),
        user: hu,
        ip: hi,
    }
}

fn event_kind(op: Operation) -> Option<EventType> {
    match op {
        Operation::SignIn => Some(EventType::SignIn),
        Operation::SignUp => Some(EventType::SignUp),
        Operation::PasswordChange => Some(EventType::PasswordChange),
        _ => None,
    }
}

impl RiskStage {
    fn block_response(&self, ex: &Exchange, reason: &str) -> Response<Body> {
        match ex.profile.as_ref().and_then(|m| m.profile.block_response()) {
            Some(r) => r.to_response(),
            None => json_error(
                StatusCode::FORBIDDEN,
                "sign_in_blocked",
                &format!("refused for security reasons ({reason})"),
                &ex.ctx.request_id,
            ),
        }
    }

    fn count(&self, a: &Assessed) {
        self.metrics
            .risk_decisions
            .with_label_values(&[a.assessment.level.as_str(), a.decision.as_str(), a.mode.as_str()])
            .inc();
        for s in &a.assessment.signals {
            self.metrics
                .risk_signals
                .with_label_values(&[s.name.as_str()])
                .inc();
        }
    }

    /// The event for this attempt.
    fn event(&self, ex: &Exchange, a: &Assessed, outcome: &'static str, now: u64) -> Pending {
        let mut e = Event::for_exchange(ex, a.kind, now);
        // Usually the same names as the request's: `clone_from` copies into the strings already made.
        if a.username.is_some() {
            e.username.clone_from(&a.username);
        }
        if a.client_id.is_some() {
            e.client_id.clone_from(&a.client_id);
        }
        e.device.id = a.device_id.clone().or_else(|| Some(a.fingerprint.clone()));
        e.device.fingerprint = Some(a.fingerprint.clone());
        e.risk = Some(a.assessment.to_event());
        e.decision = a.decision.as_str().into();
        e.mode = a.mode.as_str().into();
        e.outcome = outcome.into();
        e.shadow.extend(a.shadow.iter().cloned());
        if let Some(f) = &a.flow {
            e.challenges = f.challenges.clone();
        }
        Pending {
            event: e,
            notify: a.notify && a.mode == RiskMode::Enforce,
        }
    }

    async fn count_failure(&self, risk: &Risk, a: &Assessed, ip: &str) -> Result<(), StoreError> {
        let v = &risk.velocity;
        let k = keys(a.user.as_deref(), ip);
        let mut ops = vec![Op::Incr {
            key: k.failures_ip,
            by: 1,
            ttl: v.failures_ip.window.get(),
        }];
        if a.user.is_some() {
            ops.extend([
                Op::Incr {
                    key: k.failures_user,
                    by: 1,
                    ttl: v.failures_user.window.get(),
                },
                Op::Incr {
                    key: k.failures_user_ip,
                    by: 1,
                    ttl: v.failures_user_ip.window.get(),
                },
                Op::SetAdd {
                    key: k.users_per_ip,
                    member: hex_key("", &k.user),
                    ttl: v.distinct_users_per_ip.window.get(),
                },
                Op::SetAdd {
                    key: k.ips_per_user,
                    member: hex_key("", &k.ip),
                    ttl: v.distinct_ips_per_user.window.get(),
                },
            ]);
        }
        self.store.batch(ops).await.map(|_| ())
    }
}

/// Reads what scoring needs in one store round trip: the user's history and the five velocity counts
/// (failures per user, per address, per user and address; distinct users per address, addresses per user).
pub async fn load_facts(
    store: &dyn Store,
    user: Option<&str>,
    ip: &str,
) -> Result<(Option<UserHistory>, [u64; 5]), StoreError> {
    let k = keys(user, ip);
    let mut ops = vec![
        Op::Counter { key: k.failures_user },
        Op::Counter { key: k.failures_ip },
        Op::Counter {
            key: k.failures_user_ip,
        },
        Op::SetLen { key: k.users_per_ip },
        Op::SetLen { key: k.ips_per_user },
    ];
    if let Some(u) = user {
        ops.push(Op::Get {
            key: record_key("user", u),
        });
    }
    let replies = store.batch(ops).await?;
    let mut counts = [0u64; 5];
    let mut history = None;
    for (i, r) in replies.into_iter().enumerate() {
        match r {
            Reply::Int(n) if i < 5 => counts[i] = u64::try_from(n).unwrap_or(0),
            Reply::Count(n) if i < 5 => counts[i] = n,
            Reply::Value(Some(b)) => {
                history = serde_json::from_slice::<UserHistory>(&b).ok();
            }
            _ => {}
        }
    }
    if user.is_none() {
        // Without a username, user-keyed counts mean nothing.
        counts[0] = 0;
        counts[2] = 0;
        counts[4] = 0;
    }
    Ok((history, counts))
}

/// The velocity limit that calls for a block before the upstream, if any.
fn velocity_block(risk: &Risk, counts: &[u64; 5]) -> Option<&'static str> {
    let v = &risk.velocity;
    let over = |n: u64, l: &super::file::FileWindowLimit| l.block_at.is_some_and(|b| n >= u64::from(b));
    if over(counts[2], &v.failures_user_ip) {
        Some("failures_user_ip")
    } else if over(counts[3], &v.distinct_users_per_ip) {
        Some("credential_stuffing")
    } else if over(counts[1], &v.failures_ip) {
        Some("failures_ip")
    } else if over(counts[0], &v.failures_user) {
        Some("failures_user")
    } else if over(counts[4], &v.distinct_ips_per_user) {
        Some("distributed_brute_force")
    } else {
        None
    }
}

impl Stage for RiskStage {
    fn name(&self) -> &'static str {
        "risk"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BOTH.profiled()
    }

    async fn on_request(&self, ex: &mut Exchange) -> Flow {
        let Some(risk) = self.risk.clone() else {
            return Flow::Continue;
        };
        let Some(matched) = ex.profile.as_ref() else {
            return Flow::Continue;
        };
        let step = matched.profile.flow().map(|f| f.step);
        let op = matched.profile.operation();
        let now = self.clock.now_ms();
        let ip = ex.ctx.client_ip;
        // Counters and sets count an IPv6 client by its /64.
        let ip_text = IpText::new(crate::context::counting_ip(ip));

        // A later step of a multi-step sign-in: carry the flow's assessment to the step that completes it.
        if step == Some(FlowStep::Continue) {
            let Some(session) = matched.fields.session.as_ref().map(|s| s.expose().to_string()) else {
                return Flow::Continue;
            };
            let state = match flow::load(self.store.as_ref(), &session).await {
                Ok(Some(s)) => s,
                Ok(None) => return Flow::Continue,
                Err(e) => {
                    tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "risk: flow lookup failed");
                    return Flow::Continue;
                }
            };
            let policy = risk.policy(state.client_id.as_deref()).clone();
            let mode = if state.custom {
                policy.custom_mode
            } else {
                policy.mode
            };
            if mode == RiskMode::Off {
                return Flow::Continue;
            }
            let level = match state.level.as_str() {
                "high" => Level::High,
                "medium" => Level::Medium,
                "low" => Level::Low,
                _ => Level::None,
            };
            let (mut decision, mut notify) = policy.action(level);
            // A step that carries the password (Cognito's choice-based sign-in answers SELECT_CHALLENGE
            // with it) is where the password is checked.
            let compromised = state.compromised
                || (policy.checks_compromised(Operation::SignIn)
                    && (matched.fields.password.as_ref()).is_some_and(|p| risk.is_compromised(p.expose())));
            if compromised && policy.blocks_compromised(Operation::SignIn) {
                decision = RiskAction::Block;
                notify = true;
            }
            let assessment = Assessment {
                level,
                score: state.score,
                signals: state.signals.clone(),
                compromised,
            };
            let mut state = state;
            if let Some(name) = matched
                .fields
                .challenge_name
                .clone()
                .or(state.pending_challenge.take())
            {
                state.pending_challenge = Some(name);
            }
            let a = Assessed {
                kind: EventType::SignIn,
                policy,
                mode,
                decision,
                notify,
                user: state.username.as_deref().map(user_key),
                username: state.username.clone(),
                client_id: state.client_id.clone(),
                history: None,
                familiarity: Familiarity::Other,
                device_id: state.device_id.clone(),
                fingerprint: state.fingerprint.clone(),
                assessment,
                flow: Some(state),
                session: Some(session),
                answered: false,
                shadow: Vec::new(),
            };
            add_headers(ex, &a);
            ex.risk = Some(Box::new(a));
            return Flow::Continue;
        }

        let Some(kind) = event_kind(op) else {
            return Flow::Continue;
        };
        let fields = &matched.fields;
        let client_id = fields.client_id.clone();
        let policy = risk.policy(client_id.as_deref()).clone();
        let custom = matched.profile.flow().is_some_and(|f| f.custom);
        let mode = if custom { policy.custom_mode } else { policy.mode };
        if mode == RiskMode::Off {
            return Flow::Continue;
        }
        let username = fields.username.clone();
        let user = username.as_deref().map(user_key);
        let fingerprint = device::fingerprint(&ex.request.headers, ex.ctx.ja4.as_deref());
        let device_id = match self.device_key(&risk).await {
            Ok(k) => device::cookie(&ex.request.headers, &risk.device_cookie.name).and_then(|v| k.verify(v)),
            Err(e) => {
                tracing::warn!(error = %e, "risk: device cookie key unavailable");
                None
            }
        };
        let mut a = Assessed {
            kind,
            policy: policy.clone(),
            mode,
            assessment: Assessment {
                level: Level::None,
                score: 0,
                signals: Vec::new(),
                compromised: false,
            },
            decision: RiskAction::Allow,
            notify: false,
            user,
            username,
            client_id,
            history: None,
            familiarity: Familiarity::Other,
            device_id,
            fingerprint,
            flow: None,
            session: None,
            answered: false,
            shadow: Vec::new(),
        };
        if risk.never_scored(ip) {
            ex.risk = Some(Box::new(a));
            return Flow::Continue;
        }

        let mut block: Option<&'static str> = None;
        if risk.always_blocked(ip) {
            block = Some("always_block");
        }
        let (history, counts, read) =
            match load_facts(self.store.as_ref(), a.user.as_deref(), ip_text.as_str()).await {
                Ok((h, c)) => (h, c, true),
                Err(e) => {
                    tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "risk: store unavailable");
                    if risk.store_failure_closed() {
                        block = block.or(Some("store_unavailable"));
                    }
                    (None, [0; 5], false)
                }
            };
        if kind == EventType::SignIn {
            block = block.or_else(|| velocity_block(&risk, &counts));
        } else if counts[3] > 0 {
            // Sign-ups and password changes: only the address-wide limits apply.
            let only_ip = [0, counts[1], 0, counts[3], 0];
            block = block.or_else(|| velocity_block(&risk, &only_ip));
        }
        let compromised = policy.checks_compromised(op)
            && fields
                .password
                .as_ref()
                .is_some_and(|p| risk.is_compromised(p.expose()));
        let user_agent = ex
            .request
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let geo = ex.ctx.geo();
        let facts = Facts {
            now_ms: now,
            ip: Some(ip),
            geo: Some(geo),
            history: if kind == EventType::SignIn {
                history.as_ref()
            } else {
                None
            },
            device_id: a.device_id.as_deref(),
            fingerprint: Some(&a.fingerprint),
            user_agent,
            labels: &ex.labels,
            failures_user: counts[0],
            failures_ip: counts[1],
            failures_user_ip: counts[2],
            distinct_users_per_ip: counts[3],
            distinct_ips_per_user: counts[4],
            compromised_password: compromised,
        };
        a.assessment = risk.assess(&policy, &facts);
        if read && a.user.is_some() && kind == EventType::SignIn {
            a.familiarity = Familiarity::of(history.as_ref(), a.device_id.as_deref(), &a.fingerprint);
        }
        a.history = history;
        let (decision, notify) = if kind == EventType::SignIn {
            policy.action(a.assessment.level)
        } else {
            (RiskAction::Allow, false)
        };
        a.decision = decision;
        a.notify = notify;
        if compromised && policy.blocks_compromised(op) {
            a.decision = RiskAction::Block;
            a.notify = true;
            if kind != EventType::SignIn {
                // The upstream must not store a compromised password.
                block = block.or(Some("compromised_credentials"));
            }
        }
        if let Some(reason) = block {
            a.decision = RiskAction::Block;
            if a.mode == RiskMode::Enforce {
                a.answered = true;
                self.count(&a);
                let pending = self.event(ex, &a, "blocked", now);
                ex.events.push(pending);
                ex.rejected = Some("risk");
                let response = self.block_response(ex, reason);
                ex.risk = Some(Box::new(a));
                return Flow::Respond(response);
            }
            a.shadow.push(ShadowDecision {
                source: format!("risk:{reason}"),
                decision: "block".into(),
            });
        }
        add_headers(ex, &a);
        ex.risk = Some(Box::new(a));
        Flow::Continue
    }

    async fn on_response(&self, ex: &mut Exchange, response: &mut Response<Body>) {
        let Some(risk) = self.risk.clone() else {
            return;
        };
        let Some(mut a) = ex.risk.take() else {
            return;
        };
        if !a.answered {
            self.decide(&risk, ex, &mut a, response).await;
        }
        // Later stages (the MFA rewrite) read the decision.
        ex.risk = Some(a);
    }
}

impl RiskStage {
    /// The response hook's work: act on the decision, count failures, learn from successes, make the event.
    async fn decide(&self, risk: &Risk, ex: &mut Exchange, a: &mut Assessed, response: &mut Response<Body>) {
        let now = self.clock.now_ms();
        let outcome = ex.outcome.unwrap_or(Outcome::Unknown);
        let flow_cfg = ex.profile.as_ref().and_then(|m| m.profile.flow().cloned());

        // Forget the session value this step presented: each is answered once.
        if let Some(s) = &a.session {
            if outcome != Outcome::Unknown {
                if let Err(e) = flow::forget(self.store.as_ref(), s).await {
                    tracing::warn!(error = %e, "risk: flow cleanup failed");
                }
            }
        }
        let answered = a.flow.as_ref().and_then(|f| f.pending_challenge.clone());
        if let (Some(state), Some(name)) = (a.flow.as_mut(), answered) {
            let result = match outcome {
                Outcome::Success => Some("success"),
                Outcome::Failure => Some("failure"),
                Outcome::Challenge => Some("success"),
                Outcome::Unknown => None,
            };
            if let Some(r) = result {
                state.challenges.push(ChallengeStep {
                    name,
                    result: r.to_string(),
                });
                state.pending_challenge = None;
            }
        }

        match outcome {
            Outcome::Unknown => {}
            Outcome::Challenge => {
                let Some(cfg) = flow_cfg.filter(|_| a.kind == EventType::SignIn) else {
                    self.count(a);
                    let pending = self.event(ex, a, "challenged", now);
                    ex.events.push(pending);
                    return;
                };
                let (session, next) = read_challenge(ex, response, &cfg).await;
                let Some(session) = session else {
                    return;
                };
                let mut state = a.flow.take().unwrap_or_else(|| FlowState {
                    username: a.username.clone(),
                    client_id: a.client_id.clone(),
                    custom: cfg.custom,
                    started_ms: now,
                    level: a.assessment.level.as_str().to_string(),
                    score: a.assessment.score,
                    signals: a.assessment.signals.clone(),
                    compromised: a.assessment.compromised,
                    device_id: a.device_id.clone(),
                    fingerprint: a.fingerprint.clone(),
                    issued_cookie: false,
                    challenges: Vec::new(),
                    pending_challenge: None,
                });
                state.pending_challenge = next;
                if let Err(e) = flow::save(self.store.as_ref(), &session, &state).await {
                    tracing::warn!(error = %e, "risk: flow save failed");
                }
            }
            Outcome::Failure => {
                if a.kind == EventType::SignIn {
                    let ip = IpText::new(crate::context::counting_ip(ex.ctx.client_ip));
                    if let Err(e) = self.count_failure(risk, a, ip.as_str()).await {
                        tracing::warn!(error = %e, "risk: failure count lost");
                    }
                }
                self.count(a);
                let pending = self.event(ex, a, "failure", now);
                ex.events.push(pending);
            }
            Outcome::Success => {
                self.count(a);
                let enforce = a.mode == RiskMode::Enforce;
                if a.decision == RiskAction::Block && enforce {
                    let reason = if a.assessment.compromised && a.policy.blocks_compromised(Operation::SignIn)
                    {
                        "compromised_credentials"
                    } else {
                        "risk"
                    };
                    *response = self.block_response(ex, reason);
                    ex.rejected = Some("risk");
                    let pending = self.event(ex, a, "blocked", now);
                    ex.events.push(pending);
                    return;
                }
                if !enforce && a.decision != RiskAction::Allow {
                    a.shadow.push(ShadowDecision {
                        source: "risk".into(),
                        decision: a.decision.as_str().into(),
                    });
                }
                // History learns only from sign-ins that were let through as they are. In audit mode it
                // learns what enforce would have let through, or stepped up, unless some sign-ins are
                // enforced: then an audited client (its id is the caller's to choose) would teach the
                // history a trip or a device that an enforced one then lets through without a step-up.
                let allowed = a.decision == RiskAction::Allow
                    || (!enforce && !risk.enforced_somewhere && a.decision != RiskAction::Block);
                if a.kind == EventType::SignIn && allowed {
                    self.learn(risk, ex, a, response, now).await;
                }
                let pending = self.event(ex, a, "success", now);
                ex.events.push(pending);
            }
        }
    }
}

impl RiskStage {
    /// A successful, allowed sign-in: remember its device and place, and give the client a device cookie.
    async fn learn(
        &self,
        risk: &Risk,
        ex: &Exchange,
        a: &mut Assessed,
        response: &mut Response<Body>,
        now: u64,
    ) {
        // Whether `a.device_id` is a cookie given out just now.
        let mut issued = false;
        if a.device_id.is_none() {
            if let Ok(k) = self.device_key(risk).await {
                let secure = match risk.device_cookie.secure {
                    CookieSecure::Always => true,
                    CookieSecure::Never => false,
                    CookieSecure::Auto => ex.ctx.tls || forwarded_https(ex),
                };
                let cookie = &risk.device_cookie;
                let (id, line) = device_set_cookie(k, &cookie.name, cookie.max_age.get().as_secs(), secure);
                // The line is exactly its length: the header value takes its allocation over.
                if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(line)) {
                    response.headers_mut().append(SET_COOKIE, v);
                }
                a.device_id = Some(id);
                issued = true;
            }
        }
        let Some(user) = a.user.as_deref() else {
            return;
        };
        let geo = ex.ctx.geo();
        let place = Place {
            country: geo.country.as_deref(),
            city: geo.city.as_deref(),
            asn: geo.asn,
            latitude: geo.latitude,
            longitude: geo.longitude,
        };
        // A cookie the client presented is a device; one given out just now waits until it comes back.
        let mut devices = Vec::with_capacity(2);
        devices.push(a.fingerprint.as_str());
        let device = a.device_id.as_deref();
        if !issued {
            devices.extend(device);
        }
        let issued = device.filter(|_| issued);
        let remembered = remember(
            self.store.as_ref(),
            &risk.history,
            user,
            &devices,
            issued,
            &place,
            now,
        );
        match remembered.await {
            Ok(history) => a.history = Some(history),
            Err(e) => tracing::warn!(error = %e, "risk: history not updated"),
        }
    }
}

/// Records a successful sign-in that was let through as it is, or stepped up with a second factor, in the
/// user's history (`user` is the user key): its devices become known (a device cookie `issued` with this
/// answer waits among the issued ones until it comes back) and its place the last one. The
/// record is read again, since another sign-in may have changed it since this one was scored.
pub async fn remember(
    store: &dyn Store,
    settings: &FileHistory,
    user: &str,
    devices: &[&str],
    issued: Option<&str>,
    place: &Place<'_>,
    now: u64,
) -> Result<UserHistory, StoreError> {
    let key = record_key("user", user);
    let mut history = match store.get(&key).await? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
        None => UserHistory::default(),
    };
    history.record_success(devices, place, now, settings.max_items);
    if let Some(id) = issued {
        history.note_issued(id);
    }
    let bytes = crate::events::json_bytes(&history).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put(&key, bytes, Some(settings.ttl.get())).await?;
    Ok(history)
}

/// A new device id and the `Set-Cookie` value that gives it out:
/// `<name>=<id>.<tag>; Path=/; Max-Age=<secs>; HttpOnly; SameSite=Lax`, and `; Secure` when asked.
fn device_set_cookie(k: &DeviceKey, name: &str, max_age_secs: u64, secure: bool) -> (String, String) {
    let mut digits = itoa::Buffer::new();
    let secs = digits.format(max_age_secs);
    let secure = if secure { "; Secure" } else { "" };
    k.issue_cookie(
        name,
        &["; Path=/; Max-Age=", secs, "; HttpOnly; SameSite=Lax", secure],
    )
}

fn forwarded_https(ex: &Exchange) -> bool {
    ex.request
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// The session value and next challenge name in a challenge answer (the body stays as it was).
async fn read_challenge(
    ex: &Exchange,
    response: &mut Response<Body>,
    cfg: &crate::profile::Flow,
) -> (Option<String>, Option<String>) {
    let taken = std::mem::replace(response.body_mut(), body::empty());
    let bytes = match body::read_capped(taken, ex.config.listen.response_body_limit).await {
        Ok(Capped::Complete(b)) => b,
        Ok(Capped::TooLarge { body, .. }) => {
            *response.body_mut() = body;
            return (None, None);
        }
        Err(_) => return (None, None),
    };
    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    *response.body_mut() = body::full(bytes);
    let text = |p: &Option<String>| {
        p.as_deref()
            .and_then(|p| json.as_ref()?.pointer(p))
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    (text(&cfg.response_session), text(&cfg.response_challenge))
}

/// `x-authward-risk` and `x-authward-decision` toward the upstream; in audit mode the decision is `allow`
/// (audit never acts, and a backend reading the header must not act either).
fn add_headers(ex: &mut Exchange, a: &Assessed) {
    let decision = if a.mode == RiskMode::Enforce {
        a.decision.as_str()
    } else {
        "allow"
    };
    let hs = &mut ex.request.headers;
    // The text's own allocation becomes the header value's (`header()` makes it exactly its length).
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(a.assessment.header())) {
        hs.insert(RISK_HEADER, v);
    }
    hs.insert(DECISION_HEADER, HeaderValue::from_static(decision));
}

impl Risk {
    /// Whether a store failure refuses sign-ins.
    pub fn store_failure_closed(&self) -> bool {
        self.store_failure == StoreFailure::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::EmbeddedSources;
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn stage(yaml: &str) -> (RiskStage, Arc<Risk>, Arc<ManualClock>) {
        let f = crate::config::parse_str(std::path::Path::new("r.yaml"), yaml).unwrap();
        let risk =
            Arc::new(Risk::compile(&f, std::path::Path::new(""), &EmbeddedSources::default()).unwrap());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let services = Services {
            metrics: Arc::new(Metrics::new()),
            store: Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone())),
            clock: clock.clone(),
        };
        (RiskStage::new(Some(risk.clone()), &services), risk, clock)
    }

    fn attempt(risk: &Risk, user: &str) -> Assessed {
        Assessed {
            kind: EventType::SignIn,
            policy: risk.global.clone(),
            mode: RiskMode::Enforce,
            assessment: Assessment {
                level: Level::None,
                score: 0,
                signals: Vec::new(),
                compromised: false,
            },
            decision: RiskAction::Allow,
            notify: false,
            user: Some(user_key(user)),
            username: Some(user.into()),
            client_id: None,
            history: None,
            familiarity: Familiarity::Other,
            device_id: None,
            fingerprint: "fp:x".into(),
            flow: None,
            session: None,
            answered: false,
            shadow: Vec::new(),
        }
    }

    #[test]
    fn familiarity_is_read_from_the_history_before_the_sign_in() {
        let none = Familiarity::of(None, None, "fp:a");
        assert_eq!(none, Familiarity::FirstSignIn);
        let mut h = UserHistory::default();
        assert_eq!(Familiarity::of(Some(&h), None, "fp:a"), Familiarity::FirstSignIn);
        h.record_success(&["fp:a", "dev1"], &Place::default(), 1, 10);
        assert_eq!(Familiarity::of(Some(&h), None, "fp:a"), Familiarity::KnownDevice);
        assert_eq!(
            Familiarity::of(Some(&h), Some("dev1"), "fp:z"),
            Familiarity::KnownDevice
        );
        // A valid cookie names the device: a known fingerprint does not stand in for an unknown cookie.
        assert_eq!(
            Familiarity::of(Some(&h), Some("dev2"), "fp:a"),
            Familiarity::Other
        );
        assert_eq!(Familiarity::of(Some(&h), None, "fp:b"), Familiarity::Other);
    }

    #[test]
    fn user_keys_fold_case_spaces_and_compatibility_spellings() {
        for (name, key) in [
            ("alice", "alice"),
            ("  Alice ", "alice"),
            ("\u{ff41}lice", "alice"),
            ("ＡＬＩＣＥ@Example.com", "alice@example.com"),
            ("Ｊosé", "josé"),
            ("Jose\u{301}", "josé"),
            ("Straße", "straße"),
            // What backends strip or never show: control characters (Python's `strip()` drops
            // `\x1c`-`\x1f`, Java's `trim()` all of them), a byte-order mark, zero-width characters.
            ("alice\u{1f}", "alice"),
            ("\u{0}alice\u{1}", "alice"),
            ("alice\u{7f}", "alice"),
            ("\u{feff}alice", "alice"),
            ("\u{200b}alice\u{200d}", "alice"),
            ("alice\u{ad}", "alice"),
            ("\u{3000}Alice\u{a0}", "alice"),
        ] {
            assert_eq!(user_key(name), key, "{name:?}");
        }
        assert_ne!(user_key("alice1"), user_key("alice"));
        assert_ne!(user_key("al ice"), user_key("alice"));
        // Inside a name they stay: another account to the backend.
        assert_ne!(user_key("al\u{200b}ice"), user_key("alice"));
        assert_ne!(user_key("al\u{1f}ice"), user_key("alice"));
    }

    #[test]
    fn counter_keys_keep_their_format() {
        // Hex of the first 12 bytes of SHA-256 over the parts, each followed by a zero byte.
        let sha = |s: &[u8]| hex::encode(&Sha256::digest(s)[..12]);
        let (user, ip) = (sha(b"alice\0"), sha(b"198.51.100.1\0"));
        let k = keys(Some("alice"), "198.51.100.1");
        assert_eq!(k.failures_user, format!("risk:fu:{user}"));
        assert_eq!(k.failures_ip, format!("risk:fi:{ip}"));
        assert_eq!(
            k.failures_user_ip,
            format!("risk:fui:{}", sha(b"alice\x00198.51.100.1\0"))
        );
        assert_eq!(k.users_per_ip, format!("risk:dui:{ip}"));
        assert_eq!(k.ips_per_user, format!("risk:diu:{user}"));
        assert_eq!((hex::encode(k.user), hex::encode(k.ip)), (user, ip));
        assert_eq!(keys(None, "::1").failures_user, format!("risk:fu:{}", sha(b"\0")));
    }

    #[tokio::test]
    async fn failures_count_per_user_address_and_pair_and_expire_with_their_window() {
        let (stage, risk, clock) =
            stage("velocity: {failures_user_ip: {limit: 3, window: 10m, block_at: 5}}");
        let store = stage.store.clone();
        for _ in 0..5 {
            stage
                .count_failure(&risk, &attempt(&risk, "Alice"), "198.51.100.1")
                .await
                .unwrap();
        }
        stage
            .count_failure(&risk, &attempt(&risk, "bob"), "198.51.100.1")
            .await
            .unwrap();
        stage
            .count_failure(&risk, &attempt(&risk, "ALICE "), "203.0.113.5")
            .await
            .unwrap();
        let (_, c) = load_facts(store.as_ref(), Some("alice"), "198.51.100.1")
            .await
            .unwrap();
        // Usernames are compared trimmed and lowercased: case cannot dodge the counters.
        assert_eq!(
            c,
            [6, 6, 5, 2, 2],
            "user, address, pair, users per address, addresses per user"
        );
        assert_eq!(velocity_block(&risk, &c), Some("failures_user_ip"));
        let (_, other) = load_facts(store.as_ref(), Some("alice"), "203.0.113.5")
            .await
            .unwrap();
        assert_eq!(
            velocity_block(&risk, &other),
            None,
            "the real user's own address is not blocked"
        );
        // The pair's and the distinct users' windows are 10 minutes, the failures' 15, the addresses' 60.
        clock.advance(std::time::Duration::from_secs(11 * 60));
        let (_, c) = load_facts(store.as_ref(), Some("alice"), "198.51.100.1")
            .await
            .unwrap();
        assert_eq!(c, [6, 6, 0, 0, 2]);
        assert_eq!(velocity_block(&risk, &c), None);
        clock.advance(std::time::Duration::from_secs(5 * 60));
        let (_, c) = load_facts(store.as_ref(), Some("alice"), "198.51.100.1")
            .await
            .unwrap();
        assert_eq!(
            c,
            [0, 0, 0, 0, 2],
            "only the hour-long distinct-address window remains"
        );
    }

    #[test]
    fn the_device_set_cookie_keeps_its_format() {
        let k = DeviceKey::new(b"0123456789abcdef0123456789abcdef");
        for (name, secs, secure) in [
            ("authward_device", 31_536_000, false),
            ("d", 0, true),
            ("a-much-longer-cookie-name", u64::MAX, true),
        ] {
            let (id, line) = device_set_cookie(&k, name, secs, secure);
            let value = line[name.len() + 1..].split(';').next().unwrap();
            assert_eq!(
                line,
                format!(
                    "{name}={value}; Path=/; Max-Age={secs}; HttpOnly; SameSite=Lax{}",
                    if secure { "; Secure" } else { "" }
                )
            );
            assert_eq!(k.verify(value).as_deref(), Some(id.as_str()));
            assert_eq!(line.capacity(), line.len(), "one allocation of the right size");
        }
    }

    #[tokio::test]
    async fn the_device_cookie_key_is_made_once_and_kept_in_the_store() {
        let (a, risk, _) = stage("mode: enforce");
        let (_, value) = a.device_key(&risk).await.unwrap().issue();
        let b = RiskStage::new(
            Some(risk.clone()),
            &Services {
                metrics: a.metrics.clone(),
                store: a.store.clone(),
                clock: a.clock.clone(),
            },
        );
        assert!(
            b.device_key(&risk).await.unwrap().verify(&value).is_some(),
            "a rebuilt stage (reload) keeps the key"
        );
        let (c, _, _) = stage("mode: enforce");
        assert!(
            c.device_key(&risk).await.unwrap().verify(&value).is_none(),
            "another store, another key"
        );
    }
}
