//! The per-user event history in the store: one capped, newest-first list of event records per user.
//!
//! A user's events are stored as JSON, newest first, in the store list `rec/events/<tag>`, capped at
//! `max_per_user` (a push drops the oldest) and expiring `ttl` after its last push; an event older than
//! `ttl` is no longer shown even while its list lives on. `<tag>` is 64 bits of a hash of the username,
//! and an event's id (a ULID) carries its user's tag in its random part ([`super::new_event_id`]), so that
//! an event is found from its id alone (feedback) while recording it writes one key, not one per event
//! plus an index. Users whose tags collide share a list, each seeing only their own events.
//!
//! Histories written before this layout (a record `rec/event/<id>` per event and an id list
//! `rec/user-events/<username>`) are still read, after the newer events, until they expire.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Event, EventType, Feedback};
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

/// List items read per store call while paging.
const CHUNK: usize = 128;

/// Times a feedback write is retried when the record changed between its read and its write.
const FEEDBACK_TRIES: usize = 3;

/// The event history over a store.
#[derive(Debug, Clone)]
pub struct History {
    store: Arc<dyn Store>,
    clock: SharedClock,
}

/// The 64-bit history tag of a user: of the username's user key (`risk::stage::user_key`), so that
/// `Alice` and `alice`, one user to the risk engine, share one history.
pub fn user_tag(username: &str) -> u64 {
    spelled_tag(&crate::risk::stage::user_key(username))
}

/// The tag of a username as spelled (the first 8 bytes of a domain-separated SHA-256): earlier versions
/// filed events under it.
fn spelled_tag(username: &str) -> u64 {
    let d = Sha256::new()
        .chain_update(b"authward event history\n")
        .chain_update(username.as_bytes())
        .finalize();
    let mut tag = [0; 8];
    tag.copy_from_slice(&d[..8]);
    u64::from_be_bytes(tag)
}

/// The bits of an event id's random part below its user tag.
pub const TAG_SHIFT: u32 = 16;

/// An event id's time (ms) and user tag, if it is a ULID.
pub fn parse_id(id: &str) -> Option<(u64, u64)> {
    let u = ulid::Ulid::from_string(id).ok()?;
    Some((u.timestamp_ms(), (u.random() >> TAG_SHIFT) as u64))
}

/// The list of a user's events that anyone can cause: failed, blocked and challenged attempts.
fn list_key(tag: u64) -> String {
    crate::store::hex_key("rec/events/", &tag.to_be_bytes())
}

/// The list of a user's successful sign-ins and second factors, kept apart so that a flood of failures in
/// the user's name cannot push them (and the chance to disown one by feedback) off the cap.
fn success_key(tag: u64) -> String {
    crate::store::hex_key("rec/events-ok/", &tag.to_be_bytes())
}

/// Both lists of a tag.
fn list_keys(tag: u64) -> [String; 2] {
    [list_key(tag), success_key(tag)]
}

fn legacy_event_key(event_id: &str) -> String {
    record_key("event", event_id)
}

fn legacy_user_key(username: &str) -> String {
    record_key("user-events", username)
}

/// Whether an event made at `made_ms` is older than the history keeps.
fn expired(made_ms: u64, limits: &HistoryLimits, now_ms: u64) -> bool {
    let ttl = u64::try_from(limits.ttl.as_millis()).unwrap_or(u64::MAX);
    made_ms.saturating_add(ttl) <= now_ms
}

/// Which of a user's events a listing is past.
struct Cursor<'a> {
    id: Option<&'a str>,
    passed: bool,
}

impl Cursor<'_> {
    /// Whether the event with this id comes after the cursor (newest first): ids are skipped until the
    /// cursor's id is met, or an older one if the cap dropped it.
    fn admits(&mut self, id: &str) -> bool {
        if self.passed {
            return true;
        }
        match self.id {
            Some(c) if id == c => {
                self.passed = true;
                false
            }
            Some(c) if id < c => {
                self.passed = true;
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

/// A listing being filled: up to `limit` events, and whether more follow.
struct Fill<'a> {
    events: Vec<Event>,
    limit: usize,
    more: bool,
    cursor: Cursor<'a>,
}

impl Fill<'_> {
    /// Offers the next event (newest first); false once the page is full and one more was seen.
    fn offer(&mut self, event: Event) -> bool {
        if !self.cursor.admits(&event.event_id) {
            return true;
        }
        if self.events.len() == self.limit {
            self.more = true;
            return false;
        }
        self.events.push(event);
        true
    }
}

impl History {
    pub fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        History { store, clock }
    }

    /// Stores the event in its user's history. Events without a username are not stored (they still
    /// reach the sinks); returns whether it was stored.
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
        // The id carries the user's tag (`Event::tag_id`): no second hash of the username.
        let tag = parse_id(&event.event_id).map_or_else(|| user_tag(username), |(_, tag)| tag);
        debug_assert_eq!(tag, user_tag(username), "an event id without its user's tag");
        let json = match json {
            Some(json) => json,
            None => to_json(event)?,
        };
        let cap = limits.max_per_user.max(1);
        // Only what proves the user (a sign-in or a second factor that succeeded) goes to the kept list: a
        // sign-up or a reset succeeds for any made-up name on many backends.
        let proved = matches!(event.kind, EventType::SignIn | EventType::MfaVerify);
        let key = if proved && event.outcome == "success" {
            success_key(tag)
        } else {
            list_key(tag)
        };
        self.store.list_push(&key, json, cap, Some(limits.ttl)).await?;
        Ok(true)
    }

    /// The event with this id, if it is still kept.
    pub async fn get(&self, event_id: &str, limits: &HistoryLimits) -> Result<Option<Event>, HistoryError> {
        Ok(self.find(event_id, limits).await?.map(|(event, _)| event))
    }

    /// The event with this id, and the list and stored bytes it was read from (`None` for a legacy
    /// record).
    async fn find(
        &self,
        event_id: &str,
        limits: &HistoryLimits,
    ) -> Result<Option<(Event, Option<(String, Bytes)>)>, HistoryError> {
        let Some((made, tag)) = parse_id(event_id) else {
            return Ok(None);
        };
        if expired(made, limits, self.clock.now_ms()) {
            return Ok(None);
        }
        let needle = event_id.as_bytes();
        for key in list_keys(tag) {
            let mut read = 0;
            loop {
                let chunk = self.store.list_range(&key, read, CHUNK).await?;
                read += chunk.len();
                for item in &chunk {
                    // The id's text appears in its record; most items are passed over without decoding.
                    if !item.windows(needle.len()).any(|w| w == needle) {
                        continue;
                    }
                    if let Some(e) = decode(item).filter(|e| e.event_id == event_id) {
                        return Ok(Some((e, Some((key, item.clone())))));
                    }
                }
                if chunk.len() < CHUNK {
                    break;
                }
            }
        }
        Ok(self
            .store
            .get(&legacy_event_key(event_id))
            .await?
            .and_then(|b| decode(&b))
            .map(|e| (e, None)))
    }

    /// Up to `limit` of the user's events, newest first, older than `cursor` (a previous page's
    /// `next_cursor`). Events older than the TTL are skipped.
    pub async fn list(
        &self,
        username: &str,
        limit: usize,
        cursor: Option<&str>,
        limits: &HistoryLimits,
    ) -> Result<Page, HistoryError> {
        if cursor.is_some_and(|c| parse_id(c).is_none()) {
            return Err(HistoryError::BadCursor);
        }
        let now = self.clock.now_ms();
        let user = crate::risk::stage::user_key(username);
        let live = |e: &Event| {
            e.username
                .as_deref()
                .is_some_and(|u| u == username || crate::risk::stage::user_key(u) == user)
                && parse_id(&e.event_id).is_some_and(|(made, _)| !expired(made, limits, now))
        };
        let mut fill = Fill {
            events: Vec::with_capacity(limit.max(1)),
            limit: limit.max(1),
            more: false,
            cursor: Cursor {
                id: cursor,
                passed: cursor.is_none(),
            },
        };
        // Every list the user's events may be in (each capped): successes, the rest, and those that earlier
        // versions filed under the name as spelled; merged newest first (ids sort by time).
        let tag = user_tag(username);
        let mut keys = list_keys(tag).to_vec();
        let spelled = spelled_tag(username);
        if spelled != tag {
            keys.extend(list_keys(spelled));
        }
        let mut events = Vec::new();
        for key in &keys {
            let mut read = 0;
            loop {
                let chunk = self.store.list_range(key, read, CHUNK).await?;
                read += chunk.len();
                events.extend(chunk.iter().filter_map(|b| decode(b)).filter(|e| live(e)));
                if chunk.len() < CHUNK {
                    break;
                }
            }
        }
        // By time only, stably: each list keeps its own order, and so do events of one millisecond.
        let made = |e: &Event| parse_id(&e.event_id).map_or(0, |(ms, _)| ms);
        events.sort_by_key(|e| std::cmp::Reverse(made(e)));
        for e in events {
            if !fill.offer(e) {
                break;
            }
        }
        if !fill.more {
            self.legacy_list(username, &mut fill, &live).await?;
        }
        let next_cursor = if fill.more {
            fill.events.last().map(|e| e.event_id.clone())
        } else {
            None
        };
        Ok(Page {
            events: fill.events,
            next_cursor,
        })
    }

    /// Continues a listing into the user's history in the legacy layout (an id list and a record each).
    async fn legacy_list(
        &self,
        username: &str,
        fill: &mut Fill<'_>,
        live: &impl Fn(&Event) -> bool,
    ) -> Result<(), HistoryError> {
        let index = legacy_user_key(username);
        let mut read = 0;
        loop {
            let chunk = self.store.list_range(&index, read, CHUNK).await?;
            read += chunk.len();
            let ids: Vec<&str> = chunk.iter().filter_map(|b| std::str::from_utf8(b).ok()).collect();
            let replies = self
                .store
                .batch(
                    ids.iter()
                        .map(|id| Op::Get {
                            key: legacy_event_key(id),
                        })
                        .collect(),
                )
                .await?;
            for reply in replies {
                let Reply::Value(Some(b)) = reply else { continue };
                if let Some(e) = decode(&b).filter(|e| live(e)) {
                    if !fill.offer(e) {
                        return Ok(());
                    }
                }
            }
            if chunk.len() < CHUNK {
                return Ok(());
            }
        }
    }

    /// Records feedback on an event and rewrites its record. Giving the same value again changes
    /// nothing; returns the event and whether it changed.
    pub async fn set_feedback(
        &self,
        event_id: &str,
        feedback: Feedback,
        limits: &HistoryLimits,
    ) -> Result<(Event, bool), HistoryError> {
        let not_found = || HistoryError::NotFound(event_id.to_string());
        for _ in 0..FEEDBACK_TRIES {
            let (mut event, stored) = self.find(event_id, limits).await?.ok_or_else(not_found)?;
            if event.feedback.as_ref().is_some_and(|f| f.value == feedback.value) {
                return Ok((event, false));
            }
            event.feedback = Some(feedback.clone());
            let json = to_json(&event)?;
            match stored {
                Some((key, old)) => {
                    // Changed in between (another feedback, or pushed off the cap): read it again.
                    if self.store.list_replace(&key, &old, json).await? {
                        return Ok((event, true));
                    }
                }
                None => {
                    let ttl = self.remaining_ttl(event_id, limits).ok_or_else(not_found)?;
                    self.store
                        .put(&legacy_event_key(event_id), json, Some(ttl))
                        .await?;
                    return Ok((event, true));
                }
            }
        }
        Err(not_found())
    }

    /// What is left of the event's TTL, from the time in its id; `None` once it has run out.
    fn remaining_ttl(&self, event_id: &str, limits: &HistoryLimits) -> Option<Duration> {
        let (made, _) = parse_id(event_id)?;
        let age = Duration::from_millis(self.clock.now_ms().saturating_sub(made));
        Some(limits.ttl.saturating_sub(age)).filter(|d| !d.is_zero())
    }
}

/// An event's stored JSON (one allocation, see [`super::json_bytes`]).
fn to_json(event: &Event) -> Result<Bytes, serde_json::Error> {
    super::json_bytes(event)
}

fn decode(bytes: &[u8]) -> Option<Event> {
    match serde_json::from_slice(bytes) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "a stored event does not decode; skipped");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::events::{FeedbackValue, format_time, new_event_id};
    use crate::store::memory::{MemoryLimits, MemoryStore};

    const T0: u64 = 1_700_000_000_000;

    fn setup() -> (History, Arc<ManualClock>, Arc<MemoryStore>) {
        let clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(MemoryStore::new(MemoryLimits::default(), clock.clone()));
        (History::new(store.clone(), clock.clone()), clock, store)
    }

    pub(crate) fn event(user: Option<&str>, now_ms: u64) -> Event {
        Event {
            event_id: new_event_id(now_ms, user),
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
    async fn failures_in_a_users_name_never_push_out_their_successes() {
        // An attacker fails a hundred sign-ins as alice after the one that took over her account: the
        // takeover stays listed, and can still be disowned.
        let (h, c, _) = setup();
        let l = limits(10);
        let taken = event(Some("alice"), c.now_ms());
        h.append(&taken, &l).await.unwrap();
        for _ in 0..100 {
            c.advance(Duration::from_millis(1));
            let mut e = event(Some("Alice"), c.now_ms());
            e.outcome = "failure".into();
            h.append(&e, &l).await.unwrap();
        }
        let page = h.list("alice", 100, None, &l).await.unwrap();
        assert_eq!(page.events.len(), 11, "the 10 newest failures and the success");
        assert_eq!(page.events.last().unwrap().event_id, taken.event_id);
        assert!(page.events[..10].iter().all(|e| e.outcome == "failure"));
        let feedback = Feedback {
            value: FeedbackValue::Invalid,
            source: "admin".into(),
            time: "t".into(),
        };
        let (e, changed) = h.set_feedback(&taken.event_id, feedback, &l).await.unwrap();
        assert!(changed && e.feedback.is_some());
        // The same user spelled otherwise lists the same history.
        let page = h.list(" ALICE", 100, None, &l).await.unwrap();
        assert_eq!(page.events.len(), 11);
        assert!(page.events.last().unwrap().feedback.is_some());
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
        let key = success_key(user_tag("alice"));
        assert_eq!(store.list_range(&key, 0, 10).await.unwrap(), vec![json]);
        assert_eq!(h.get(&e.event_id, &limits(10)).await.unwrap(), Some(e.clone()));
        // Encoded here, the same text.
        let (h2, _, store2) = setup();
        assert!(h2.append(&e, &limits(10)).await.unwrap());
        assert_eq!(
            store2.list_range(&key, 0, 10).await.unwrap(),
            store.list_range(&key, 0, 10).await.unwrap()
        );
    }

    fn ids(p: &Page) -> Vec<String> {
        p.events.iter().map(|e| e.event_id.clone()).collect()
    }

    #[tokio::test]
    async fn newest_first_capped_in_one_key_per_user() {
        let (h, c, store) = setup();
        let l = limits(3);
        let all = append_n(&h, &c, "alice", 5, &l).await;
        append_n(&h, &c, "bob", 1, &l).await;
        let page = h.list("alice", 10, None, &l).await.unwrap();
        let newest: Vec<String> = all.iter().rev().take(3).cloned().collect();
        assert_eq!(ids(&page), newest);
        assert_eq!(page.next_cursor, None);
        // The two that fell off the cap are gone; the others are found by id alone.
        assert!(h.get(&all[0], &l).await.unwrap().is_none());
        assert!(h.get(&all[1], &l).await.unwrap().is_none());
        assert_eq!(h.get(&all[2], &l).await.unwrap().unwrap().event_id, all[2]);
        // One key per user: alice's list and bob's.
        assert_eq!(store.len(), 2);
        // Users are apart.
        assert_eq!(h.list("bob", 10, None, &l).await.unwrap().events.len(), 1);
        assert!(h.list("carol", 10, None, &l).await.unwrap().events.is_empty());
        // An id of the right shape whose user has no such event.
        let stray = crate::events::new_event_id(c.now_ms(), Some("alice"));
        assert!(h.get(&stray, &l).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn users_whose_tags_collide_see_only_their_own_events() {
        // Two users in one list, as a 64-bit tag collision would put them.
        let (h, c, store) = setup();
        let l = limits(10);
        let ids = append_n(&h, &c, "alice", 2, &l).await;
        let mut mallory = event(Some("mallory"), c.now_ms());
        mallory.event_id = crate::events::new_event_id(c.now_ms(), Some("alice"));
        let json = to_json(&mallory).unwrap();
        store
            .list_push(&list_key(user_tag("alice")), json, 10, Some(l.ttl))
            .await
            .unwrap();
        let page = h.list("alice", 10, None, &l).await.unwrap();
        assert_eq!(self::ids(&page), ids.iter().rev().cloned().collect::<Vec<_>>());
        assert!(h.list("mallory", 10, None, &l).await.unwrap().events.is_empty());
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
            let p = h.list("alice", 3, cursor.as_deref(), &l).await.unwrap();
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
        assert_eq!(h.list("bob", 3, None, &l).await.unwrap().next_cursor, None);
        assert!(matches!(
            h.list("bob", 3, Some("not-a-cursor"), &l).await,
            Err(HistoryError::BadCursor)
        ));
    }

    #[tokio::test]
    async fn events_older_than_the_ttl_are_not_shown_and_the_list_expires() {
        let (h, c, store) = setup();
        let l = HistoryLimits {
            max_per_user: 10,
            ttl: Duration::from_secs(60),
        };
        let old = append_n(&h, &c, "alice", 2, &l).await;
        c.advance(Duration::from_secs(30));
        let new = append_n(&h, &c, "alice", 1, &l).await;
        c.advance(Duration::from_secs(31));
        // The list lives on (renewed by the last push); the two old events in it are past their TTL.
        let p = h.list("alice", 10, None, &l).await.unwrap();
        assert_eq!(ids(&p), new);
        assert!(h.get(&old[0], &l).await.unwrap().is_none());
        assert!(h.get(&new[0], &l).await.unwrap().is_some());
        c.advance(Duration::from_secs(30));
        assert!(h.list("alice", 10, None, &l).await.unwrap().events.is_empty());
        let key = list_key(user_tag("alice"));
        assert!(
            store.list_range(&key, 0, 1).await.unwrap().is_empty(),
            "the list expired"
        );
    }

    #[tokio::test]
    async fn histories_in_the_legacy_layout_are_still_read_after_the_new_events() {
        let (h, c, store) = setup();
        let l = limits(10);
        // Two events as an earlier version stored them: a record each and an id list.
        let mut legacy = Vec::new();
        for _ in 0..2 {
            let e = event(Some("alice"), c.now_ms());
            store
                .put(&legacy_event_key(&e.event_id), to_json(&e).unwrap(), Some(l.ttl))
                .await
                .unwrap();
            let id = Bytes::copy_from_slice(e.event_id.as_bytes());
            store
                .list_push(&legacy_user_key("alice"), id, 10, Some(l.ttl))
                .await
                .unwrap();
            legacy.push(e.event_id);
            c.advance(Duration::from_millis(1));
        }
        let new = append_n(&h, &c, "alice", 2, &l).await;
        let expected: Vec<String> = new.iter().rev().chain(legacy.iter().rev()).cloned().collect();
        assert_eq!(ids(&h.list("alice", 10, None, &l).await.unwrap()), expected);
        // Paged across the two layouts without gaps or repeats.
        let p1 = h.list("alice", 3, None, &l).await.unwrap();
        assert_eq!(ids(&p1), expected[..3]);
        let p2 = h.list("alice", 3, p1.next_cursor.as_deref(), &l).await.unwrap();
        assert_eq!(ids(&p2), expected[3..]);
        assert_eq!(p2.next_cursor, None);
        // Found by id, and feedback is kept on the legacy record.
        let fb = Feedback {
            value: FeedbackValue::Invalid,
            time: format_time(c.now_ms()),
            source: "admin".into(),
        };
        let (_, changed) = h.set_feedback(&legacy[0], fb, &l).await.unwrap();
        assert!(changed);
        let e = h.get(&legacy[0], &l).await.unwrap().unwrap();
        assert_eq!(e.feedback.unwrap().value, FeedbackValue::Invalid);
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
        let stored = h.get(&id, &l).await.unwrap().unwrap();
        assert_eq!(stored.feedback, e.feedback);
        assert_eq!(
            h.list("alice", 1, None, &l).await.unwrap().events[0].feedback,
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
        assert!(h.get(&id, &l).await.unwrap().is_none());
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
        assert!(h.get(&e.event_id, &limits(10)).await.unwrap().is_none());
    }
}
