//! The per-user event history in the store: one record per event and a capped, newest-first index per user.
//!
//! An event is stored as JSON under `rec/event/<event_id>` with the history TTL; its id is pushed onto
//! `rec/user-events/<username>`, a store list capped at `max_per_user` whose TTL is renewed by each push.
//! When a push drops the oldest id off the list, that event's record is deleted too, so the records of a
//! user never outnumber the cap (two pushes racing, or a reload that lowers the cap, can leave records
//! that are no longer listed to expire with their TTL).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Event, Feedback};
use crate::clock::SharedClock;
use crate::store::{Op, Reply, Store, StoreError, record_key};

/// How much history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events kept per user.
    pub max_per_user: usize,
    /// How long an event is kept.
    pub ttl: Duration,
}

/// Why a history operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No live event has this id.
    #[error("no event {0}")]
    NotFound(String),
    /// The cursor is not one this API handed out.
    #[error("the cursor is not valid")]
    BadCursor,
    /// An event could not be encoded.
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One page of a user's events, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub events: Vec<Event>,
    /// Pass it back for the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Ids read from the index per store call while paging.
const INDEX_CHUNK: usize = 128;

/// The event history over a store.
#[derive(Debug, Clone)]
pub struct History {
    store: Arc<dyn Store>,
    clock: SharedClock,
}

fn event_key(event_id: &str) -> String {
    record_key("event", event_id)
}

fn user_key(username: &str) -> String {
    record_key("user-events", username)
}

/// Whether `id` has the shape of an event id (a ULID), so that no other text becomes part of a store key.
fn is_event_id(id: &str) -> bool {
    ulid::Ulid::from_string(id).is_ok()
}

impl History {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        History { store, clock }
    }

    /// Stores the event and indexes it under its user. Events without a username are not stored (they
    /// still reach the sinks); returns whether it was stored.
    pub async fn append(&self, event: &Event, limits: &HistoryLimits) -> Result<bool, HistoryError> {
        self.append_encoded(event, None, limits).await
    }

    /// As [`History::append`], with the event's JSON when the caller has already made it (the line the
    /// sinks were sent), so that the event is not encoded twice.
    pub async fn append_encoded(
        &self,
        event: &Event,
        json: Option<Bytes>,
        limits: &HistoryLimits,
    ) -> Result<bool, HistoryError> {
        let Some(username) = event.username.as_deref() else {
            return Ok(false);
        };
        let json = match json {
            Some(json) => json,
            None => to_json(event)?,
        };
        let index = user_key(username);
        let cap = limits.max_per_user.max(1);
        let replies = self
            .store
            .batch(vec![
                // The id that the push below will drop, if the list is full.
                Op::ListRange {
                    key: index.clone(),
                    start: cap - 1,
                    count: 1,
                },
                Op::Put {
                    key: event_key(&event.event_id),
                    value: json,
                    ttl: Some(limits.ttl),
                },
                Op::ListPush {
                    key: index,
                    value: Bytes::copy_from_slice(event.event_id.as_bytes()),
                    cap,
                    ttl: Some(limits.ttl),
                },
            ])
            .await?;
        if let Some(Reply::Values(dropped)) = replies.first() {
            for id in dropped.iter().filter_map(|b| std::str::from_utf8(b).ok()) {
                if id != event.event_id && is_event_id(id) {
                    self.store.delete(&event_key(id)).await?;
                }
            }
        }
        Ok(true)
    }

    /// The event with this id, if it is still kept.
    pub async fn get(&self, event_id: &str) -> Result<Option<Event>, HistoryError> {
        if !is_event_id(event_id) {
            return Ok(None);
        }
        Ok(self
            .store
            .get(&event_key(event_id))
            .await?
            .and_then(|b| decode(event_id, &b)))
    }

    /// Up to `limit` of the user's events, newest first, older than `cursor` (a previous page's
    /// `next_cursor`). Ids whose event has expired are skipped.
    pub async fn list(
        &self,
        username: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page, HistoryError> {
        if cursor.is_some_and(|c| !is_event_id(c)) {
            return Err(HistoryError::BadCursor);
        }
        let index = user_key(username);
        let limit = limit.max(1);
        let mut ids: VecDeque<String> = VecDeque::new();
        let mut read = 0;
        let mut exhausted = false;
        // Until the cursor's id is met (or an older one, if the cap dropped it), ids are skipped.
        let mut past_cursor = cursor.is_none();
        let mut events = Vec::with_capacity(limit);
        loop {
            if events.len() == limit {
                break;
            }
            if ids.is_empty() {
                if exhausted {
                    break;
                }
                let chunk = self.store.list_range(&index, read, INDEX_CHUNK).await?;
                read += chunk.len();
                exhausted = chunk.len() < INDEX_CHUNK;
                for id in chunk.iter().filter_map(|b| std::str::from_utf8(b).ok()) {
                    if !past_cursor {
                        match cursor {
                            Some(c) if id == c => {
                                past_cursor = true;
                                continue;
                            }
                            Some(c) if id < c => past_cursor = true,
                            _ => continue,
                        }
                    }
                    ids.push_back(id.to_string());
                }
                continue;
            }
            let take = (limit - events.len()).min(ids.len());
            let batch: Vec<String> = ids.drain(..take).collect();
            let replies = self
                .store
                .batch(batch.iter().map(|id| Op::Get { key: event_key(id) }).collect())
                .await?;
            for (id, reply) in batch.iter().zip(replies) {
                if let Reply::Value(Some(b)) = reply {
                    if let Some(e) = decode(id, &b) {
                        events.push(e);
                    }
                }
            }
        }
        let more =
            !ids.is_empty() || (!exhausted && !self.store.list_range(&index, read, 1).await?.is_empty());
        let next_cursor = if more {
            events.last().map(|e| e.event_id.clone())
        } else {
            None
        };
        Ok(Page { events, next_cursor })
    }

    /// Records feedback on an event and rewrites its record (keeping its expiry). Giving the same value
    /// again changes nothing; returns the event and whether it changed.
    pub async fn set_feedback(
        &self,
        event_id: &str,
        feedback: Feedback,
        limits: &HistoryLimits,
    ) -> Result<(Event, bool), HistoryError> {
        let not_found = || HistoryError::NotFound(event_id.to_string());
        let mut event = self.get(event_id).await?.ok_or_else(not_found)?;
        if event.feedback.as_ref().is_some_and(|f| f.value == feedback.value) {
            return Ok((event, false));
        }
        let ttl = self.remaining_ttl(event_id, limits).ok_or_else(not_found)?;
        event.feedback = Some(feedback);
        let json = to_json(&event)?;
        self.store.put(&event_key(event_id), json, Some(ttl)).await?;
        Ok((event, true))
    }

    /// What is left of the event's TTL, from the time in its id; `None` once it has run out.
    fn remaining_ttl(&self, event_id: &str, limits: &HistoryLimits) -> Option<Duration> {
        let made = ulid::Ulid::from_string(event_id).ok()?.timestamp_ms();
        let age = Duration::from_millis(self.clock.now_ms().saturating_sub(made));
        Some(limits.ttl.saturating_sub(age)).filter(|d| !d.is_zero())
    }
}

/// An event's stored JSON (one allocation, see [`super::json_bytes`]).
fn to_json(event: &Event) -> Result<Bytes, serde_json::Error> {
    super::json_bytes(event)
}

fn decode(event_id: &str, bytes: &[u8]) -> Option<Event> {
    match serde_json::from_slice(bytes) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(event_id, error = %e, "a stored event does not decode; skipped");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::events::{EventType, FeedbackValue, format_time, new_event_id};
    use crate::store::memory::{MemoryLimits, MemoryStore};

    const T0: u64 = 1_700_000_000_000;

    fn setup() -> (History, Arc<ManualClock>, Arc<MemoryStore>) {
        let clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone()));
        (History::new(store.clone(), clock.clone()), clock, store)
    }

    pub(crate) fn event(user: Option<&str>, now_ms: u64) -> Event {
        Event {
            event_id: new_event_id(now_ms),
            time: format_time(now_ms),
            kind: EventType::SignIn,
            username: user.map(str::to_string),
            client_id: None,
            ip: "192.0.2.7".parse().unwrap(),
            geo: Default::default(),
            device: Default::default(),
            risk: None,
            decision: "allow".into(),
            mode: "off".into(),
            outcome: "success".into(),
            rule: None,
            labels: Vec::new(),
            shadow: Vec::new(),
            challenges: Vec::new(),
            sms: None,
            mfa: None,
            feedback: None,
            request_id: "r".into(),
        }
    }

    fn limits(max: usize) -> HistoryLimits {
        HistoryLimits {
            max_per_user: max,
            ttl: Duration::from_secs(3600),
        }
    }

    /// Appends `n` events for `user`, one millisecond apart; returns their ids oldest first.
    async fn append_n(h: &History, c: &ManualClock, user: &str, n: usize, l: &HistoryLimits) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let e = event(Some(user), c.now_ms());
            assert!(h.append(&e, l).await.unwrap());
            ids.push(e.event_id);
            c.advance(Duration::from_millis(1));
        }
        ids
    }

    #[tokio::test]
    async fn an_event_encoded_by_the_caller_is_stored_as_given() {
        let (h, _, store) = setup();
        let e = event(Some("alice"), T0);
        let json = Bytes::from(serde_json::to_vec(&e).unwrap());
        assert!(
            h.append_encoded(&e, Some(json.clone()), &limits(10))
                .await
                .unwrap()
        );
        assert_eq!(store.get(&event_key(&e.event_id)).await.unwrap(), Some(json));
        assert_eq!(h.get(&e.event_id).await.unwrap(), Some(e.clone()));
        // Encoded here, the same text.
        let (h2, _, store2) = setup();
        assert!(h2.append(&e, &limits(10)).await.unwrap());
        assert_eq!(
            store2.get(&event_key(&e.event_id)).await.unwrap(),
            store.get(&event_key(&e.event_id)).await.unwrap()
        );
    }

    fn ids(p: &Page) -> Vec<String> {
        p.events.iter().map(|e| e.event_id.clone()).collect()
    }

    #[tokio::test]
    async fn newest_first_capped_and_dropped_records_deleted() {
        let (h, c, store) = setup();
        let l = limits(3);
        let all = append_n(&h, &c, "alice", 5, &l).await;
        append_n(&h, &c, "bob", 1, &l).await;
        let page = h.list("alice", 10, None).await.unwrap();
        let newest: Vec<String> = all.iter().rev().take(3).cloned().collect();
        assert_eq!(ids(&page), newest);
        assert_eq!(page.next_cursor, None);
        // The two that fell off the cap are gone from the store too, not left to linger for the TTL.
        assert!(h.get(&all[0]).await.unwrap().is_none());
        assert!(h.get(&all[1]).await.unwrap().is_none());
        assert!(h.get(&all[2]).await.unwrap().is_some());
        // 3 alice records + her index, 1 bob record + his index.
        assert_eq!(store.len(), 6);
        // Users are apart.
        assert_eq!(h.list("bob", 10, None).await.unwrap().events.len(), 1);
        assert!(h.list("carol", 10, None).await.unwrap().events.is_empty());
    }

    #[tokio::test]
    async fn cursor_pages_through_without_gaps_or_repeats() {
        let (h, c, _) = setup();
        let l = limits(100);
        let all = append_n(&h, &c, "alice", 7, &l).await;
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let p = h.list("alice", 3, cursor.as_deref()).await.unwrap();
            pages += 1;
            seen.extend(ids(&p));
            // A new event arriving between pages does not shift the next page.
            append_n(&h, &c, "alice", 1, &l).await;
            match p.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected: Vec<String> = all.iter().rev().cloned().collect();
        assert_eq!(seen, expected);
        assert_eq!(pages, 3);
        // A full last page with nothing after it has no cursor.
        let (h, c, _) = setup();
        append_n(&h, &c, "bob", 3, &l).await;
        assert_eq!(h.list("bob", 3, None).await.unwrap().next_cursor, None);
        assert!(matches!(
            h.list("bob", 3, Some("not-a-cursor")).await,
            Err(HistoryError::BadCursor)
        ));
    }

    #[tokio::test]
    async fn expired_events_are_skipped_and_the_index_expires() {
        let (h, c, _) = setup();
        let short = HistoryLimits {
            max_per_user: 10,
            ttl: Duration::from_secs(60),
        };
        let old = append_n(&h, &c, "alice", 2, &short).await;
        c.advance(Duration::from_secs(30));
        let long = limits(10);
        let new = append_n(&h, &c, "alice", 1, &long).await;
        c.advance(Duration::from_secs(31));
        let p = h.list("alice", 10, None).await.unwrap();
        assert_eq!(ids(&p), new, "the two old events expired");
        assert!(h.get(&old[0]).await.unwrap().is_none());
        c.advance(Duration::from_secs(3600));
        assert!(h.list("alice", 10, None).await.unwrap().events.is_empty());
    }

    #[tokio::test]
    async fn a_page_is_filled_past_ids_whose_record_is_gone() {
        // Records can go before their index entry (the store's memory cap evicts them).
        let (h, c, store) = setup();
        let all = append_n(&h, &c, "bob", 5, &limits(10)).await;
        for id in &all[2..] {
            assert!(store.delete(&event_key(id)).await.unwrap());
        }
        let p = h.list("bob", 2, None).await.unwrap();
        assert_eq!(ids(&p), vec![all[1].clone(), all[0].clone()]);
        assert_eq!(p.next_cursor, None);
    }

    #[tokio::test]
    async fn feedback_rewrites_the_record_and_keeps_its_expiry() {
        let (h, c, _) = setup();
        let l = limits(10);
        let id = append_n(&h, &c, "alice", 1, &l).await.remove(0);
        c.advance(Duration::from_secs(1800));
        let fb = |v| Feedback {
            value: v,
            time: format_time(c.now_ms()),
            source: "admin".into(),
        };
        let (e, changed) = h.set_feedback(&id, fb(FeedbackValue::Invalid), &l).await.unwrap();
        assert!(changed);
        assert_eq!(e.feedback.as_ref().unwrap().value, FeedbackValue::Invalid);
        let stored = h.get(&id).await.unwrap().unwrap();
        assert_eq!(stored.feedback, e.feedback);
        assert_eq!(
            h.list("alice", 1, None).await.unwrap().events[0].feedback,
            e.feedback
        );
        // The same value again: unchanged, the first time kept.
        c.advance(Duration::from_secs(1));
        let (again, changed) = h.set_feedback(&id, fb(FeedbackValue::Invalid), &l).await.unwrap();
        assert!(!changed);
        assert_eq!(again.feedback, e.feedback);
        // The other value replaces it.
        let (e2, changed) = h.set_feedback(&id, fb(FeedbackValue::Valid), &l).await.unwrap();
        assert!(changed);
        assert_eq!(e2.feedback.unwrap().value, FeedbackValue::Valid);
        // The rewrite did not extend the hour the event was given.
        c.advance(Duration::from_secs(1800));
        assert!(h.get(&id).await.unwrap().is_none());
        assert!(matches!(
            h.set_feedback(&id, fb(FeedbackValue::Valid), &l).await,
            Err(HistoryError::NotFound(_))
        ));
        assert!(matches!(
            h.set_feedback("../../etc", fb(FeedbackValue::Valid), &l).await,
            Err(HistoryError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn events_without_a_username_are_not_stored() {
        let (h, _, store) = setup();
        let e = event(None, T0);
        assert!(!h.append(&e, &limits(10)).await.unwrap());
        assert!(store.is_empty());
        assert!(h.get(&e.event_id).await.unwrap().is_none());
    }
}
