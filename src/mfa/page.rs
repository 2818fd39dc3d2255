//! The built-in MFA page for HTML form logins (`/.authward/mfa/`): plain HTML, no script, no external
//! assets. A held form sign-in is redirected here; the form posts the code back to the same address.

use http::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use http::{Response, StatusCode};

use super::enroll::Enrolled;
use super::hold::Held;
use super::verify::{self, Verdict, no_store};
use super::{Mfa, PATH_PREFIX, hold};
use crate::pipeline::{Exchange, Services};
use crate::proxy::body::{self, Body};

/// Where a held form sign-in is sent: the page, with the challenge id in the query.
pub fn redirect(challenge_id: &str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&format!("{PATH_PREFIX}?challenge={challenge_id}")) {
        r.headers_mut().insert(LOCATION, v);
    }
    no_store(r)
}

/// `GET /.authward/mfa/?challenge=<id>`: the form, or a page saying the sign-in is gone. Showing the page
/// uses up no attempt. For an enrollment the form shows the new secret, but only to the device and
/// network that signed in.
pub async fn show(services: &Services, mfa: &Mfa, ex: &Exchange) -> Response<Body> {
    let id = query_value(ex.request.uri.query(), "challenge").unwrap_or_default();
    let held = if super::is_challenge_id(&id) {
        hold::get(services.store.as_ref(), &id).await.ok().flatten()
    } else {
        None
    };
    match held {
        None => gone(),
        Some(h) if h.enrollment.is_some() && !verify::bound_here(ex, &h) => refused(),
        Some(h) => html(StatusCode::OK, &form(&id, None, enrolling(mfa, &h).as_ref())),
    }
}

/// The new secret of a held enrollment, as the app takes it.
fn enrolling(mfa: &Mfa, held: &Held) -> Option<Enrolled> {
    let account = held.username.as_deref().unwrap_or(&held.user).trim();
    held.enrollment.as_ref().map(|p| p.shown(mfa, account))
}

/// `POST /.authward/mfa/` with the form's `challenge_id` and `code`: the held sign-in's answer (the
/// login service's redirect and session cookie), or the form again with what went wrong.
pub async fn submit(services: &Services, mfa: &Mfa, ex: &mut Exchange, body: &[u8]) -> Response<Body> {
    let text = std::str::from_utf8(body).ok();
    let id = query_value(text, "challenge_id").unwrap_or_default();
    let code = query_value(text, "code").unwrap_or_default();
    match verify::check(services, mfa, ex, &id, &code).await {
        Verdict::Released(r) => r,
        Verdict::WrongCode { attempts_left: 0 } => gone(),
        Verdict::WrongCode { attempts_left } => {
            let tries = if attempts_left == 1 { "try" } else { "tries" };
            let error = format!("That code is not right. {attempts_left} more {tries}.");
            // A wrong code was checked, so the request is bound to the challenge.
            let held = hold::get(services.store.as_ref(), &id).await.ok().flatten();
            let shown = held.as_ref().and_then(|h| enrolling(mfa, h));
            html(StatusCode::UNAUTHORIZED, &form(&id, Some(&error), shown.as_ref()))
        }
        Verdict::Gone => gone(),
        Verdict::Refused => refused(),
        Verdict::Unavailable => html(
            StatusCode::SERVICE_UNAVAILABLE,
            &form(
                &id,
                Some("The code cannot be checked right now. Try again."),
                None,
            ),
        ),
    }
}

fn refused() -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        &page(
            "<p>Enter the code on the device and network you signed in from.</p>\
             <p><a href=\"/\">Sign in again</a></p>",
        ),
    )
}

fn gone() -> Response<Body> {
    html(
        StatusCode::GONE,
        &page("<p>This sign-in has expired or was already used.</p><p><a href=\"/\">Sign in again</a></p>"),
    )
}

/// The code form; `id` is a checked challenge id (hex) or empty, so it needs no escaping. An enrollment
/// shows its new secret and `otpauth://` URI first.
fn form(id: &str, error: Option<&str>, enrolling: Option<&Enrolled>) -> String {
    let id = if super::is_challenge_id(id) { id } else { "" };
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let intro = match enrolling {
        None => "<p>Enter the 6-digit code from your authenticator app.</p>".to_string(),
        Some(e) => format!(
            "<p>Protect your account with an authenticator app: add this key to it, then enter the \
             6-digit code it shows.</p><p>Key: <code id=\"secret\">{}</code></p>\
             <p><a id=\"otpauth\" href=\"{}\">Open in an authenticator app</a></p>",
            escape(&e.secret),
            escape(&e.otpauth_uri)
        ),
    };
    page(&format!(
        "{intro}{error}\
         <form method=\"post\" action=\"{PATH_PREFIX}\">\
         <input type=\"hidden\" name=\"challenge_id\" value=\"{id}\">\
         <label for=\"code\">Code</label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" \
         pattern=\"[0-9]{{6}}\" maxlength=\"6\" required autofocus>\
         <button type=\"submit\">Verify</button></form>"
    ))
}

fn page(main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Verify it's you</title><style>\
         body{{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}}\
         main{{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;\
         box-shadow:0 1px 4px rgba(0,0,0,.15)}}\
         h1{{font-size:1.4rem;margin-top:0}}label{{display:block;margin:1rem 0 .3rem}}\
         input{{font-size:1.4rem;letter-spacing:.3rem;width:100%;box-sizing:border-box;padding:.4rem}}\
         button{{margin-top:1rem;width:100%;padding:.6rem;font-size:1rem}}.error{{color:#b00020}}\
         </style></head><body><main><h1>Verify it's you</h1>{main}</main></body></html>"
    )
}

fn html(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(body::full(text.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    no_store(r)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value of an urlencoded string (query or form body).
fn query_value(raw: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(raw?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_escapes_what_it_shows() {
        let f = form("0123456789abcdef0123456789abcdef", Some("<b>&"), None);
        assert!(f.contains("value=\"0123456789abcdef0123456789abcdef\""));
        assert!(f.contains("&lt;b&gt;&amp;") && !f.contains("<b>&"));
        assert!(!f.contains("http://") && !f.contains("https://") && !f.contains("<script"));
        assert!(form("\"><script>", None, None).contains("value=\"\""));
        let r = redirect("0123456789abcdef0123456789abcdef");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            r.headers()[LOCATION],
            "/.authward/mfa/?challenge=0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            query_value(Some("challenge_id=ab&code=12+34"), "code").as_deref(),
            Some("12 34")
        );
    }
}
