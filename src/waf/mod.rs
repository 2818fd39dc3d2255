//! The web ACL: rules in priority order over every request; terminating actions end the flow.
//!
//! A rule is a [`statement::Statement`] (or a rate-based counter, or a reference to a rule group) and an
//! action: `allow` and `block` end evaluation, `count` adds the rule's labels and goes on, `challenge` and
//! `captcha` ask the client to prove itself ([`crate::challenge`]). A rule in `shadow` mode is evaluated
//! and recorded as "would have acted" without acting. When no rule ends evaluation the default action
//! applies. Rules compile once at load ([`compile`]): each (field, transformations) pair becomes one slot
//! of a per-request cache, so a field is parsed and transformed at most once per request however many
//! rules read it; literal strings fold into one Aho-Corasick automaton per statement, regex lists into one
//! `RegexSet`, CIDRs into sorted ranges. The profile's password is never inspected unless a rule names
//! the `password` field. See `docs/rules.md` for the language.

pub mod field;
pub mod file;
pub mod import;
pub mod injection;
pub mod ipset;
pub mod stage;
pub mod statement;
pub mod transform;

mod compile;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::OnceCell;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};

pub use compile::{RulePart, compile};
use field::{BodyJson, Cache, Input, RequestView};
use statement::{Env, RateKey, RateRule, Statement, Trace};

use crate::context::IpText;
use crate::geo::Geo;
use crate::store::Store;

/// The compiled web ACL of one config.
#[derive(Debug, Default)]
pub struct WebAcl {
    rules: Vec<Rule>,
    inputs: Vec<Input>,
    /// [`field::read_as`] of `inputs`.
    read_as: Vec<usize>,
    default_block: Option<Arc<BlockResponse>>,
    needs_body: bool,
    store_fail_closed: bool,
    /// How many key lists rate rules count by (memo slots of [`RateMemo`]).
    rate_key_lists: usize,
}

/// One compiled rule (rules of referenced groups are flattened in place as `ref/rule`).
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    pub labels: Vec<String>,
    pub shadow: bool,
    pub body: RuleBody,
}

/// A rule's condition.
#[derive(Debug)]
pub enum RuleBody {
    Statement(Statement),
    Rate(RateRule),
}

/// What a matching rule does.
#[derive(Debug, Clone)]
pub enum Action {
    Allow,
    Block(Arc<BlockResponse>),
    Count,
    Challenge,
    Captcha,
}

impl Action {
    /// The action's name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block(_) => "block",
            Action::Count => "count",
            Action::Challenge => "challenge",
            Action::Captcha => "captcha",
        }
    }
}

/// A block answer.
#[derive(Debug)]
pub struct BlockResponse {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

/// What the web ACL decided for one request.
/// A failed sign-in to count once the upstream has answered: the rule's index, its store key, and for a
/// `distinct` rule the member to add.
pub type PendingFailure = (usize, String, Option<String>);

#[derive(Debug, Default)]
pub struct Verdict {
    /// The rule that ended evaluation, and its action; `None` when the default action applied.
    pub terminating: Option<(String, Action)>,
    /// The default action blocked the request.
    pub default_blocked: bool,
    /// Rules in shadow mode that would have acted, with their actions.
    pub shadow: Vec<(String, &'static str)>,
    /// Every rule that matched (including count and shadow rules).
    pub matched: Vec<(String, &'static str)>,
    /// Rate keys to count when the upstream answers with a failed sign-in: (rule index, store key, and
    /// for a `distinct` rule the member to add).
    pub pending_failures: Vec<PendingFailure>,
    /// Per-rule explanations, when asked for.
    pub trace: Vec<(String, bool, Trace)>,
}

impl Verdict {
    /// The action that will be taken: the terminating rule's, or `allow`/`block` by default.
    pub fn action_name(&self) -> &'static str {
        match &self.terminating {
            Some((_, a)) => a.name(),
            None if self.default_blocked => "block",
            None => "allow",
        }
    }
}

/// What evaluation reads besides the request.
pub struct Context<'a> {
    pub client_ip: IpAddr,
    pub geo: &'a Geo,
    pub store: &'a dyn Store,
    pub explain: bool,
}

impl WebAcl {
    /// True when the ACL has no rules and allows by default.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.default_block.is_none()
    }

    /// Whether some rule reads the request body.
    pub fn needs_body(&self) -> bool {
        self.needs_body
    }

    /// The rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The default block answer, when the default action is `block`.
    pub fn default_block(&self) -> Option<&Arc<BlockResponse>> {
        self.default_block.as_ref()
    }

    /// Evaluates every rule in order against one request; `labels` gains the labels of matching rules.
    pub async fn evaluate(
        &self,
        view: &RequestView<'_>,
        cx: &Context<'_>,
        labels: &mut Vec<String>,
    ) -> Verdict {
        let json = BodyJson::new(view);
        let cache = Cache::new(view, &json, &self.read_as);
        let rates = RateMemo::new(cx.client_ip, self.rate_key_lists);
        let mut verdict = Verdict::default();
        for (index, rule) in self.rules.iter().enumerate() {
            let mut trace = Trace::default();
            let matched = {
                let env = Env {
                    client_ip: cx.client_ip,
                    geo: cx.geo,
                    labels,
                    inputs: &self.inputs,
                };
                let mut t = cx.explain.then_some(&mut trace);
                match &rule.body {
                    RuleBody::Statement(s) => s.eval(&cache, &env, &mut t),
                    RuleBody::Rate(r) => {
                        let in_scope = r.scope_down.as_ref().is_none_or(|s| s.eval(&cache, &env, &mut t));
                        let key = if in_scope {
                            rates.key(&rule.name, &r.keys, r.keys_memo, view, &env)
                        } else {
                            None
                        };
                        let member = match (&key, &r.distinct) {
                            (Some(_), Some(d)) => {
                                rates.key("", std::slice::from_ref(d), r.distinct_memo, view, &env)
                            }
                            _ => None,
                        };
                        let key = if r.distinct.is_some() && member.is_none() {
                            None
                        } else {
                            key
                        };
                        match key {
                            None => false,
                            Some(key) => {
                                // Each key's text is read (and checked as UTF-8) once.
                                let key: &str = &key;
                                let over = match member.as_deref() {
                                    Some(m) => {
                                        self.distinct_check(index, r, key, m, cx.store, &mut verdict)
                                            .await
                                    }
                                    None => self.rate_check(index, r, key, cx.store, &mut verdict).await,
                                };
                                if let Some(t) = &mut t {
                                    t.lines.push(format!(
                                        "rate_based {} per {:?} ({:?}): {}",
                                        r.limit,
                                        r.window,
                                        r.count,
                                        if over {
                                            "over the limit"
                                        } else {
                                            "within the limit"
                                        }
                                    ));
                                }
                                over
                            }
                        }
                    }
                }
            };
            if cx.explain {
                verdict.trace.push((rule.name.clone(), matched, trace));
            }
            if !matched {
                continue;
            }
            for label in &rule.labels {
                if !labels.contains(label) {
                    labels.push(label.clone());
                }
            }
            verdict.matched.push((rule.name.clone(), rule.action.name()));
            if rule.shadow {
                if !matches!(rule.action, Action::Count) {
                    verdict.shadow.push((rule.name.clone(), rule.action.name()));
                }
                continue;
            }
            if !matches!(rule.action, Action::Count) {
                verdict.terminating = Some((rule.name.clone(), rule.action.clone()));
                return verdict;
            }
        }
        verdict.default_blocked = self.default_block.is_some();
        verdict
    }

    /// Counts the request for a rate rule; true when the key is over the limit.
    async fn rate_check(
        &self,
        index: usize,
        rule: &RateRule,
        key: &str,
        store: &dyn Store,
        verdict: &mut Verdict,
    ) -> bool {
        let result = match rule.count {
            file::RateCount::All => store.rate_take(key, rule.limit, rule.window, 1).await,
            file::RateCount::FailedSignIn => {
                let peek = store.rate_peek(key, rule.limit, rule.window).await;
                verdict.pending_failures.push((index, key.to_owned(), None));
                peek
            }
        };
        match result {
            Ok(d) => !d.allowed,
            Err(e) => {
                tracing::warn!(error = %e, fail_closed = self.store_fail_closed, "rate-based rule: store unavailable");
                self.store_fail_closed
            }
        }
    }

    /// Adds `member` to the key's distinct set (`count: failed_sign_in`: only once the upstream has
    /// answered with a failed sign-in); true when the set holds, or would hold, more than the limit.
    async fn distinct_check(
        &self,
        index: usize,
        rule: &RateRule,
        key: &str,
        member: &str,
        store: &dyn Store,
        verdict: &mut Verdict,
    ) -> bool {
        let over = match rule.count {
            file::RateCount::All => store
                .set_add(key, member, rule.window)
                .await
                .map(|n| n > u64::from(rule.limit)),
            file::RateCount::FailedSignIn => {
                verdict
                    .pending_failures
                    .push((index, key.to_owned(), Some(member.to_owned())));
                match store.set_len(key).await {
                    Ok(n) if n >= u64::from(rule.limit) => {
                        store.set_contains(key, member).await.map(|known| !known)
                    }
                    other => other.map(|_| false),
                }
            }
        };
        match over {
            Ok(over) => over,
            Err(e) => {
                tracing::warn!(error = %e, fail_closed = self.store_fail_closed, "rate-based rule: store unavailable");
                self.store_fail_closed
            }
        }
    }

    /// Counts failed sign-ins for the rate rules that asked for them.
    pub async fn record_failures(&self, pending: &[PendingFailure], store: &dyn Store) {
        for (index, key, member) in pending {
            if let Some(Rule {
                body: RuleBody::Rate(r),
                ..
            }) = self.rules.get(*index)
            {
                let counted = match member {
                    Some(m) => store.set_add(key, m, r.window).await.map(drop),
                    None => store.rate_take(key, r.limit, r.window, 1).await.map(drop),
                };
                if let Err(e) = counted {
                    tracing::warn!(error = %e, "rate-based rule: cannot count a failed sign-in");
                }
            }
        }
    }
}

/// What the rate rules of one evaluation share: the client address as text, and the digests of key
/// lists that more than one rule counts by (each distinct list has a memo slot, see [`RateRule`]).
struct RateMemo {
    client_ip: IpAddr,
    client_text: OnceCell<IpText>,
    /// The first [`RATE_MEMO_INLINE`] slots, held inline: rule sets count by a few key lists.
    digests: [Digest; RATE_MEMO_INLINE],
    /// The slots past those (none unless the ACL counts by more key lists).
    more: Vec<Digest>,
}

/// A memo slot: a key list's digest, once computed (`None`: a key part was missing).
type Digest = OnceCell<Option<[u8; 16]>>;

/// Memo slots held inline by [`RateMemo`].
const RATE_MEMO_INLINE: usize = 8;

impl RateMemo {
    fn new(client_ip: IpAddr, slots: usize) -> Self {
        RateMemo {
            client_ip,
            client_text: OnceCell::new(),
            digests: Default::default(),
            more: (RATE_MEMO_INLINE..slots).map(|_| OnceCell::new()).collect(),
        }
    }

    /// Memo slot `i`.
    fn slot(&self, i: usize) -> Option<&Digest> {
        match i.checked_sub(RATE_MEMO_INLINE) {
            None => self.digests.get(i),
            Some(j) => self.more.get(j),
        }
    }

    /// The store key of a rate rule for this request: `waf:rate:{rule}:{digest}`, see [`key_digest`].
    fn key(
        &self,
        rule: &str,
        keys: &[RateKey],
        memo: Option<usize>,
        view: &RequestView<'_>,
        env: &Env<'_>,
    ) -> Option<RateKeyText> {
        let digest = match memo.and_then(|i| self.slot(i)) {
            Some(cell) => *cell.get_or_init(|| self.digest(keys, view, env)),
            None => self.digest(keys, view, env),
        }?;
        let mut hex = hex::Buffer::<16>::new();
        Some(RateKeyText::new(&[
            RATE_KEY_PREFIX,
            rule,
            ":",
            hex.format(&digest),
        ]))
    }

    fn digest(&self, keys: &[RateKey], view: &RequestView<'_>, env: &Env<'_>) -> Option<[u8; 16]> {
        let client = self
            .client_text
            .get_or_init(|| IpText::new(crate::context::counting_ip(self.client_ip)));
        key_digest(keys, view, env, client.as_str())
    }
}

/// The prefix of rate rules' store keys.
const RATE_KEY_PREFIX: &str = "waf:rate:";

/// Bytes of a rate key kept on the stack: the prefix, a rule name of up to 86 bytes, and the digest.
const RATE_KEY_INLINE: usize = 128;

/// A rate rule's store key (`waf:rate:{rule}:{digest}`), written on the stack when it fits (as nearly
/// every key does): the store reads keys by reference, so a rule's key costs no allocation unless it must
/// be kept (a failed-sign-in count waits for the answer).
enum RateKeyText {
    Inline { buf: [u8; RATE_KEY_INLINE], len: usize },
    Heap(String),
}

impl RateKeyText {
    /// The concatenation of `parts`.
    fn new(parts: &[&str]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > RATE_KEY_INLINE {
            return RateKeyText::Heap(parts.concat());
        }
        let mut buf = [0; RATE_KEY_INLINE];
        let mut at = 0;
        for p in parts {
            buf[at..at + p.len()].copy_from_slice(p.as_bytes());
            at += p.len();
        }
        RateKeyText::Inline { buf, len }
    }
}

impl std::ops::Deref for RateKeyText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Whole `&str`s were copied in, so the bytes are UTF-8; checked all the same (no `unsafe`).
            RateKeyText::Inline { buf, len } => std::str::from_utf8(&buf[..*len]).unwrap_or_default(),
            RateKeyText::Heap(s) => s,
        }
    }
}

/// A digest of the aggregation key values of a rate rule (bounded size, no usernames stored in clear):
/// the first 16 bytes of SHA-256 over each part's length and text. `None` when a key part is missing.
fn key_digest(keys: &[RateKey], view: &RequestView<'_>, env: &Env<'_>, client: &str) -> Option<[u8; 16]> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for key in keys {
        let part: Cow<'_, str> = match key {
            RateKey::Ip => Cow::Borrowed(client),
            RateKey::ForwardedIp(name) => {
                let ip = view
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .and_then(|v| v.trim().parse::<IpAddr>().ok())?;
                Cow::Owned(IpText::new(crate::context::counting_ip(ip)).as_str().to_owned())
            }
            RateKey::Header(name) => Cow::Borrowed(view.headers.get(name)?.to_str().ok()?),
            RateKey::Cookie(name) => Cow::Borrowed(
                view.headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .filter_map(|p| p.trim().split_once('='))
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v)?,
            ),
            RateKey::QueryArg(name) => Cow::Borrowed(
                field::query_pairs(view.uri.query())
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)?,
            ),
            RateKey::UriPath => Cow::Owned(crate::context::normalize_path(view.uri.path())),
            RateKey::Method => Cow::Borrowed(view.method.as_str()),
            RateKey::LabelNamespace(ns) => {
                let mut found: Vec<&str> = env
                    .labels
                    .iter()
                    .filter(|l| l.starts_with(ns.as_str()))
                    .map(String::as_str)
                    .collect();
                if found.is_empty() {
                    return None;
                }
                found.sort_unstable();
                Cow::Owned(found.join(","))
            }
            RateKey::Ja4 => Cow::Borrowed(view.ja4.filter(|j| !j.is_empty())?),
            RateKey::Username => {
                // Keyed as the risk engine keys users (trimmed, NFKC, lower case), so that neither case,
                // spaces around the name nor compatibility spellings make a new key.
                let name = view
                    .profile
                    .and_then(|f| f.username.as_deref())
                    .map(str::trim)
                    .filter(|u| !u.is_empty())?;
                // Most names are already lower case ASCII; the user key would only copy them.
                if name.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
                    Cow::Borrowed(name)
                } else {
                    Cow::Owned(crate::risk::stage::user_key(name))
                }
            }
            RateKey::Constant => Cow::Borrowed(""),
        };
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0; 16];
    first.copy_from_slice(&digest[..16]);
    Some(first)
}
