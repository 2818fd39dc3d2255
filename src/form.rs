//! The text fields of a `multipart/form-data` body (what a browser's `FormData` sends), for the profiles'
//! `form` fields and the web ACL's form fields alongside urlencoded ones.

use bytes::Bytes;
use futures_util::FutureExt;
use http::HeaderMap;

/// Fields taken from one body at most (as many as a web-ACL field takes values).
const MAX_FIELDS: usize = 512;

/// The boundary of a `multipart/form-data` body, from its content type (its first `boundary` parameter);
/// `None` for any other body.
pub fn boundary(headers: &HeaderMap) -> Option<String> {
    boundaries(headers)?.next()
}

/// The `boundary` parameters of a `multipart/form-data` content type, in order; `None` for any other
/// media type. A parameter written `boundary*` (RFC 2231) comes back empty, as no boundary.
fn boundaries(headers: &HeaderMap) -> Option<impl Iterator<Item = String>> {
    const MULTIPART: &str = "multipart/form-data";
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = content_type.split(';');
    // Most bodies are not multipart: known from the media type alone.
    if !parts.next()?.trim().eq_ignore_ascii_case(MULTIPART) {
        return None;
    }
    Some(parts.filter_map(|param| {
        let (key, value) = param.split_once('=')?;
        let key = key.trim();
        if key.eq_ignore_ascii_case("boundary*") {
            return Some(String::new());
        }
        key.eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    }))
}

/// A `multipart/form-data` body as the profiles read it.
#[derive(Debug, PartialEq, Eq)]
pub enum Multipart {
    /// The (name, text) of each part without a file name, in order.
    Fields(Vec<(String, String)>),
    /// A body that form parsers read differently, so that authward cannot know which fields the backend
    /// gets: not one boundary in its content type, a part that breaks off or does not parse (bare LF line
    /// ends, which Werkzeug accepts), a part whose `Content-Disposition` names it twice or in RFC 2231 form
    /// (`name*=`), or more than 512 fields.
    Malformed,
}

/// The body's form fields when its content type is `multipart/form-data`, read strictly (see
/// [`Multipart::Malformed`]); `None` for any other body.
pub fn read_strict(headers: &HeaderMap, body: &[u8]) -> Option<Multipart> {
    let mut all = boundaries(headers)?;
    let (Some(boundary), None) = (all.next(), all.next()) else {
        return Some(Multipart::Malformed);
    };
    if boundary.is_empty() {
        return Some(Multipart::Malformed);
    }
    let mut out = Vec::new();
    let complete = parse(body, &boundary, |name, disposition, text| {
        if !single_name(disposition) || out.len() == MAX_FIELDS {
            return false;
        }
        if let Some(text) = text {
            out.push((name.to_owned(), text));
        }
        true
    });
    Some(if complete {
        Multipart::Fields(out)
    } else {
        Multipart::Malformed
    })
}

/// The (name, text) of each part without a file name, in order, from a whole body held in memory; parts
/// that are files are skipped. A body that breaks off or is malformed gives the fields before the fault.
pub fn fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    parse(body, boundary, |name, _, text| {
        if let Some(text) = text {
            out.push((name.to_owned(), text));
        }
        out.len() < MAX_FIELDS
    });
    out
}

/// Reads the parts of a whole body in turn, giving `part` each one's name, `Content-Disposition` and text
/// (`None` for a file) until it returns false; true when the body was read to its closing delimiter.
fn parse(body: &[u8], boundary: &str, mut part: impl FnMut(&str, &str, Option<String>) -> bool) -> bool {
    let chunk = Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(chunk) });
    let mut parts = multer::Multipart::new(stream, boundary);
    loop {
        // The whole body is in memory, so every step is ready at once (`None` would be a pending step).
        let field = match parts.next_field().now_or_never() {
            Some(Ok(Some(field))) => field,
            Some(Ok(None)) => return true,
            _ => return false,
        };
        let disposition = field
            .headers()
            .get(http::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let name = field.name().unwrap_or_default().to_owned();
        let text = if field.file_name().is_some() {
            None
        } else {
            match field.text().now_or_never() {
                Some(Ok(text)) => Some(text),
                _ => return false,
            }
        };
        if !part(&name, &disposition, text) {
            return false;
        }
    }
}

/// Whether a `Content-Disposition` names its part once, plainly: no second `name` (which Werkzeug would
/// read where multer reads the first) and no RFC 2231 `name*` or `filename*`.
fn single_name(disposition: &str) -> bool {
    let mut names = 0;
    for param in disposition.split(';').skip(1) {
        let key = param.split_once('=').map_or(param, |(k, _)| k).trim();
        if key.ends_with('*') {
            return false;
        }
        names += usize::from(key.eq_ignore_ascii_case("name"));
    }
    names == 1
}

/// The body with every part named `name` left out (its delimiter line, headers and content), the rest
/// byte for byte: what the web ACL's raw `body` field inspects when that part is the password.
pub fn without_field(body: &[u8], boundary: &str, name: &str) -> Vec<u8> {
    let delimiter = format!("--{boundary}");
    let starts: Vec<usize> = memchr::memmem::find_iter(body, delimiter.as_bytes()).collect();
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..starts.first().copied().unwrap_or(body.len())]);
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(body.len());
        let part = &body[start + delimiter.len()..end];
        if part_name(part).as_deref() != Some(name) {
            out.extend_from_slice(&body[start..end]);
        }
    }
    out
}

/// The `name` of a part (what follows its delimiter) from its `Content-Disposition` header.
fn part_name(part: &[u8]) -> Option<String> {
    let head_end = memchr::memmem::find(part, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&part[..head_end]).ok()?;
    let disposition = head.split("\r\n").find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    disposition.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("name")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    const BODY: &str = "--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice@example.com\r\n\
        --XyZ\r\nContent-Disposition: form-data; name=\"avatar\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\
        PNG-bytes\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nline one\r\nline two\r\n--XyZ--\r\n";

    #[test]
    fn text_parts_are_read_and_files_skipped() {
        let b = boundary(&headers("multipart/form-data; boundary=XyZ")).unwrap();
        assert_eq!(
            fields(BODY.as_bytes(), &b),
            [
                ("username".to_string(), "alice@example.com".to_string()),
                ("password".to_string(), "line one\r\nline two".to_string()),
            ]
        );
    }

    #[test]
    fn only_multipart_form_data_has_a_boundary_and_a_broken_body_keeps_what_came_first() {
        for other in [
            "application/x-www-form-urlencoded",
            "application/json",
            "multipart/form-data",
        ] {
            assert!(boundary(&headers(other)).is_none(), "{other}");
        }
        assert!(boundary(&HeaderMap::new()).is_none());
        let cut = &BODY[..BODY
            .find("--XyZ\r\nContent-Disposition: form-data; name=\"password\"")
            .unwrap()
            + 20];
        assert_eq!(
            fields(cut.as_bytes(), "XyZ"),
            [("username".to_string(), "alice@example.com".to_string())]
        );
        assert!(fields(b"no parts at all", "XyZ").is_empty());
    }

    #[test]
    fn strict_reading_refuses_what_parsers_read_differently() {
        let read = |content_type: &str, body: &str| read_strict(&headers(content_type), body.as_bytes());
        let fields = Multipart::Fields(vec![
            ("username".to_string(), "alice@example.com".to_string()),
            ("password".to_string(), "line one\r\nline two".to_string()),
        ]);
        assert_eq!(read("multipart/form-data; boundary=XyZ", BODY), Some(fields));
        // A blank before the parameters, a quoted boundary, a media type in capitals: the same body.
        for ct in [
            "multipart/form-data ; boundary=XyZ",
            "Multipart/Form-Data; boundary=\"XyZ\"",
            "multipart/form-data; charset=utf-8; boundary=XyZ",
        ] {
            assert!(
                matches!(read(ct, BODY), Some(Multipart::Fields(f)) if f.len() == 2),
                "{ct}"
            );
        }
        assert_eq!(read("application/x-www-form-urlencoded", BODY), None);
        let one = |disposition: &str| {
            format!("--b\r\nContent-Disposition: form-data; {disposition}\r\n\r\nalice\r\n--b--\r\n")
        };
        assert!(matches!(
            read("multipart/form-data; boundary=b", &one("name=\"username\"")),
            Some(Multipart::Fields(_))
        ));
        for (ct, body) in [
            // Werkzeug takes the last boundary, multer the first.
            (
                "multipart/form-data; boundary=AAA; boundary=b",
                one("name=\"username\""),
            ),
            (
                "multipart/form-data; boundary*=UTF-8''b",
                one("name=\"username\""),
            ),
            ("multipart/form-data", one("name=\"username\"")),
            // A second name (Werkzeug reads the last), an RFC 2231 name.
            (
                "multipart/form-data; boundary=b",
                one("name=\"x\"; name=\"username\""),
            ),
            ("multipart/form-data; boundary=b", one("name*=UTF-8''username")),
            (
                "multipart/form-data; boundary=b",
                one("name=\"f\"; filename*=UTF-8''a.png"),
            ),
            // Bare LF line ends, which Werkzeug reads.
            (
                "multipart/form-data; boundary=b",
                "--b\nContent-Disposition: form-data; name=\"username\"\n\nalice\n--b--\n".to_string(),
            ),
            // Broken off before the closing delimiter.
            (
                "multipart/form-data; boundary=b",
                one("name=\"username\"").replace("--b--\r\n", ""),
            ),
        ] {
            assert_eq!(read(ct, &body), Some(Multipart::Malformed), "{ct} {body:?}");
        }
        let many: String = (0..=MAX_FIELDS)
            .map(|i| one(&format!("name=\"f{i}\"")).replace("--b--\r\n", ""))
            .collect();
        assert_eq!(
            read("multipart/form-data; boundary=b", &format!("{many}--b--\r\n")),
            Some(Multipart::Malformed)
        );
    }

    #[test]
    fn a_named_part_is_left_out_of_the_raw_body_and_the_rest_kept_byte_for_byte() {
        let without = without_field(BODY.as_bytes(), "XyZ", "password");
        let end = BODY
            .find("--XyZ\r\nContent-Disposition: form-data; name=\"password\"")
            .unwrap();
        assert_eq!(
            String::from_utf8(without.clone()).unwrap(),
            format!("{}--XyZ--\r\n", &BODY[..end])
        );
        assert_eq!(
            fields(&without, "XyZ"),
            [("username".to_string(), "alice@example.com".to_string())]
        );
        // Header names and the parameter compare without case; unquoted names; a preamble is kept.
        let odd = "preamble\r\n--b\r\ncontent-disposition: form-data; NAME=pw\r\n\r\nsecret\r\n--b\r\n\
            Content-Disposition: form-data; name=\"user\"\r\n\r\nbob\r\n--b--";
        let kept = String::from_utf8(without_field(odd.as_bytes(), "b", "pw")).unwrap();
        assert!(!kept.contains("secret") && kept.starts_with("preamble\r\n--b\r\n") && kept.contains("bob"));
        // Nothing to leave out: the same bytes; a filename part of that name goes too.
        assert_eq!(without_field(BODY.as_bytes(), "XyZ", "otp"), BODY.as_bytes());
        assert!(
            !String::from_utf8(without_field(BODY.as_bytes(), "XyZ", "avatar"))
                .unwrap()
                .contains("PNG")
        );
        assert_eq!(without_field(b"", "XyZ", "password"), b"");
    }
}
