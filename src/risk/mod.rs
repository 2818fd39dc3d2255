//! Sign-in risk: signals, scoring, decisions by mode and app client, and the compromised-credential filter.

pub mod breach;
pub mod device;
pub mod feedback;
pub mod file;
pub mod flow;
pub mod stage;
pub mod user;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use regex::RegexSet;

use crate::events::{EventRisk, SignalHit};
use crate::geo::GeoInfo;
use crate::profile::Operation;
use crate::waf::ipset::IpSet;
use breach::BreachFilter;
use file::{
    CompromisedAction, CompromisedEvent, FileActions, FileRisk, FileThresholds, RiskAction, RiskMode, Signal,
};
use user::UserHistory;

/// User agents of scripts, HTTP libraries and headless browsers (case-insensitive).
const AUTOMATION_USER_AGENTS: &[&str] = &[
    r"(?i)^(curl|wget|httpie|python-requests|python-urllib|aiohttp|go-http-client|java/|okhttp|apache-httpclient|libwww-perl|node-fetch|axios|undici|ruby|php|guzzle|powershell|scrapy|hydra|masscan|zgrab)",
    r"(?i)(headlesschrome|phantomjs|selenium|puppeteer|playwright|python/|bot\b|crawler|spider)",
];

/// Why the risk section did not compile.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("risk.{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> RiskError {
    RiskError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// A risk level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    None,
    Low,
    Medium,
    High,
}

impl Level {
    /// The lowercase name used in events, headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
}

/// The settings one sign-in is decided by: the global ones, or an app client's override.
#[derive(Debug, Clone)]
pub struct Policy {
    pub mode: RiskMode,
    pub custom_mode: RiskMode,
    pub thresholds: FileThresholds,
    pub actions: FileActions,
    pub compromised_events: Vec<CompromisedEvent>,
    pub compromised_action: CompromisedAction,
}

impl Policy {
    /// The level of a score.
    pub fn level(&self, score: u32) -> Level {
        let t = &self.thresholds;
        if score >= t.high {
            Level::High
        } else if score >= t.medium {
            Level::Medium
        } else if score >= t.low {
            Level::Low
        } else {
            Level::None
        }
    }

    /// The action and notify flag for a level.
    pub fn action(&self, level: Level) -> (RiskAction, bool) {
        let a = match level {
            Level::None => return (RiskAction::Allow, false),
            Level::Low => self.actions.low,
            Level::Medium => self.actions.medium,
            Level::High => self.actions.high,
        };
        (a.action, a.notify)
    }

    /// Whether a compromised password blocks this operation.
    pub fn blocks_compromised(&self, op: Operation) -> bool {
        let ev = match op {
            Operation::SignIn => CompromisedEvent::SignIn,
            Operation::SignUp => CompromisedEvent::SignUp,
            Operation::PasswordChange => CompromisedEvent::PasswordChange,
            _ => return false,
        };
        self.compromised_action == CompromisedAction::Block && self.compromised_events.contains(&ev)
    }

    /// Whether the compromised-password check runs for this operation.
    pub fn checks_compromised(&self, op: Operation) -> bool {
        match op {
            Operation::SignIn => self.compromised_events.contains(&CompromisedEvent::SignIn),
            Operation::SignUp => self.compromised_events.contains(&CompromisedEvent::SignUp),
            Operation::PasswordChange => self
                .compromised_events
                .contains(&CompromisedEvent::PasswordChange),
            _ => false,
        }
    }
}

/// The compiled `risk:` section.
#[derive(Debug)]
pub struct Risk {
    pub global: Arc<Policy>,
    pub clients: HashMap<String, Arc<Policy>>,
    /// Some sign-ins are enforced (globally, for custom flows, or for an app client): then an audited
    /// sign-in teaches the shared history only what enforce would let through as it is.
    pub enforced_somewhere: bool,
    weights: [u32; Signal::ALL.len()],
    pub travel: file::FileTravel,
    pub velocity: file::FileVelocity,
    always_block: IpSet,
    never_score: IpSet,
    deny_list: IpSet,
    labels: Vec<(String, u32)>,
    automation: RegexSet,
    pub device_cookie: file::FileDeviceCookie,
    /// The device cookie key from `device_cookie.secret_env`, when set.
    pub device_key: Option<Vec<u8>>,
    pub history: file::FileHistory,
    pub breach: Option<Arc<BreachFilter>>,
    store_failure: crate::waf::file::StoreFailure,
}

/// Everything known about one sign-in attempt that signals are computed from.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    pub now_ms: u64,
    pub ip: Option<IpAddr>,
    pub geo: Option<&'a GeoInfo>,
    /// The user's history; `None` for a user never seen to succeed (novelty signals stay quiet).
    pub history: Option<&'a UserHistory>,
    /// The device id (cookie) and fingerprint of this request.
    pub device_id: Option<&'a str>,
    pub fingerprint: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub labels: &'a [String],
    pub failures_user: u64,
    pub failures_ip: u64,
    pub failures_user_ip: u64,
    pub distinct_users_per_ip: u64,
    pub distinct_ips_per_user: u64,
    pub compromised_password: bool,
}

/// The score of one attempt: level, points and the signals that made them.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub level: Level,
    pub score: u32,
    pub signals: Vec<SignalHit>,
    pub compromised: bool,
}

impl Assessment {
    /// The event's risk part.
    pub fn to_event(&self) -> EventRisk {
        EventRisk {
            level: self.level.as_str().into(),
            score: self.score,
            signals: self.signals.clone(),
            compromised_credentials: self.compromised,
        }
    }

    /// The `x-authward-risk` header value: `level=high; score=85; signals=new_device,impossible_travel`,
    /// in a string of exactly its length (so that `Bytes` can take it over without another allocation).
    pub fn header(&self) -> String {
        let mut digits = itoa::Buffer::new();
        let score = digits.format(self.score);
        let level = self.level.as_str();
        let names: usize = self.signals.iter().map(|s| s.name.len()).sum();
        let commas = self.signals.len().saturating_sub(1);
        let len = "level=; score=; signals=".len() + level.len() + score.len() + names + commas;
        let mut h = String::with_capacity(len);
        h.push_str("level=");
        h.push_str(level);
        h.push_str("; score=");
        h.push_str(score);
        h.push_str("; signals=");
        for (i, s) in self.signals.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            h.push_str(&s.name);
        }
        h
    }

    /// Whether a signal fired.
    pub fn has(&self, signal: Signal) -> bool {
        self.signals.iter().any(|s| s.name == signal.as_str())
    }
}

impl Risk {
    /// Compiles the section; `base` is the config file's directory, for the filter path.
    pub fn compile(
        f: &FileRisk,
        base: &Path,
        sources: &dyn crate::config::Sources,
    ) -> Result<Risk, RiskError> {
        let mut weights = [0u32; Signal::ALL.len()];
        for (i, s) in Signal::ALL.iter().enumerate() {
            weights[i] = f.weights.get(s).copied().unwrap_or_else(|| s.default_weight());
        }
        check_thresholds(&f.thresholds, "thresholds")?;
        let global = Policy {
            mode: f.mode,
            custom_mode: f.custom_auth_mode.unwrap_or(f.mode),
            thresholds: f.thresholds.clone(),
            actions: f.actions.clone(),
            compromised_events: f.compromised_credentials.events.clone(),
            compromised_action: f.compromised_credentials.action,
        };
        let mut clients = HashMap::new();
        for (id, o) in &f.clients {
            if let Some(t) = &o.thresholds {
                check_thresholds(t, &format!("clients.{id}.thresholds"))?;
            }
            let mode = o.mode.unwrap_or(global.mode);
            let (events, action) = match &o.compromised_credentials {
                Some(c) => (c.events.clone(), c.action),
                None => (global.compromised_events.clone(), global.compromised_action),
            };
            let p = Policy {
                mode,
                custom_mode: o.custom_auth_mode.or(o.mode).unwrap_or(global.custom_mode),
                thresholds: o.thresholds.clone().unwrap_or_else(|| global.thresholds.clone()),
                actions: o.actions.clone().unwrap_or_else(|| global.actions.clone()),
                compromised_events: events,
                compromised_action: action,
            };
            clients.insert(id.clone(), Arc::new(p));
        }
        let patterns: Vec<String> = match &f.automation_user_agents {
            Some(list) => list.iter().map(|p| p.as_str().to_string()).collect(),
            None => AUTOMATION_USER_AGENTS.iter().map(|s| (*s).to_string()).collect(),
        };
        let automation =
            RegexSet::new(&patterns).map_err(|e| invalid("automation_user_agents", e.to_string()))?;
        for (name, v) in [
            ("failures_user", &f.velocity.failures_user),
            ("failures_ip", &f.velocity.failures_ip),
            ("failures_user_ip", &f.velocity.failures_user_ip),
            ("distinct_users_per_ip", &f.velocity.distinct_users_per_ip),
            ("distinct_ips_per_user", &f.velocity.distinct_ips_per_user),
        ] {
            if v.limit == 0 || v.window.get().is_zero() {
                return Err(invalid(
                    format!("velocity.{name}"),
                    "limit and window must be above zero",
                ));
            }
            if v.block_at.is_some_and(|b| b < v.limit) {
                return Err(invalid(
                    format!("velocity.{name}.block_at"),
                    "must be at least `limit` (the block comes after the signal)",
                ));
            }
        }
        if f.impossible_travel.max_speed_kmh.is_nan() || f.impossible_travel.max_speed_kmh <= 0.0 {
            return Err(invalid("impossible_travel.max_speed_kmh", "must be above zero"));
        }
        if f.device_cookie.name.is_empty()
            || !f
                .device_cookie
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid("device_cookie.name", "use letters, digits, `_` and `-`"));
        }
        let device_key = match &f.device_cookie.secret_env {
            Some(var) => match sources.env(var) {
                Some(v) if v.len() >= 16 => Some(v.into_bytes()),
                Some(_) => {
                    return Err(invalid(
                        "device_cookie.secret_env",
                        format!("`{var}` is shorter than 16 bytes; use 32 random bytes"),
                    ));
                }
                None => {
                    return Err(invalid(
                        "device_cookie.secret_env",
                        format!("environment variable `{var}` is not set"),
                    ));
                }
            },
            None => None,
        };
        let breach = match &f.compromised_credentials.filter {
            None => None,
            Some(p) if p.as_os_str() == "builtin:demo" => Some(Arc::new(
                BreachFilter::from_bytes(breach::DEMO_FILTER)
                    .map_err(|e| invalid("compromised_credentials.filter", e.to_string()))?,
            )),
            Some(p) => {
                let full = base.join(p);
                let filter = BreachFilter::open(&full).map_err(|e| {
                    invalid(
                        "compromised_credentials.filter",
                        format!("{}: {e}", full.display()),
                    )
                })?;
                if filter.fingerprint_bits() < 16 {
                    tracing::warn!(
                        path = %full.display(),
                        "compromised-password filter of 8-bit fingerprints: one password in 256 that no breach holds \
                         matches it; rebuild it with `authward breach build` (16-bit)"
                    );
                }
                Some(Arc::new(filter))
            }
        };
        let set = |v: &[crate::config::types::Cidr]| IpSet::new(v.iter().map(|c| c.0));
        let mut deny: Vec<ipnet::IpNet> = f.deny_list.iter().map(|c| c.0).collect();
        for file in &f.deny_list_files {
            let full = base.join(file);
            let bytes = sources
                .read(&full)
                .map_err(|e| invalid("deny_list_files", format!("cannot read {}: {e}", full.display())))?;
            let text = String::from_utf8_lossy(&bytes);
            let nets = crate::waf::ipset::parse_list(&text)
                .map_err(|(line, e)| invalid("deny_list_files", format!("{}:{line}: {e}", full.display())))?;
            deny.extend(nets);
        }
        let enforced = |p: &Policy| p.mode == RiskMode::Enforce || p.custom_mode == RiskMode::Enforce;
        let enforced_somewhere = enforced(&global) || clients.values().any(|p| enforced(p));
        Ok(Risk {
            global: Arc::new(global),
            clients,
            enforced_somewhere,
            weights,
            travel: f.impossible_travel.clone(),
            velocity: f.velocity.clone(),
            always_block: set(&f.exceptions.always_block),
            never_score: set(&f.exceptions.never_score),
            deny_list: IpSet::new(deny),
            labels: f.labels.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            automation,
            device_cookie: f.device_cookie.clone(),
            device_key,
            history: f.history.clone(),
            breach,
            store_failure: f.store_failure,
        })
    }

    /// The policy for an app client (its override, or the global one).
    pub fn policy(&self, client_id: Option<&str>) -> &Arc<Policy> {
        client_id
            .and_then(|c| self.clients.get(c))
            .unwrap_or(&self.global)
    }

    /// The weight of a signal.
    pub fn weight(&self, s: Signal) -> u32 {
        self.weights[s as usize]
    }

    /// Whether this engine records the event of a request that reached the upstream: sign-ins, sign-ups,
    /// password changes and the steps of multi-step flows are its own (and with mode `off`, nobody's).
    pub fn owns(&self, m: &crate::profile::Matched) -> bool {
        m.profile.flow().is_some()
            || matches!(
                m.profile.operation(),
                Operation::SignIn | Operation::SignUp | Operation::PasswordChange
            )
    }

    /// Whether an address is in `exceptions.always_block`.
    pub fn always_blocked(&self, ip: IpAddr) -> bool {
        self.always_block.contains(ip)
    }

    /// Whether an address is in `exceptions.never_score`.
    pub fn never_scored(&self, ip: IpAddr) -> bool {
        self.never_score.contains(ip)
    }

    /// Whether the password is in the compromised-password filter.
    pub fn is_compromised(&self, password: &str) -> bool {
        self.breach
            .as_ref()
            .is_some_and(|b| b.contains_password(password))
    }

    /// Scores one attempt.
    pub fn assess(&self, policy: &Policy, facts: &Facts<'_>) -> Assessment {
        let mut hits = Vec::new();
        let mut hit = |s: Signal, detail: Option<String>| {
            let w = self.weight(s);
            if w > 0 {
                hits.push(SignalHit {
                    name: s.as_str().to_string(),
                    contribution: w,
                    detail,
                });
            }
        };
        let geo = facts.geo;
        if let Some(h) = facts.history.filter(|h| h.has_succeeded()) {
            // A valid cookie names the device; the fingerprint stands in only for clients without one.
            let device_known = match (facts.device_id, facts.fingerprint) {
                (Some(id), _) => h.knows_device(id),
                (None, Some(fp)) => h.knows_device(fp),
                (None, None) => false,
            };
            let compromised = facts.device_id.is_some_and(|d| h.device_compromised(d))
                || facts.fingerprint.is_some_and(|f| h.device_compromised(f));
            if compromised {
                hit(Signal::CompromisedDevice, None);
            } else if !device_known {
                hit(Signal::NewDevice, None);
            }
            if let Some(g) = geo {
                if let Some(c) = g.country.as_deref().filter(|c| !h.knows_country(c)) {
                    hit(Signal::NewCountry, Some(c.to_string()));
                }
                if let Some(c) = g.city.as_deref().filter(|c| !h.knows_city(c)) {
                    hit(Signal::NewCity, Some(c.to_string()));
                }
                if let Some(a) = g.asn.filter(|a| !h.knows_asn(*a)) {
                    hit(Signal::NewAsn, Some(format!("AS{a}")));
                }
                if let (Some(last), Some(lat), Some(lon)) = (&h.last, g.latitude, g.longitude) {
                    let km = user::distance_km(last.latitude, last.longitude, lat, lon);
                    let hours = facts.now_ms.saturating_sub(last.time_ms) as f64 / 3_600_000.0;
                    let speed = if hours > 0.0 { km / hours } else { f64::INFINITY };
                    if km >= self.travel.min_distance_km && speed > self.travel.max_speed_kmh {
                        let mins = facts.now_ms.saturating_sub(last.time_ms) / 60_000;
                        let speed = if speed.is_finite() {
                            format!("{speed:.0} km/h")
                        } else {
                            "instant".to_string()
                        };
                        hit(
                            Signal::ImpossibleTravel,
                            Some(format!("{km:.0} km in {mins} min: {speed}")),
                        );
                    }
                }
            }
        }
        if let Some(g) = geo {
            let a = &g.anonymous;
            if a.tor_exit {
                hit(Signal::TorExit, None);
            }
            if a.public_proxy {
                hit(Signal::PublicProxy, None);
            }
            if a.hosting {
                hit(Signal::HostingProvider, None);
            }
            if a.anonymous || a.vpn || a.residential_proxy {
                hit(Signal::AnonymousIp, None);
            }
        }
        if facts.ip.is_some_and(|ip| self.deny_list.contains(ip)) {
            hit(Signal::DenyList, None);
        }
        let v = &self.velocity;
        let counted = |n: u64, l: &file::FileWindowLimit| (n >= u64::from(l.limit)).then(|| n.to_string());
        if let Some(d) = counted(facts.failures_user, &v.failures_user) {
            hit(Signal::FailuresUser, Some(d));
        }
        if let Some(d) = counted(facts.failures_ip, &v.failures_ip) {
            hit(Signal::FailuresIp, Some(d));
        }
        if let Some(d) = counted(facts.failures_user_ip, &v.failures_user_ip) {
            hit(Signal::FailuresUserIp, Some(d));
        }
        if let Some(d) = counted(facts.distinct_users_per_ip, &v.distinct_users_per_ip) {
            hit(Signal::CredentialStuffing, Some(d));
        }
        if let Some(d) = counted(facts.distinct_ips_per_user, &v.distinct_ips_per_user) {
            hit(Signal::DistributedBruteForce, Some(d));
        }
        if facts.compromised_password {
            hit(Signal::CompromisedPassword, None);
        }
        match facts.user_agent {
            None => hit(Signal::AutomationUserAgent, Some("no user agent".into())),
            Some(ua) if ua.trim().is_empty() || self.automation.is_match(ua) => {
                hit(Signal::AutomationUserAgent, None)
            }
            Some(_) => {}
        }
        for (label, w) in &self.labels {
            if *w > 0 && facts.labels.iter().any(|l| l == label) {
                hits.push(SignalHit {
                    name: Signal::WafLabel.as_str().to_string(),
                    contribution: *w,
                    detail: Some(label.clone()),
                });
            }
        }
        let score = hits.iter().map(|h| h.contribution).sum::<u32>().min(100);
        Assessment {
            level: policy.level(score),
            score,
            signals: hits,
            compromised: facts.compromised_password,
        }
    }
}

fn check_thresholds(t: &FileThresholds, path: &str) -> Result<(), RiskError> {
    if t.low == 0 || t.low > t.medium || t.medium > t.high {
        return Err(invalid(path, "need 0 < low <= medium <= high"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EmbeddedSources;
    use crate::geo::Anonymity;
    use user::Place;

    fn risk(yaml: &str) -> Risk {
        let f: FileRisk = crate::config::parse_str(Path::new("risk.yaml"), yaml).unwrap();
        Risk::compile(&f, Path::new(""), &EmbeddedSources::default()).unwrap()
    }

    const MIN: u64 = 60_000;
    const T0: u64 = 1_700_000_000_000;

    fn boxford() -> GeoInfo {
        GeoInfo {
            country: Some("GB".into()),
            city: Some("Boxford".into()),
            latitude: Some(51.75),
            longitude: Some(-1.25),
            asn: Some(5089),
            ..Default::default()
        }
    }

    fn milton() -> GeoInfo {
        GeoInfo {
            country: Some("US".into()),
            city: Some("Milton".into()),
            latitude: Some(47.2513),
            longitude: Some(-122.3149),
            asn: Some(209),
            ..Default::default()
        }
    }

    fn known_in(geo: &GeoInfo, device: &str, at: u64) -> UserHistory {
        let mut h = UserHistory::default();
        let place = Place {
            country: geo.country.as_deref(),
            city: geo.city.as_deref(),
            asn: geo.asn,
            latitude: geo.latitude,
            longitude: geo.longitude,
        };
        h.record_success(&[device], &place, at, 20);
        h
    }

    fn names(a: &Assessment) -> Vec<&str> {
        a.signals.iter().map(|s| s.name.as_str()).collect()
    }

    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0";

    #[test]
    fn the_risk_header_lists_the_signals() {
        let hit = |name: &str| SignalHit {
            name: name.into(),
            contribution: 10,
            detail: None,
        };
        let mut a = Assessment {
            level: Level::High,
            score: 85,
            signals: Vec::new(),
            compromised: false,
        };
        assert_eq!(a.header(), "level=high; score=85; signals=");
        for (score, text) in [(0, "0"), (7, "7"), (100, "100"), (u32::MAX, "4294967295")] {
            let b = Assessment {
                score,
                level: Level::None,
                ..a.clone()
            };
            let h = b.header();
            assert_eq!(h, format!("level=none; score={text}; signals="));
            assert_eq!(h.capacity(), h.len(), "{h}");
        }
        a.signals.push(hit("new_device"));
        assert_eq!(a.header(), "level=high; score=85; signals=new_device");
        a.signals.push(hit("impossible_travel"));
        assert_eq!(
            a.header(),
            "level=high; score=85; signals=new_device,impossible_travel"
        );
        assert_eq!(a.header().capacity(), a.header().len());
    }

    #[test]
    fn the_same_place_and_device_is_no_risk() {
        let r = risk("mode: enforce");
        let (geo, h) = (boxford(), known_in(&boxford(), "dev1", T0));
        let a = r.assess(
            &r.global,
            &Facts {
                now_ms: T0 + 60 * MIN,
                geo: Some(&geo),
                history: Some(&h),
                device_id: Some("dev1"),
                user_agent: Some(UA),
                ..Default::default()
            },
        );
        assert_eq!((a.level, a.score), (Level::None, 0), "{:?}", a.signals);
    }

    #[test]
    fn boxford_then_milton_ten_minutes_later_is_impossible_travel_and_high() {
        let r = risk("mode: enforce");
        let (geo, h) = (milton(), known_in(&boxford(), "dev1", T0));
        let a = r.assess(
            &r.global,
            &Facts {
                now_ms: T0 + 10 * MIN,
                geo: Some(&geo),
                history: Some(&h),
                device_id: Some("dev1"),
                user_agent: Some(UA),
                ..Default::default()
            },
        );
        assert_eq!(
            names(&a),
            ["new_country", "new_city", "new_asn", "impossible_travel"]
        );
        assert_eq!(a.level, Level::High);
        let travel = a.signals.iter().find(|s| s.name == "impossible_travel").unwrap();
        assert!(
            travel.detail.as_deref().unwrap().contains("km in 10 min"),
            "{travel:?}"
        );
        assert_eq!(r.global.action(a.level), (RiskAction::Block, true));
        // A day later the same trip is possible: only novelty remains.
        let a = r.assess(
            &r.global,
            &Facts {
                now_ms: T0 + 24 * 60 * MIN,
                geo: Some(&geo),
                history: Some(&h),
                device_id: Some("dev1"),
                user_agent: Some(UA),
                ..Default::default()
            },
        );
        assert!(!a.has(file::Signal::ImpossibleTravel));
        assert_eq!(a.level, Level::Medium);
    }

    #[test]
    fn novelty_needs_history_and_a_new_device_raises_the_level() {
        let r = risk("mode: enforce");
        let geo = boxford();
        let first = r.assess(
            &r.global,
            &Facts {
                now_ms: T0,
                geo: Some(&geo),
                history: None,
                device_id: Some("dev1"),
                user_agent: Some(UA),
                ..Default::default()
            },
        );
        assert_eq!(first.level, Level::None);
        let h = known_in(&geo, "dev1", T0);
        let new_device = r.assess(
            &r.global,
            &Facts {
                now_ms: T0 + MIN,
                geo: Some(&geo),
                history: Some(&h),
                device_id: Some("dev2"),
                fingerprint: Some("fp:x"),
                user_agent: Some(UA),
                ..Default::default()
            },
        );
        assert_eq!(names(&new_device), ["new_device"]);
        assert_eq!(new_device.level, Level::Low);
        // The fingerprint stands in for a client that keeps no cookie.
        let h = known_in(&geo, "fp:x", T0);
        let by_fp = r.assess(
            &r.global,
            &Facts {
                now_ms: T0 + MIN,
                geo: Some(&geo),
                history: Some(&h),
                fingerprint: Some("fp:x"),
                user_agent: Some(UA),
                ..Default::default()
            },
        );
        assert_eq!(by_fp.level, Level::None);
    }

    #[test]
    fn anonymous_networks_velocity_breach_automation_labels_and_deny_lists() {
        let r = risk(
            "mode: enforce\ndeny_list: [203.0.113.0/24]\nlabels: {'awswaf:bot': 15}\nweights: {hosting_provider: 0}",
        );
        let geo = GeoInfo {
            anonymous: Anonymity {
                anonymous: true,
                tor_exit: true,
                hosting: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let labels = vec!["awswaf:bot".to_string()];
        let a = r.assess(
            &r.global,
            &Facts {
                now_ms: T0,
                ip: Some("203.0.113.9".parse().unwrap()),
                geo: Some(&geo),
                user_agent: Some("python-requests/2.31"),
                labels: &labels,
                failures_user: 10,
                failures_ip: 19,
                failures_user_ip: 5,
                distinct_users_per_ip: 5,
                distinct_ips_per_user: 10,
                compromised_password: true,
                ..Default::default()
            },
        );
        assert_eq!(
            names(&a),
            [
                "tor_exit",
                "anonymous_ip",
                "deny_list",
                "failures_user",
                "failures_user_ip",
                "credential_stuffing",
                "distributed_brute_force",
                "compromised_password",
                "automation_user_agent",
                "waf_label"
            ]
        );
        assert_eq!((a.score, a.level), (100, Level::High));
        assert!(a.compromised);
        let none = r.assess(&r.global, &Facts::default());
        assert_eq!(
            names(&none),
            ["automation_user_agent"],
            "a missing user agent is automation"
        );
    }

    #[test]
    fn client_overrides_win_over_global_settings() {
        let r = risk(
            "mode: audit\nactions: {high: {action: block}}\nclients:\n  mobile:\n    mode: enforce\n    actions:\n      low: {action: allow}\n      medium: {action: require_mfa}\n      high: {action: require_mfa, notify: true}\n",
        );
        assert_eq!(r.policy(None).mode, RiskMode::Audit);
        assert_eq!(r.policy(Some("web")).mode, RiskMode::Audit);
        let m = r.policy(Some("mobile"));
        assert_eq!(m.mode, RiskMode::Enforce);
        assert_eq!(m.action(Level::High), (RiskAction::RequireMfa, true));
        assert_eq!(r.global.action(Level::High).0, RiskAction::Block);
        assert!(r.global.blocks_compromised(Operation::SignUp));
    }

    #[test]
    fn deny_list_files_add_to_the_inline_list() {
        let mut sources = EmbeddedSources::default();
        sources.files.insert(
            std::path::PathBuf::from("feeds/bad.txt"),
            b"# a feed\n198.51.100.0/24\n2001:db8::1 # one host\n".to_vec(),
        );
        let f: FileRisk = crate::config::parse_str(
            Path::new("r.yaml"),
            "deny_list: [203.0.113.9]\ndeny_list_files: [feeds/bad.txt]",
        )
        .unwrap();
        let r = Risk::compile(&f, Path::new(""), &sources).unwrap();
        let hits = |ip: &str| {
            r.assess(
                &r.global,
                &Facts {
                    ip: Some(ip.parse().unwrap()),
                    user_agent: Some(UA),
                    ..Default::default()
                },
            )
            .has(file::Signal::DenyList)
        };
        assert!(hits("203.0.113.9") && hits("198.51.100.77") && hits("2001:db8::1"));
        assert!(!hits("192.0.2.1"));
        sources.files.insert(
            std::path::PathBuf::from("feeds/bad.txt"),
            b"198.51.100.0/33\n".to_vec(),
        );
        let e = Risk::compile(&f, Path::new(""), &sources).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("risk.deny_list_files: feeds/bad.txt:1: "),
            "{e}"
        );
    }

    #[test]
    fn bad_settings_name_their_key() {
        let f: FileRisk =
            crate::config::parse_str(Path::new("r.yaml"), "thresholds: {low: 50, medium: 40, high: 90}")
                .unwrap();
        let e = Risk::compile(&f, Path::new(""), &EmbeddedSources::default()).unwrap_err();
        assert_eq!(e.to_string(), "risk.thresholds: need 0 < low <= medium <= high");
        let f: FileRisk =
            crate::config::parse_str(Path::new("r.yaml"), "device_cookie: {secret_env: NOPE_NOT_SET}")
                .unwrap();
        let e = Risk::compile(&f, Path::new(""), &EmbeddedSources::default()).unwrap_err();
        assert!(e.to_string().contains("NOPE_NOT_SET"), "{e}");
        let f: FileRisk = crate::config::parse_str(
            Path::new("r.yaml"),
            "velocity: {failures_user_ip: {limit: 5, window: 1m, block_at: 2}}",
        )
        .unwrap();
        assert!(Risk::compile(&f, Path::new(""), &EmbeddedSources::default()).is_err());
    }
}
