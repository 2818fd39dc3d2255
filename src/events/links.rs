//! Signed feedback links (`/.authward/feedback/<token>`): the token format and the pages the proxy serves.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, context || payload))`, where the payload
//! is `<event_id>:<valid|invalid>:<expiry, unix seconds>`; it is checked in constant time before anything
//! in it is believed. Opening a link (GET) changes nothing: it shows the event and a button that POSTs to
//! the same address, and only that POST records the feedback. Mail scanners and link previewers that fetch
//! every link in a message therefore cannot record a verdict, which matters because a `valid` verdict may
//! make the risk engine trust the device. Recording is idempotent: the same link used twice records once.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use subtle::ConstantTimeEq;

use super::recorder::{FeedbackError, FeedbackSource, Recorder};
use super::settings::SecretKey;
use super::webhook::Links;
use super::{Event, EventType, FeedbackValue};
use crate::proxy::body::{self, Body};

/// Requests under this path are feedback links; they never reach the upstream.
pub const PATH_PREFIX: &str = "/.authward/feedback/";

/// Binds the MAC to this use of the key.
const CONTEXT: &[u8] = b"authward feedback link v1\n";

/// Tokens longer than this are refused unread.
const MAX_TOKEN: usize = 256;

/// Signs and checks feedback links.
#[derive(Debug)]
pub struct LinkSigner {
    /// Without a trailing slash.
    base_url: String,
    key: SecretKey,
    ttl: Duration,
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub event_id: String,
    pub value: FeedbackValue,
    /// Unix seconds.
    pub expires: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed")]
    Malformed,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// Checks a link base URL (http or https with a host, no query) and drops a trailing slash.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("base_url `{s}` is not a URL ({e})"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("base_url `{s}` needs https:// (or http://)"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("base_url `{s}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("base_url `{s}` must not have a query string"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

impl LinkSigner {
    pub fn new(base_url: String, key: SecretKey, ttl: Duration) -> Self {
        LinkSigner { base_url, key, ttl }
    }

    /// Both links for an event, valid for the configured TTL from `now_ms`.
    pub fn links(&self, event_id: &str, now_ms: u64) -> Links {
        let expires = (now_ms / 1000).saturating_add(self.ttl.as_secs());
        let url = |v| {
            format!(
                "{}{PATH_PREFIX}{}",
                self.base_url,
                self.token(event_id, v, expires)
            )
        };
        Links {
            valid: url(FeedbackValue::Valid),
            invalid: url(FeedbackValue::Invalid),
        }
    }

    fn mac(&self, payload: &[u8]) -> [u8; 32] {
        crate::signing::hmac_sha256(self.key.expose(), &[CONTEXT, payload])
    }

    /// The token for one verdict on one event.
    pub fn token(&self, event_id: &str, value: FeedbackValue, expires: u64) -> String {
        let payload = format!("{event_id}:{}:{expires}", value.as_str());
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes()))
        )
    }

    /// Checks the signature (in constant time), then the expiry.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Claim, LinkError> {
        if token.len() > MAX_TOKEN {
            return Err(LinkError::Malformed);
        }
        let (payload, sig) = token.split_once('.').ok_or(LinkError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| LinkError::Malformed)?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| LinkError::Malformed)?;
        if sig.len() != 32 {
            return Err(LinkError::Malformed);
        }
        if !bool::from(self.mac(&payload).ct_eq(sig.as_slice())) {
            return Err(LinkError::BadSignature);
        }
        // Signed by us: what follows cannot fail for tokens this code made, but is checked all the same.
        let text = std::str::from_utf8(&payload).map_err(|_| LinkError::Malformed)?;
        let mut parts = text.split(':');
        let (Some(id), Some(value), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(LinkError::Malformed);
        };
        let value = match value {
            "valid" => FeedbackValue::Valid,
            "invalid" => FeedbackValue::Invalid,
            _ => return Err(LinkError::Malformed),
        };
        let expires: u64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        if now_ms / 1000 >= expires {
            return Err(LinkError::Expired);
        }
        Ok(Claim {
            event_id: id.to_string(),
            value,
            expires,
        })
    }
}

/// Answers a request under [`PATH_PREFIX`]: GET shows the confirmation page, POST records the feedback.
pub async fn serve(
    recorder: &Recorder,
    config: &super::EventsConfig,
    method: &Method,
    path: &str,
) -> Response<Body> {
    let Some(signer) = config.links.as_ref() else {
        return page(
            StatusCode::NOT_FOUND,
            "Not found",
            "<p>There is nothing here.</p>",
        );
    };
    let token = path.strip_prefix(PATH_PREFIX).unwrap_or_default();
    let claim = match signer.verify(token, recorder.now_ms()) {
        Ok(c) => c,
        Err(LinkError::Expired) => return expired(),
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "Link not valid",
                "<p>This link is not valid. Copy the whole address from the message and try again.</p>",
            );
        }
    };
    match *method {
        Method::GET | Method::HEAD => match recorder.history().get(&claim.event_id, &config.history).await {
            Ok(Some(event)) if event.feedback.as_ref().is_some_and(|f| f.value == claim.value) => {
                thanks(&event, claim.value)
            }
            Ok(Some(event)) => confirm(&event, claim.value),
            Ok(None) => expired(),
            Err(e) => unavailable(&e.to_string()),
        },
        Method::POST => match recorder
            .feedback(config, &claim.event_id, claim.value, FeedbackSource::Link)
            .await
        {
            Ok(event) => thanks(&event, claim.value),
            Err(FeedbackError::NotFound) => expired(),
            Err(e) => unavailable(&e.to_string()),
        },
        _ => {
            let mut r = page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "<p>Open this link in a browser.</p>",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            r
        }
    }
}

fn what(kind: EventType) -> &'static str {
    match kind {
        EventType::SignIn => "sign-in",
        EventType::SignUp => "sign-up",
        EventType::PasswordChange => "password change",
        EventType::PasswordReset => "password reset",
        EventType::SmsSend => "text message request",
        EventType::SmsVerify => "phone confirmation",
        EventType::MfaVerify => "second-factor check",
    }
}

/// The event as a person reads it: what, when, from where.
fn summary(event: &Event) -> String {
    let place = [event.geo.city.as_deref(), event.geo.country.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    let mut s = format!(
        "<p>A {} to <b>{}</b> on {} UTC",
        what(event.kind),
        escape(event.username.as_deref().unwrap_or("your account")),
        escape(event.time.replace('T', " ").trim_end_matches('Z')),
    );
    if !place.is_empty() {
        s.push_str(&format!(" from {}", escape(&place)));
    }
    s.push_str(&format!(" (address {}).</p>", event.ip));
    s
}

fn verdict(kind: EventType, value: FeedbackValue) -> String {
    match value {
        FeedbackValue::Valid => format!("this {} was you", what(kind)),
        FeedbackValue::Invalid => format!("this {} was not you", what(kind)),
    }
}

fn confirm(event: &Event, value: FeedbackValue) -> Response<Body> {
    let button = match value {
        FeedbackValue::Valid => "Yes, this was me",
        FeedbackValue::Invalid => "No, this was not me",
    };
    page(
        StatusCode::OK,
        "Confirm",
        &format!(
            "{}<p>Confirm that {}:</p><form method=\"post\">\
             <button type=\"submit\">{button}</button></form>",
            summary(event),
            verdict(event.kind, value)
        ),
    )
}

fn thanks(event: &Event, value: FeedbackValue) -> Response<Body> {
    let advice = match value {
        FeedbackValue::Valid => "",
        FeedbackValue::Invalid => "<p>If you did not do this, change your password now.</p>",
    };
    page(
        StatusCode::OK,
        "Thank you",
        &format!(
            "<p>Thanks — we recorded that {}.</p>{}{advice}",
            verdict(event.kind, value),
            summary(event)
        ),
    )
}

fn expired() -> Response<Body> {
    page(StatusCode::GONE, "Link expired", "<p>This link has expired.</p>")
}

fn unavailable(reason: &str) -> Response<Body> {
    tracing::warn!(error = %reason, "feedback link could not be served");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<p>We could not record this now. Please try again in a few minutes.</p>",
    )
}

/// A small HTML page that loads nothing, is not cached, indexed, framed, or sent on as a referrer.
fn page(status: StatusCode, title: &str, content: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><meta name=\"robots\" content=\"noindex\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;\
         padding:0 1rem;line-height:1.5}}button{{font-size:1rem;padding:.5rem 1rem}}</style></head>\
         <body><h1>{title}</h1>{content}</body></html>"
    );
    let mut r = Response::new(body::full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    r
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const ID: &str = "01HF0000000000000000000000";

    fn signer(key: &[u8]) -> LinkSigner {
        LinkSigner::new(
            "https://login.example.com".into(),
            SecretKey::new(key.to_vec()),
            Duration::from_secs(7 * 86_400),
        )
    }

    fn token_of(url: &str) -> &str {
        url.rsplit('/').next().unwrap()
    }

    #[test]
    fn links_round_trip() {
        let s = signer(b"link-key");
        let links = s.links(ID, NOW);
        assert!(
            links
                .valid
                .starts_with("https://login.example.com/.authward/feedback/"),
            "{}",
            links.valid
        );
        let v = s.verify(token_of(&links.valid), NOW).unwrap();
        assert_eq!(
            v,
            Claim {
                event_id: ID.into(),
                value: FeedbackValue::Valid,
                expires: NOW / 1000 + 7 * 86_400
            }
        );
        let i = s.verify(token_of(&links.invalid), NOW).unwrap();
        assert_eq!(i.value, FeedbackValue::Invalid);
        assert_ne!(links.valid, links.invalid);
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let s = signer(b"link-key");
        let t = s.token(ID, FeedbackValue::Invalid, NOW / 1000 + 60);
        let (payload, sig) = t.split_once('.').unwrap();
        // The same signature over a payload that says `valid`.
        let forged = URL_SAFE_NO_PAD.encode(format!("{ID}:valid:{}", NOW / 1000 + 60));
        assert_eq!(
            s.verify(&format!("{forged}.{sig}"), NOW),
            Err(LinkError::BadSignature)
        );
        // A later expiry.
        let later = URL_SAFE_NO_PAD.encode(format!("{ID}:invalid:{}", NOW / 1000 + 999_999));
        assert_eq!(
            s.verify(&format!("{later}.{sig}"), NOW),
            Err(LinkError::BadSignature)
        );
        // One flipped signature bit.
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 1;
        let flipped = format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(s.verify(&flipped, NOW), Err(LinkError::BadSignature));
        // Another key's token.
        assert_eq!(signer(b"other-key").verify(&t, NOW), Err(LinkError::BadSignature));
        for bad in [
            "",
            "abc",
            "a.b",
            &format!("{payload}."),
            &"x".repeat(300),
            &format!("{payload}.{payload}"),
        ] {
            assert_eq!(s.verify(bad, NOW), Err(LinkError::Malformed), "{bad}");
        }
        assert!(s.verify(&t, NOW).is_ok());
    }

    #[test]
    fn expired_tokens_are_refused_after_the_signature_check() {
        let s = signer(b"link-key");
        let t = s.token(ID, FeedbackValue::Valid, NOW / 1000 + 60);
        assert!(s.verify(&t, NOW + 59_999).is_ok());
        assert_eq!(s.verify(&t, NOW + 60_000), Err(LinkError::Expired));
        let forged_old = signer(b"other-key").token(ID, FeedbackValue::Valid, 1);
        assert_eq!(s.verify(&forged_old, NOW), Err(LinkError::BadSignature));
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://login.example.com/").unwrap(),
            "https://login.example.com"
        );
        assert!(parse_base_url("login.example.com").is_err());
        assert!(parse_base_url("https://x/?a=1").is_err());
    }

    #[test]
    fn pages_escape_what_they_show() {
        let mut e = crate::events::history::tests::event(Some("<script>alert(1)</script>"), NOW);
        e.geo.city = Some("\"Boxford\" & co".into());
        let s = summary(&e);
        assert!(!s.contains("<script>"), "{s}");
        assert!(
            s.contains("&lt;script&gt;") && s.contains("&quot;Boxford&quot; &amp; co"),
            "{s}"
        );
    }
}
