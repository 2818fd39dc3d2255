//! OAuth 2.0 at the edge: PKCE on the authorize endpoint, grants, verifiers and scopes at the token endpoint.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::respond::Reason;

/// How long the link from an authorization code to its code_challenge is kept (codes live minutes).
pub const CODE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// The OAuth parameters of a request: the query string, then an urlencoded body.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Reads the query and, when given, the urlencoded body.
    pub fn read(query: Option<&str>, form_body: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for raw in query.map(str::as_bytes).into_iter().chain(form_body) {
            pairs.extend(form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Params { pairs }
    }

    /// A parameter's value; a parameter sent more than once is an error (RFC 6749 section 3.1), an empty
    /// one counts as absent.
    pub fn get(&self, name: &'static str) -> Result<Option<&str>, Reason> {
        let mut it = self.pairs.iter().filter(|(k, _)| k == name);
        match (it.next(), it.next()) {
            (Some(_), Some(_)) => Err(Reason::RepeatedParameter(name)),
            (Some((_, v)), None) => Ok(Some(v.as_str()).filter(|v| !v.is_empty())),
            (None, _) => Ok(None),
        }
    }

    /// Whether this is an authorization request (it has `response_type`).
    pub fn is_authorize(&self) -> bool {
        self.pairs.iter().any(|(k, _)| k == "response_type")
    }

    /// Whether this is a token request (it has `grant_type`).
    pub fn is_token(&self) -> bool {
        self.pairs.iter().any(|(k, _)| k == "grant_type")
    }
}

/// Whether the `response_type` asks for a code, or for a token straight away (the implicit grant).
pub fn response_types(response_type: &str) -> (bool, bool) {
    let mut words = response_type.split(' ');
    let (mut code, mut token) = (false, false);
    for w in &mut words {
        code |= w == "code";
        token |= w == "token";
    }
    (code, token)
}

/// Checks the PKCE parameters of an authorization request for a code; returns the code_challenge.
pub fn check_challenge(params: &Params) -> Result<String, Reason> {
    let challenge = params.get("code_challenge")?.ok_or(Reason::PkceMissing)?;
    match params.get("code_challenge_method")? {
        Some("S256") => {}
        _ => return Err(Reason::PkceMethod),
    }
    // A SHA-256 digest in base64url without padding is 43 characters.
    let well_formed = URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|d| d.len() == 32);
    if !well_formed {
        return Err(Reason::PkceMalformed);
    }
    Ok(challenge.to_string())
}

/// Checks a token request's code_verifier against the code_challenge of the authorization that made its code.
pub fn check_verifier(params: &Params, challenge: &str) -> Result<(), Reason> {
    let verifier = params.get("code_verifier")?.ok_or(Reason::VerifierMissing)?;
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    match bool::from(computed.as_bytes().ct_eq(challenge.as_bytes())) {
        true => Ok(()),
        false => Err(Reason::VerifierWrong),
    }
}

/// Whether every requested scope (space-separated) is allowed.
pub fn scopes_allowed(requested: &str, allowed: &[String]) -> bool {
    requested
        .split(' ')
        .filter(|s| !s.is_empty())
        .all(|s| allowed.iter().any(|a| a == s))
}

/// The authorization code in a redirect's `Location` (query or fragment), if any.
pub fn code_in_location(location: &str) -> Option<String> {
    let (_, rest) = location.split_once(['?', '#'])?;
    rest.split('#')
        .flat_map(|part| form_urlencoded::parse(part.as_bytes()))
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .filter(|c| !c.is_empty())
}

/// A store key for a value that must not be kept in the clear (authorization codes).
pub fn digest_key(prefix: &str, value: &str) -> String {
    format!("{prefix}{}", hex::encode(Sha256::digest(value.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    // code_challenge = BASE64URL(SHA256(code_verifier)), computed independently with
    //   base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";

    fn params(q: &str) -> Params {
        Params::read(Some(q), None)
    }

    #[test]
    fn a_challenge_needs_s256_and_a_digest() {
        let ok = format!("response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256");
        assert_eq!(check_challenge(&params(&ok)).unwrap(), CHALLENGE);
        assert_eq!(
            check_challenge(&params("response_type=code")),
            Err(Reason::PkceMissing)
        );
        let plain = format!("code_challenge={CHALLENGE}&code_challenge_method=plain");
        assert_eq!(check_challenge(&params(&plain)), Err(Reason::PkceMethod));
        let none = format!("code_challenge={CHALLENGE}");
        assert_eq!(check_challenge(&params(&none)), Err(Reason::PkceMethod));
        let short = "code_challenge=abc&code_challenge_method=S256";
        assert_eq!(check_challenge(&params(short)), Err(Reason::PkceMalformed));
        let twice =
            format!("code_challenge={CHALLENGE}&code_challenge={CHALLENGE}&code_challenge_method=S256");
        assert_eq!(
            check_challenge(&params(&twice)),
            Err(Reason::RepeatedParameter("code_challenge"))
        );
    }

    #[test]
    fn the_verifier_must_hash_to_the_challenge() {
        let body = format!("grant_type=authorization_code&code=c&code_verifier={VERIFIER}");
        let p = Params::read(None, Some(body.as_bytes()));
        assert!(p.is_token() && !p.is_authorize());
        assert_eq!(check_verifier(&p, CHALLENGE), Ok(()));
        let p = Params::read(
            None,
            Some(b"grant_type=authorization_code&code=c&code_verifier=other"),
        );
        assert_eq!(check_verifier(&p, CHALLENGE), Err(Reason::VerifierWrong));
        let p = Params::read(None, Some(b"grant_type=authorization_code&code=c"));
        assert_eq!(check_verifier(&p, CHALLENGE), Err(Reason::VerifierMissing));
    }

    #[test]
    fn scopes_must_be_a_subset() {
        let allowed = vec!["openid".to_string(), "email".to_string()];
        assert!(scopes_allowed("openid email", &allowed));
        assert!(scopes_allowed("openid", &allowed));
        assert!(!scopes_allowed("openid aws.cognito.signin.user.admin", &allowed));
    }

    #[test]
    fn codes_are_read_from_the_redirect() {
        assert_eq!(
            code_in_location("https://app.example/cb?code=a%2Bb&state=xyz").as_deref(),
            Some("a+b")
        );
        assert_eq!(
            code_in_location("https://app.example/cb#state=1&code=f").as_deref(),
            Some("f")
        );
        assert_eq!(
            code_in_location("https://app.example/cb?error=access_denied"),
            None
        );
        assert_eq!(code_in_location("https://app.example/cb"), None);
    }

    #[test]
    fn response_types_tell_code_from_implicit() {
        assert_eq!(response_types("code"), (true, false));
        assert_eq!(response_types("token"), (false, true));
        assert_eq!(response_types("code id_token token"), (true, true));
    }
}
