//! SMS pumping and toll-fraud protection for the operations that make the backend send an SMS.
//!
//! Profiles mark the operations that send a code (`sms.role: send`) and the one that checks it (`verify`).
//! For a send, [`SmsGuard::check`] runs the checks in order, from the cheapest: the number (parsed and
//! classified with libphonenumber's metadata, [`number`]), blocked prefixes, web-ACL labels, country
//! rules, number types, the client IP's country, a conversion-rate block of the range or country
//! ([`conversion`]), distinct numbers per small range and the rate limits ([`limits`]), and last the
//! spend budget ([`budget`]), which reserves the SMS's price. A tripped check acts as configured: block
//! (429), fake_success (the profile's canned answer, [`template`]) or monitor; in `audit` mode nothing
//! acts but everything is recorded. Every check has a [`Reason`] code for events, metrics and logs.
//! All state lives in the [`Store`] under `sms:` keys, each with a TTL. The stages are in [`stage`].

pub mod budget;
pub mod conversion;
pub mod file;
pub mod limits;
pub mod number;
pub mod prefixes;
pub mod stage;
pub mod template;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::profile::Operation;
use crate::profile::file::FileProfile;
use crate::store::{Store, StoreError};
use budget::{Budget, Period, PriceTable, Window};
use conversion::{Conversion, Scope};
use file::{FileAction, FileCheckAction, FileCountryRule, FileMode, FileSms, FileSmsRole, FileWithoutNumber};
use limits::{Keys, Limits, Sequential};
use number::{NumberType, PhoneNumber, Region};
use prefixes::PrefixList;
use template::FakeSuccess;

/// How long a client is told to wait after a refusal that waiting does not lift (a blocked country,
/// prefix or number type): an hour.
const STATIC_RETRY: Duration = Duration::from_secs(3600);

/// Why a check tripped: the code in events, metrics (`reason`) and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidNumber,
    BlockedPrefix,
    WafLabel,
    CountryBlocked,
    CountryMonitored,
    NumberType,
    GeoMismatch,
    ConversionPrefix,
    ConversionCountry,
    Sequential,
    LimitNumber,
    LimitUsername,
    LimitIp,
    LimitIpPrefix,
    LimitNumberPrefix,
    LimitCountry,
    LimitGlobal,
    BudgetHourlyAlert,
    BudgetDailyAlert,
    BudgetHourlyCap,
    BudgetDailyCap,
    StoreUnavailable,
}

impl Reason {
    /// The snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidNumber => "invalid_number",
            Reason::BlockedPrefix => "blocked_prefix",
            Reason::WafLabel => "waf_label",
            Reason::CountryBlocked => "country_blocked",
            Reason::CountryMonitored => "country_monitored",
            Reason::NumberType => "number_type",
            Reason::GeoMismatch => "geo_mismatch",
            Reason::ConversionPrefix => "conversion_prefix",
            Reason::ConversionCountry => "conversion_country",
            Reason::Sequential => "sequential",
            Reason::LimitNumber => "limit_number",
            Reason::LimitUsername => "limit_username",
            Reason::LimitIp => "limit_ip",
            Reason::LimitIpPrefix => "limit_ip_prefix",
            Reason::LimitNumberPrefix => "limit_number_prefix",
            Reason::LimitCountry => "limit_country",
            Reason::LimitGlobal => "limit_global",
            Reason::BudgetHourlyAlert => "budget_hourly_alert",
            Reason::BudgetDailyAlert => "budget_daily_alert",
            Reason::BudgetHourlyCap => "budget_hourly_cap",
            Reason::BudgetDailyCap => "budget_daily_cap",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }
}

/// What a tripped check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    FakeSuccess,
    Monitor,
}

impl Action {
    fn of(check: Option<FileCheckAction>, default: Action) -> Action {
        match check {
            None => default,
            Some(FileCheckAction::Block) => Action::Block,
            Some(FileCheckAction::FakeSuccess) => Action::FakeSuccess,
            Some(FileCheckAction::Monitor) => Action::Monitor,
        }
    }
}

/// What the checks decided for one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No check tripped.
    Allow,
    /// Only monitoring checks tripped: the request goes on.
    Monitor,
    /// Refused: 429 (or 400 for an invalid number).
    Block,
    /// Answered with the profile's fake success.
    FakeSuccess,
}

impl Decision {
    /// The label in metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Monitor => "monitor",
            Decision::Block => "block",
            Decision::FakeSuccess => "fake_success",
        }
    }

    /// Whether the request is stopped here (in enforce mode).
    pub fn stops(self) -> bool {
        matches!(self, Decision::Block | Decision::FakeSuccess)
    }
}

/// A profile's part in SMS protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The backend sends a code.
    Send,
    /// The backend checks a code.
    Verify,
}

/// A guarded profile's settings.
#[derive(Debug)]
pub struct ProfileSms {
    pub role: Role,
    pub default_region: Option<Region>,
    /// Sends without a number in the request are not guarded.
    pub skip_without_number: bool,
    pub fake_success: Option<FakeSuccess>,
}

/// Why the `sms` section or a profile's `sms` block does not compile; `profile` is the index of the
/// offending profile, `None` for the `sms` section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SmsError {
    pub profile: Option<usize>,
    pub message: String,
}

fn section_error(message: impl Into<String>) -> SmsError {
    SmsError {
        profile: None,
        message: message.into(),
    }
}

/// One SMS send as the checks see it.
#[derive(Debug, Clone, Copy)]
pub struct SendRequest<'a> {
    /// The number as the client sent it.
    pub phone: Option<&'a str>,
    pub default_region: Option<&'a Region>,
    pub username: Option<&'a str>,
    pub client_ip: IpAddr,
    /// The client IP's country (GeoIP), when known.
    pub ip_country: Option<&'a str>,
    /// The labels the web ACL added.
    pub labels: &'a [String],
}

/// The outcome of the checks for one request, kept on the exchange until the answer is known.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub role: Role,
    pub decision: Decision,
    /// The reason of the decision (for `monitor`, the first monitoring check).
    pub reason: Option<Reason>,
    /// Every other check that tripped: monitoring checks and, in audit mode, later checks.
    pub also: Vec<Reason>,
    /// For a block: how long the client should wait.
    pub retry_after: Duration,
    /// Whether the decision acts (enforce mode).
    pub enforced: bool,
    pub number: Option<PhoneNumber>,
    /// The number's country (`GB`, `001`).
    pub country: Option<&'static str>,
    /// The number's range (`+44791112`).
    pub prefix: Option<String>,
    /// The price reserved in the budget (millionths) and when, refunded if the SMS is not sent.
    pub charge: Option<(i64, u64)>,
    /// The estimated spend per budget window after this request, for the gauge.
    pub spend: Vec<(Period, f64)>,
    /// The destination country's conversion rate, for the gauge.
    pub country_rate: Option<f64>,
}

impl Verdict {
    fn new(role: Role, enforced: bool) -> Verdict {
        Verdict {
            role,
            decision: Decision::Allow,
            reason: None,
            also: Vec::new(),
            retry_after: Duration::ZERO,
            enforced,
            number: None,
            country: None,
            prefix: None,
            charge: None,
            spend: Vec::new(),
            country_rate: None,
        }
    }

    /// Records a tripped check.
    fn trip(&mut self, reason: Reason, action: Action, retry_after: Duration) {
        let decision = match action {
            Action::Monitor => Decision::Monitor,
            Action::Block => Decision::Block,
            Action::FakeSuccess => Decision::FakeSuccess,
        };
        match (self.decision, decision) {
            (Decision::Allow, d) => {
                self.decision = d;
                self.reason = Some(reason);
                self.retry_after = retry_after;
            }
            (Decision::Monitor, d) if d.stops() => {
                self.also.extend(self.reason.take());
                self.decision = d;
                self.reason = Some(reason);
                self.retry_after = retry_after;
            }
            _ => self.also.push(reason),
        }
    }

    /// Whether evaluation can stop: a decision that acts has been taken.
    fn done(&self) -> bool {
        self.enforced && self.decision.stops()
    }

    /// The decision's label in metrics and logs: `shadow_<decision>` for one that audit mode did not act
    /// on.
    pub fn label(&self) -> &'static str {
        match (self.decision, self.enforced) {
            (Decision::Block, false) => "shadow_block",
            (Decision::FakeSuccess, false) => "shadow_fake_success",
            (d, _) => d.as_str(),
        }
    }
}

/// The compiled `sms` section.
#[derive(Debug, Default)]
pub struct SmsGuard {
    mode: Option<FileMode>,
    profiles: HashMap<String, ProfileSms>,
    invalid_reject: bool,
    trailing_digits: usize,
    /// How long the number a user's code went to is kept, for sends that name only the user.
    remember_numbers: Option<Duration>,
    prefixes: PrefixList,
    prefix_action: Option<Action>,
    labels: Vec<String>,
    label_action: Option<Action>,
    countries: HashMap<String, FileCountryRule>,
    default_country: FileCountryRule,
    country_action: Option<Action>,
    types: HashSet<NumberType>,
    type_action: Option<Action>,
    geo_mismatch: Option<Action>,
    conversion: Option<(Conversion, Action)>,
    sequential: Option<(Sequential, Action)>,
    limits: Limits,
    limit_action: Option<Action>,
    budget: Option<(Budget, Action)>,
    currency: String,
    fail_closed: bool,
}

/// A profile given to [`SmsGuard::compile`]: its YAML form.
pub type ProfileEntry<'a> = &'a FileProfile;

/// Reads a file that the `sms` section names (relative to the config file).
pub trait ReadFile {
    /// The file's text, or why it cannot be read.
    fn read_text(&self, path: &std::path::Path) -> Result<String, String>;
}

impl SmsGuard {
    /// A guard that does nothing (no `sms` section).
    pub fn off() -> SmsGuard {
        SmsGuard::default()
    }

    /// Compiles the section and the profiles' `sms` blocks; `read` reads prefix lists and the price table.
    pub fn compile(
        f: &FileSms,
        profiles: &[ProfileEntry<'_>],
        read: &dyn ReadFile,
    ) -> Result<SmsGuard, SmsError> {
        if f.mode == FileMode::Off {
            return Ok(SmsGuard::off());
        }
        number::warm_up();
        let default = match f.action {
            FileAction::Block => Action::Block,
            FileAction::FakeSuccess => Action::FakeSuccess,
        };
        let mut g = SmsGuard {
            mode: Some(f.mode),
            invalid_reject: f.invalid_number == file::FileInvalidNumber::Reject,
            trailing_digits: usize::from(f.prefix_trailing_digits),
            remember_numbers: f.remember_numbers.map(|d| d.get()).filter(|d| !d.is_zero()),
            default_country: f.countries.default,
            country_action: Some(Action::of(f.countries.action, default)),
            prefix_action: Some(Action::of(f.blocked_prefixes.action, default)),
            types: f.number_types.block.iter().copied().collect(),
            type_action: Some(Action::of(f.number_types.action, default)),
            geo_mismatch: f
                .geo_mismatch
                .as_ref()
                .map(|m| Action::of(Some(m.action), default)),
            limit_action: Some(Action::of(f.limits.action, default)),
            fail_closed: f.store_failure == crate::waf::file::StoreFailure::Closed,
            ..SmsGuard::default()
        };
        if !(1..=12).contains(&f.prefix_trailing_digits) {
            return Err(section_error(
                "sms.prefix_trailing_digits: must be between 1 and 12",
            ));
        }
        for (code, rule) in &f.countries.rules {
            if !is_country_code(code) || (code != "001" && Region::new(code).is_none()) {
                return Err(section_error(format!(
                    "sms.countries.rules.{code}: not a country code with phone numbers (GB, US, or 001)"
                )));
            }
            g.countries.insert(code.clone(), *rule);
        }
        for (i, path) in f.blocked_prefixes.lists.iter().enumerate() {
            let text = read
                .read_text(path)
                .map_err(|e| section_error(format!("sms.blocked_prefixes.lists[{i}]: {e}")))?;
            g.prefixes
                .add(&text)
                .map_err(|e| section_error(format!("{}: {e}", path.display())))?;
        }
        if let Some(l) = &f.labels {
            if l.refuse.iter().any(|s| s.trim().is_empty()) {
                return Err(section_error("sms.labels.refuse: a label cannot be empty"));
            }
            g.labels = l.refuse.clone();
            g.label_action = Some(Action::of(l.action, default));
        }
        let l = &f.limits;
        g.limits = Limits {
            per_number: l.per_number,
            per_username: l.per_username,
            per_ip: l.per_ip,
            per_ip_prefix: l.per_ip_prefix,
            per_number_prefix: l.per_number_prefix,
            per_country: l.per_country,
            global: l.global,
        };
        if let Some(s) = &f.sequential {
            if !(1..=6).contains(&s.range_digits) || s.threshold == 0 || s.window.get().is_zero() {
                return Err(section_error(
                    "sms.sequential: range_digits must be 1 to 6, threshold at least 1, window longer than 0",
                ));
            }
            let seq = Sequential {
                window: s.window.get(),
                range_digits: u32::from(s.range_digits),
                threshold: u64::from(s.threshold),
            };
            g.sequential = Some((seq, Action::of(s.action, default)));
        }
        g.compile_profiles(f, profiles)?;
        if let Some(c) = &f.conversion {
            if !(0.0..=1.0).contains(&c.threshold) || c.min_sent == 0 || c.window.get().is_zero() {
                return Err(section_error(
                    "sms.conversion: threshold must be between 0 and 1, min_sent at least 1, window longer than 0",
                ));
            }
            if c.block_for.get().is_zero() || c.max_block < c.block_for {
                return Err(section_error(
                    "sms.conversion: block_for must be longer than 0 and max_block at least block_for",
                ));
            }
            // Without a verify operation every rate would read 0: the check needs one to mean anything.
            if g.profiles.values().any(|p| p.role == Role::Verify) {
                let conv = Conversion {
                    window: c.window.get(),
                    min_sent: u64::from(c.min_sent),
                    country_min_sent: c.country_min_sent.map(u64::from),
                    threshold: c.threshold,
                    block_for: c.block_for.get(),
                    max_block: c.max_block.get(),
                };
                g.conversion = Some((conv, Action::of(c.action, default)));
            }
        }
        if let Some(b) = &f.budget {
            let text = read
                .read_text(&b.prices)
                .map_err(|e| section_error(format!("sms.budget.prices: {e}")))?;
            let prices = PriceTable::parse(&text)
                .map_err(|e| section_error(format!("{}: {e}", b.prices.display())))?;
            if prices.currency() != b.currency {
                return Err(section_error(format!(
                    "sms.budget.currency: {} but the price table {} is in {}",
                    b.currency,
                    b.prices.display(),
                    prices.currency()
                )));
            }
            let mut windows = Vec::new();
            for (period, w, name) in [
                (Period::Hour, &b.hourly, "sms.budget.hourly"),
                (Period::Day, &b.daily, "sms.budget.daily"),
            ] {
                if let Some(w) = w {
                    windows.push((
                        period,
                        Window::new(w.alert, w.cap, name).map_err(|e| section_error(e.to_string()))?,
                    ));
                }
            }
            g.currency = b.currency.clone();
            g.budget = Some((Budget { prices, windows }, Action::of(b.action, default)));
        }
        let fakes = [
            g.prefix_action,
            g.label_action,
            g.country_action,
            g.type_action,
            g.geo_mismatch,
            g.limit_action,
            g.sequential.as_ref().map(|s| s.1),
            g.conversion.as_ref().map(|c| c.1),
            g.budget.as_ref().map(|b| b.1),
        ]
        .contains(&Some(Action::FakeSuccess));
        if fakes {
            if let Some((i, name)) = profiles.iter().enumerate().find_map(|(i, p)| {
                let sms = g.profiles.get(&p.name)?;
                (sms.role == Role::Send && sms.fake_success.is_none()).then_some((i, &p.name))
            }) {
                return Err(SmsError {
                    profile: Some(i),
                    message: format!(
                        "profile {name}: a check answers with fake_success, so this sending profile needs `sms.fake_success`"
                    ),
                });
            }
        }
        Ok(g)
    }

    fn compile_profiles(&mut self, f: &FileSms, profiles: &[ProfileEntry<'_>]) -> Result<(), SmsError> {
        if let Some(names) = &f.profiles {
            if let Some(missing) = names.iter().find(|n| !profiles.iter().any(|p| &&p.name == n)) {
                return Err(section_error(format!(
                    "sms.profiles: no profile named `{missing}`"
                )));
            }
        }
        for (i, p) in profiles.iter().enumerate() {
            let err = |message: String| SmsError {
                profile: Some(i),
                message: format!("profiles[{i}].sms: {message}"),
            };
            let sms = p.sms.clone().unwrap_or_default();
            let role = match (sms.role, p.operation) {
                (Some(FileSmsRole::Send), _) | (None, Operation::SmsSend) => Role::Send,
                (Some(FileSmsRole::Verify), _) | (None, Operation::SmsVerify) => Role::Verify,
                _ => continue,
            };
            let selected = f.operations.as_ref().is_none_or(|ops| ops.contains(&p.operation))
                && f.profiles.as_ref().is_none_or(|names| names.contains(&p.name));
            if !selected {
                continue;
            }
            let default_region = sms
                .default_region
                .as_deref()
                .map(|r| {
                    Region::new(r).ok_or_else(|| {
                        err(format!(
                            "default_region: `{r}` is not a region with phone numbers"
                        ))
                    })
                })
                .transpose()?;
            let fake_success = sms
                .fake_success
                .as_ref()
                .map(FakeSuccess::compile)
                .transpose()
                .map_err(err)?;
            self.profiles.insert(
                p.name.clone(),
                ProfileSms {
                    role,
                    default_region,
                    skip_without_number: sms.without_number == FileWithoutNumber::Skip,
                    fake_success,
                },
            );
        }
        Ok(())
    }

    /// Whether the guard acts or records anything.
    pub fn is_on(&self) -> bool {
        self.mode.is_some_and(|m| m != FileMode::Off)
    }

    /// `audit` or `enforce`.
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            Some(FileMode::Audit) => "audit",
            Some(FileMode::Enforce) => "enforce",
            _ => "off",
        }
    }

    /// The settings of a guarded profile.
    pub fn profile(&self, name: &str) -> Option<&ProfileSms> {
        if !self.is_on() {
            return None;
        }
        self.profiles.get(name)
    }

    /// The budget's currency (empty without a budget).
    pub fn currency(&self) -> &str {
        &self.currency
    }

    fn store_failed(&self, v: &mut Verdict, e: &StoreError) {
        tracing::warn!(error = %e, fail_closed = self.fail_closed, "sms guard: store unavailable");
        let action = if self.fail_closed {
            Action::Block
        } else {
            Action::Monitor
        };
        v.trip(Reason::StoreUnavailable, action, Duration::from_secs(60));
    }

    /// Runs the checks for one send, cheapest first; in enforce mode the first check that acts ends them.
    pub async fn check(&self, req: &SendRequest<'_>, store: &dyn Store, now_ms: u64) -> Verdict {
        let enforced = self.mode == Some(FileMode::Enforce);
        let mut v = Verdict::new(Role::Send, enforced);
        let invalid = if self.invalid_reject {
            Action::Block
        } else {
            Action::Monitor
        };
        match (req.phone, req.username.filter(|u| !u.is_empty())) {
            (Some(raw), _) => match PhoneNumber::parse(raw, req.default_region) {
                Ok(n) => v.number = Some(n),
                Err(_) => v.trip(Reason::InvalidNumber, invalid, Duration::ZERO),
            },
            // A send that names only the user goes to the user's number: checked as a send to it.
            (None, Some(user)) if self.remember_numbers.is_some() => match known_number(store, user).await {
                Ok(n) => v.number = n,
                Err(e) => self.store_failed(&mut v, &e),
            },
            (None, _) => {}
        }
        if v.done() {
            return v;
        }
        if let Some(n) = v.number.clone() {
            if let (Some(action), Some(_)) = (self.prefix_action, self.prefixes.blocked(n.digits())) {
                v.trip(Reason::BlockedPrefix, action, STATIC_RETRY);
            }
            if !n.is_valid() {
                v.trip(Reason::InvalidNumber, invalid, Duration::ZERO);
            }
            v.country = n.region();
            v.prefix = Some(n.prefix(self.trailing_digits));
        }
        if v.done() {
            return v;
        }
        if let Some(action) = self.label_action {
            let hit = req.labels.iter().any(|l| {
                self.labels
                    .iter()
                    .any(|x| l == x || (x.ends_with(':') && l.starts_with(x.as_str())))
            });
            if hit {
                v.trip(Reason::WafLabel, action, STATIC_RETRY);
            }
        }
        if let Some(country) = v.country {
            match self.countries.get(country).unwrap_or(&self.default_country) {
                FileCountryRule::Allow => {}
                FileCountryRule::Block => v.trip(
                    Reason::CountryBlocked,
                    self.country_action.unwrap_or(Action::Block),
                    STATIC_RETRY,
                ),
                FileCountryRule::Monitor => v.trip(Reason::CountryMonitored, Action::Monitor, Duration::ZERO),
            }
        }
        if let (Some(kind), Some(action)) = (v.number.as_ref().and_then(PhoneNumber::kind), self.type_action)
        {
            if self.types.contains(&kind) {
                v.trip(Reason::NumberType, action, STATIC_RETRY);
            }
        }
        if let (Some(action), Some(number_country), Some(ip_country)) =
            (self.geo_mismatch, v.country, req.ip_country)
        {
            if number_country != "001" && !number_country.eq_ignore_ascii_case(ip_country) {
                v.trip(Reason::GeoMismatch, action, STATIC_RETRY);
            }
        }
        if v.done() {
            return v;
        }
        if let Some((conv, action)) = &self.conversion {
            match conv.check(store, v.prefix.as_deref(), v.country, now_ms).await {
                Ok(f) => {
                    v.country_rate = f.country_rate;
                    if let Some(b) = f.blocked {
                        let reason = match b.scope {
                            Scope::Prefix => Reason::ConversionPrefix,
                            Scope::Country => Reason::ConversionCountry,
                        };
                        if b.tripped {
                            tracing::warn!(
                                scope = if b.scope == Scope::Prefix {
                                    "prefix"
                                } else {
                                    "country"
                                },
                                prefix = v.prefix.as_deref(),
                                country = v.country,
                                rate = b.rate,
                                block_secs = b.remaining.as_secs(),
                                "sms: low conversion rate, range blocked"
                            );
                        }
                        v.trip(reason, *action, b.remaining);
                    }
                }
                Err(e) => self.store_failed(&mut v, &e),
            }
        }
        if let (Some((seq, action)), Some(n)) = (&self.sequential, &v.number) {
            match seq.add(store, n.value()).await {
                Ok(true) => v.trip(Reason::Sequential, *action, seq.window),
                Ok(false) => {}
                Err(e) => self.store_failed(&mut v, &e),
            }
        }
        if v.done() {
            return v;
        }
        let keys = Keys {
            number: v.number.as_ref().map(PhoneNumber::digits),
            username: req.username.filter(|u| !u.is_empty()),
            ip: req.client_ip,
            number_prefix: v.prefix.as_deref(),
            country: v.country,
        };
        match self.limits.take(store, &keys).await {
            Ok(Some((reason, wait))) => v.trip(reason, self.limit_action.unwrap_or(Action::Block), wait),
            Ok(None) => {}
            Err(e) => self.store_failed(&mut v, &e),
        }
        if v.done() {
            return v;
        }
        if let Some((budget, action)) = &self.budget {
            let keep = !enforced || *action == Action::Monitor;
            match budget.reserve(store, v.country, now_ms, keep).await {
                Ok(c) => {
                    for period in &c.alerts {
                        let reason = match period {
                            Period::Hour => Reason::BudgetHourlyAlert,
                            Period::Day => Reason::BudgetDailyAlert,
                        };
                        v.trip(reason, Action::Monitor, Duration::ZERO);
                    }
                    if let Some(period) = c.over_cap {
                        let reason = match period {
                            Period::Hour => Reason::BudgetHourlyCap,
                            Period::Day => Reason::BudgetDailyCap,
                        };
                        v.trip(reason, *action, period.remaining(now_ms));
                    }
                    if c.price > 0 {
                        v.charge = Some((c.price, now_ms));
                    }
                    v.spend = c.totals;
                }
                Err(e) => self.store_failed(&mut v, &e),
            }
        }
        v
    }

    /// After the upstream answered a send (or did not): a sent SMS counts for conversion rates; one
    /// that was not sent gives its reserved price back.
    pub async fn settle_send(
        &self,
        v: &Verdict,
        sent: bool,
        username: Option<&str>,
        store: &dyn Store,
        now_ms: u64,
    ) -> Vec<(Period, f64)> {
        if sent {
            if let (Some(ttl), Some(user), Some(n)) = (
                self.remember_numbers,
                username.filter(|u| !u.is_empty()),
                v.number.as_ref().filter(|n| n.is_valid()),
            ) {
                let r = store
                    .put(&known_key(user), Bytes::from(n.digits().to_owned()), Some(ttl))
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "sms guard: cannot keep the number of a user");
                }
            }
            if let Some((conv, _)) = &self.conversion {
                let number = v.number.as_ref().map(PhoneNumber::digits);
                let r = conv
                    .record_sent(store, v.prefix.as_deref(), v.country, number, username, now_ms)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "sms guard: cannot count a sent code");
                }
            }
            return Vec::new();
        }
        let (Some((price, at)), Some((budget, _))) = (v.charge, &self.budget) else {
            return Vec::new();
        };
        if let Err(e) = budget.refund(store, price, at).await {
            tracing::warn!(error = %e, "sms guard: cannot refund an unsent SMS");
            return Vec::new();
        }
        v.spend
            .iter()
            .map(|(p, t)| (*p, *t - price as f64 / 1_000_000.0))
            .collect()
    }

    /// A verify operation succeeded: credits the send it answers. Returns the verdict for the event
    /// (number, country and range, as far as known).
    pub async fn verified(
        &self,
        phone: Option<&str>,
        default_region: Option<&Region>,
        username: Option<&str>,
        store: &dyn Store,
        now_ms: u64,
    ) -> Verdict {
        let mut v = Verdict::new(Role::Verify, self.mode == Some(FileMode::Enforce));
        v.number = phone.and_then(|p| PhoneNumber::parse(p, default_region).ok());
        v.country = v.number.as_ref().and_then(PhoneNumber::region);
        v.prefix = v.number.as_ref().map(|n| n.prefix(self.trailing_digits));
        let Some((conv, _)) = &self.conversion else {
            return v;
        };
        let number = v.number.as_ref().map(PhoneNumber::digits);
        match conv.record_verified(store, number, username, now_ms).await {
            Ok(Some((prefix, country))) => {
                v.prefix = v.prefix.or(prefix);
                if v.country.is_none() {
                    v.country = country.and_then(|c| country_static(&c));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "sms guard: cannot count a verified code"),
        }
        v
    }
}

/// The store key of the number a user's last code went to: a digest of the username as authward
/// compares usernames (case and compatibility forms folded).
fn known_key(username: &str) -> String {
    format!("sms:num:{}", digest(&crate::risk::stage::user_key(username)))
}

/// The number the user's last code went to, if it is kept.
async fn known_number(store: &dyn Store, username: &str) -> Result<Option<PhoneNumber>, StoreError> {
    let Some(digits) = store.get(&known_key(username)).await? else {
        return Ok(None);
    };
    Ok(std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| PhoneNumber::parse(&format!("+{d}"), None).ok()))
}

/// The region id as the metadata's own static string.
fn country_static(code: &str) -> Option<&'static str> {
    if code == "001" {
        return Some("001");
    }
    phonenumber::metadata::DATABASE.by_id(code).map(|m| m.id())
}

/// `GB`-style codes and `001`.
pub fn is_country_code(code: &str) -> bool {
    code == "001" || (code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()))
}

/// A short digest of attacker-chosen text for store keys: bounded size, nothing stored in clear.
pub fn digest(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    hex::encode(&d[..12])
}

#[cfg(test)]
mod tests;
