//! Cognito's API: a held InitiateAuth success becomes a `SOFTWARE_TOKEN_MFA` challenge whose `Session` is
//! the challenge id, and the `RespondToAuthChallenge` that answers it is answered here with the held
//! tokens, never forwarded.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::verify::{Verdict, no_store};
use crate::pipeline::{Exchange, RequestBody};
use crate::profile::FixedResponse;
use crate::profile::file::MfaStyle;
use crate::proxy::body::{self, Body};

/// The challenge Cognito sends for an enrolled TOTP factor.
pub const CHALLENGE_NAME: &str = "SOFTWARE_TOKEN_MFA";

const CONTENT: &str = "application/x-amz-json-1.1";

/// The challenge answer when the profile sets none: Cognito's own shape.
pub fn default_challenge() -> FixedResponse {
    FixedResponse {
        status: StatusCode::OK,
        headers: vec![(CONTENT_TYPE, HeaderValue::from_static(CONTENT))],
        body: bytes::Bytes::from_static(
            br#"{"ChallengeName":"SOFTWARE_TOKEN_MFA","Session":"{{challenge_id}}","ChallengeParameters":{}}"#,
        ),
    }
}

/// The challenge id and code of a `RespondToAuthChallenge` that answers one of authward's challenges: a
/// `cognito` profile, `SOFTWARE_TOKEN_MFA`, and a `Session` of the form of a challenge id (Cognito's own
/// sessions are far longer, and go to the backend as usual).
pub fn answer_of(ex: &Exchange) -> Option<(String, String)> {
    let m = ex.profile.as_ref()?;
    if m.profile.mfa_style() != MfaStyle::Cognito
        || m.fields.challenge_name.as_deref() != Some(CHALLENGE_NAME)
    {
        return None;
    }
    let session = m.fields.session.as_ref()?.expose();
    if !super::is_challenge_id(session) {
        return None;
    }
    let RequestBody::Buffered(body) = &ex.body else {
        return None;
    };
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = json
        .pointer("/ChallengeResponses/SOFTWARE_TOKEN_MFA_CODE")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    Some((session.to_string(), code))
}

/// A verdict as Cognito says it.
pub fn render(verdict: Verdict) -> Response<Body> {
    let (kind, message) = match verdict {
        Verdict::Released(r) => return r,
        Verdict::WrongCode { attempts_left } if attempts_left > 0 => {
            ("CodeMismatchException", "Invalid code received for user")
        }
        Verdict::WrongCode { .. } | Verdict::Gone => (
            "NotAuthorizedException",
            "Invalid session for the user, session is expired.",
        ),
        Verdict::Refused => ("NotAuthorizedException", "Invalid session for the user."),
        Verdict::Unavailable => ("InternalErrorException", "Internal server error."),
    };
    let status = if kind == "InternalErrorException" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = serde_json::json!({ "__type": kind, "message": message });
    let mut r = Response::new(body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(kind));
    no_store(r)
}
