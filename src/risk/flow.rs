//! Multi-step sign-ins (custom authentication, challenges): the state that carries one flow between its
//! round trips, found by the flow's session value.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::{ChallengeStep, SignalHit};
use crate::store::{Store, StoreError};

/// How long a flow is followed between two steps (Cognito's sessions last 3 to 15 minutes).
pub const FLOW_TTL: Duration = Duration::from_secs(15 * 60);

/// What one flow's steps share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowState {
    pub username: Option<String>,
    pub client_id: Option<String>,
    /// A custom authentication flow (decided by `custom_auth_mode`).
    pub custom: bool,
    pub started_ms: u64,
    /// The score made at the first step, from the whole attempt's context.
    pub level: String,
    pub score: u32,
    pub signals: Vec<SignalHit>,
    pub compromised: bool,
    /// Device cookie id (if any) and fingerprint at the first step.
    pub device_id: Option<String>,
    pub fingerprint: String,
    /// Whether the first step issued the device cookie.
    pub issued_cookie: bool,
    /// The challenges answered so far, and the one the client was last given.
    pub challenges: Vec<ChallengeStep>,
    pub pending_challenge: Option<String>,
}

/// The store key of a flow: a hash of its session value, which is never stored as such.
pub fn key(session: &str) -> String {
    let d = Sha256::digest(session.as_bytes());
    format!("risk:flow:{}", hex::encode(&d[..16]))
}

/// Saves a flow under its (new) session value.
pub async fn save(store: &dyn Store, session: &str, state: &FlowState) -> Result<(), StoreError> {
    let bytes = crate::events::json_bytes(state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store.put(&key(session), bytes, Some(FLOW_TTL)).await
}

/// The flow a session value belongs to.
pub async fn load(store: &dyn Store, session: &str) -> Result<Option<FlowState>, StoreError> {
    match store.get(&key(session)).await? {
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(e.to_string())),
        None => Ok(None),
    }
}

/// Forgets a session value once its step is answered.
pub async fn forget(store: &dyn Store, session: &str) -> Result<(), StoreError> {
    store.delete(&key(session)).await.map(|_| ())
}
