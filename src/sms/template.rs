//! The `fake_success` answer: a profile's canned upstream response, with the number's digits filled in.

use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::file::FileFakeSuccess;
use super::number::PhoneNumber;
use crate::proxy::body::{self, Body};

/// A compiled answer template.
#[derive(Debug, Clone)]
pub struct FakeSuccess {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    /// The last N digits.
    Last(usize),
    /// `+`, the first K digits, `*` for the middle, the last L digits.
    Mask(usize, usize),
    Uuid,
    RequestId,
    /// The username, escaped as inside a JSON string.
    Username,
}

impl FakeSuccess {
    /// Checks the status, the headers and the placeholders of the body.
    pub fn compile(f: &FileFakeSuccess) -> Result<FakeSuccess, String> {
        let status = StatusCode::from_u16(f.status)
            .ok()
            .filter(|s| (200..400).contains(&s.as_u16()))
            .ok_or_else(|| format!("fake_success.status: {} is not a 2xx or 3xx status", f.status))?;
        let headers = f
            .headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("fake_success.headers: invalid header name `{k}`"))?;
                let value = HeaderValue::from_str(v)
                    .map_err(|_| format!("fake_success.headers.{k}: invalid header value"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?;
        Ok(FakeSuccess {
            status,
            headers,
            body: segments(&f.body).map_err(|e| format!("fake_success.body: {e}"))?,
        })
    }

    /// The answer for one request; digits of an unknown number render as `*`.
    pub fn render(
        &self,
        number: Option<&PhoneNumber>,
        username: Option<&str>,
        request_id: &str,
    ) -> Response<Body> {
        let mut text = String::new();
        for s in &self.body {
            match s {
                Segment::Text(t) => text.push_str(t),
                Segment::Last(n) => match number {
                    Some(num) => text.push_str(num.last_digits(*n)),
                    None => text.push_str(&"*".repeat(*n)),
                },
                Segment::Mask(k, l) => {
                    let digits = number.map_or("", PhoneNumber::digits);
                    let len = if digits.is_empty() { 11 } else { digits.len() };
                    let (k, l) = ((*k).min(len), (*l).min(len.saturating_sub(*k)));
                    text.push('+');
                    for (i, c) in (0..len).map(|i| (i, digits.as_bytes().get(i))) {
                        match c {
                            Some(d) if i < k || i >= len - l => text.push(char::from(*d)),
                            _ => text.push('*'),
                        }
                    }
                }
                Segment::Uuid => {
                    let b: [u8; 16] = rand::random();
                    let h = hex::encode(b);
                    let v = (u8::from_str_radix(&h[16..17], 16).unwrap_or(0) & 0x3) | 0x8;
                    text.push_str(&format!(
                        "{}-{}-4{}-{:x}{}-{}",
                        &h[..8],
                        &h[8..12],
                        &h[13..16],
                        v,
                        &h[17..20],
                        &h[20..32]
                    ));
                }
                Segment::RequestId => text.push_str(request_id),
                Segment::Username => {
                    let quoted = serde_json::Value::from(username.unwrap_or("")).to_string();
                    text.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        let mut r = Response::new(body::full(text));
        *r.status_mut() = self.status;
        for (k, v) in &self.headers {
            r.headers_mut().append(k.clone(), v.clone());
        }
        r
    }
}

/// Splits a body template into text and `{{...}}` placeholders.
fn segments(body: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Segment::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` without its `}}`".to_string())?;
        let name = after[..end].trim();
        let num = |s: &str| {
            s.parse::<usize>()
                .ok()
                .filter(|n| *n <= 15)
                .ok_or_else(|| format!("`{{{{{name}}}}}`: {s} is not a digit count from 0 to 15"))
        };
        let parts: Vec<&str> = name.split(':').collect();
        out.push(match parts.as_slice() {
            ["last", n] => Segment::Last(num(n)?),
            ["mask", k, l] => Segment::Mask(num(k)?, num(l)?),
            ["uuid"] => Segment::Uuid,
            ["request_id"] => Segment::RequestId,
            ["username"] => Segment::Username,
            _ => {
                return Err(format!(
                    "unknown placeholder `{{{{{name}}}}}` (use last:N, mask:K:L, uuid, username or request_id)"
                ));
            }
        });
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn fake(status: u16, body: &str) -> Result<FakeSuccess, String> {
        FakeSuccess::compile(&FileFakeSuccess {
            status,
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
            body: body.into(),
        })
    }

    async fn text(r: Response<Body>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn placeholders_render() {
        let t = fake(
            200,
            r#"{"d": "{{mask:4:2}}", "c": "+*******{{last:4}}", "u": "{{uuid}}", "r": "{{ request_id }}", "n": "{{username}}"}"#,
        )
        .unwrap();
        let n = PhoneNumber::parse("+14155550100", None).unwrap();
        let r = t.render(Some(&n), Some("O'Brien \"x\""), "req1");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
        assert_eq!(v["d"], "+1415*****00");
        assert_eq!(v["c"], "+*******0100");
        assert_eq!(v["r"], "req1");
        assert_eq!(v["n"], "O'Brien \"x\"", "JSON-escaped");
        let u = v["u"].as_str().unwrap();
        assert_eq!((u.len(), &u[14..15]), (36, "4"), "{u}");
        let v: serde_json::Value = serde_json::from_str(&text(t.render(None, None, "r")).await).unwrap();
        assert_eq!(v["d"], "+***********", "an unknown number renders as stars");
        assert_eq!(v["c"], "+***********");
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(fake(500, "").unwrap_err().contains("2xx"));
        assert!(fake(303, "").is_ok(), "a form's redirect");
        assert!(fake(200, "{{last}}").unwrap_err().contains("unknown placeholder"));
        assert!(fake(200, "{{mask:4:99}}").unwrap_err().contains("digit count"));
        assert!(fake(200, "{{uuid").unwrap_err().contains("without"));
        assert!(fake(200, "plain {not a placeholder}").is_ok());
    }
}
