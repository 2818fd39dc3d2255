//! The guard's checks, one reason at a time, and the scenarios: a slow pump, ordinary traffic, audit mode.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::memory::{MemoryLimits, MemoryStore};
use crate::store::{RateDecision, StoreError};

const MIN: Duration = Duration::from_secs(60);

/// Files the test configs name.
struct Files(HashMap<&'static str, &'static str>);

impl ReadFile for Files {
    fn read_text(&self, path: &Path) -> Result<String, String> {
        self.0
            .get(path.to_str().unwrap_or(""))
            .map(|s| (*s).to_owned())
            .ok_or_else(|| format!("cannot read {}", path.display()))
    }
}

fn files() -> Files {
    Files(HashMap::from([
        (
            "premium.txt",
            include_str!("../../rules/sms/premium-prefixes.txt"),
        ),
        (
            "prices.yaml",
            "currency: USD\ndefault: 0.10\ncountries: {GB: 0.04, US: 0.01}\n",
        ),
    ]))
}

const PROFILES: &str = r#"
- name: send
  operation: sms_send
  match: {path: {exact: /send}}
  fields: {phone: {json: /phone}, username: {json: /user}}
  sms:
    default_region: GB
    fake_success: {body: '{"sent": true}'}
- name: verify
  operation: sms_verify
  match: {path: {exact: /verify}}
  fields: {phone: {json: /phone}, username: {json: /user}}
- name: login
  operation: sign_in
  match: {path: {exact: /login}}
"#;

/// A guard from an `sms` section with every default check off unless the YAML turns it on.
fn guard(yaml: &str) -> Result<SmsGuard, SmsError> {
    let base = "geo_mismatch: null\nsequential: null\nconversion: null\nnumber_types: {block: []}\n\
                limits: {per_number: null, per_username: null, per_ip: null, per_ip_prefix: null, per_number_prefix: null}\n";
    let mut merged: serde_json::Value = serde_saphyr::from_str(base).unwrap();
    let extra: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    merge(&mut merged, extra);
    let f: FileSms = serde_json::from_value(merged).unwrap();
    let profiles: Vec<FileProfile> = serde_saphyr::from_str(PROFILES).unwrap();
    let list: Vec<&FileProfile> = profiles.iter().collect();
    SmsGuard::compile(&f, &list, &files())
}

/// Merges `extra` into `base`, mapping by mapping.
fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, e) => *b = e,
    }
}

struct World {
    guard: SmsGuard,
    store: MemoryStore,
    clock: Arc<ManualClock>,
}

impl World {
    fn new(yaml: &str) -> World {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        World {
            guard: guard(yaml).unwrap_or_else(|e| panic!("{e}")),
            store: MemoryStore::new(MemoryLimits::default(), clock.clone()),
            clock,
        }
    }

    async fn send_as(
        &self,
        phone: Option<&str>,
        user: Option<&str>,
        ip: &str,
        country: Option<&str>,
    ) -> Verdict {
        let labels = Vec::new();
        self.send_full(phone, user, ip, country, &labels).await
    }

    async fn send_full(
        &self,
        phone: Option<&str>,
        user: Option<&str>,
        ip: &str,
        country: Option<&str>,
        labels: &[String],
    ) -> Verdict {
        let region = Region::new("GB");
        let req = SendRequest {
            phone,
            default_region: region.as_ref(),
            username: user,
            client_ip: ip.parse::<IpAddr>().unwrap(),
            ip_country: country,
            labels,
        };
        self.guard.check(&req, &self.store, self.clock.now_ms()).await
    }

    async fn send(&self, phone: &str) -> Verdict {
        self.send_as(Some(phone), None, "192.0.2.1", None).await
    }

    /// A send whose SMS went out, settled as the stage settles it.
    async fn sent(&self, phone: &str, user: Option<&str>, ip: &str) -> Verdict {
        let v = self.send_as(Some(phone), user, ip, None).await;
        if !v.done() {
            self.guard
                .settle_send(&v, true, user, &self.store, self.clock.now_ms())
                .await;
        }
        v
    }

    async fn verify(&self, phone: Option<&str>, user: Option<&str>) -> Verdict {
        self.guard
            .verified(phone, None, user, &self.store, self.clock.now_ms())
            .await
    }
}

fn outcome(v: &Verdict) -> (Decision, Option<&'static str>) {
    (v.decision, v.reason.map(Reason::as_str))
}

// === one check at a time ===

#[tokio::test]
async fn nothing_configured_allows() {
    let w = World::new("{}");
    let v = w.send("+447400123456").await;
    assert_eq!(outcome(&v), (Decision::Allow, None));
    assert_eq!((v.country, v.prefix.as_deref()), (Some("GB"), Some("+44740012")));
    assert_eq!(
        outcome(&w.send_as(None, Some("u"), "192.0.2.1", None).await),
        (Decision::Allow, None)
    );
}

#[tokio::test]
async fn invalid_number() {
    let w = World::new("{}");
    for raw in ["not a number", "+447700900123", "+99912345678"] {
        let v = w.send(raw).await;
        assert_eq!(outcome(&v), (Decision::Block, Some("invalid_number")), "{raw}");
    }
    let w = World::new("invalid_number: pass");
    let v = w.send("+447700900123").await;
    assert_eq!(outcome(&v), (Decision::Monitor, Some("invalid_number")));
    assert!(!v.done());
}

#[tokio::test]
async fn blocked_prefix() {
    let w = World::new("blocked_prefixes: {lists: [premium.txt]}");
    for raw in ["+881612345678", "+88234123456", "+979123456789"] {
        let v = w.send(raw).await;
        assert_eq!(outcome(&v), (Decision::Block, Some("blocked_prefix")), "{raw}");
        assert_eq!(v.retry_after, STATIC_RETRY);
    }
    assert_eq!(outcome(&w.send("+447400123456").await), (Decision::Allow, None));
}

#[tokio::test]
async fn waf_label() {
    let w = World::new("labels: {refuse: ['ip-reputation:', 'bot:known']}");
    for (labels, expected) in [
        (vec!["ip-reputation:tor".to_string()], Some("waf_label")),
        (vec!["bot:known".to_string()], Some("waf_label")),
        (vec!["bot:known-good".to_string(), "other".to_string()], None),
    ] {
        let v = w
            .send_full(Some("+447400123456"), None, "192.0.2.1", None, &labels)
            .await;
        assert_eq!(v.reason.map(Reason::as_str), expected, "{labels:?}");
    }
}

#[tokio::test]
async fn country_rules() {
    let w = World::new("countries: {default: allow, rules: {CU: block, NG: monitor, '001': block}}");
    assert_eq!(
        outcome(&w.send("+5352123456").await),
        (Decision::Block, Some("country_blocked"))
    );
    assert_eq!(
        outcome(&w.send("+881612345678").await),
        (Decision::Block, Some("country_blocked")),
        "non-geographic numbers are country 001"
    );
    let v = w.send("+2348031234567").await;
    assert_eq!(outcome(&v), (Decision::Monitor, Some("country_monitored")));
    assert_eq!(outcome(&w.send("+447400123456").await), (Decision::Allow, None));
    let w = World::new("countries: {default: block, rules: {GB: allow}, action: fake_success}");
    assert_eq!(
        outcome(&w.send("+14155550100").await),
        (Decision::FakeSuccess, Some("country_blocked"))
    );
    assert_eq!(outcome(&w.send("07400 123456").await), (Decision::Allow, None));
    assert!(guard("countries: {rules: {XX: block}}").is_err());
    assert!(guard("countries: {rules: {gb: block}}").is_err());
}

#[tokio::test]
async fn number_type() {
    let w = World::new("number_types: {block: [premium_rate, personal_number]}");
    assert_eq!(
        outcome(&w.send("+44 909 879 0000").await),
        (Decision::Block, Some("number_type"))
    );
    assert_eq!(
        outcome(&w.send("+447012345678").await),
        (Decision::Block, Some("number_type"))
    );
    assert_eq!(outcome(&w.send("+447400123456").await), (Decision::Allow, None));
}

#[tokio::test]
async fn geo_mismatch() {
    let w = World::new("geo_mismatch: {}");
    let v = w
        .send_as(Some("+447400123456"), None, "192.0.2.1", Some("US"))
        .await;
    assert_eq!(outcome(&v), (Decision::Monitor, Some("geo_mismatch")));
    let v = w
        .send_as(Some("+447400123456"), None, "192.0.2.1", Some("GB"))
        .await;
    assert_eq!(outcome(&v), (Decision::Allow, None));
    let v = w.send_as(Some("+447400123456"), None, "192.0.2.1", None).await;
    assert_eq!(outcome(&v), (Decision::Allow, None), "no GeoIP, no signal");
    let w = World::new("geo_mismatch: {action: block}");
    let v = w
        .send_as(Some("+447400123456"), None, "192.0.2.1", Some("US"))
        .await;
    assert_eq!(outcome(&v), (Decision::Block, Some("geo_mismatch")));
}

/// A send: number, username, client IP.
type Send = (&'static str, &'static str, &'static str);

/// Each limit, alone, trips on the request past its burst, counted by its own key.
#[tokio::test]
async fn every_limit() {
    // (limit, reason, the 3rd request differs from the first two only in what the limit does not count)
    let cases: [(&str, &str, [Send; 3]); 7] = [
        (
            "per_number",
            "limit_number",
            [
                ("+447400123456", "a", "192.0.2.1"),
                ("+447400123456", "b", "192.0.2.2"),
                ("+447400123456", "c", "192.0.2.3"),
            ],
        ),
        (
            "per_username",
            "limit_username",
            [
                ("+447400000001", "Ann", "192.0.2.1"),
                ("+447400500002", "ann", "198.51.100.2"),
                ("+447400900003", "ANN", "203.0.113.3"),
            ],
        ),
        (
            "per_ip",
            "limit_ip",
            [
                ("+447400000001", "a", "192.0.2.1"),
                ("+447400500002", "b", "192.0.2.1"),
                ("+447400900003", "c", "192.0.2.1"),
            ],
        ),
        (
            "per_ip_prefix",
            "limit_ip_prefix",
            [
                ("+447400000001", "a", "192.0.2.1"),
                ("+447400500002", "b", "192.0.2.2"),
                ("+447400900003", "c", "192.0.2.3"),
            ],
        ),
        (
            "per_number_prefix",
            "limit_number_prefix",
            [
                ("+447400120001", "a", "192.0.2.1"),
                ("+447400125002", "b", "198.51.100.2"),
                ("+447400129003", "c", "203.0.113.3"),
            ],
        ),
        (
            "per_country",
            "limit_country",
            [
                ("+447400000001", "a", "192.0.2.1"),
                ("+447500500002", "b", "198.51.100.2"),
                ("+447700123003", "c", "203.0.113.3"),
            ],
        ),
        (
            "global",
            "limit_global",
            [
                ("+447400000001", "a", "192.0.2.1"),
                ("+14155550100", "b", "198.51.100.2"),
                ("+33612345678", "c", "203.0.113.3"),
            ],
        ),
    ];
    for (limit, reason, requests) in cases {
        let w = World::new(&format!("limits: {{{limit}: 2/h}}"));
        let mut got = Vec::new();
        for (phone, user, ip) in requests {
            got.push(outcome(&w.send_as(Some(phone), Some(user), ip, None).await));
        }
        assert_eq!(
            got,
            [
                (Decision::Allow, None),
                (Decision::Allow, None),
                (Decision::Block, Some(reason))
            ],
            "{limit}"
        );
        // An unrelated request still passes (for every limit but the global one).
        let v = w
            .send_as(Some("+33612345678"), Some("zed"), "2001:db8::1", None)
            .await;
        assert_eq!(v.decision == Decision::Allow, limit != "global", "{limit}");
        // GCRA: one request back every 30 minutes.
        w.clock.advance(31 * MIN);
        let (phone, user, ip) = requests[2];
        let v = w.send_as(Some(phone), Some(user), ip, None).await;
        assert_eq!(outcome(&v), (Decision::Allow, None), "{limit} after a wait");
    }
}

#[tokio::test]
async fn a_limit_says_how_long_to_wait() {
    let w = World::new("limits: {per_ip: 2/h, action: block}");
    w.send("+447400000001").await;
    w.send("+447400500002").await;
    let v = w.send("+447400900003").await;
    assert_eq!(outcome(&v), (Decision::Block, Some("limit_ip")));
    assert_eq!(v.retry_after, 30 * MIN);
}

#[tokio::test]
async fn sequential() {
    let w = World::new("sequential: {window: 10m, range_digits: 2, threshold: 3}");
    for n in ["+447400123497", "+447400123498", "+447400123499", "+447400123497"] {
        assert_eq!(outcome(&w.send(n).await), (Decision::Allow, None), "{n}");
    }
    assert_eq!(
        outcome(&w.send("+447400123401").await),
        (Decision::Block, Some("sequential"))
    );
    assert_eq!(
        outcome(&w.send("+447400123501").await),
        (Decision::Block, Some("sequential")),
        "shifted range"
    );
    assert_eq!(
        outcome(&w.send("+447400993401").await),
        (Decision::Allow, None),
        "another range"
    );
}

#[tokio::test]
async fn budget_alerts_and_caps() {
    let w = World::new(
        "budget: {prices: prices.yaml, hourly: {alert: 0.08, cap: 0.12}, daily: {alert: 0.10, cap: 1.0}}",
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        let v = w.send("+447400123456").await;
        got.push((
            v.decision,
            v.reason.map(Reason::as_str),
            v.also.clone(),
            v.charge.is_some(),
        ));
    }
    assert_eq!(got[0], (Decision::Allow, None, vec![], true));
    assert_eq!(
        got[1],
        (Decision::Monitor, Some("budget_hourly_alert"), vec![], true)
    );
    assert_eq!(
        got[2],
        (
            Decision::Monitor,
            Some("budget_hourly_alert"),
            vec![Reason::BudgetDailyAlert],
            true
        )
    );
    assert_eq!(got[3].0, Decision::Block);
    assert_eq!(got[3].1, Some("budget_hourly_cap"));
    assert!(!got[3].3, "a refused SMS keeps nothing reserved");
    // A send the upstream refused gives its price back.
    let v = World::new("budget: {prices: prices.yaml, hourly: {cap: 0.04}}");
    let first = v.send("+447400123456").await;
    v.guard
        .settle_send(&first, false, None, &v.store, v.clock.now_ms())
        .await;
    assert_eq!(outcome(&v.send("+447400123456").await), (Decision::Allow, None));
    assert_eq!(
        outcome(&v.send("+447400123456").await),
        (Decision::Block, Some("budget_hourly_cap"))
    );
    // The daily cap: unknown numbers cost the default price.
    let w = World::new("budget: {prices: prices.yaml, daily: {cap: 0.25}}");
    assert_eq!(
        w.send_as(None, Some("u"), "192.0.2.1", None).await.decision,
        Decision::Allow
    );
    assert_eq!(
        w.send_as(None, Some("u"), "192.0.2.1", None).await.decision,
        Decision::Allow
    );
    let v = w.send_as(None, Some("u"), "192.0.2.1", None).await;
    assert_eq!(outcome(&v), (Decision::Block, Some("budget_daily_cap")));
    assert!(
        guard("budget: {prices: prices.yaml, currency: EUR}")
            .unwrap_err()
            .message
            .contains("USD")
    );
}

/// A store that is always down.
#[derive(Debug)]
struct Down;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable {
        backend: "test",
        reason: "down".into(),
    })
}

#[async_trait::async_trait]
impl Store for Down {
    async fn rate_take(&self, _: &str, _: u32, _: Duration, _: u32) -> Result<RateDecision, StoreError> {
        down()
    }
    async fn rate_peek(&self, _: &str, _: u32, _: Duration) -> Result<RateDecision, StoreError> {
        down()
    }
    async fn incr(&self, _: &str, _: i64, _: Duration) -> Result<i64, StoreError> {
        down()
    }
    async fn counter(&self, _: &str) -> Result<i64, StoreError> {
        down()
    }
    async fn set_add(&self, _: &str, _: &str, _: Duration) -> Result<u64, StoreError> {
        down()
    }
    async fn set_len(&self, _: &str) -> Result<u64, StoreError> {
        down()
    }
    async fn set_contains(&self, _: &str, _: &str) -> Result<bool, StoreError> {
        down()
    }
    async fn put(&self, _: &str, _: Bytes, _: Option<Duration>) -> Result<(), StoreError> {
        down()
    }
    async fn put_if_absent(&self, _: &str, _: Bytes, _: Option<Duration>) -> Result<bool, StoreError> {
        down()
    }
    async fn get(&self, _: &str) -> Result<Option<Bytes>, StoreError> {
        down()
    }
    async fn take(&self, _: &str) -> Result<Option<Bytes>, StoreError> {
        down()
    }
    async fn delete(&self, _: &str) -> Result<bool, StoreError> {
        down()
    }
    async fn list_push(&self, _: &str, _: Bytes, _: usize, _: Option<Duration>) -> Result<usize, StoreError> {
        down()
    }
    async fn list_replace(&self, _: &str, _: &[u8], _: Bytes) -> Result<bool, StoreError> {
        down()
    }
    async fn list_range(&self, _: &str, _: usize, _: usize) -> Result<Vec<Bytes>, StoreError> {
        down()
    }
    fn kind(&self) -> &'static str {
        "test"
    }
}

#[tokio::test]
async fn store_unavailable() {
    let req = SendRequest {
        phone: Some("+447400123456"),
        default_region: None,
        username: None,
        client_ip: "192.0.2.1".parse().unwrap(),
        ip_country: None,
        labels: &[],
    };
    let open = guard("limits: {per_ip: 5/h}").unwrap();
    let v = open.check(&req, &Down, 0).await;
    assert_eq!(outcome(&v), (Decision::Monitor, Some("store_unavailable")));
    let closed = guard("limits: {per_ip: 5/h}\nstore_failure: closed").unwrap();
    let v = closed.check(&req, &Down, 0).await;
    assert_eq!(outcome(&v), (Decision::Block, Some("store_unavailable")));
}

// === modes and actions ===

#[tokio::test]
async fn audit_mode_decides_but_never_stops() {
    let w = World::new(
        "mode: audit\nnumber_types: {block: [premium_rate]}\nlimits: {per_number: 1/h}\n\
         budget: {prices: prices.yaml, hourly: {cap: 0.01}}",
    );
    let v = w.send("+44 909 879 0000").await;
    assert_eq!(outcome(&v), (Decision::Block, Some("number_type")));
    assert!(!v.enforced && !v.done());
    assert!(
        v.also.contains(&Reason::BudgetHourlyCap),
        "later checks still run: {:?}",
        v.also
    );
    assert!(v.charge.is_some(), "what audit forwards is spent");
    let v = w.send("+44 909 879 0000").await;
    assert!(v.also.contains(&Reason::LimitNumber), "{:?}", v.also);
}

#[tokio::test]
async fn fake_success_needs_a_template() {
    let w = World::new("action: fake_success\nnumber_types: {block: [premium_rate]}");
    assert_eq!(
        outcome(&w.send("+44 909 879 0000").await),
        (Decision::FakeSuccess, Some("number_type"))
    );
    let no_template = r#"
- name: bare
  operation: sms_send
  match: {path: {exact: /bare}}
"#;
    let profiles: Vec<FileProfile> = serde_saphyr::from_str(no_template).unwrap();
    let f: FileSms = serde_saphyr::from_str("limits: {action: fake_success}").unwrap();
    let e = SmsGuard::compile(&f, &profiles.iter().collect::<Vec<_>>(), &files()).unwrap_err();
    assert_eq!(e.profile, Some(0));
    assert!(e.message.contains("fake_success"), "{e}");
}

#[tokio::test]
async fn profiles_and_operations_choose_what_is_guarded() {
    let g = guard("{}").unwrap();
    assert_eq!(g.profile("send").map(|p| p.role), Some(Role::Send));
    assert_eq!(g.profile("verify").map(|p| p.role), Some(Role::Verify));
    assert!(g.profile("login").is_none(), "sign-in sends no SMS by default");
    let g = guard("operations: [sms_verify]").unwrap();
    assert!(g.profile("send").is_none() && g.profile("verify").is_some());
    let g = guard("profiles: [send]").unwrap();
    assert!(g.profile("send").is_some() && g.profile("verify").is_none());
    assert!(guard("profiles: [nope]").unwrap_err().message.contains("nope"));
    assert!(guard("mode: off").unwrap().profile("send").is_none());
}

// === scenarios ===

/// One number a minute from one range, none verified: too slow for the rate limits, caught by the
/// conversion rate; the block expires, and comes back twice as long while the pump goes on.
#[tokio::test]
async fn a_slow_pump_is_caught_by_conversion_and_blocks_escalate() {
    let w = World::new(
        "conversion: {window: 1h, min_sent: 20, threshold: 0.2, block_for: 15m, max_block: 2h}\n\
         limits: {per_number: 5/h, per_ip: 100/h}",
    );
    let mut sent = 0;
    let mut blocks: Vec<(u64, Duration)> = Vec::new();
    let mut blocked_minutes = 0;
    for minute in 0..(6 * 60) {
        // Spread over the range +44 7400 12xxxx, so sequential numbers are not the tell.
        let phone = format!("+44740012{:04}", (minute * 7919) % 10_000);
        let v = w
            .sent(&phone, None, &format!("198.51.100.{}", minute % 250))
            .await;
        match outcome(&v) {
            (Decision::Allow, None) => sent += 1,
            (Decision::Block, Some("conversion_prefix")) => {
                blocked_minutes += 1;
                if blocks
                    .last()
                    .is_none_or(|(start, d)| minute as u64 >= start + d.as_secs() / 60)
                {
                    blocks.push((minute as u64, v.retry_after));
                }
            }
            other => panic!("minute {minute}: {other:?}"),
        }
        w.clock.advance(MIN);
    }
    let durations: Vec<Duration> = blocks.iter().map(|(_, d)| *d).collect();
    assert_eq!(
        durations[..4],
        [15 * MIN, 30 * MIN, 60 * MIN, 120 * MIN],
        "{blocks:?}"
    );
    assert!(
        durations[4..].iter().all(|d| *d == 120 * MIN),
        "capped at max_block"
    );
    assert_eq!(blocks[0].0, 20, "the 21st send meets a rate of 0 over 20 sends");
    // Each block expires, and the counters start again: about 20 more sends pass before the next one.
    assert!((20 + 15 + 20..=20 + 15 + 25).contains(&blocks[1].0), "{blocks:?}");
    assert!(
        sent < 6 * 60 / 3 && blocked_minutes > 2 * 60,
        "sent {sent}, blocked {blocked_minutes}"
    );
}

/// Distinct users in many countries at normal rates, who verify their codes (by number, or by username
/// as Cognito's ConfirmSignUp does): nothing is blocked, every country converts.
#[tokio::test]
async fn ordinary_traffic_passes() {
    let w = World::new(
        "conversion: {window: 1h, min_sent: 5, country_min_sent: 20, threshold: 0.2}\n\
         sequential: {}\nnumber_types: {}\ngeo_mismatch: {}\n\
         limits: {per_number: 5/h, per_username: 5/h, per_ip: 10/h, per_ip_prefix: 30/h, per_number_prefix: 20/h}\n\
         budget: {prices: prices.yaml, hourly: {cap: 100}, daily: {cap: 1000}}",
    );
    let regions = ["GB", "US", "FR", "DE", "IT", "ES", "BR", "IN", "JP", "AU"];
    let mut x: u64 = 12345;
    let mut stopped = Vec::new();
    for i in 0..600u64 {
        let ip_country = regions[(i % 10) as usize];
        // The region's example mobile number with its last six digits drawn at random, until valid.
        let example = phonenumber::metadata::DATABASE
            .by_id(ip_country)
            .and_then(|m| {
                m.descriptors()
                    .mobile()
                    .and_then(|d| d.example())
                    .map(str::to_owned)
            })
            .unwrap();
        let code = phonenumber::metadata::DATABASE
            .by_id(ip_country)
            .unwrap()
            .country_code();
        let digits = loop {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let head = &example[..example.len() - 6];
            let candidate = format!("+{code}{head}{:06}", (x >> 20) % 1_000_000);
            if PhoneNumber::parse(&candidate, None).is_ok_and(|n| n.region() == Some(ip_country)) {
                break candidate;
            }
        };
        let user = format!("user{i}");
        let ip = format!(
            "{}.{}.{}.{}",
            11 + i % 200,
            (x >> 8) % 250,
            (x >> 16) % 250,
            1 + i % 250
        );
        let v = w.send_as(Some(&digits), Some(&user), &ip, Some(ip_country)).await;
        if v.done() || v.decision != Decision::Allow {
            stopped.push((digits.clone(), outcome(&v), v.also.clone()));
            continue;
        }
        w.guard
            .settle_send(&v, true, Some(&user), &w.store, w.clock.now_ms())
            .await;
        // Nine in ten verify; half of them by username only.
        if (i / 10) % 10 != 9 {
            let by_number = (i % 2 == 0).then_some(digits.as_str());
            w.verify(by_number, Some(&user)).await;
        }
        w.clock.advance(Duration::from_secs(6));
    }
    assert!(stopped.is_empty(), "{stopped:?}");
    let v = w
        .send_as(Some("+447400123456"), Some("last"), "192.0.2.200", Some("GB"))
        .await;
    assert!(v.country_rate.is_some_and(|r| r > 0.8), "{:?}", v.country_rate);
}

/// A verify credits the range the code went to even when it carries only the username.
#[tokio::test]
async fn verification_by_username_credits_the_range() {
    let w = World::new("conversion: {}");
    w.sent("+447400123456", Some("Carol"), "192.0.2.1").await;
    let v = w.verify(None, Some("carol")).await;
    assert_eq!((v.country, v.prefix.as_deref()), (Some("GB"), Some("+44740012")));
    let again = w.verify(None, Some("carol")).await;
    assert_eq!(again.prefix, None, "one send is credited once");
}

/// The shipped profile sets compile with the guard, fake_success templates and all.
#[test]
fn shipped_profiles_compile_with_the_guard() {
    #[derive(serde::Deserialize)]
    struct ProfileFile {
        profiles: Vec<FileProfile>,
    }
    let mut all = Vec::new();
    for yaml in [
        include_str!("../../rules/profiles/json-login.yaml"),
        include_str!("../../rules/profiles/form-login.yaml"),
        include_str!("../../rules/profiles/oauth2-token.yaml"),
        include_str!("../../rules/profiles/cognito.yaml"),
    ] {
        all.extend(serde_saphyr::from_str::<ProfileFile>(yaml).unwrap().profiles);
    }
    let f: FileSms = serde_saphyr::from_str("action: fake_success").unwrap();
    let g = SmsGuard::compile(&f, &all.iter().collect::<Vec<_>>(), &files()).unwrap();
    let role = |name: &str| g.profile(name).map(|p| p.role);
    for name in [
        "json-signup",
        "json-sms-send",
        "form-signup",
        "cognito-sign-up",
        "cognito-forgot-password",
        "cognito-resend-confirmation-code",
    ] {
        assert_eq!(role(name), Some(Role::Send), "{name}");
    }
    for name in [
        "json-sms-verify",
        "cognito-confirm-sign-up",
        "cognito-confirm-forgot-password",
    ] {
        assert_eq!(role(name), Some(Role::Verify), "{name}");
    }
    assert_eq!(role("json-login"), None);
    assert!(
        g.profile("cognito-sign-up")
            .is_some_and(|p| p.skip_without_number)
    );
}

/// A country whose codes are never verified is blocked as a whole once it has the volume, whichever
/// ranges the numbers are spread over; other countries are not.
#[tokio::test]
async fn conversion_country() {
    let w = World::new(
        "conversion: {window: 1h, min_sent: 100, country_min_sent: 10, threshold: 0.2, block_for: 15m, max_block: 1h}",
    );
    for i in 0..10u64 {
        let v = w
            .sent(
                &format!("+2348031{:06}", i * 99_991 % 1_000_000),
                None,
                "192.0.2.1",
            )
            .await;
        assert_eq!(outcome(&v), (Decision::Allow, None), "send {i}");
    }
    let v = w.send("+2348039876543").await;
    assert_eq!(outcome(&v), (Decision::Block, Some("conversion_country")));
    assert_eq!(v.retry_after, 15 * MIN);
    assert_eq!(outcome(&w.send("+447400123456").await), (Decision::Allow, None));
}

/// A send that names only the user (Cognito's ResendConfirmationCode, ForgotPassword) goes to the
/// number the user's last code went to: a range that the conversion check blocked stays blocked for it,
/// and its sends count toward the range.
#[tokio::test]
async fn a_send_without_a_number_is_a_send_to_the_users_number() {
    let w =
        World::new("conversion: {window: 1h, min_sent: 20, threshold: 0.2, block_for: 15m, max_block: 2h}");
    let number = |i: u64| format!("+44740012{:04}", i * 397 % 10_000);
    // Ten sign-ups, then a resend for each: twenty codes to the range, none verified.
    for i in 0..10 {
        let v = w.sent(&number(i), Some(&format!("user{i}")), "192.0.2.1").await;
        assert_eq!(outcome(&v), (Decision::Allow, None), "sign-up {i}");
    }
    for i in 0..10 {
        let user = format!("USER{i}");
        let v = w.send_as(None, Some(&user), "192.0.2.1", None).await;
        assert_eq!(outcome(&v), (Decision::Allow, None), "resend {i}");
        assert_eq!(
            (
                v.number.as_ref().map(PhoneNumber::digits),
                v.prefix.as_deref(),
                v.country
            ),
            (Some(&number(i)[1..]), Some("+44740012"), Some("GB")),
            "usernames compare ignoring case"
        );
        w.guard
            .settle_send(&v, true, Some(&user), &w.store, w.clock.now_ms())
            .await;
    }
    // The resends counted: the next send to the range trips the block ...
    let v = w.sent(&number(10), Some("user10"), "192.0.2.1").await;
    assert_eq!(outcome(&v), (Decision::Block, Some("conversion_prefix")));
    // ... which holds for a resend too; a user with no known number is counted by username only.
    let v = w.send_as(None, Some("user3"), "192.0.2.1", None).await;
    assert_eq!(outcome(&v), (Decision::Block, Some("conversion_prefix")));
    let v = w.send_as(None, Some("stranger"), "192.0.2.1", None).await;
    assert_eq!((outcome(&v), v.number), ((Decision::Allow, None), None));
}

/// A user's number meets the number, country, limit and budget checks on a resend; a send that the
/// upstream refused leaves no number behind; `remember_numbers: null` keeps none.
#[tokio::test]
async fn a_resend_meets_the_checks_of_the_users_number() {
    let w = World::new(
        "limits: {per_number: 2/h}\ncountries: {rules: {NG: monitor}}\n\
         budget: {prices: prices.yaml, hourly: {cap: 100}}",
    );
    w.sent("+447400123456", Some("ann"), "192.0.2.1").await;
    let v = w.send_as(None, Some("ann"), "198.51.100.1", None).await;
    assert_eq!(outcome(&v), (Decision::Allow, None));
    assert_eq!(v.charge.map(|c| c.0), Some(40_000), "GB's price, not the default");
    let v = w.send_as(None, Some("ann"), "203.0.113.1", None).await;
    assert_eq!(outcome(&v), (Decision::Block, Some("limit_number")));
    w.sent("+2348031234567", Some("bob"), "192.0.2.1").await;
    let v = w.send_as(None, Some("bob"), "192.0.2.1", None).await;
    assert_eq!(outcome(&v), (Decision::Monitor, Some("country_monitored")));
    // Refused by the upstream (a sign-up for a name that exists): the number is not the user's.
    let v = w
        .send_as(Some("+447400999999"), Some("carol"), "192.0.2.1", None)
        .await;
    w.guard
        .settle_send(&v, false, Some("carol"), &w.store, w.clock.now_ms())
        .await;
    assert_eq!(
        w.send_as(None, Some("carol"), "192.0.2.1", None).await.number,
        None
    );

    let w = World::new("remember_numbers: null\nlimits: {per_number: 1/h}");
    w.sent("+447400123456", Some("ann"), "192.0.2.1").await;
    let v = w.send_as(None, Some("ann"), "192.0.2.1", None).await;
    assert_eq!((outcome(&v), v.number), ((Decision::Allow, None), None));
}
