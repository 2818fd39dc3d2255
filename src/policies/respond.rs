//! Why a policy refuses a request, and the answer in the backend's own dialect (never with a submitted value).

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use super::file::{Dialect, Policy};
use crate::proxy::body::{self, Body};

/// Why a request breaks a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    SignUpClosed,
    SignUpChallenge,
    AdminOnly,
    UnknownClient,
    SecretHashMissing,
    SecretHashWrong,
    /// An OAuth parameter sent more than once (RFC 6749 section 3.1).
    RepeatedParameter(&'static str),
    PkceMissing,
    PkceMethod,
    PkceMalformed,
    PkceReused,
    VerifierMissing,
    VerifierWrong,
    GrantNotAllowed,
    ImplicitNotAllowed,
    ScopeNotAllowed,
    /// An attribute breaks its rule: the attribute's name and what is wrong (never its value).
    Attribute {
        name: String,
        problem: String,
    },
    WeakPassword,
    ReusedPassword,
    CompromisedPassword,
}

impl Reason {
    /// A short code for logs and events.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::SignUpClosed => "sign_up_closed",
            Reason::SignUpChallenge => "sign_up_challenge",
            Reason::AdminOnly => "admin_only",
            Reason::UnknownClient => "unknown_client",
            Reason::SecretHashMissing => "secret_hash_missing",
            Reason::SecretHashWrong => "secret_hash_wrong",
            Reason::RepeatedParameter(_) => "repeated_parameter",
            Reason::PkceMissing => "code_challenge_missing",
            Reason::PkceMethod => "code_challenge_method",
            Reason::PkceMalformed => "code_challenge_malformed",
            Reason::PkceReused => "code_challenge_reused",
            Reason::VerifierMissing => "code_verifier_missing",
            Reason::VerifierWrong => "code_verifier_wrong",
            Reason::GrantNotAllowed => "grant_not_allowed",
            Reason::ImplicitNotAllowed => "implicit_not_allowed",
            Reason::ScopeNotAllowed => "scope_not_allowed",
            Reason::Attribute { .. } => "attribute_invalid",
            Reason::WeakPassword => "password_weak",
            Reason::ReusedPassword => "password_reused",
            Reason::CompromisedPassword => "password_compromised",
        }
    }

    /// A plain explanation that names no submitted value.
    pub fn message(&self) -> String {
        match self {
            Reason::SignUpClosed => "sign-up is not open to this caller".into(),
            Reason::SignUpChallenge => "sign-up needs a browser challenge first".into(),
            Reason::AdminOnly => "this operation is only for trusted callers".into(),
            Reason::UnknownClient => "the app client is not allowed".into(),
            Reason::SecretHashMissing => "the app client has a secret but no SECRET_HASH was sent".into(),
            Reason::SecretHashWrong => "the SECRET_HASH does not match the app client's secret".into(),
            Reason::RepeatedParameter(p) => format!("the parameter {p} is sent more than once"),
            Reason::PkceMissing => "PKCE is required: send a code_challenge".into(),
            Reason::PkceMethod => "PKCE needs code_challenge_method=S256".into(),
            Reason::PkceMalformed => "the code_challenge is not a base64url SHA-256 digest".into(),
            Reason::PkceReused => "this code_challenge was used before: make a fresh code_verifier".into(),
            Reason::VerifierMissing => "the authorization used PKCE: send its code_verifier".into(),
            Reason::VerifierWrong => "the code_verifier does not match the code_challenge".into(),
            Reason::GrantNotAllowed => "the app client may not use this grant type".into(),
            Reason::ImplicitNotAllowed => "the app client may not use the implicit grant".into(),
            Reason::ScopeNotAllowed => "a requested scope is not allowed for the app client".into(),
            Reason::Attribute { name, problem } => format!("attribute {name}: {problem}"),
            Reason::WeakPassword => "the new password is too easy to guess".into(),
            Reason::ReusedPassword => "the new password was used before".into(),
            Reason::CompromisedPassword => "the new password appears in known data breaches".into(),
        }
    }
}

/// Client ids that are safe to repeat in an answer, as Cognito does (its own pattern, `[\w+]+`).
fn echoable(id: Option<&str>) -> Option<&str> {
    id.filter(|s| {
        (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'+')
    })
}

/// Cognito's error type, message and status for a reason (the API answers errors with 400).
fn cognito(reason: &Reason, client_id: Option<&str>) -> (&'static str, String) {
    let client = |with: &dyn Fn(&str) -> String, without: &str| {
        echoable(client_id).map_or_else(|| without.to_string(), with)
    };
    match reason {
        Reason::SignUpClosed => (
            "NotAuthorizedException",
            "SignUp is not permitted for this user pool".into(),
        ),
        Reason::AdminOnly => (
            "AccessDeniedException",
            "The caller is not authorized to perform this operation".into(),
        ),
        Reason::UnknownClient => (
            "ResourceNotFoundException",
            client(
                &|c| format!("User pool client {c} does not exist."),
                "User pool client does not exist.",
            ),
        ),
        Reason::SecretHashMissing => (
            "NotAuthorizedException",
            client(
                &|c| format!("Client {c} is configured with secret but SECRET_HASH was not received"),
                "Client is configured with secret but SECRET_HASH was not received",
            ),
        ),
        Reason::SecretHashWrong => (
            "NotAuthorizedException",
            client(
                &|c| format!("Unable to verify secret hash for client {c}"),
                "Unable to verify secret hash for client",
            ),
        ),
        Reason::Attribute { name, problem } => (
            "InvalidParameterException",
            format!("Attributes did not conform to the schema: {name}: {problem}"),
        ),
        Reason::WeakPassword => (
            "InvalidPasswordException",
            "Password did not conform with policy: Password not strong enough".into(),
        ),
        Reason::CompromisedPassword => (
            "InvalidPasswordException",
            "Password did not conform with policy: Password has appeared in a data breach".into(),
        ),
        Reason::ReusedPassword => (
            "PasswordHistoryPolicyViolationException",
            "The password does not meet the password history policy".into(),
        ),
        other => ("InvalidParameterException", other.message()),
    }
}

/// The RFC 6749 / RFC 7636 error code and HTTP status for a reason.
fn oauth(reason: &Reason) -> (&'static str, StatusCode) {
    match reason {
        Reason::UnknownClient | Reason::SecretHashMissing | Reason::SecretHashWrong => {
            ("invalid_client", StatusCode::UNAUTHORIZED)
        }
        Reason::GrantNotAllowed | Reason::AdminOnly => ("unauthorized_client", StatusCode::BAD_REQUEST),
        Reason::ImplicitNotAllowed => ("unsupported_response_type", StatusCode::BAD_REQUEST),
        Reason::ScopeNotAllowed => ("invalid_scope", StatusCode::BAD_REQUEST),
        Reason::VerifierWrong => ("invalid_grant", StatusCode::BAD_REQUEST),
        _ => ("invalid_request", StatusCode::BAD_REQUEST),
    }
}

/// The HTTP status of a plain JSON refusal: 400 for what the caller can fix in the request, 403 otherwise.
fn json_status(reason: &Reason) -> StatusCode {
    match reason {
        Reason::SignUpClosed
        | Reason::SignUpChallenge
        | Reason::AdminOnly
        | Reason::UnknownClient
        | Reason::SecretHashMissing
        | Reason::SecretHashWrong => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The answer to a refused request.
pub fn refusal(
    dialect: Dialect,
    policy: Policy,
    reason: &Reason,
    client_id: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    let (status, content_type, body) = match dialect {
        Dialect::Cognito => {
            let (kind, message) = cognito(reason, client_id);
            let body = serde_json::json!({ "__type": kind, "message": message });
            (StatusCode::BAD_REQUEST, "application/x-amz-json-1.1", body)
        }
        Dialect::Oauth => {
            let (code, status) = oauth(reason);
            let body = serde_json::json!({ "error": code, "error_description": reason.message() });
            (status, "application/json", body)
        }
        Dialect::Json => {
            let body = serde_json::json!({
                "error": "policy_refused",
                "policy": policy.as_str(),
                "reason": reason.code(),
                "message": reason.message(),
                "request_id": request_id,
            });
            (json_status(reason), "application/json", body)
        }
    };
    let mut r = Response::new(body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cognito_answers_repeat_only_well_formed_client_ids() {
        let (kind, msg) = cognito(&Reason::SecretHashWrong, Some("3n4b5urk1ft4fl3mg5e62d9ado"));
        assert_eq!(kind, "NotAuthorizedException");
        assert_eq!(
            msg,
            "Unable to verify secret hash for client 3n4b5urk1ft4fl3mg5e62d9ado"
        );
        let (_, msg) = cognito(&Reason::UnknownClient, Some("<script>"));
        assert_eq!(msg, "User pool client does not exist.");
    }

    #[test]
    fn attribute_messages_name_the_attribute_only() {
        let r = Reason::Attribute {
            name: "given_name".into(),
            problem: "must not contain a URL".into(),
        };
        assert_eq!(
            cognito(&r, None).1,
            "Attributes did not conform to the schema: given_name: must not contain a URL"
        );
        assert_eq!(r.message(), "attribute given_name: must not contain a URL");
    }
}
