//! What feedback teaches the risk engine: "this was me" trusts the event's device and place, "this was not
//! me" marks its device (its cookie and its fingerprint) compromised, so that the user's next sign-ins are
//! scored by it.

use std::sync::Arc;

use crate::events::{Event, EventType, FeedbackHook, FeedbackValue};
use crate::store::{Store, StoreError, record_key};

use super::Risk;
use super::user::{LastSignIn, Place, UserHistory};

/// The risk settings in force now (they change on reload).
pub type CurrentRisk = Box<dyn Fn() -> Option<Arc<Risk>> + Send + Sync>;

/// The [`FeedbackHook`] of the risk engine.
pub struct Learner {
    store: Arc<dyn Store>,
    risk: CurrentRisk,
}

impl Learner {
    pub fn new(store: Arc<dyn Store>, risk: CurrentRisk) -> Self {
        Learner { store, risk }
    }

    /// Applies feedback on a sign-in event to its user's history.
    pub async fn apply(&self, risk: &Risk, event: &Event, value: FeedbackValue) -> Result<(), StoreError> {
        let Some(username) = event.username.as_deref() else {
            return Ok(());
        };
        // The device cookie and the fingerprint, which the sign-in taught the history both: a thief who
        // drops the cookie must not come back as a known device by the fingerprint.
        let mut devices: Vec<&str> = event.device.id.as_deref().into_iter().collect();
        if let Some(fp) = event.device.fingerprint.as_deref() {
            if !devices.contains(&fp) {
                devices.push(fp);
            }
        }
        if devices.is_empty() {
            return Ok(());
        }
        let user = super::stage::user_key(username);
        let key = record_key("user", &user);
        let mut history: UserHistory = match self.store.get(&key).await? {
            Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => UserHistory::default(),
        };
        let at = ulid::Ulid::from_string(&event.event_id).map_or(0, |u| u.timestamp_ms());
        let cap = risk.history.max_items;
        match value {
            FeedbackValue::Valid => {
                let g = &event.geo;
                for device in &devices {
                    history.trust_device(device, at, cap);
                }
                history.trust_place(
                    &Place {
                        country: g.country.as_deref(),
                        city: g.city.as_deref(),
                        asn: g.asn,
                        latitude: g.latitude,
                        longitude: g.longitude,
                    },
                    cap,
                );
                // The user was there then: travel is measured from that place from now on.
                if let (Some(latitude), Some(longitude)) = (g.latitude, g.longitude) {
                    if history.last.as_ref().is_none_or(|l| l.time_ms <= at) {
                        history.last = Some(LastSignIn {
                            time_ms: at,
                            latitude,
                            longitude,
                        });
                    }
                }
            }
            FeedbackValue::Invalid => {
                for device in &devices {
                    history.distrust_device(device, at, cap);
                }
            }
        }
        let bytes = crate::events::json_bytes(&history).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.store.put(&key, bytes, Some(risk.history.ttl.get())).await
    }
}

#[async_trait::async_trait]
impl FeedbackHook for Learner {
    async fn on_feedback(&self, event: &Event, value: FeedbackValue) {
        if event.kind != EventType::SignIn {
            return;
        }
        let Some(risk) = (self.risk)() else {
            return;
        };
        if let Err(e) = self.apply(&risk, event, value).await {
            tracing::warn!(event_id = %event.event_id, error = %e, "risk: feedback not applied to the history");
        }
    }
}
