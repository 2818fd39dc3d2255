//! New passwords: a minimum zxcvbn strength, and reuse of the last N refused (Argon2id hashes, never passwords).

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::file::FilePasswordReuse;
use super::{Invalid, invalid};
use crate::store::{Store, StoreError, record_key};

/// zxcvbn looks at this many characters at most: its cost grows fast with length, and a longer
/// password is not weaker for its tail (zxcvbn's authors advise the same cut).
const STRENGTH_PREFIX: usize = 100;

/// Why the password history could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt password history: {0}")]
    Corrupt(String),
    #[error("argon2: {0}")]
    Argon2(String),
    #[error("hashing task failed: {0}")]
    Task(String),
}

/// Whether the password reaches the zxcvbn score (0 to 4); `user_inputs` (the username...) count as guessable.
pub fn strong_enough(password: &str, user_inputs: &[&str], min_score: u8) -> bool {
    let prefix: String = password.chars().take(STRENGTH_PREFIX).collect();
    u8::from(zxcvbn::zxcvbn(&prefix, user_inputs).score()) >= min_score
}

/// The compiled reuse settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryParams {
    /// How many of the last passwords are refused (and kept).
    pub remember: usize,
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for HistoryParams {
    fn default() -> Self {
        HistoryParams {
            remember: 5,
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

impl HistoryParams {
    pub(super) fn compile(f: Option<&FilePasswordReuse>) -> Result<HistoryParams, Invalid> {
        let d = HistoryParams::default();
        let Some(f) = f else {
            return Ok(d);
        };
        let p = HistoryParams {
            remember: f.remember.unwrap_or(d.remember),
            memory_kib: f.memory_kib.unwrap_or(d.memory_kib),
            iterations: f.iterations.unwrap_or(d.iterations),
        };
        if p.remember > 24 {
            return Err(invalid(
                "password_reuse.remember",
                "0 to 24 (as Cognito's PasswordHistorySize)",
            ));
        }
        Params::new(p.memory_kib, p.iterations, 1, Some(32))
            .map_err(|e| invalid("password_reuse", format!("argon2 parameters: {e}")))?;
        Ok(p)
    }
}

/// The durable record key of a user's password history.
pub fn history_key(username: &str) -> String {
    record_key("password-history", &username.trim().to_lowercase())
}

/// One remembered password: its Argon2id hash under the user's salt, with the costs it was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub m: u32,
    pub t: u32,
    /// Base64 of the 32-byte hash.
    pub hash: String,
}

/// A user's password history: one random salt and the newest entries first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Base64 of 16 random bytes.
    pub salt: String,
    pub entries: Vec<Entry>,
}

fn argon2id(password: &str, salt: &[u8], m: u32, t: u32) -> Result<[u8; 32], HistoryError> {
    let params = Params::new(m, t, 1, Some(32)).map_err(|e| HistoryError::Argon2(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut out)
        .map_err(|e| HistoryError::Argon2(e.to_string()))?;
    Ok(out)
}

impl History {
    /// An empty history with a fresh salt.
    pub fn fresh() -> History {
        History {
            salt: STANDARD.encode(rand::random::<[u8; 16]>()),
            entries: Vec::new(),
        }
    }

    fn salt(&self) -> Result<Vec<u8>, HistoryError> {
        STANDARD
            .decode(&self.salt)
            .map_err(|_| HistoryError::Corrupt("salt is not base64".into()))
    }

    /// Whether the password matches one of the newest `n` entries; each cost setting is hashed once, and
    /// the hashes compare in constant time.
    pub fn contains(&self, password: &str, n: usize) -> Result<bool, HistoryError> {
        let salt = self.salt()?;
        let mut computed: Vec<((u32, u32), [u8; 32])> = Vec::new();
        let mut found = false;
        for e in self.entries.iter().take(n) {
            let digest = match computed.iter().find(|(k, _)| *k == (e.m, e.t)) {
                Some((_, d)) => *d,
                None => {
                    let d = argon2id(password, &salt, e.m, e.t)?;
                    computed.push(((e.m, e.t), d));
                    d
                }
            };
            let stored = STANDARD
                .decode(&e.hash)
                .map_err(|_| HistoryError::Corrupt("hash is not base64".into()))?;
            found |= bool::from(stored.ct_eq(&digest));
        }
        Ok(found)
    }

    /// Adds the password as the newest entry and keeps the newest `params.remember`.
    pub fn push(&mut self, password: &str, params: HistoryParams) -> Result<(), HistoryError> {
        let digest = argon2id(password, &self.salt()?, params.memory_kib, params.iterations)?;
        self.entries.insert(
            0,
            Entry {
                m: params.memory_kib,
                t: params.iterations,
                hash: STANDARD.encode(digest),
            },
        );
        self.entries.truncate(params.remember);
        Ok(())
    }

    /// Loads a user's history.
    pub async fn load(store: &dyn Store, username: &str) -> Result<Option<History>, HistoryError> {
        match store.get(&history_key(username)).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| HistoryError::Corrupt(e.to_string())),
        }
    }

    /// Saves a user's history (a durable record, no expiry).
    pub async fn save(&self, store: &dyn Store, username: &str) -> Result<(), HistoryError> {
        let bytes = serde_json::to_vec(self).map_err(|e| HistoryError::Corrupt(e.to_string()))?;
        store.put(&history_key(username), bytes.into(), None).await?;
        Ok(())
    }
}

/// Runs Argon2id work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HistoryError::Task(e.to_string()))?
}

/// The `username` claim of a Cognito access token in `/AccessToken` (ChangePassword names no user
/// otherwise). The token is not verified here: the backend verifies it, and the name is only trusted once
/// the backend has accepted the request or the caller has proved the user's current password.
pub fn token_username(json: &Value) -> Option<String> {
    let token = json.pointer("/AccessToken")?.as_str()?;
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("username")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    /// Cheap costs for tests; the production default is 19 MiB and 2 passes.
    fn params(remember: usize) -> HistoryParams {
        HistoryParams {
            remember,
            memory_kib: 64,
            iterations: 1,
        }
    }

    #[test]
    fn strength_follows_the_zxcvbn_score() {
        assert!(!strong_enough("password123", &[], 1));
        assert!(strong_enough("password123", &[], 0));
        assert!(!strong_enough("alice2024!", &["alice"], 3));
        assert!(strong_enough("correct-horse-battery-staple-orbit", &[], 4));
        // A password passes at its own score and fails one above it.
        let score = u8::from(zxcvbn::zxcvbn("tulip-meadow", &[]).score());
        assert!(score < 4, "{score}");
        assert!(strong_enough("tulip-meadow", &[], score));
        assert!(!strong_enough("tulip-meadow", &[], score + 1));
    }

    #[test]
    fn the_last_n_are_refused_and_the_one_before_is_not() {
        for n in [1usize, 3, 5] {
            let mut h = History::fresh();
            // p0 is set first, p<n> last: the last n passwords are p1..=p<n>.
            let pw: Vec<String> = (0..=n).map(|i| format!("staple-orbit-{i}")).collect();
            for p in &pw {
                h.push(p, params(n)).unwrap();
            }
            assert_eq!(h.entries.len(), n);
            for p in &pw[1..] {
                assert!(h.contains(p, n).unwrap(), "n={n}: {p} is one of the last {n}");
            }
            assert!(
                !h.contains(&pw[0], n).unwrap(),
                "n={n}: the (n+1)-th is free again"
            );
            assert!(!h.contains("never-used-before", n).unwrap());
        }
    }

    #[test]
    fn remember_zero_keeps_nothing_and_costs_are_per_entry() {
        let mut h = History::fresh();
        h.push("a-first-password", params(0)).unwrap();
        assert!(h.entries.is_empty());
        h.push("a-first-password", params(3)).unwrap();
        let stronger = HistoryParams {
            memory_kib: 128,
            ..params(3)
        };
        h.push("a-second-password", stronger).unwrap();
        assert_eq!((h.entries[0].m, h.entries[1].m), (128, 64));
        assert!(h.contains("a-first-password", 3).unwrap());
        assert!(h.contains("a-second-password", 3).unwrap());
    }

    #[test]
    fn the_history_holds_hashes_with_a_per_user_salt_never_passwords() {
        let (mut a, mut b) = (History::fresh(), History::fresh());
        a.push("shared-password-1", params(2)).unwrap();
        b.push("shared-password-1", params(2)).unwrap();
        assert_ne!(a.salt, b.salt);
        assert_ne!(a.entries[0].hash, b.entries[0].hash);
        let text = serde_json::to_string(&a).unwrap();
        assert!(!text.contains("shared-password-1"), "{text}");
        assert_eq!(STANDARD.decode(&a.entries[0].hash).unwrap().len(), 32);
    }

    #[tokio::test]
    async fn histories_are_durable_records_by_lowercased_user() {
        let store = MemoryStore::new(Default::default(), crate::clock::system());
        let mut h = History::fresh();
        h.push("staple-orbit-9", params(2)).unwrap();
        h.save(&store, "Alice").await.unwrap();
        assert_eq!(history_key("Alice"), "rec/password-history/alice");
        let back = History::load(&store, " alice").await.unwrap().unwrap();
        assert_eq!(back, h);
        assert!(History::load(&store, "bob").await.unwrap().is_none());
    }

    #[test]
    fn the_access_token_names_the_user() {
        let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"5f1d","username":"carol","token_use":"access"}"#);
        let body = serde_json::json!({"AccessToken": format!("eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln")});
        assert_eq!(token_username(&body).as_deref(), Some("carol"));
        assert_eq!(
            token_username(&serde_json::json!({"AccessToken": "garbage"})),
            None
        );
    }

    #[test]
    fn bad_settings_do_not_compile() {
        let f = FilePasswordReuse {
            remember: Some(25),
            ..Default::default()
        };
        assert_eq!(
            HistoryParams::compile(Some(&f)).unwrap_err().path,
            "password_reuse.remember"
        );
        let f = FilePasswordReuse {
            memory_kib: Some(1),
            ..Default::default()
        };
        assert_eq!(
            HistoryParams::compile(Some(&f)).unwrap_err().path,
            "password_reuse"
        );
    }
}
