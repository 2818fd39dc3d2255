//! The `fake_success` answer: a profile's canned upstream response, with the number's digits filled in.

use http::{HeaderName, HeaderValue, Response, StatusCode};

use super::file::FileFakeSuccess;
use super::number::PhoneNumber;
use crate::proxy::body::{self, Body};

/// A compiled answer template.
#[derive(Debug, Clone)]
pub struct FakeSuccess {
    status: StatusCode,
    /// Header values take the body's placeholders (a backend's request id header is a `{{uuid}}`).
    headers: Vec<(HeaderName, Vec<Segment>)>,
    body: Vec<Segment>,
}

/// What the placeholders of one answer are filled with.
struct Fill<'a> {
    number: Option<&'a PhoneNumber>,
    username: Option<&'a str>,
    request_id: &'a str,
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
                let value = segments(v).map_err(|e| format!("fake_success.headers.{k}: {e}"))?;
                let text_ok = value.iter().all(|s| match s {
                    Segment::Text(t) => HeaderValue::from_str(t).is_ok(),
                    _ => true,
                });
                if !text_ok {
                    return Err(format!("fake_success.headers.{k}: invalid header value"));
                }
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
        let fill = Fill {
            number,
            username,
            request_id,
        };
        let mut r = Response::new(body::full(fill.text(&self.body)));
        *r.status_mut() = self.status;
        for (k, v) in &self.headers {
            // The username is JSON-escaped, so only DEL could be left that a header cannot hold.
            let bytes: Vec<u8> = fill
                .text(v)
                .into_bytes()
                .into_iter()
                .filter(|b| *b != 0x7f)
                .collect();
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                r.headers_mut().append(k.clone(), value);
            }
        }
        r
    }
}

impl Fill<'_> {
    /// The template's text with its placeholders filled in.
    fn text(&self, template: &[Segment]) -> String {
        let mut text = String::new();
        for s in template {
            match s {
                Segment::Text(t) => text.push_str(t),
                Segment::Last(n) => match self.number {
                    Some(num) => text.push_str(num.last_digits(*n)),
                    None => text.push_str(&"*".repeat(*n)),
                },
                Segment::Mask(k, l) => {
                    let digits = self.number.map_or("", PhoneNumber::digits);
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
                Segment::RequestId => text.push_str(self.request_id),
                Segment::Username => {
                    let quoted = serde_json::Value::from(self.username.unwrap_or("")).to_string();
                    text.push_str(&quoted[1..quoted.len() - 1]);
                }
            }
        }
        text
    }
}

/// Splits a body or header template into text and `{{...}}` placeholders.
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

    #[tokio::test]
    async fn header_values_take_placeholders() {
        let t = FakeSuccess::compile(&FileFakeSuccess {
            status: 200,
            headers: [
                ("x-amzn-requestid".to_string(), "{{uuid}}".to_string()),
                (
                    "x-user".to_string(),
                    "u={{username}}; n={{last:4}}; r={{request_id}}".to_string(),
                ),
            ]
            .into(),
            body: "{}".into(),
        })
        .unwrap();
        let n = PhoneNumber::parse("+447400123456", None).unwrap();
        let r = t.render(Some(&n), Some("ann\u{7f}\n"), "req1");
        let id = r.headers()["x-amzn-requestid"].to_str().unwrap();
        assert_eq!((id.len(), &id[8..9], &id[14..15]), (36, "-", "4"), "{id}");
        assert_eq!(r.headers()["x-user"], "u=ann\\n; n=3456; r=req1");
        let again = t.render(Some(&n), None, "req2");
        assert_ne!(again.headers()["x-amzn-requestid"], id, "a new UUID each time");
        let bad = |v: &str| {
            FakeSuccess::compile(&FileFakeSuccess {
                status: 200,
                headers: [("x-a".to_string(), v.to_string())].into(),
                body: String::new(),
            })
            .unwrap_err()
        };
        assert!(
            bad("{{nope}}").contains("unknown placeholder"),
            "{}",
            bad("{{nope}}")
        );
        assert!(bad("a\nb {{uuid}}").contains("invalid header value"));
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
