//! The spend budget: a price table per country, estimated spend per hour and per day, alert levels and caps.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use crate::store::{Op, Reply, Store, StoreError};

/// Amounts are kept in millionths of the currency unit, so the store adds integers.
const MICROS: f64 = 1_000_000.0;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// Why a price table does not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    #[error("{0}")]
    Invalid(String),
}

/// The price table file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePrices {
    currency: String,
    default: f64,
    #[serde(default)]
    countries: BTreeMap<String, f64>,
}

/// Prices per destination country, in millionths of the currency.
#[derive(Debug)]
pub struct PriceTable {
    currency: String,
    default: i64,
    countries: HashMap<String, i64>,
}

fn micros(what: &str, amount: f64) -> Result<i64, BudgetError> {
    if !amount.is_finite() || !(0.0..=1e9).contains(&amount) {
        return Err(BudgetError::Invalid(format!(
            "{what}: {amount} is not an amount between 0 and 1e9"
        )));
    }
    // In range by the check above.
    Ok((amount * MICROS).round() as i64)
}

impl PriceTable {
    /// Reads a price table (`currency`, `default`, `countries`).
    pub fn parse(text: &str) -> Result<PriceTable, BudgetError> {
        let f: FilePrices = serde_saphyr::from_str(text)
            .map_err(|e| BudgetError::Invalid(e.without_snippet().to_string()))?;
        let mut countries = HashMap::new();
        for (code, price) in &f.countries {
            if !super::is_country_code(code) {
                return Err(BudgetError::Invalid(format!(
                    "countries.{code}: not a country code such as GB, or 001"
                )));
            }
            countries.insert(code.clone(), micros(&format!("countries.{code}"), *price)?);
        }
        Ok(PriceTable {
            currency: f.currency,
            default: micros("default", f.default)?,
            countries,
        })
    }

    /// The table's currency.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The price of one SMS to `country` (the default for an unknown one), in millionths.
    pub fn price(&self, country: Option<&str>) -> i64 {
        country
            .and_then(|c| self.countries.get(c))
            .copied()
            .unwrap_or(self.default)
    }
}

/// One window's amounts, in millionths.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub alert: Option<i64>,
    pub cap: Option<i64>,
}

impl Window {
    /// Compiles a window's amounts; the alert must not be above the cap.
    pub fn new(alert: Option<f64>, cap: Option<f64>, what: &str) -> Result<Window, BudgetError> {
        let alert = alert.map(|a| micros(&format!("{what}.alert"), a)).transpose()?;
        let cap = cap.map(|c| micros(&format!("{what}.cap"), c)).transpose()?;
        if let (Some(a), Some(c)) = (alert, cap) {
            if a > c {
                return Err(BudgetError::Invalid(format!("{what}: alert is above the cap")));
            }
        }
        Ok(Window { alert, cap })
    }
}

/// Which window a budget event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
}

impl Period {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }

    fn ms(self) -> u64 {
        match self {
            Period::Hour => HOUR_MS,
            Period::Day => DAY_MS,
        }
    }

    fn key(self, now_ms: u64) -> String {
        format!("sms:spend:{}:{}", self.as_str(), now_ms / self.ms())
    }

    /// Time left in the current window.
    pub fn remaining(self, now_ms: u64) -> Duration {
        Duration::from_millis(self.ms() - now_ms % self.ms())
    }
}

/// The result of reserving one SMS's price.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// The price reserved, in millionths; refunded if the SMS is not sent.
    pub price: i64,
    /// The estimated spend per window after this send (in currency units), for the metrics.
    pub totals: Vec<(Period, f64)>,
    /// A cap this send would pass (the reservation is then taken back).
    pub over_cap: Option<Period>,
    /// The windows whose alert level the spend has reached.
    pub alerts: Vec<Period>,
}

/// Spend accounting against the hourly and daily windows.
#[derive(Debug)]
pub struct Budget {
    pub prices: PriceTable,
    pub windows: Vec<(Period, Window)>,
}

impl Budget {
    /// Adds the price of one SMS to `country` to every window; if that passes a cap the amount is taken
    /// back (`keep_over_cap` keeps it: audit mode forwards the SMS anyway).
    pub async fn reserve(
        &self,
        store: &dyn Store,
        country: Option<&str>,
        now_ms: u64,
        keep_over_cap: bool,
    ) -> Result<Charge, StoreError> {
        let price = self.prices.price(country);
        let ops = self
            .windows
            .iter()
            .map(|(p, _)| Op::Incr {
                key: p.key(now_ms),
                by: price,
                ttl: Duration::from_millis(p.ms() * 2),
            })
            .collect();
        let replies = store.batch(ops).await?;
        let mut charge = Charge {
            price,
            totals: Vec::new(),
            over_cap: None,
            alerts: Vec::new(),
        };
        let refund = |total: i64| {
            if keep_over_cap { total } else { total - price }
        };
        let mut totals = Vec::with_capacity(self.windows.len());
        for ((period, w), reply) in self.windows.iter().zip(replies) {
            let Reply::Int(total) = reply else { continue };
            if w.cap.is_some_and(|cap| total > cap) && charge.over_cap.is_none() {
                charge.over_cap = Some(*period);
            }
            if let Some(alert) = w.alert {
                if total >= alert {
                    charge.alerts.push(*period);
                    if total - price < alert {
                        tracing::warn!(
                            window = period.as_str(),
                            spend = total as f64 / MICROS,
                            alert = alert as f64 / MICROS,
                            currency = %self.prices.currency,
                            "sms: estimated spend reached the alert level"
                        );
                    }
                }
            }
            totals.push((*period, total));
        }
        let over = charge.over_cap.is_some();
        if over && !keep_over_cap {
            self.refund(store, price, now_ms).await?;
            charge.price = 0;
        }
        charge.totals = totals
            .into_iter()
            .map(|(p, t)| (p, if over { refund(t) } else { t } as f64 / MICROS))
            .collect();
        Ok(charge)
    }

    /// Takes back a reservation: the SMS was not sent (the upstream refused or failed).
    pub async fn refund(&self, store: &dyn Store, price: i64, charged_ms: u64) -> Result<(), StoreError> {
        if price == 0 {
            return Ok(());
        }
        let ops = self
            .windows
            .iter()
            .map(|(p, _)| Op::Incr {
                key: p.key(charged_ms),
                by: -price,
                ttl: Duration::from_millis(p.ms() * 2),
            })
            .collect();
        store.batch(ops).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::memory::{MemoryLimits, MemoryStore};

    fn budget(hourly: Window) -> Budget {
        Budget {
            prices: PriceTable::parse("currency: USD\ndefault: 0.10\ncountries: {GB: 0.04, '001': 1}\n")
                .unwrap(),
            windows: vec![
                (Period::Hour, hourly),
                (Period::Day, Window::new(None, Some(100.0), "daily").unwrap()),
            ],
        }
    }

    #[test]
    fn price_tables() {
        let p = PriceTable::parse(include_str!("../../rules/sms/prices.yaml")).unwrap();
        assert_eq!(p.currency(), "USD");
        assert_eq!(p.price(Some("GB")), 40_000);
        assert_eq!(p.price(Some("ZZ")), 100_000);
        assert_eq!(p.price(None), 100_000);
        for bad in [
            "currency: USD\ndefault: -1\n",
            "currency: USD\ndefault: 1\ncountries: {gb: 1}\n",
            "currency: USD\ndefault: .nan\n",
            "default: 1\n",
        ] {
            assert!(PriceTable::parse(bad).is_err(), "{bad}");
        }
        assert!(Window::new(Some(2.0), Some(1.0), "hourly").is_err());
    }

    #[tokio::test]
    async fn a_cap_stops_spend_and_refunds() {
        let clock = Arc::new(ManualClock::new(10 * HOUR_MS));
        let store = MemoryStore::new(MemoryLimits::default(), clock.clone());
        let b = budget(Window::new(Some(0.08), Some(0.10), "hourly").unwrap());
        let now = clock.now_ms();
        let c = b.reserve(&store, Some("GB"), now, false).await.unwrap();
        assert_eq!((c.price, c.over_cap, c.alerts.clone()), (40_000, None, vec![]));
        let c = b.reserve(&store, Some("GB"), now, false).await.unwrap();
        assert_eq!(c.alerts, vec![Period::Hour], "0.08 reaches the alert");
        let c = b.reserve(&store, Some("GB"), now, false).await.unwrap();
        assert_eq!(
            (c.over_cap, c.price),
            (Some(Period::Hour), 0),
            "0.12 would pass the cap"
        );
        assert_eq!(c.totals[0], (Period::Hour, 0.08));
        // Refunds give the room back; a new hour starts from zero.
        b.refund(&store, 40_000, now).await.unwrap();
        assert!(
            b.reserve(&store, Some("GB"), now, false)
                .await
                .unwrap()
                .over_cap
                .is_none()
        );
        clock.advance(Duration::from_millis(HOUR_MS));
        let c = b
            .reserve(&store, Some("001"), clock.now_ms(), false)
            .await
            .unwrap();
        assert!(c.over_cap.is_some(), "1.00 alone passes the hourly cap");
        // Audit keeps what it forwards.
        let c = b
            .reserve(&store, Some("001"), clock.now_ms(), true)
            .await
            .unwrap();
        assert_eq!((c.over_cap, c.price), (Some(Period::Hour), 1_000_000));
        assert_eq!(
            Period::Hour.remaining(HOUR_MS + 1),
            Duration::from_millis(HOUR_MS - 1)
        );
    }
}
