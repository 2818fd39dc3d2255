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
}
