//! JSON pointers (RFC 6901) read exactly as serde_json's `Value::pointer` reads them, without its two
//! allocations per token: a token is unescaped (`~1` to `/`, then `~0` to `~`) only when it holds a `~`;
//! and read as backends that match member names ignoring case bind them ([`get_folded`]).

use std::borrow::Cow;

use serde_json::Value;

/// The value `pointer` selects in `doc`: `""` is the whole document; any other pointer must start with `/`.
pub fn get<'v>(doc: &'v Value, pointer: &str) -> Option<&'v Value> {
    tokens(pointer)?.try_fold(doc, |v, token| child(v, &token))
}

/// The value `pointer` selects, with object members found as Go's `encoding/json` and ASP.NET Core's
/// `System.Text.Json` (web defaults) bind them to a field: by the exact name, else by one equal to it
/// ignoring case (Unicode case folding, so `uſername` and `USERNAME` are `username`). `conflict` is set when
/// members that match ignoring case hold different values: such a backend binds the last of them, a
/// JavaScript or Python one the exact one, and either may be the one that signs in.
pub fn get_folded<'v>(doc: &'v Value, pointer: &str, conflict: &mut bool) -> Option<&'v Value> {
    tokens(pointer)?.try_fold(doc, |v, token| {
        let Value::Object(map) = v else {
            return child(v, &token);
        };
        let mut found = map.get(&*token);
        for (key, value) in map {
            if *key == *token || !same_ignoring_case(key, &token) {
                continue;
            }
            match found {
                None => found = Some(value),
                Some(f) if f != value => *conflict = true,
                Some(_) => {}
            }
        }
        found
    })
}

/// Whether two names are equal ignoring case, as Go's `strings.EqualFold` compares (ASCII without a copy).
fn same_ignoring_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    fn folded(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .flat_map(char::to_uppercase)
            .flat_map(char::to_lowercase)
    }
    folded(a).eq(folded(b))
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
    fn members_are_found_ignoring_case_and_disagreeing_ones_are_a_conflict() {
        let read = |json: &str, p: &str| {
            let doc: Value = serde_json::from_str(json).unwrap();
            let mut conflict = false;
            let v = get_folded(&doc, p, &mut conflict).cloned();
            (v, conflict)
        };
        let s = |v: &str| Some(Value::String(v.into()));
        // Exact, or the only name equal ignoring case (the long s and the Kelvin sign fold to s and k).
        assert_eq!(read(r#"{"username": "a"}"#, "/username"), (s("a"), false));
        assert_eq!(read(r#"{"USERNAME": "a"}"#, "/username"), (s("a"), false));
        assert_eq!(read(r#"{"u\u017fername": "a"}"#, "/username"), (s("a"), false));
        assert_eq!(read(r#"{"\u212aey": "a"}"#, "/key"), (s("a"), false));
        assert_eq!(read(r#"{"Auth": {"User": "a"}}"#, "/auth/user"), (s("a"), false));
        // The same value twice agrees; two values conflict, whichever spelling is exact.
        assert_eq!(
            read(r#"{"username": "a", "UserName": "a"}"#, "/username"),
            (s("a"), false)
        );
        assert_eq!(
            read(r#"{"username": "decoy", "USERNAME": "victim"}"#, "/username"),
            (s("decoy"), true)
        );
        assert!(read(r#"{"Username": "decoy", "USERNAME": "victim"}"#, "/username").1);
        // Other names, arrays and a missing member as before.
        assert_eq!(read(r#"{"user_name": "a"}"#, "/username"), (None, false));
        assert_eq!(
            read(r#"{"list": [1, 2]}"#, "/LIST/1"),
            (Some(Value::from(2)), false)
        );
        assert_eq!(read(r#"{"a": 1}"#, "/b"), (None, false));
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
