//! JSON pointers (RFC 6901) read exactly as serde_json's `Value::pointer` reads them, without its two
//! allocations per token: a token is unescaped (`~1` to `/`, then `~0` to `~`) only when it holds a `~`.

use std::borrow::Cow;

use serde_json::Value;

/// The value `pointer` selects in `doc`: `""` is the whole document; any other pointer must start with `/`.
pub fn get<'v>(doc: &'v Value, pointer: &str) -> Option<&'v Value> {
    tokens(pointer)?.try_fold(doc, |v, token| child(v, &token))
}

/// The unescaped reference tokens of a pointer, or `None` when it is neither empty nor starts with `/`
/// (such a pointer selects nothing).
pub fn tokens(pointer: &str) -> Option<Tokens<'_>> {
    if pointer.is_empty() {
        return Some(Tokens(None));
    }
    Some(Tokens(Some(pointer.strip_prefix('/')?.split('/'))))
}

/// The reference tokens of a pointer, see [`tokens`].
#[derive(Clone)]
pub struct Tokens<'a>(Option<std::str::Split<'a, char>>);

impl<'a> Iterator for Tokens<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Cow<'a, str>> {
        let raw = self.0.as_mut()?.next()?;
        Some(if raw.contains('~') {
            Cow::Owned(raw.replace("~1", "/").replace("~0", "~"))
        } else {
            Cow::Borrowed(raw)
        })
    }
}

/// The member or element `token` names in `v`.
pub fn child<'v>(v: &'v Value, token: &str) -> Option<&'v Value> {
    match v {
        Value::Object(map) => map.get(token),
        Value::Array(list) => index(token).and_then(|i| list.get(i)),
        _ => None,
    }
}

/// The array index a token names: decimal digits without a leading zero or sign.
pub fn index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_serde_json() {
        let doc: Value = serde_json::from_str(
            r#"{"a": {"b": [10, {"c": true}], "": 1, "x/y": 2, "x~y": 3, "~1": 4, " ": 5},
                "list": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "s": "text", "n": null}"#,
        )
        .unwrap();
        for p in [
            "",
            "/",
            "/a",
            "/a/b",
            "/a/b/0",
            "/a/b/1/c",
            "/a/b/2",
            "/a/b/-",
            "/a/b/01",
            "/a/b/+1",
            "/a/b/ 1",
            "/a/",
            "/a/x~1y",
            "/a/x~0y",
            "/a/~01",
            "/a/~1",
            "/a/~",
            "/a/~2",
            "/a/ ",
            "/list/10",
            "/list/010",
            "/list/1e1",
            "/list/-1",
            "/s",
            "/s/0",
            "/n",
            "/n/x",
            "a",
            "a/b",
            "#/a",
            "//",
            "/missing/x",
            "/list/18446744073709551616",
        ] {
            assert_eq!(get(&doc, p), doc.pointer(p), "{p:?}");
        }
    }

    #[test]
    fn tokens_are_unescaped_in_order() {
        let all = |p| tokens(p).map(|t| t.collect::<Vec<_>>());
        assert_eq!(all(""), Some(vec![]));
        assert_eq!(all("/"), Some(vec![Cow::Borrowed("")]));
        assert_eq!(
            all("/a~1b/~01/c~0"),
            Some(vec!["a/b".into(), "~1".into(), "c~".into()])
        );
        assert_eq!(all("a"), None);
    }
}
