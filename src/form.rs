//! The text fields of a `multipart/form-data` body (what a browser's `FormData` sends), for the profiles'
//! `form` fields and the web ACL's form fields alongside urlencoded ones.

use bytes::Bytes;
use futures_util::FutureExt;
use http::HeaderMap;

/// Fields taken from one body at most (as many as a web-ACL field takes values).
const MAX_FIELDS: usize = 512;

/// The boundary of a `multipart/form-data` body, from its content type; `None` for any other body.
pub fn boundary(headers: &HeaderMap) -> Option<String> {
    const MULTIPART: &str = "multipart/form-data";
    let content_type = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    // Most bodies are not multipart: known without parsing the media type.
    if !content_type
        .get(..MULTIPART.len())
        .is_some_and(|t| t.eq_ignore_ascii_case(MULTIPART))
    {
        return None;
    }
    multer::parse_boundary(content_type).ok()
}

/// The (name, text) of each part without a file name, in order, from a whole body held in memory; parts
/// that are files are skipped. A body that breaks off or is malformed gives the fields before the fault.
pub fn fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let chunk = Bytes::copy_from_slice(body);
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(chunk) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while out.len() < MAX_FIELDS {
        // The whole body is in memory, so every step is ready at once (`None` would be a pending step).
        let Some(Ok(Some(field))) = parts.next_field().now_or_never() else {
            break;
        };
        if field.file_name().is_some() {
            continue;
        }
        let name = field.name().unwrap_or_default().to_owned();
        match field.text().now_or_never() {
            Some(Ok(text)) => out.push((name, text)),
            _ => break,
        }
    }
    out
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
