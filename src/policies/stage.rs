//! The policies' pipeline stage: every policy of the request's group checked before the upstream sees it.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use serde_json::Value;

use super::file::{Mode, Policy};
use super::oauth::{self, Params};
use super::passwords::{self, History};
use super::respond::{self, Reason};
use super::{Group, Policies};
use crate::challenge;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::events::{Event, EventType, Pending, ShadowDecision};
use crate::metrics::Metrics;
use crate::pipeline::{Exchange, Flow, Hooks, RequestBody, Services, Stage};
use crate::profile::{Operation, Outcome, Secret};
use crate::proxy::body::Body;
use crate::store::Store;

const CHALLENGE_KEY: &str = "policy:pkce:challenge:";
const CODE_KEY: &str = "policy:pkce:code:";

/// What the request hook leaves for the response hook.
#[derive(Debug, Default)]
pub struct Carried {
    /// The code_challenge of an authorization request, to link to the code its answer carries.
    challenge: Option<String>,
    /// A new password to remember once the upstream has accepted it, and whose it is.
    new_password: Option<(String, Secret)>,
}

/// The policies stage: checks on the request, the PKCE code link and the password history on the answer.
pub struct Enforce {
    policies: Arc<Policies>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// Argon2id checks running at once, at most one per core: each costs `memory_kib` and tens of
    /// milliseconds, and a caller can ask for one with a made-up access token.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl Enforce {
    /// The stage for one config. The pipeline places it after the outcome stages: they have no request
    /// hook, so its requests are checked right after the web ACL's, and its response hook reads the
    /// classified outcome (a password is remembered only once the upstream accepted it).
    pub fn new(config: &Arc<Config>, services: &Services) -> Self {
        Enforce {
            policies: config.policies.clone(),
            store: services.store.clone(),
            metrics: services.metrics.clone(),
            clock: services.clock.clone(),
            hashing: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )),
        }
    }
}

/// The auth event type of an operation, when it has one.
fn event_kind(op: Operation) -> Option<EventType> {
    match op {
        Operation::SignIn => Some(EventType::SignIn),
        Operation::SignUp => Some(EventType::SignUp),
        Operation::PasswordChange => Some(EventType::PasswordChange),
        Operation::PasswordReset => Some(EventType::PasswordReset),
        Operation::SmsSend => Some(EventType::SmsSend),
        Operation::SmsVerify => Some(EventType::SmsVerify),
        Operation::MfaVerify => Some(EventType::MfaVerify),
        Operation::SignOut | Operation::Other => None,
    }
}

/// One request's pass through its group's policies.
struct Run<'a> {
    stage: &'a Enforce,
    group: &'a Group,
    client_id: Option<String>,
    /// Audit-mode breaks so far, for the shadow of a later refusal's event.
    audited: Vec<(Policy, Reason)>,
}

impl Run<'_> {
    fn mode(&self, policy: Policy) -> Mode {
        self.group.mode(policy, self.client_id.as_deref())
    }

    /// Counts, logs and labels one decision; the answer when an enforced policy refuses.
    ///
    /// Each policy that applies counts `pass`, `refuse` (enforce) or `would_refuse` (audit) and logs a
    /// break with its reason code. A refusal adds the label `authward:policy:<policy>` and one auth event
    /// (blocked, for operations that have an event type) whose `shadow` lists the audit-mode breaks before
    /// it. An audit break adds the label `authward:policy:audit:<policy>`, which the upstream's
    /// `x-authward-labels` and the later stages' events carry, and makes no event of its own.
    fn decide(
        &mut self,
        ex: &mut Exchange,
        policy: Policy,
        result: Result<(), Reason>,
    ) -> Option<Response<Body>> {
        let mode = self.mode(policy);
        let decision = match (&result, mode) {
            (Ok(()), _) => "pass",
            (Err(_), Mode::Enforce) => "refuse",
            (Err(_), _) => "would_refuse",
        };
        self.stage
            .metrics
            .policy_decisions
            .with_label_values(&[policy.as_str(), decision])
            .inc();
        let Err(reason) = result else {
            return None;
        };
        tracing::info!(
            target: "authward::policy",
            request_id = %ex.ctx.request_id,
            group = %self.group.name,
            policy = policy.as_str(),
            mode = mode.as_str(),
            reason = reason.code(),
            "{}",
            if mode == Mode::Enforce { "policy refused the request" } else { "policy would refuse the request" }
        );
        if mode != Mode::Enforce {
            ex.labels
                .push(format!("authward:policy:audit:{}", policy.as_str()));
            self.audited.push((policy, reason));
            return None;
        }
        ex.labels.push(format!("authward:policy:{}", policy.as_str()));
        ex.rejected = Some("policy");
        let op = ex.profile.as_ref().map(|m| m.profile.operation());
        if let Some(kind) = op.and_then(event_kind) {
            let mut event = Event::for_exchange(ex, kind, self.stage.clock.now_ms());
            event.decision = "block".into();
            event.mode = "enforce".into();
            event.outcome = "blocked".into();
            event
                .shadow
                .extend(self.audited.iter().map(|(p, _)| ShadowDecision {
                    source: format!("policy:{}", p.as_str()),
                    decision: "refuse".into(),
                }));
            ex.events.push(Pending { event, notify: false });
        }
        Some(match reason {
            Reason::SignUpChallenge => challenge::required(
                challenge::Kind::Challenge,
                &ex.request.headers,
                &ex.ctx.request_id,
            ),
            r => respond::refusal(
                self.group.respond_as,
                policy,
                &r,
                self.client_id.as_deref(),
                &ex.ctx.request_id,
            ),
        })
    }
}

/// Parses a JSON object body (Cognito's API); `None` for anything else.
fn json_body(body: &[u8]) -> Option<Value> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'{')
        .then(|| serde_json::from_slice(body).ok())
        .flatten()
}

fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

macro_rules! check {
    ($run:expr, $ex:expr, $policy:expr, $result:expr) => {
        if let Some(r) = $run.decide($ex, $policy, $result) {
            return Flow::Respond(r);
        }
    };
}

impl Stage for Enforce {
    fn name(&self) -> &'static str {
        "policies"
    }

    fn hooks(&self) -> Hooks {
        if self.policies.is_empty() {
            Hooks::NONE.profiled()
        } else {
            Hooks::BOTH.profiled()
        }
    }

    async fn on_request(&self, ex: &mut Exchange) -> Flow {
        let Some(matched) = ex.profile.as_ref() else {
            return Flow::Continue;
        };
        let Some(group) = self.policies.group_for(matched.profile.name()) else {
            return Flow::Continue;
        };
        let profile = matched.profile.clone();
        let fields = matched.fields.clone();
        let body = match &ex.body {
            RequestBody::Buffered(b) => b.clone(),
            RequestBody::Streaming(_) => Bytes::new(),
        };
        let json = json_body(&body);
        let params = Params::read(
            ex.request.uri.query(),
            is_form(&ex.request.headers).then_some(&body[..]),
        );
        let client_id = fields
            .client_id
            .clone()
            .or_else(|| params.get("client_id").ok().flatten().map(str::to_owned));
        if !group.any_on(client_id.as_deref()) {
            return Flow::Continue;
        }
        let mut run = Run {
            stage: self,
            group,
            client_id,
            audited: Vec::new(),
        };
        let on = |run: &Run, p: Policy| run.mode(p) != Mode::Off;
        let ip = ex.ctx.client_ip;
        let op = profile.operation();
        let (authorize, token) = (params.is_authorize(), params.is_token());
        let grant = params.get("grant_type");

        // Admin-only operations, then who may sign up.
        let admin_op = group.admin.covers_profile(profile.name())
            || (token
                && grant
                    .as_ref()
                    .is_ok_and(|g| g.is_some_and(|g| group.admin.covers_grant(g))));
        let admin_trusted = admin_op && group.admin.trusts(ip);
        if admin_op && on(&run, Policy::Admin) {
            let r = if admin_trusted {
                Ok(())
            } else {
                Err(Reason::AdminOnly)
            };
            check!(run, ex, Policy::Admin, r);
        }
        if op == Operation::SignUp && on(&run, Policy::SignUp) {
            check!(
                run,
                ex,
                Policy::SignUp,
                group.sign_up.check(ip).map_or(Ok(()), Err)
            );
        }

        // The app client.
        let client = run.client_id.as_deref().and_then(|c| group.clients.get(c));
        if run.client_id.is_some() && on(&run, Policy::ClientAllowlist) {
            check!(
                run,
                ex,
                Policy::ClientAllowlist,
                client.map(|_| ()).ok_or(Reason::UnknownClient)
            );
        }
        let secret = client.and_then(|c| c.secret.as_ref());
        if let (Some(json), Some(secret), true) = (&json, secret, on(&run, Policy::SecretHash)) {
            let id = run.client_id.clone().unwrap_or_default();
            let r = match (
                super::clients::presented_secret_hash(json),
                fields.username.as_deref(),
            ) {
                (None, _) => Err(Reason::SecretHashMissing),
                (Some(h), Some(user))
                    if super::clients::verify_secret_hash(secret.expose(), user, &id, h) =>
                {
                    Ok(())
                }
                (Some(_), _) => Err(Reason::SecretHashWrong),
            };
            check!(run, ex, Policy::SecretHash, r);
        }

        // OAuth: grants, scopes, PKCE.
        let response_type = params.get("response_type");
        let (wants_code, implicit) = match &response_type {
            Ok(Some(rt)) => oauth::response_types(rt),
            _ => (false, false),
        };
        if on(&run, Policy::GrantTypes) && (token || implicit || response_type.is_err()) {
            let allowed = client
                .and_then(|c| c.grant_types.as_ref())
                .unwrap_or(&group.default_grants);
            let r = match (&grant, &response_type) {
                (Err(e), _) | (_, Err(e)) => Err(e.clone()),
                _ if implicit && !allowed.iter().any(|g| g == "implicit") => Err(Reason::ImplicitNotAllowed),
                (Ok(Some(g)), _) if !allowed.iter().any(|a| a == g) => Err(Reason::GrantNotAllowed),
                _ => Ok(()),
            };
            check!(run, ex, Policy::GrantTypes, r);
        }
        let allowed_scopes = client.and_then(|c| c.scopes.as_ref());
        if let (Some(allowed), true, true) = (allowed_scopes, authorize || token, on(&run, Policy::Scopes)) {
            let r = match params.get("scope") {
                Err(e) => Err(e),
                Ok(Some(s)) if !oauth::scopes_allowed(s, allowed) => Err(Reason::ScopeNotAllowed),
                Ok(_) => Ok(()),
            };
            check!(run, ex, Policy::Scopes, r);
        }
        let mut carried = Carried::default();
        if on(&run, Policy::Pkce) && authorize && wants_code {
            let r = match oauth::check_challenge(&params) {
                Ok(ch) => {
                    // A challenge is spent once it has produced a code (see the response hook): the steps of
                    // one authorization (a login page, a wrong password and a retry) may repeat it.
                    match self.store.get(&format!("{CHALLENGE_KEY}{ch}")).await {
                        Ok(Some(_)) => Err(Reason::PkceReused),
                        Ok(None) => {
                            carried.challenge = Some(ch);
                            Ok(())
                        }
                        Err(e) => {
                            tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "policies: store unavailable, challenge not checked");
                            carried.challenge = Some(ch);
                            Ok(())
                        }
                    }
                }
                Err(r) => Err(r),
            };
            check!(run, ex, Policy::Pkce, r);
        }
        if on(&run, Policy::Pkce) && token && matches!(grant, Ok(Some("authorization_code"))) {
            if let Ok(Some(code)) = params.get("code") {
                match self.store.get(&oauth::digest_key(CODE_KEY, code)).await {
                    Ok(Some(ch)) => {
                        let ch = String::from_utf8_lossy(&ch).into_owned();
                        check!(run, ex, Policy::Pkce, oauth::check_verifier(&params, &ch));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "policies: store unavailable")
                    }
                }
            }
        }

        // Attributes.
        if let (Some(json), true) = (&json, on(&run, Policy::Attributes)) {
            if group.attributes.present(json) {
                check!(run, ex, Policy::Attributes, group.attributes.check(json));
            }
        }

        // New passwords.
        let sets_password = matches!(
            op,
            Operation::SignUp | Operation::PasswordChange | Operation::PasswordReset
        );
        let Some(password) = fields.password.clone().filter(|_| sets_password) else {
            ex.policies = Some(Box::new(carried));
            return Flow::Continue;
        };
        if on(&run, Policy::CompromisedPassword) {
            let compromised = ex
                .config
                .risk
                .as_ref()
                .is_some_and(|r| r.is_compromised(password.expose()));
            let r = if compromised {
                Err(Reason::CompromisedPassword)
            } else {
                Ok(())
            };
            check!(run, ex, Policy::CompromisedPassword, r);
        }
        let username = fields
            .username
            .clone()
            .or_else(|| json.as_ref().and_then(passwords::token_username));
        if on(&run, Policy::PasswordStrength) {
            let inputs: Vec<&str> = username.as_deref().into_iter().collect();
            let strong = passwords::strong_enough(password.expose(), &inputs, group.min_score);
            check!(
                run,
                ex,
                Policy::PasswordStrength,
                if strong { Ok(()) } else { Err(Reason::WeakPassword) }
            );
        }
        if on(&run, Policy::PasswordReuse) && group.reuse.remember > 0 {
            let Some(user) = username else {
                ex.policies = Some(Box::new(carried));
                return Flow::Continue;
            };
            if op == Operation::PasswordChange {
                let previous = json
                    .as_ref()
                    .and_then(|j| j.pointer("/PreviousPassword"))
                    .and_then(Value::as_str)
                    .map(Secret::new);
                match self
                    .reused(&user, &password, previous, admin_trusted, group.reuse.remember)
                    .await
                {
                    Ok(Some(reused)) => {
                        let r = if reused {
                            Err(Reason::ReusedPassword)
                        } else {
                            Ok(())
                        };
                        check!(run, ex, Policy::PasswordReuse, r);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "policies: password history unavailable")
                    }
                }
            }
            carried.new_password = Some((user, password));
        }
        ex.policies = Some(Box::new(carried));
        Flow::Continue
    }

    async fn on_response(&self, ex: &mut Exchange, response: &mut Response<Body>) {
        let Some(carried) = ex.policies.take() else {
            return;
        };
        let Some(group) = ex
            .profile
            .as_ref()
            .and_then(|m| self.policies.group_for(m.profile.name()))
        else {
            return;
        };
        if let Some(challenge) = carried.challenge {
            let code = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .filter(|_| response.status().is_redirection())
                .and_then(oauth::code_in_location);
            if let Some(code) = code {
                let spent = format!("{CHALLENGE_KEY}{challenge}");
                let link = oauth::digest_key(CODE_KEY, &code);
                let stored = async {
                    self.store
                        .put(&spent, Bytes::new(), Some(group.pkce_remember))
                        .await?;
                    self.store
                        .put(&link, challenge.into(), Some(oauth::CODE_TTL))
                        .await
                };
                if let Err(e) = stored.await {
                    tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "policies: code link not stored");
                }
            }
        }
        if let (Some((user, password)), Some(Outcome::Success)) = (carried.new_password, ex.outcome) {
            if let Err(e) = self.remember(&user, password, group.reuse).await {
                tracing::warn!(request_id = %ex.ctx.request_id, error = %e, "policies: password history not updated");
            }
        }
    }
}

impl Enforce {
    /// Whether a password change reuses one of the last `n` passwords; `None` when the caller has not
    /// proved to be the user (the previous password is not the newest remembered one, and the caller is
    /// not a trusted admin), so that the answer tells strangers nothing about old passwords.
    async fn reused(
        &self,
        user: &str,
        password: &Secret,
        previous: Option<Secret>,
        admin_trusted: bool,
        n: usize,
    ) -> Result<Option<bool>, passwords::HistoryError> {
        let Some(history) = History::load(self.store.as_ref(), user).await? else {
            return Ok(None);
        };
        // Every core busy hashing: the change goes to the backend unjudged rather than queue (a flood of
        // made-up changes must not hold up requests or memory).
        let Ok(_permit) = self.hashing.clone().try_acquire_owned() else {
            tracing::warn!("policies: password reuse check skipped, every core is hashing");
            return Ok(None);
        };
        let password = password.clone();
        passwords::blocking(move || {
            let proved = admin_trusted
                || match previous {
                    Some(p) => history.contains(p.expose(), 1)?,
                    None => false,
                };
            match proved {
                true => history.contains(password.expose(), n).map(Some),
                false => Ok(None),
            }
        })
        .await
    }

    /// Adds an accepted password to the user's history.
    async fn remember(
        &self,
        user: &str,
        password: Secret,
        params: passwords::HistoryParams,
    ) -> Result<(), passwords::HistoryError> {
        let history = History::load(self.store.as_ref(), user)
            .await?
            .unwrap_or_else(History::fresh);
        let history = passwords::blocking(move || {
            let mut h = history;
            h.push(password.expose(), params)?;
            Ok(h)
        })
        .await?;
        history.save(self.store.as_ref(), user).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use serde_json::json;

    use super::*;
    use crate::config::{EmbeddedSources, Mode as Load, load_from};
    use crate::context::{Connection, Context};
    use crate::profile::stage::Recognize;
    use crate::store::memory::MemoryStore;

    const CONFIG: &str = r#"
upstream: {url: "http://127.0.0.1:1"}
include: [profiles/cognito.yaml]
policies:
  - name: cognito
    profiles: ["cognito-*"]
    respond_as: cognito
    attributes: {mode: audit, rules: {given_name: {message_safe: true}}}
    password_strength: {mode: enforce}
"#;

    fn exchange(config: &Arc<Config>, target: &str, body: serde_json::Value) -> Exchange {
        let request = http::Request::post("/")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AWSCognitoIdentityProviderService.{target}"),
            )
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let conn = Connection {
            peer: "203.0.113.7:50000".parse().unwrap(),
            tls: false,
            slot: None,
            ja4: None,
        };
        Exchange::new(
            config.clone(),
            Context::new(config, &conn, &parts),
            parts,
            RequestBody::Buffered(Bytes::from(body.to_string())),
        )
    }

    #[tokio::test]
    async fn a_refusal_makes_one_event_with_the_audited_breaks_and_no_secret() {
        let mut files = EmbeddedSources::default();
        files
            .files
            .insert(PathBuf::from("authward.yaml"), CONFIG.as_bytes().to_vec());
        files.files.insert(
            PathBuf::from("profiles/cognito.yaml"),
            include_bytes!("../../rules/profiles/cognito.yaml").to_vec(),
        );
        let config = Arc::new(load_from(Path::new("authward.yaml"), Load::Serve, &files).unwrap());
        let clock = crate::clock::system();
        let services = Services {
            metrics: Arc::new(Metrics::new()),
            store: Arc::new(MemoryStore::new(Default::default(), clock.clone())),
            clock,
        };
        let weak = "zzzzzzzzzz1";
        let mut ex = exchange(
            &config,
            "SignUp",
            json!({"ClientId": "c", "Username": "mallory", "Password": weak,
                "UserAttributes": [{"Name": "given_name", "Value": "win at https://evil.test"}]}),
        );
        assert!(matches!(
            Recognize::new(config.profiles.clone()).on_request(&mut ex).await,
            Flow::Continue
        ));
        let Flow::Respond(answer) = Enforce::new(&config, &services).on_request(&mut ex).await else {
            panic!("the weak password should be refused");
        };
        assert_eq!(answer.status(), 400);
        assert_eq!(ex.rejected, Some("policy"));
        assert_eq!(
            ex.labels[2..],
            [
                "authward:policy:audit:attributes",
                "authward:policy:password_strength"
            ]
        );
        let [pending] = &ex.events[..] else {
            panic!("one event: {:?}", ex.events);
        };
        let e = &pending.event;
        assert_eq!(
            (e.kind, &*e.decision, &*e.outcome),
            (EventType::SignUp, "block", "blocked")
        );
        assert_eq!(e.username.as_deref(), Some("mallory"));
        assert_eq!(
            e.shadow,
            [ShadowDecision {
                source: "policy:attributes".into(),
                decision: "refuse".into()
            }]
        );
        let text = serde_json::to_string(e).unwrap();
        assert!(!text.contains(weak) && !text.contains("evil.test"), "{text}");
        let m = services.metrics.render();
        assert!(
            m.contains(r#"authward_policy_decisions_total{decision="would_refuse",policy="attributes"} 1"#)
        );
        assert!(
            m.contains(r#"authward_policy_decisions_total{decision="refuse",policy="password_strength"} 1"#)
        );
    }

    #[tokio::test]
    async fn other_profiles_and_groups_with_nothing_on_pass_untouched() {
        let mut files = EmbeddedSources::default();
        let off = CONFIG
            .replace("mode: audit", "mode: off")
            .replace("mode: enforce", "mode: off");
        files
            .files
            .insert(PathBuf::from("authward.yaml"), off.into_bytes());
        files.files.insert(
            PathBuf::from("profiles/cognito.yaml"),
            include_bytes!("../../rules/profiles/cognito.yaml").to_vec(),
        );
        let config = Arc::new(load_from(Path::new("authward.yaml"), Load::Serve, &files).unwrap());
        let clock = crate::clock::system();
        let services = Services {
            metrics: Arc::new(Metrics::new()),
            store: Arc::new(MemoryStore::new(Default::default(), clock.clone())),
            clock,
        };
        let mut ex = exchange(
            &config,
            "SignUp",
            json!({"ClientId": "c", "Username": "u", "Password": "x"}),
        );
        let _ = Recognize::new(config.profiles.clone()).on_request(&mut ex).await;
        assert!(matches!(
            Enforce::new(&config, &services).on_request(&mut ex).await,
            Flow::Continue
        ));
        assert!(ex.policies.is_none() && ex.events.is_empty());
        assert!(
            !services
                .metrics
                .render()
                .contains("authward_policy_decisions_total{")
        );
    }
}
