//! The web ACL's text transformations (AWS WAF and ModSecurity semantics): linear, bounded, copy-free.

use std::borrow::Cow;

/// Most transformations one statement may list (checked by the config loader, not here).
pub const MAX_TRANSFORMS: usize = 10;

/// One text transformation. Every variant runs in one linear pass, never panics, and never makes its
/// output longer than its input, except `utf8_to_unicode` (at most 3×).
///
/// Decoders that yield a code point (`url_decode_uni`'s `%uHHHH`, `js_decode`, `css_decode` and numeric
/// `html_entity_decode`) all write it the same way: U+0000–U+007F as that byte, full-width ASCII
/// U+FF01–U+FF5E as its ASCII twin, surrogates that do not pair and values past U+10FFFF as U+FFFD, and
/// everything else as UTF-8. (AWS WAF and ModSecurity keep only the low byte, so U+0127 `ħ` becomes
/// `'` and a Maltese name looks like SQL injection.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// ASCII `A-Z` to `a-z`; every other byte (non-ASCII included) is kept.
    Lowercase,
    /// ASCII `a-z` to `A-Z`; every other byte (non-ASCII included) is kept.
    Uppercase,
    /// `%HH` to the byte and `+` to a space; a `%` without two hex digits is kept as is.
    UrlDecode,
    /// `url_decode` plus `%uHHHH` (`%UHHHH` too, surrogate pairs joined), written as described on the type.
    UrlDecodeUni,
    /// `&#DDD;`, `&#xHH;` and named entities (`amp lt gt quot apos nbsp`, `colon tab newline lpar` …, any
    /// letter case); the `;` is optional after numbers and after `amp lt gt quot nbsp`, as browsers do.
    HtmlEntityDecode,
    /// JavaScript escapes: `\xHH`, `\uHHHH` (pairs joined), `\u{H…}`, octal `\OOO` (≤ `\377`),
    /// `\b \f \n \r \t \v`, a line continuation removed, and `\c` to `c` for any other `c`.
    JsDecode,
    /// CSS 2 escapes: `\` + 1–6 hex digits (one following whitespace eaten), a line continuation removed,
    /// and `\c` to `c`; `\0` becomes a NUL byte.
    CssDecode,
    /// Base64 (standard alphabet) decoded up to the first byte outside it (`=` included), as ModSecurity
    /// does: input that does not start with base64 decodes to nothing.
    Base64Decode,
    /// Forgiving base64: both alphabets (`+/` and `-_`), every other byte skipped, `=` ends a group.
    Base64DecodeExt,
    /// Each pair of hex digits to its byte; other bytes, and an odd last digit of a run, are kept.
    HexDecode,
    /// SQL hex literals inside text: `0x414243` to `ABC` (the `0` must not follow a letter, digit or
    /// `_`; an odd last digit is kept).
    SqlHexDecode,
    /// ANSI C escapes: `\a \b \f \n \r \t \v \\ \? \' \"`, `\xHH`, `\OOO` (1–3 octal digits, low byte);
    /// invalid escapes are kept.
    EscapeSeqDecode,
    /// Each run of whitespace (space, `\t \n \v \f \r`, NBSP as UTF-8 or as a lone `0xA0`) to one space.
    CompressWhiteSpace,
    /// Deletes the whitespace `compress_white_space` knows.
    RemoveWhitespace,
    /// Deletes NUL bytes.
    RemoveNulls,
    /// Replaces NUL bytes with spaces.
    ReplaceNulls,
    /// Collapses `//`, drops `.` segments and resolves `..` against the segment before it; a `..` that
    /// has nothing to cancel stays, so the traversal remains visible.
    NormalizePath,
    /// `normalize_path` with `\` read as `/` (the output uses `/`).
    NormalizePathWin,
    /// ModSecurity's `t:cmdLine`: deletes `\ " ' ^`, turns runs of space, tab, CR, LF, `,` and `;` into
    /// one space (none before `/` or `(`), and lowercases ASCII.
    CmdLine,
    /// Each `/* … */` to one space; an unterminated `/*` to the end becomes one space; a lone `*/` stays.
    ReplaceComments,
    /// Deletes `/*`, `*/`, `<!--`, `-->`, `--` and `#`.
    RemoveCommentsChar,
    /// Each valid non-ASCII UTF-8 character to `%uhhhh` (beyond U+FFFF a surrogate pair); invalid bytes
    /// are kept. Grows the output at most 3× (2 bytes in, 6 out).
    Utf8ToUnicode,
    /// Deletes ASCII whitespace (space, `\t \n \v \f \r`) at both ends.
    Trim,
    /// Deletes ASCII whitespace at the start.
    TrimLeft,
    /// Deletes ASCII whitespace at the end.
    TrimRight,
}

impl Transform {
    /// Every transformation, in declaration order.
    pub const ALL: [Transform; 25] = [
        Transform::Lowercase,
        Transform::Uppercase,
        Transform::UrlDecode,
        Transform::UrlDecodeUni,
        Transform::HtmlEntityDecode,
        Transform::JsDecode,
        Transform::CssDecode,
        Transform::Base64Decode,
        Transform::Base64DecodeExt,
        Transform::HexDecode,
        Transform::SqlHexDecode,
        Transform::EscapeSeqDecode,
        Transform::CompressWhiteSpace,
        Transform::RemoveWhitespace,
        Transform::RemoveNulls,
        Transform::ReplaceNulls,
        Transform::NormalizePath,
        Transform::NormalizePathWin,
        Transform::CmdLine,
        Transform::ReplaceComments,
        Transform::RemoveCommentsChar,
        Transform::Utf8ToUnicode,
        Transform::Trim,
        Transform::TrimLeft,
        Transform::TrimRight,
    ];

    /// The snake_case name, as written in rule files.
    pub fn name(self) -> &'static str {
        match self {
            Transform::Lowercase => "lowercase",
            Transform::Uppercase => "uppercase",
            Transform::UrlDecode => "url_decode",
            Transform::UrlDecodeUni => "url_decode_uni",
            Transform::HtmlEntityDecode => "html_entity_decode",
            Transform::JsDecode => "js_decode",
            Transform::CssDecode => "css_decode",
            Transform::Base64Decode => "base64_decode",
            Transform::Base64DecodeExt => "base64_decode_ext",
            Transform::HexDecode => "hex_decode",
            Transform::SqlHexDecode => "sql_hex_decode",
            Transform::EscapeSeqDecode => "escape_seq_decode",
            Transform::CompressWhiteSpace => "compress_white_space",
            Transform::RemoveWhitespace => "remove_whitespace",
            Transform::RemoveNulls => "remove_nulls",
            Transform::ReplaceNulls => "replace_nulls",
            Transform::NormalizePath => "normalize_path",
            Transform::NormalizePathWin => "normalize_path_win",
            Transform::CmdLine => "cmd_line",
            Transform::ReplaceComments => "replace_comments",
            Transform::RemoveCommentsChar => "remove_comments_char",
            Transform::Utf8ToUnicode => "utf8_to_unicode",
            Transform::Trim => "trim",
            Transform::TrimLeft => "trim_left",
            Transform::TrimRight => "trim_right",
        }
    }

    /// Applies this transformation. When nothing changes, `input` comes back as it was, without a copy.
    pub fn apply<'a>(self, input: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
        match self {
            Transform::Lowercase => ascii_case(input, false),
            Transform::Uppercase => ascii_case(input, true),
            Transform::Trim => trim(input, true, true),
            Transform::TrimLeft => trim(input, true, false),
            Transform::TrimRight => trim(input, false, true),
            Transform::UrlDecode => rewrite(input, |s| url_decode(s, false)),
            Transform::UrlDecodeUni => rewrite(input, |s| url_decode(s, true)),
            Transform::HtmlEntityDecode => rewrite(input, html_entity_decode),
            Transform::JsDecode => rewrite(input, js_decode),
            Transform::CssDecode => rewrite(input, css_decode),
            Transform::Base64Decode => rewrite(input, |s| base64_decode(s, false)),
            Transform::Base64DecodeExt => rewrite(input, |s| base64_decode(s, true)),
            Transform::HexDecode => rewrite(input, hex_decode),
            Transform::SqlHexDecode => rewrite(input, sql_hex_decode),
            Transform::EscapeSeqDecode => rewrite(input, escape_seq_decode),
            Transform::CompressWhiteSpace => rewrite(input, |s| whitespace(s, b" ")),
            Transform::RemoveWhitespace => rewrite(input, |s| whitespace(s, b"")),
            Transform::RemoveNulls => rewrite(input, |s| nulls(s, b"")),
            Transform::ReplaceNulls => rewrite(input, |s| nulls(s, b" ")),
            Transform::NormalizePath => rewrite(input, |s| normalize_path(s, false)),
            Transform::NormalizePathWin => rewrite(input, |s| normalize_path(s, true)),
            Transform::CmdLine => rewrite(input, cmd_line),
            Transform::ReplaceComments => rewrite(input, replace_comments),
            Transform::RemoveCommentsChar => rewrite(input, remove_comments_char),
            Transform::Utf8ToUnicode => rewrite(input, utf8_to_unicode),
        }
    }
}

/// Applies a chain in order.
pub fn apply_chain<'a>(chain: &[Transform], input: &'a [u8]) -> Cow<'a, [u8]> {
    chain.iter().fold(Cow::Borrowed(input), |value, t| t.apply(value))
}

/// Runs a transformation that answers `None` when it changes nothing.
fn rewrite<'a>(input: Cow<'a, [u8]>, f: fn(&[u8]) -> Option<Vec<u8>>) -> Cow<'a, [u8]> {
    match f(&input) {
        Some(changed) => Cow::Owned(changed),
        None => input,
    }
}

/// Output built lazily: nothing is allocated until the first replacement, and the bytes between
/// replacements are copied from the source in one piece.
struct Out<'a> {
    src: &'a [u8],
    buf: Option<Vec<u8>>,
    /// Source bytes before this index are already accounted for in `buf`.
    done: usize,
}

impl<'a> Out<'a> {
    fn new(src: &'a [u8]) -> Self {
        Out {
            src,
            buf: None,
            done: 0,
        }
    }

    /// Keeps the source up to `start`, drops `src[start..end]`, and returns the buffer to write its
    /// replacement into.
    fn edit(&mut self, start: usize, end: usize) -> &mut Vec<u8> {
        let src = self.src;
        let buf = self.buf.get_or_insert_with(|| Vec::with_capacity(src.len()));
        buf.extend_from_slice(src.get(self.done..start).unwrap_or_default());
        self.done = end;
        buf
    }

    /// Replaces `src[start..end]` with `with`.
    fn put(&mut self, start: usize, end: usize, with: &[u8]) {
        self.edit(start, end).extend_from_slice(with);
    }

    /// Replaces `src[start..end]` with a decoded value.
    fn put_value(&mut self, start: usize, end: usize, value: Value) {
        match value {
            Value::Byte(b) => self.put(start, end, &[b]),
            Value::Char(cp) => {
                let mut tmp = [0u8; 4];
                self.put(start, end, code_point_bytes(cp, &mut tmp));
            }
            Value::Nothing => self.put(start, end, b""),
        }
    }

    fn finish(self) -> Option<Vec<u8>> {
        let mut buf = self.buf?;
        buf.extend_from_slice(self.src.get(self.done..).unwrap_or_default());
        Some(buf)
    }
}

/// What an escape decodes to.
#[derive(Clone, Copy)]
enum Value {
    /// A raw byte.
    Byte(u8),
    /// A code point, written by [`code_point_bytes`].
    Char(u32),
    /// Nothing (a line continuation).
    Nothing,
}

/// The bytes a decoded code point is written as (the policy documented on [`Transform`]).
fn code_point_bytes(cp: u32, tmp: &mut [u8; 4]) -> &[u8] {
    match cp {
        0..=0x7F => {
            tmp[0] = cp as u8;
            &tmp[..1]
        }
        0xFF01..=0xFF5E => {
            tmp[0] = (cp - 0xFEE0) as u8;
            &tmp[..1]
        }
        _ => char::from_u32(cp)
            .unwrap_or(char::REPLACEMENT_CHARACTER)
            .encode_utf8(tmp)
            .as_bytes(),
    }
}

fn hex_digit(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// The value of exactly `n` hex digits at `src[at..]`.
fn hex_at(src: &[u8], at: usize, n: usize) -> Option<u32> {
    let digits = src.get(at..at.checked_add(n)?)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &b| Some(acc << 4 | hex_digit(b)?))
}

/// Joins a UTF-16 high surrogate `hi` (whose escape ended at `next`) with a following `<esc>uHHHH` low
/// surrogate; returns the code point and where the consumed input ends.
fn join_surrogates(src: &[u8], hi: u32, next: usize, esc: u8, upper_u: bool) -> (u32, usize) {
    if (0xD800..0xDC00).contains(&hi) && src.get(next) == Some(&esc) {
        let u_ok = match src.get(next + 1) {
            Some(b'u') => true,
            Some(b'U') => upper_u,
            _ => false,
        };
        if u_ok {
            if let Some(lo) = hex_at(src, next + 2, 4).filter(|lo| (0xDC00..0xE000).contains(lo)) {
                return (0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00), next + 6);
            }
        }
    }
    (hi, next)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of the word `w` equals `b` (exact, branch-free).
fn word_has(w: u64, b: u8) -> bool {
    let x = w ^ (ONES * u64::from(b));
    x.wrapping_sub(ONES) & !x & HIGHS != 0
}

/// Whether some byte of the word `w` is below `n` (exact for `n` ≤ 128).
fn word_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0
}

/// The eight bytes at `src[at..]` as a word, if there are eight.
fn word_at(src: &[u8], at: usize) -> Option<u64> {
    let bytes = src.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_le_bytes)
}

/// The first index at or after `from` whose byte satisfies `byte`, or `src.len()`. Eight bytes at a
/// time are passed over when `word` says none of them can match.
fn skip_to(src: &[u8], from: usize, word: impl Fn(u64) -> bool, byte: impl Fn(u8) -> bool) -> usize {
    let rest = src.get(from..).unwrap_or_default();
    let mut chunks = rest.chunks_exact(8);
    let mut at = from;
    for chunk in &mut chunks {
        if <[u8; 8]>::try_from(chunk).map_or(true, |a| word(u64::from_le_bytes(a))) {
            if let Some(p) = chunk.iter().position(|&b| byte(b)) {
                return at + p;
            }
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| byte(b))
        .map_or(src.len(), |p| at + p)
}

/// Where the next `needle` byte is at or after `from`.
fn find_byte(src: &[u8], from: usize, needle: u8) -> Option<usize> {
    let at = skip_to(src, from, |w| word_has(w, needle), |b| b == needle);
    (at < src.len()).then_some(at)
}

/// Whether some byte satisfies `f` (a loop without early exit, so it vectorises).
fn any_byte(src: &[u8], f: impl Fn(u8) -> bool) -> bool {
    src.chunks(64).any(|c| c.iter().fold(false, |acc, &b| acc | f(b)))
}

/// Where the next `needle` pair is at or after `from`.
fn find_pair(src: &[u8], from: usize, needle: &[u8; 2]) -> Option<usize> {
    src.get(from..)?
        .windows(2)
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The length of the valid UTF-8 character at `src[i]` and its code point, if there is one.
fn utf8_char(src: &[u8], i: usize) -> Option<(u32, usize)> {
    let width = match *src.get(i)? {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let bytes = src.get(i..i.checked_add(width)?)?;
    let c = std::str::from_utf8(bytes).ok()?.chars().next()?;
    Some((u32::from(c), width))
}

/// ASCII whitespace as C's `isspace` knows it (Rust's `is_ascii_whitespace` leaves out `\v`).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

// ---- lowercase, uppercase, trim ------------------------------------------------------------------

fn ascii_case(input: Cow<'_, [u8]>, upper: bool) -> Cow<'_, [u8]> {
    let needed = if upper {
        any_byte(&input, |b| b.is_ascii_lowercase())
    } else {
        any_byte(&input, |b| b.is_ascii_uppercase())
    };
    if !needed {
        return input;
    }
    let mut owned = input.into_owned();
    if upper {
        owned.make_ascii_uppercase();
    } else {
        owned.make_ascii_lowercase();
    }
    Cow::Owned(owned)
}

fn trim(input: Cow<'_, [u8]>, left: bool, right: bool) -> Cow<'_, [u8]> {
    let s: &[u8] = &input;
    let start = if left {
        s.iter().position(|&b| !is_space(b)).unwrap_or(s.len())
    } else {
        0
    };
    let end = if right {
        s.iter()
            .rposition(|&b| !is_space(b))
            .map_or(start, |p| p + 1)
            .max(start)
    } else {
        s.len()
    };
    if start == 0 && end == s.len() {
        return input;
    }
    match input {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(start..end).unwrap_or_default()),
        Cow::Owned(mut v) => {
            v.truncate(end);
            v.drain(..start.min(v.len()));
            Cow::Owned(v)
        }
    }
}

// ---- url_decode, url_decode_uni --------------------------------------------------------------------

fn url_decode(src: &[u8], uni: bool) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    loop {
        i = skip_to(
            src,
            i,
            |w| word_has(w, b'%') || word_has(w, b'+'),
            |b| b == b'%' || b == b'+',
        );
        let Some(&b) = src.get(i) else { break };
        match b {
            b'+' => {
                out.put(i, i + 1, b" ");
                i += 1;
            }
            b'%' => {
                if uni && matches!(src.get(i + 1), Some(b'u' | b'U')) {
                    if let Some(unit) = hex_at(src, i + 2, 4) {
                        let (cp, end) = join_surrogates(src, unit, i + 6, b'%', true);
                        out.put_value(i, end, Value::Char(cp));
                        i = end;
                        continue;
                    }
                }
                match hex_at(src, i + 1, 2) {
                    Some(v) => {
                        out.put(i, i + 3, &[v as u8]);
                        i += 3;
                    }
                    None => i += 1,
                }
            }
            _ => i += 1,
        }
    }
    out.finish()
}

// ---- html_entity_decode ------------------------------------------------------------------------------

/// The longest entity name looked at; longer letter runs are no entity.
const MAX_ENTITY_NAME: usize = 8;

/// A named entity (in any letter case): its code point, and whether browsers accept it without the
/// closing `;`.
fn named_entity(name: &[u8]) -> Option<(u32, bool)> {
    let mut lower = [0u8; MAX_ENTITY_NAME];
    let folded = lower.get_mut(..name.len())?;
    folded.copy_from_slice(name);
    folded.make_ascii_lowercase();
    let found = match &*folded {
        b"amp" => (0x26, true),
        b"lt" => (0x3C, true),
        b"gt" => (0x3E, true),
        b"quot" => (0x22, true),
        b"nbsp" => (0xA0, true),
        b"copy" => (0xA9, true),
        b"reg" => (0xAE, true),
        b"shy" => (0xAD, true),
        b"apos" => (0x27, false),
        b"tab" => (0x09, false),
        b"newline" => (0x0A, false),
        b"excl" => (0x21, false),
        b"num" => (0x23, false),
        b"dollar" => (0x24, false),
        b"percnt" => (0x25, false),
        b"lpar" => (0x28, false),
        b"rpar" => (0x29, false),
        b"ast" | b"midast" => (0x2A, false),
        b"plus" => (0x2B, false),
        b"comma" => (0x2C, false),
        b"hyphen" => (0x2D, false),
        b"period" => (0x2E, false),
        b"sol" => (0x2F, false),
        b"colon" => (0x3A, false),
        b"semi" => (0x3B, false),
        b"equals" => (0x3D, false),
        b"quest" => (0x3F, false),
        b"commat" => (0x40, false),
        b"lsqb" | b"lbrack" => (0x5B, false),
        b"bsol" => (0x5C, false),
        b"rsqb" | b"rbrack" => (0x5D, false),
        b"hat" => (0x5E, false),
        b"lowbar" => (0x5F, false),
        b"grave" => (0x60, false),
        b"lcub" | b"lbrace" => (0x7B, false),
        b"verbar" | b"vert" => (0x7C, false),
        b"rcub" | b"rbrace" => (0x7D, false),
        _ => return None,
    };
    Some(found)
}

fn html_entity_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(amp) = find_byte(src, i, b'&') {
        match entity_at(src, amp) {
            Some((cp, end)) => {
                out.put_value(amp, end, Value::Char(cp));
                i = end;
            }
            None => i = amp + 1,
        }
    }
    out.finish()
}

/// The entity that starts with the `&` at `amp`: its code point and where it ends.
fn entity_at(src: &[u8], amp: usize) -> Option<(u32, usize)> {
    let mut j = amp + 1;
    if src.get(j) == Some(&b'#') {
        j += 1;
        let radix = if matches!(src.get(j), Some(b'x' | b'X')) {
            j += 1;
            16
        } else {
            10
        };
        let digits_start = j;
        let mut value: u32 = 0;
        while let Some(d) = src.get(j).and_then(|&b| char::from(b).to_digit(radix)) {
            // Saturates past U+10FFFF, which is written as U+FFFD.
            value = (value * radix + d).min(0x11_0000);
            j += 1;
        }
        if j == digits_start {
            return None;
        }
        if src.get(j) == Some(&b';') {
            j += 1;
        }
        return Some((value, j));
    }
    let name_start = j;
    while j - name_start <= MAX_ENTITY_NAME && src.get(j).is_some_and(u8::is_ascii_alphanumeric) {
        j += 1;
    }
    let (cp, bare_ok) = named_entity(src.get(name_start..j)?)?;
    if src.get(j) == Some(&b';') {
        Some((cp, j + 1))
    } else if bare_ok {
        Some((cp, j))
    } else {
        None
    }
}

// ---- js_decode, css_decode, escape_seq_decode ------------------------------------------------------

fn js_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(bs) = find_byte(src, i, b'\\') {
        // A backslash at the very end stays.
        let Some(&c) = src.get(bs + 1) else { break };
        let (value, end) = match c {
            b'x' => match hex_at(src, bs + 2, 2) {
                Some(v) => (Value::Char(v), bs + 4),
                None => (Value::Byte(c), bs + 2),
            },
            b'u' => js_unicode(src, bs),
            b'0'..=b'7' => {
                // Legacy octal: up to three digits when the first is 0-3 (so at most \377), else two.
                let max = if c <= b'3' { 3 } else { 2 };
                let (v, n) = octal_at(src, bs + 1, max);
                (Value::Char(v), bs + 1 + n)
            }
            b'b' => (Value::Byte(0x08), bs + 2),
            b'f' => (Value::Byte(0x0C), bs + 2),
            b'n' => (Value::Byte(b'\n'), bs + 2),
            b'r' => (Value::Byte(b'\r'), bs + 2),
            b't' => (Value::Byte(b'\t'), bs + 2),
            b'v' => (Value::Byte(0x0B), bs + 2),
            b'\n' => (Value::Nothing, bs + 2),
            b'\r' => (
                Value::Nothing,
                if src.get(bs + 2) == Some(&b'\n') {
                    bs + 3
                } else {
                    bs + 2
                },
            ),
            _ => (Value::Byte(c), bs + 2),
        };
        out.put_value(bs, end, value);
        i = end;
    }
    out.finish()
}

/// `\uHHHH` (joined with a following low surrogate), `\u{H…}`, or a bare `\u` (to `u`), at `bs`.
fn js_unicode(src: &[u8], bs: usize) -> (Value, usize) {
    if src.get(bs + 2) == Some(&b'{') {
        let mut j = bs + 3;
        let mut value: u32 = 0;
        while let Some(d) = src.get(j).copied().and_then(hex_digit) {
            value = (value * 16 + d).min(0x11_0000);
            j += 1;
        }
        if j > bs + 3 && src.get(j) == Some(&b'}') {
            return (Value::Char(value), j + 1);
        }
    } else if let Some(unit) = hex_at(src, bs + 2, 4) {
        let (cp, end) = join_surrogates(src, unit, bs + 6, b'\\', false);
        return (Value::Char(cp), end);
    }
    (Value::Byte(b'u'), bs + 2)
}

/// Up to `max` octal digits at `src[at..]`: their value and how many there were.
fn octal_at(src: &[u8], at: usize, max: usize) -> (u32, usize) {
    let mut value = 0;
    let mut n = 0;
    while n < max {
        match src.get(at + n) {
            Some(&b @ b'0'..=b'7') => value = value * 8 + u32::from(b - b'0'),
            _ => break,
        }
        n += 1;
    }
    (value, n)
}

fn css_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(bs) = find_byte(src, i, b'\\') {
        let Some(&c) = src.get(bs + 1) else { break };
        let (value, end) = if hex_digit(c).is_some() {
            let mut j = bs + 1;
            let mut value = 0;
            while j < bs + 7 {
                match src.get(j).copied().and_then(hex_digit) {
                    Some(d) => value = value * 16 + d,
                    None => break,
                }
                j += 1;
            }
            // One whitespace after the digits belongs to the escape (CR LF counts as one).
            if src.get(j..j + 2) == Some(b"\r\n") {
                j += 2;
            } else if matches!(src.get(j), Some(b' ' | b'\t' | b'\n' | b'\r' | 0x0C)) {
                j += 1;
            }
            (Value::Char(value), j)
        } else {
            match c {
                b'\n' | 0x0C => (Value::Nothing, bs + 2),
                b'\r' => (
                    Value::Nothing,
                    if src.get(bs + 2) == Some(&b'\n') {
                        bs + 3
                    } else {
                        bs + 2
                    },
                ),
                _ => (Value::Byte(c), bs + 2),
            }
        };
        out.put_value(bs, end, value);
        i = end;
    }
    out.finish()
}

fn escape_seq_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(bs) = find_byte(src, i, b'\\') {
        let Some(&c) = src.get(bs + 1) else { break };
        let decoded = match c {
            b'a' => Some((0x07, bs + 2)),
            b'b' => Some((0x08, bs + 2)),
            b'f' => Some((0x0C, bs + 2)),
            b'n' => Some((b'\n', bs + 2)),
            b'r' => Some((b'\r', bs + 2)),
            b't' => Some((b'\t', bs + 2)),
            b'v' => Some((0x0B, bs + 2)),
            b'\\' | b'?' | b'\'' | b'"' => Some((c, bs + 2)),
            b'x' => hex_at(src, bs + 2, 2).map(|v| (v as u8, bs + 4)),
            b'0'..=b'7' => {
                let (v, n) = octal_at(src, bs + 1, 3);
                Some(((v & 0xFF) as u8, bs + 1 + n))
            }
            _ => None,
        };
        match decoded {
            Some((b, end)) => {
                out.put(bs, end, &[b]);
                i = end;
            }
            None => i = bs + 1,
        }
    }
    out.finish()
}

// ---- base64, hex -------------------------------------------------------------------------------------

/// The 6-bit value of a base64 character; `ext` also accepts the URL-safe `-` and `_`.
fn base64_value(b: u8, ext: bool) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        b'-' if ext => 62,
        b'_' if ext => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

fn base64_decode(src: &[u8], ext: bool) -> Option<Vec<u8>> {
    if src.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut n = 0;
    for &b in src {
        match base64_value(b, ext) {
            Some(v) => {
                acc = acc << 6 | v;
                n += 1;
                if n == 4 {
                    out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                    acc = 0;
                    n = 0;
                }
            }
            None if ext && b != b'=' => {}
            None => {
                flush_base64(&mut out, acc, n);
                acc = 0;
                n = 0;
                if !ext {
                    break;
                }
            }
        }
    }
    flush_base64(&mut out, acc, n);
    Some(out)
}

/// Writes the bytes of an incomplete group of `n` characters (one character alone carries no byte).
fn flush_base64(out: &mut Vec<u8>, acc: u32, n: u32) {
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
}

/// Decodes the whole pairs of the hex run at `src[start..]` into `out`; returns where they end.
fn decode_hex_run(src: &[u8], start: usize, out: &mut Out<'_>) -> usize {
    let run = src
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    let end = start + run / 2 * 2;
    if let Some(pairs) = src.get(start..end) {
        if !pairs.is_empty() {
            let buf = out.edit(start, end);
            for pair in pairs.chunks_exact(2) {
                if let [hi, lo] = *pair {
                    let v = hex_digit(hi).unwrap_or(0) << 4 | hex_digit(lo).unwrap_or(0);
                    buf.push(v as u8);
                }
            }
        }
    }
    end
}

fn hex_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while i < src.len() {
        let end = decode_hex_run(src, i, &mut out);
        // Past the pairs, or past a byte that starts none (an odd last digit, a non-hex byte).
        i = if end > i { end } else { i + 1 };
    }
    out.finish()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn sql_hex_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(zero) = find_byte(src, i, b'0') {
        let boundary = zero == 0 || src.get(zero - 1).is_some_and(|&b| !is_word(b));
        if boundary && matches!(src.get(zero + 1), Some(b'x' | b'X')) {
            let digits = zero + 2;
            let run = src
                .get(digits..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            if run >= 2 {
                // Drop the `0x`, then decode the pairs in place of the digits.
                out.put(zero, digits, b"");
                i = decode_hex_run(src, digits, &mut out);
                continue;
            }
        }
        i = zero + 1;
    }
    out.finish()
}

// ---- whitespace, nulls -------------------------------------------------------------------------------

/// At `src[i]`: whether it starts a whitespace character, and that character's length. A lone `0xA0`
/// counts as NBSP only where it is not part of a valid UTF-8 character.
fn space_token(src: &[u8], i: usize) -> (bool, usize) {
    match src.get(i) {
        None => (false, 1),
        Some(&b) if b < 0x80 => (is_space(b), 1),
        Some(&b) => match utf8_char(src, i) {
            Some((cp, n)) => (cp == 0xA0, n),
            None => (b == 0xA0, 1),
        },
    }
}

/// Replaces each run of whitespace with `with` (`" "` compresses, `""` removes).
fn whitespace(src: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        // Eight bytes at a time while there is nothing to do.
        if let Some(w) = word_at(src, i) {
            if !whitespace_work(w, src.get(i + 8).copied(), !with.is_empty()) {
                i += 8;
                continue;
            }
        }
        // Printable ASCII, and a lone space before it, are the common case and stay.
        if b > b' ' && b < 0x80 {
            i += 1;
            continue;
        }
        if b == b' ' && !with.is_empty() && src.get(i + 1).is_some_and(|&c| c > b' ' && c < 0x80) {
            i += 2;
            continue;
        }
        let (ws, n) = space_token(src, i);
        if !ws {
            i += n;
            continue;
        }
        let start = i;
        i += n;
        loop {
            match space_token(src, i) {
                (true, n) if i < src.len() => i += n,
                _ => break,
            }
        }
        if src.get(start..i) != Some(with) {
            out.put(start, i, with);
        }
    }
    out.finish()
}

/// Whether the word `w` (followed by the byte `next`) may hold whitespace to compress or remove: a
/// control or non-ASCII byte, or a space that is not alone when compressing.
fn whitespace_work(w: u64, next: Option<u8>, compress: bool) -> bool {
    if word_below(w, b' ') || w & HIGHS != 0 {
        return true;
    }
    let spaces = w ^ (ONES * u64::from(b' '));
    if !compress {
        return word_has(spaces, 0);
    }
    // A last space followed by more whitespace in the next word.
    if w >> 56 == u64::from(b' ') && next.is_some_and(|b| b <= b' ' || b >= 0x80) {
        return true;
    }
    // Two spaces in a row: byte k of `spaces | shifted` is zero when bytes k and k + 1 are spaces.
    let shifted = (spaces >> 8) | (0xFF << 56);
    word_has(spaces | shifted, 0)
}

fn nulls(src: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(nul) = find_byte(src, i, 0) {
        out.put(nul, nul + 1, with);
        i = nul + 1;
    }
    out.finish()
}

// ---- normalize_path ----------------------------------------------------------------------------------

fn normalize_path(src: &[u8], win: bool) -> Option<Vec<u8>> {
    let is_sep = |b: &u8| *b == b'/' || (win && *b == b'\\');
    if !path_changes(src, is_sep) {
        return None;
    }
    let absolute = src.first().is_some_and(is_sep);
    let mut out = Vec::with_capacity(src.len());
    if absolute {
        out.push(b'/');
    }
    // Output below `floor` is never taken back: the root and `..` segments that had nothing to cancel.
    let mut floor = out.len();
    let mut segments = src.split(is_sep).peekable();
    if absolute {
        segments.next();
    }
    let mut keep_trailing = false;
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            b"" | b"." => keep_trailing = last,
            b".." if out.len() > floor => {
                // `out` ends with "name/": take the name back.
                out.pop();
                let cut = out
                    .iter()
                    .rposition(|&b| b == b'/')
                    .map_or(0, |p| p + 1)
                    .max(floor);
                out.truncate(cut);
                keep_trailing = last;
            }
            b".." => {
                out.extend_from_slice(b"../");
                floor = out.len();
                keep_trailing = false;
            }
            name => {
                out.extend_from_slice(name);
                out.push(b'/');
                keep_trailing = false;
            }
        }
    }
    if !keep_trailing && out.len() > usize::from(absolute) && out.last() == Some(&b'/') {
        out.pop();
    }
    Some(out)
}

/// Whether [`normalize_path`] would change `src`: a `\` read as a separator, an empty segment (`//`)
/// other than the root, a `.` segment, or a `..` with a name before it to cancel.
fn path_changes(src: &[u8], is_sep: impl Fn(&u8) -> bool) -> bool {
    if src.iter().any(|&b| b != b'/' && is_sep(&b)) {
        return true;
    }
    let mut names = 0usize;
    let mut iter = src.split(&is_sep).enumerate().peekable();
    while let Some((index, seg)) = iter.next() {
        let last = iter.peek().is_none();
        match seg {
            // The root's empty first segment and a trailing slash's empty last one stay.
            b"" if index == 0 || last => {}
            b"" | b"." => return true,
            b".." if names > 0 => return true,
            b".." => {}
            _ => names += 1,
        }
    }
    false
}

// ---- cmd_line, comments ------------------------------------------------------------------------------

fn cmd_line(src: &[u8]) -> Option<Vec<u8>> {
    let is_gap = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b';');
    let is_deleted = |b: u8| matches!(b, b'\\' | b'"' | b'\'' | b'^');
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        if is_gap(b) {
            let start = i;
            while src.get(i).is_some_and(|&b| is_gap(b) || is_deleted(b)) {
                i += 1;
            }
            let with: &[u8] = if matches!(src.get(i), Some(b'/' | b'(')) {
                b""
            } else {
                b" "
            };
            if src.get(start..i) != Some(with) {
                out.put(start, i, with);
            }
        } else {
            if is_deleted(b) {
                out.put(i, i + 1, b"");
            } else if b.is_ascii_uppercase() {
                out.put(i, i + 1, &[b.to_ascii_lowercase()]);
            }
            i += 1;
        }
    }
    out.finish()
}

fn replace_comments(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(open) = find_pair(src, i, b"/*") {
        match find_pair(src, open + 2, b"*/") {
            Some(close) => {
                out.put(open, close + 2, b" ");
                i = close + 2;
            }
            None => {
                out.put(open, src.len(), b" ");
                break;
            }
        }
    }
    out.finish()
}

fn remove_comments_char(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        let rest = src.get(i..).unwrap_or_default();
        let n = match b {
            b'/' if rest.starts_with(b"/*") => 2,
            b'*' if rest.starts_with(b"*/") => 2,
            b'<' if rest.starts_with(b"<!--") => 4,
            b'-' if rest.starts_with(b"-->") => 3,
            b'-' if rest.starts_with(b"--") => 2,
            b'#' => 1,
            _ => 0,
        };
        if n == 0 {
            i += 1;
        } else {
            out.put(i, i + n, b"");
            i += n;
        }
    }
    out.finish()
}

// ---- utf8_to_unicode ---------------------------------------------------------------------------------

fn utf8_to_unicode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Out::new(src);
    let mut i = 0;
    while let Some(&b) = src.get(i) {
        if b < 0x80 {
            i += 1;
            continue;
        }
        match utf8_char(src, i) {
            Some((cp, n)) => {
                let buf = out.edit(i, i + n);
                if cp > 0xFFFF {
                    let v = cp - 0x1_0000;
                    push_percent_u(buf, 0xD800 + (v >> 10));
                    push_percent_u(buf, 0xDC00 + (v & 0x3FF));
                } else {
                    push_percent_u(buf, cp);
                }
                i += n;
            }
            None => i += 1,
        }
    }
    out.finish()
}

fn push_percent_u(buf: &mut Vec<u8>, unit: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.extend_from_slice(b"%u");
    for shift in [12, 8, 4, 0] {
        buf.push(HEX[((unit >> shift) & 0xF) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::Transform::*;
    use super::*;

    fn run(t: Transform, input: &[u8]) -> Vec<u8> {
        t.apply(Cow::Borrowed(input)).into_owned()
    }

    /// Shows bytes readably in failure messages.
    fn show(b: &[u8]) -> String {
        b.escape_ascii().to_string()
    }

    #[rustfmt::skip]
    const CASES: &[(Transform, &[u8], &[u8])] = &[
        (Lowercase, b"SeLeCT * FROM", b"select * from"),
        (Lowercase, b"", b""),
        (Lowercase, "ÀÉ ABC".as_bytes(), "ÀÉ abc".as_bytes()),
        (Lowercase, b"\xff\xC0Z", b"\xff\xC0z"),
        (Uppercase, b"select", b"SELECT"),
        (Uppercase, "é a".as_bytes(), "é A".as_bytes()),
        (Uppercase, b"\x00a\xfe", b"\x00A\xfe"),
        (UrlDecode, b"a%20b+c", b"a b c"),
        (UrlDecode, b"%3Cscript%3e", b"<script>"),
        (UrlDecode, b"100%", b"100%"),
        (UrlDecode, b"%4", b"%4"),
        (UrlDecode, b"%zz%4g%", b"%zz%4g%"),
        (UrlDecode, b"%00%ff", b"\x00\xff"),
        (UrlDecode, b"%u0041", b"%u0041"),
        (UrlDecode, b"%%41", b"%A"),
        (UrlDecodeUni, b"%u0041%42+", b"AB "),
        (UrlDecodeUni, b"%uFF1Cscript%uff1e", b"<script>"),
        (UrlDecodeUni, b"%u00e9", "é".as_bytes()),
        (UrlDecodeUni, b"%u0127", "ħ".as_bytes()),
        (UrlDecodeUni, b"%uD83D%uDE00", "😀".as_bytes()),
        (UrlDecodeUni, b"%uD83Dx", "\u{FFFD}x".as_bytes()),
        (UrlDecodeUni, b"%u12", b"%u12"),
        (UrlDecodeUni, b"%U0041%u", b"A%u"),
        (HtmlEntityDecode, b"&lt;script&gt;", b"<script>"),
        (HtmlEntityDecode, b"&#60;&#x3C;&#X3c", b"<<<"),
        (HtmlEntityDecode, b"a &amp b &quot", b"a & b \""),
        (HtmlEntityDecode, b"&apos;&apos", b"'&apos"),
        (HtmlEntityDecode, b"&nbsp;&copy;", "\u{a0}©".as_bytes()),
        (HtmlEntityDecode, b"java&Tab;script&colon;alert&lpar;1&rpar;", b"java\tscript:alert(1)"),
        (HtmlEntityDecode, b"&amplifier &unknown; &; &#; &#x; & &", b"&amplifier &unknown; &; &#; &#x; & &"),
        (HtmlEntityDecode, b"&#233;&#0;&#99999999999;", "é\0\u{FFFD}".as_bytes()),
        (HtmlEntityDecode, b"&#xff1c;", b"<"),
        (HtmlEntityDecode, b"&#x", b"&#x"),
        (HtmlEntityDecode, b"&LT;&Gt", b"<>"),
        (JsDecode, b"\\x3cscript\\x3E", b"<script>"),
        (JsDecode, b"\\u0061lert\\u{28}1\\u{000029}", b"alert(1)"),
        (JsDecode, b"\\ud83d\\ude00\\ud83d", "😀\u{FFFD}".as_bytes()),
        (JsDecode, b"\\47\\101\\0\\377\\400", "'A\0ÿ\u{20}0".as_bytes()),
        (JsDecode, b"a\\nb\\tc\\\\d\\'e", b"a\nb\tc\\d'e"),
        (JsDecode, b"\\xZZ\\u12\\q", b"xZZu12q"),
        (JsDecode, b"ja\\\nva\\\r\nscript", b"javascript"),
        (JsDecode, b"\\uff1c", b"<"),
        (JsDecode, b"end\\", b"end\\"),
        (JsDecode, b"\\x4", b"x4"),
        (CssDecode, b"\\3c script\\3e", b"<script>"),
        (CssDecode, b"ja\\vascript", b"javascript"),
        (CssDecode, b"\\000041\\42", b"AB"),
        (CssDecode, b"\\e9\r\nx", "éx".as_bytes()),
        (CssDecode, b"\\0", b"\0"),
        (CssDecode, b"\\110000\\d800", "\u{FFFD}\u{FFFD}".as_bytes()),
        (CssDecode, b"a\\\nb\\", b"ab\\"),
        (CssDecode, b"\\ff1c", b"<"),
        (CssDecode, b"\\0000411", b"A1"),
        (Base64Decode, b"SGVsbG8=", b"Hello"),
        (Base64Decode, b"SGVsbG8", b"Hello"),
        (Base64Decode, b"SGVs bG8=", b"Hel"),
        (Base64Decode, b"!SGVs", b""),
        (Base64Decode, b"S", b""),
        (Base64Decode, b"", b""),
        (Base64Decode, b"PHNjcmlwdD4=.tail", b"<script>"),
        (Base64DecodeExt, b"SG Vs.bG\n8=", b"Hello"),
        (Base64DecodeExt, b"-_-_", b"\xfb\xff\xbf"),
        (Base64DecodeExt, b"QQ==QQ==", b"AA"),
        (Base64DecodeExt, b"...", b""),
        (HexDecode, b"414243", b"ABC"),
        (HexDecode, b"hello", b"hello"),
        (HexDecode, b"4142 4", b"AB 4"),
        (HexDecode, b"abc", b"\xabc"),
        (HexDecode, b"zz00FF", b"zz\x00\xff"),
        (SqlHexDecode, b"select 0x414243", b"select ABC"),
        (SqlHexDecode, b"0X61646D696E,0x4", b"admin,0x4"),
        (SqlHexDecode, b"a0x41 10x41 _0x41", b"a0x41 10x41 _0x41"),
        (SqlHexDecode, b"(0x41424)", b"(AB4)"),
        (SqlHexDecode, b"0x", b"0x"),
        (SqlHexDecode, b"0x0x41 0x 0x41", b"0x0x41 0x A"),
        (EscapeSeqDecode, b"\\a\\b\\f\\n\\r\\t\\v", b"\x07\x08\x0c\n\r\t\x0b"),
        (EscapeSeqDecode, b"\\\\\\?\\'\\\"", b"\\?'\""),
        (EscapeSeqDecode, b"\\x41\\101\\0\\777", b"AA\0\xff"),
        (EscapeSeqDecode, b"\\xZ1\\q\\", b"\\xZ1\\q\\"),
        (EscapeSeqDecode, b"\\x4", b"\\x4"),
        (CompressWhiteSpace, b"a  \t\r\n b", b"a b"),
        (CompressWhiteSpace, b"a\xc2\xa0\xa0 b", b"a b"),
        (CompressWhiteSpace, "à ठ".as_bytes(), "à ठ".as_bytes()),
        (CompressWhiteSpace, b"\x0b\x0c", b" "),
        (CompressWhiteSpace, b"  ", b" "),
        (RemoveWhitespace, b" a b\tc\n", b"abc"),
        (RemoveWhitespace, b"a\xc2\xa0b", b"ab"),
        (RemoveWhitespace, "à".as_bytes(), "à".as_bytes()),
        (RemoveNulls, b"a\0b\0\0", b"ab"),
        (RemoveNulls, b"\0", b""),
        (RemoveNulls, b"abc", b"abc"),
        (ReplaceNulls, b"a\0b\0\0", b"a b  "),
        (ReplaceNulls, b"\0", b" "),
        (ReplaceNulls, b"abc", b"abc"),
        (NormalizePath, b"/a/./b/../c//d", b"/a/c/d"),
        (NormalizePath, b"/a/b/..", b"/a/"),
        (NormalizePath, b"/a/b/.", b"/a/b/"),
        (NormalizePath, b"../../etc/passwd", b"../../etc/passwd"),
        (NormalizePath, b"/app/../../etc/passwd", b"/../etc/passwd"),
        (NormalizePath, b"./a", b"a"),
        (NormalizePath, b"a/..", b""),
        (NormalizePath, b"a/../../b", b"../b"),
        (NormalizePath, b"//", b"/"),
        (NormalizePath, b"/a/b/", b"/a/b/"),
        (NormalizePath, b"a\\..\\b", b"a\\..\\b"),
        (NormalizePath, b"...", b"..."),
        (NormalizePathWin, b"C:\\a\\..\\b", b"C:/b"),
        (NormalizePathWin, b"\\\\x\\.\\y", b"/x/y"),
        (NormalizePathWin, b"a/b", b"a/b"),
        (CmdLine, b"C:\\WIN\"DOWS\\sys'tem^32", b"c:windowssystem32"),
        (CmdLine, b"cat   /etc/passwd", b"cat/etc/passwd"),
        (CmdLine, b"ping ,; -n\t\r\n3 (x)", b"ping -n 3(x)"),
        (CmdLine, b"a ' /b", b"a/b"),
        (CmdLine, b"ls -la", b"ls -la"),
        (ReplaceComments, b"sel/**/ect", b"sel ect"),
        (ReplaceComments, b"a/* x */b/*/c*/d", b"a b d"),
        (ReplaceComments, b"1 /* unterminated", b"1  "),
        (ReplaceComments, b"a */ b", b"a */ b"),
        (ReplaceComments, b"/*", b" "),
        (RemoveCommentsChar, b"sel/**/ect", b"select"),
        (RemoveCommentsChar, b"1 -- x #y", b"1  x y"),
        (RemoveCommentsChar, b"<!--a-->b-c", b"ab-c"),
        (RemoveCommentsChar, b"/", b"/"),
        (Utf8ToUnicode, "é".as_bytes(), b"%u00e9"),
        (Utf8ToUnicode, "aЖ€😀".as_bytes(), b"a%u0416%u20ac%ud83d%ude00"),
        (Utf8ToUnicode, b"\xff\xc3", b"\xff\xc3"),
        (Utf8ToUnicode, b"plain", b"plain"),
        (Trim, b" \t a b \r\n\x0b\x0c", b"a b"),
        (Trim, b"   ", b""),
        (Trim, b"a", b"a"),
        (TrimLeft, b"  a ", b"a "),
        (TrimLeft, b"\n", b""),
        (TrimLeft, b"a ", b"a "),
        (TrimRight, b"  a ", b"  a"),
        (TrimRight, b" ", b""),
        (TrimRight, b"\xc2\xa0", b"\xc2\xa0"),
    ];

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for &(t, input, want) in CASES {
            let got = run(t, input);
            if got != want {
                failures.push(format!(
                    "{}({}) = {}, want {}",
                    t.name(),
                    show(input),
                    show(&got),
                    show(want)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn every_transform_has_three_cases() {
        for t in Transform::ALL {
            let n = CASES.iter().filter(|(c, _, _)| *c == t).count();
            assert!(n >= 3, "{} has {n} cases", t.name());
        }
    }

    #[test]
    fn owned_input_gives_the_same_results() {
        for &(t, input, want) in CASES {
            assert_eq!(&*t.apply(Cow::Owned(input.to_vec())), want, "{}", t.name());
        }
    }

    #[test]
    fn unchanged_input_comes_back_borrowed() {
        let plain = b"alice.smith-1987 signs in";
        for t in Transform::ALL {
            let out = t.apply(Cow::Borrowed(&plain[..]));
            let expect_same = !matches!(
                t,
                Uppercase | Base64Decode | Base64DecodeExt | HexDecode | RemoveWhitespace
            );
            if expect_same {
                assert!(
                    matches!(out, Cow::Borrowed(b) if b == plain),
                    "{} copied",
                    t.name()
                );
            }
        }
        // The same for inputs that contain the trigger but nothing valid to decode.
        for (t, input) in [
            (UrlDecode, &b"100% %zz"[..]),
            (HtmlEntityDecode, b"Tom & Jerry &amplifier"),
            (JsDecode, b"end\\"),
            (EscapeSeqDecode, b"\\q"),
            (NormalizePath, b"../../a/b/"),
            (CompressWhiteSpace, "Zoë Ødegård ठ".as_bytes()),
            (CmdLine, b"ls -la tmp/x"),
            (Base64Decode, b""),
            (Uppercase, b"ABC"),
            (HexDecode, b"hello"),
        ] {
            assert!(
                matches!(t.apply(Cow::Borrowed(input)), Cow::Borrowed(b) if b == input),
                "{}",
                t.name()
            );
        }
        // A trimmed borrowed input stays borrowed: it is a sub-slice.
        assert!(matches!(Trim.apply(Cow::Borrowed(b"  a  ")), Cow::Borrowed(b"a")));
    }

    #[test]
    fn owned_unchanged_input_is_not_copied() {
        let v = b"already lower".to_vec();
        let ptr = v.as_ptr();
        let out = Lowercase.apply(Cow::Owned(v));
        assert!(matches!(&out, Cow::Owned(o) if o.as_ptr() == ptr));
    }

    #[test]
    fn chain_order_matters() {
        // %26lt%3B decodes to &lt; which html decoding then turns into <; the reverse order leaves &lt;.
        let input = b"%26lt%3Bscript%26gt%3B";
        assert_eq!(&*apply_chain(&[UrlDecode, HtmlEntityDecode], input), b"<script>");
        assert_eq!(
            &*apply_chain(&[HtmlEntityDecode, UrlDecode], input),
            b"&lt;script&gt;"
        );
        // Lowercase before or after url_decode_uni of a full-width escape.
        let input = b"%uFF33ELECT";
        assert_eq!(&*apply_chain(&[UrlDecodeUni, Lowercase], input), b"select");
        assert_eq!(&*apply_chain(&[Lowercase, UrlDecodeUni], input), b"Select");
        assert_eq!(&*apply_chain(&[], input), input);
        // Decoded NBSP is whitespace to compress_white_space, but only after decoding.
        let input = b"a&nbsp;\t&#160;b";
        assert_eq!(
            &*apply_chain(&[HtmlEntityDecode, CompressWhiteSpace], input),
            b"a b"
        );
        assert_eq!(
            &*apply_chain(&[CompressWhiteSpace, HtmlEntityDecode], input),
            b"a\xc2\xa0 \xc2\xa0b"
        );
        assert!(matches!(
            apply_chain(&[Lowercase, Trim], b"abc"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn names_match_serde() {
        let mut seen = std::collections::HashSet::new();
        for t in Transform::ALL {
            assert!(seen.insert(t.name()), "duplicate {}", t.name());
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.name()));
            let back: Transform = serde_json::from_str(&json).unwrap();
            assert_eq!(back, t);
        }
        let schema = serde_json::to_string(&schemars::schema_for!(Transform)).unwrap();
        assert!(schema.contains("\"compress_white_space\"") && schema.contains("\"trim_right\""));
        assert_eq!(MAX_TRANSFORMS, 10);
    }

    /// xorshift64*: a tiny deterministic PRNG.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random bytes, biased to the characters the decoders care about.
    fn random_input(rng: &mut Rng) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"%",
            b"%u",
            b"&",
            b"&#",
            b"&#x",
            b";",
            b"\\",
            b"\\u",
            b"\\x",
            b"\\u{",
            b"}",
            b"0x",
            b"/",
            b"\\",
            b"..",
            b".",
            b"/*",
            b"*/",
            b"--",
            b"#",
            b"<!--",
            b"-->",
            b" ",
            b"\t",
            b"\r\n",
            b"\0",
            b"\xa0",
            b"\xc2\xa0",
            b"\xc2",
            b"\xe2\x82\xac",
            b"\xf0\x9f\x98\x80",
            b"\xed\xa0\x80",
            b"+",
            b"=",
            b"'",
            b"\"",
            b"^",
            b",",
            b"amp",
            b"lt",
            b"nbsp",
            b"D83D",
            b"DE00",
            b"ff1c",
            b"A",
            b"z",
            b"9",
        ];
        let len = rng.below(64);
        let mut v = Vec::new();
        for _ in 0..len {
            match rng.below(4) {
                0 => v.push(rng.next() as u8),
                1 => v.push(b"0123456789abcdefABCDEF"[rng.below(22)]),
                _ => v.extend_from_slice(PIECES[rng.below(PIECES.len())]),
            }
        }
        v
    }

    #[test]
    fn random_inputs_are_bounded_and_consistent() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let input = if round % 4 == 0 {
                random_text(&mut rng)
            } else {
                random_input(&mut rng)
            };
            for t in Transform::ALL {
                let out = t.apply(Cow::Borrowed(&input));
                let limit = if t == Utf8ToUnicode {
                    input.len() * 3
                } else {
                    input.len()
                };
                assert!(
                    out.len() <= limit,
                    "{} grew {} to {}",
                    t.name(),
                    show(&input),
                    show(&out)
                );
                match &out {
                    Cow::Borrowed(b) if !matches!(t, Trim | TrimLeft | TrimRight) => {
                        assert_eq!(*b, &input[..], "{}", t.name())
                    }
                    Cow::Owned(o) if !matches!(t, Base64Decode | Base64DecodeExt) => {
                        assert_ne!(o, &input, "{} copied {} without a change", t.name(), show(&input))
                    }
                    _ => {}
                }
                // Owned input gives the same bytes.
                assert_eq!(t.apply(Cow::Owned(input.clone())), out, "{}", t.name());
            }
            for t in [
                Lowercase,
                Uppercase,
                CompressWhiteSpace,
                RemoveWhitespace,
                RemoveNulls,
                ReplaceNulls,
                NormalizePath,
                NormalizePathWin,
                CmdLine,
                Trim,
                TrimLeft,
                TrimRight,
                Utf8ToUnicode,
            ] {
                let once = t.apply(Cow::Borrowed(&input)).into_owned();
                let twice = t.apply(Cow::Borrowed(&once));
                assert_eq!(
                    *twice,
                    once[..],
                    "{} is not idempotent on {}",
                    t.name(),
                    show(&input)
                );
            }
            // A random chain never panics either.
            let chain: Vec<Transform> = (0..rng.below(MAX_TRANSFORMS + 3))
                .map(|_| Transform::ALL[rng.below(25)])
                .collect();
            let _ = apply_chain(&chain, &input);
        }
    }

    /// Text-like random input: long runs of letters (so word-at-a-time paths run) with spaces, tabs,
    /// NBSP, escapes and the odd control or non-ASCII byte.
    fn random_text(rng: &mut Rng) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b" ",
            b" ",
            b"  ",
            b"\t",
            b"\xc2\xa0",
            b"\xa0",
            b"\xc3\xa0",
            b"%41",
            b"%2",
            b"+",
            b"%u0041",
            b"%uff1c",
            b"%ud83d%ude00",
            b"\n",
            b"\x00",
            b"\xff",
            b"&amp;",
            b"abcdefghij",
            b"ABCDEFGH",
            b"0x4142",
        ];
        let len = rng.below(48);
        let mut v = Vec::new();
        for _ in 0..len {
            if rng.below(3) == 0 {
                v.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            } else {
                v.extend((0..rng.below(12)).map(|_| b'a' + rng.below(26) as u8));
            }
        }
        v
    }

    /// Plain reference versions of the transformations that skip eight bytes at a time.
    fn naive_whitespace(src: &[u8], with: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < src.len() {
            let (ws, n) = space_token(src, i);
            if ws {
                while i < src.len() && space_token(src, i).0 {
                    i += space_token(src, i).1;
                }
                out.extend_from_slice(with);
            } else {
                out.extend_from_slice(&src[i..i + n]);
                i += n;
            }
        }
        out
    }

    fn naive_url_decode(src: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < src.len() {
            match (src[i], hex_at(src, i + 1, 2)) {
                (b'+', _) => out.push(b' '),
                (b'%', Some(v)) => {
                    out.push(v as u8);
                    i += 2;
                }
                (b, _) => out.push(b),
            }
            i += 1;
        }
        out
    }

    #[test]
    fn word_at_a_time_paths_match_plain_versions() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for round in 0..50_000 {
            let input = if round % 2 == 0 {
                random_text(&mut rng)
            } else {
                random_input(&mut rng)
            };
            let run = |t: Transform| t.apply(Cow::Borrowed(&input)).into_owned();
            assert_eq!(
                run(CompressWhiteSpace),
                naive_whitespace(&input, b" "),
                "{}",
                show(&input)
            );
            assert_eq!(
                run(RemoveWhitespace),
                naive_whitespace(&input, b""),
                "{}",
                show(&input)
            );
            assert_eq!(run(UrlDecode), naive_url_decode(&input), "{}", show(&input));
            let lower: Vec<u8> = input.to_ascii_lowercase();
            assert_eq!(run(Lowercase), lower);
            let nonul: Vec<u8> = input.iter().copied().filter(|&b| b != 0).collect();
            assert_eq!(run(RemoveNulls), nonul);
        }
    }

    #[test]
    fn adversarial_megabyte_inputs_finish_in_linear_time() {
        const MB: usize = 1 << 20;
        // The classic escape floods at 1 MiB; other triggers at 128 KiB, which still shows any quadratic
        // behaviour (10^10 steps) while keeping the unoptimised test run short.
        let patterns: &[(&[u8], usize)] = &[
            (b"%", MB),
            (b"&#", MB),
            (b"\\u", MB),
            (b"../", MB),
            (b"%u", MB / 8),
            (b"%uD83D", MB / 8),
            (b"&", MB / 8),
            (b"&#1", MB / 8),
            (b"&a", MB / 8),
            (b"\\u{1", MB / 8),
            (b"\\", MB / 8),
            (b"\\x", MB / 8),
            (b"./", MB / 8),
            (b"/", MB / 8),
            (b"/*", MB / 8),
            (b"*", MB / 8),
            (b"0x", MB / 8),
            (b"0", MB / 8),
            (b"\xa0", MB / 8),
            (b"\xc2", MB / 8),
            (b"\xe2\x82\xac", MB / 8),
            (b" ,", MB / 8),
            (b"\\ud83d", MB / 8),
            (b"-", MB / 8),
        ];
        let start = std::time::Instant::now();
        for &(pattern, len) in patterns {
            let input: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
            for t in Transform::ALL {
                let out = t.apply(Cow::Borrowed(&input));
                let limit = if t == Utf8ToUnicode { len * 3 } else { len };
                assert!(out.len() <= limit, "{} on {}", t.name(), show(pattern));
            }
        }
        // Linear work is seconds even unoptimised; quadratic work would take hours.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(120),
            "{:?}",
            start.elapsed()
        );
    }
}
