//! SQL tokenizer and the structural rules that decide whether a token stream is an injection.

/// Tokens kept per quote context; later tokens are not examined.
pub const MAX_SQL_TOKENS: usize = 2048;
/// Tokens a rule may look ahead from where it starts.
const LOOKAHEAD: usize = 48;
/// Token types shown in a reason's fingerprint.
const FINGERPRINT_LEN: usize = 12;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Quoted string (also `$$..$$`).
    Str,
    /// Number, including `0x..` hex and `0b..` binary literals.
    Num,
    /// Identifier that is not a keyword (also a backtick-quoted identifier).
    Bare,
    /// `@var`, `@@sysvar`, `$1`.
    Var,
    /// `true`, `false`, `null` and similar constants.
    Value,
    /// `and`, `or`, `xor`, `&&`, `||`.
    Logic,
    /// Comparison: `=`, `<>`, `like`, `in`, `is`, `between`, ...
    Cmp,
    /// Other operators: arithmetic, bitwise, `not`, `::`, `:=`.
    Op,
    LParen,
    RParen,
    Comma,
    Semi,
    Dot,
    /// `--`, `#` or an unterminated `/*` comment: runs to the end.
    Comment,
    /// Identifier directly followed by `(`.
    Func,
    Union,
    Select,
    /// Statement keyword: `drop`, `insert`, `exec`, `waitfor`, ...
    Stmt,
    /// Clause keyword: `from`, `where`, `order`, `limit`, `into`, ...
    Clause,
    /// Any other punctuation.
    Other,
}

impl Kind {
    fn symbol(self) -> char {
        match self {
            Kind::Str => 's',
            Kind::Num => '1',
            Kind::Bare => 'n',
            Kind::Var => 'v',
            Kind::Value => 'k',
            Kind::Logic => '&',
            Kind::Cmp | Kind::Op => 'o',
            Kind::LParen => '(',
            Kind::RParen => ')',
            Kind::Comma => ',',
            Kind::Semi => ';',
            Kind::Dot => '.',
            Kind::Comment => 'c',
            Kind::Func => 'f',
            Kind::Union => 'U',
            Kind::Select | Kind::Stmt => 'E',
            Kind::Clause => 'k',
            Kind::Other => '?',
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
    /// Strings: the closing quote was found. Comments: only blanks follow a `#` comment.
    closed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    AsIs,
    Single,
    Double,
    Backtick,
}

impl Ctx {
    fn label(self) -> &'static str {
        match self {
            Ctx::AsIs => "as-is",
            Ctx::Single => "'",
            Ctx::Double => "\"",
            Ctx::Backtick => "`",
        }
    }
}

thread_local! {
    /// The token list, kept per thread for the next value (at most [`MAX_SQL_TOKENS`] tokens).
    static TOKENS: std::cell::RefCell<Vec<Tok>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The reason `input` is an SQL injection, if it is one.
pub(super) fn detect(input: &[u8], high: bool) -> Option<String> {
    TOKENS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut toks) => detect_with(input, high, &mut toks),
        Err(_) => detect_with(input, high, &mut Vec::new()),
    })
}

fn detect_with(input: &[u8], high: bool, toks: &mut Vec<Tok>) -> Option<String> {
    toks.clear();
    toks.reserve((input.len() / 2 + 4).min(MAX_SQL_TOKENS));
    for ctx in [Ctx::AsIs, Ctx::Single, Ctx::Double, Ctx::Backtick] {
        let quote = match ctx {
            Ctx::AsIs => None,
            Ctx::Single => Some(b'\''),
            Ctx::Double => Some(b'"'),
            Ctx::Backtick => Some(b'`'),
        };
        if let Some(q) = quote {
            if !input.contains(&q) {
                continue;
            }
        }
        toks.clear();
        tokenize(input, quote, toks);
        let view = View { s: input, t: toks };
        if let Some(why) = view.analyze(ctx, high) {
            let fp: String = toks
                .iter()
                .take(FINGERPRINT_LEN)
                .map(|t| t.kind.symbol())
                .collect();
            return Some(format!("{why} (fingerprint {fp}, context {})", ctx.label()));
        }
    }
    None
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x00 | 0xa0)
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// End of a string body that starts at `from` and is closed by `q` (a doubled `q` is an escaped quote):
/// the index of the closing quote and true, or the input's length and false.
fn scan_string(s: &[u8], from: usize, q: u8) -> (usize, bool) {
    let mut i = from;
    while i < s.len() {
        if s[i] == q {
            if s.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return (i, true);
        }
        i += 1;
    }
    (s.len(), false)
}

fn find(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn tokenize(s: &[u8], quote: Option<u8>, out: &mut Vec<Tok>) {
    let n = s.len();
    let mut i = 0;
    let push = |out: &mut Vec<Tok>, kind, start, end, closed| {
        out.push(Tok {
            kind,
            start,
            end,
            closed,
        })
    };
    if let Some(q) = quote {
        let (end, closed) = scan_string(s, 0, q);
        push(out, Kind::Str, 0, end, closed);
        i = if closed { end + 1 } else { end };
    }
    let mut in_exec_comment = false;
    while i < n && out.len() < MAX_SQL_TOKENS {
        let c = s[i];
        let next = s.get(i + 1).copied().unwrap_or(0);
        if is_space(c) {
            i += 1;
            continue;
        }
        match c {
            b'\'' | b'"' => {
                let (end, closed) = scan_string(s, i + 1, c);
                push(out, Kind::Str, i + 1, end, closed);
                i = if closed { end + 1 } else { end };
            }
            b'`' => {
                let end = s[i + 1..]
                    .iter()
                    .position(|&b| b == b'`')
                    .map_or(n, |p| p + i + 1);
                push(out, Kind::Bare, i + 1, end, true);
                i = end + 1;
            }
            b'-' if next == b'-' => {
                push(out, Kind::Comment, i, n, true);
                i = n;
            }
            b'#' => {
                let blank = s[i + 1..].iter().all(|&b| is_space(b));
                push(out, Kind::Comment, i, n, blank);
                i = n;
            }
            b'/' if next == b'*' => {
                if s.get(i + 2) == Some(&b'!') {
                    // MySQL executable comment: its body is code.
                    i += 3;
                    while i < n && s[i].is_ascii_digit() {
                        i += 1;
                    }
                    in_exec_comment = true;
                } else if let Some(e) = find(s, i + 2, b"*/") {
                    i = e + 2;
                } else {
                    push(out, Kind::Comment, i, n, true);
                    i = n;
                }
            }
            b'*' if next == b'/' && in_exec_comment => {
                in_exec_comment = false;
                i += 2;
            }
            b'(' | b')' | b',' | b';' => {
                let kind = match c {
                    b'(' => Kind::LParen,
                    b')' => Kind::RParen,
                    b',' => Kind::Comma,
                    _ => Kind::Semi,
                };
                push(out, kind, i, i + 1, true);
                i += 1;
            }
            b'.' if next.is_ascii_digit() && !matches!(out.last(), Some(t) if t.kind == Kind::Bare) => {
                let end = scan_number(s, i);
                push(out, Kind::Num, i, end, true);
                i = end;
            }
            b'.' => {
                push(out, Kind::Dot, i, i + 1, true);
                i += 1;
            }
            b'0'..=b'9' => {
                let end = scan_number(s, i);
                push(out, Kind::Num, i, end, true);
                i = end;
            }
            b'@' if i > 0 && is_word_byte(s[i - 1]) && next != b'@' => {
                // `name@example.com`: an email address, not a variable.
                push(out, Kind::Other, i, i + 1, true);
                i += 1;
            }
            b'@' => {
                let mut end = i + 1;
                if s.get(end) == Some(&b'@') {
                    end += 1;
                }
                if matches!(s.get(end), Some(b'\'' | b'"' | b'`')) {
                    let q = s[end];
                    end = scan_string(s, end + 1, q).0 + 1;
                } else {
                    while end < n && (is_word_byte(s[end]) || s[end] == b'.') {
                        end += 1;
                    }
                }
                let end = end.min(n);
                let kind = if end > i + 1 { Kind::Var } else { Kind::Other };
                push(out, kind, i, end, true);
                i = end.max(i + 1);
            }
            b'$' if next == b'$' => {
                let end = find(s, i + 2, b"$$");
                push(out, Kind::Str, i + 2, end.unwrap_or(n), end.is_some());
                i = end.map_or(n, |e| e + 2);
            }
            b'$' if next.is_ascii_digit() => {
                let mut end = i + 1;
                while end < n && s[end].is_ascii_digit() {
                    end += 1;
                }
                push(out, Kind::Var, i, end, true);
                i = end;
            }
            b'=' | b'<' | b'>' | b'!' | b'|' | b'&' | b'^' | b'~' | b'+' | b'-' | b'*' | b'/' | b'%'
            | b':' => {
                let (kind, len) = operator(c, next, s.get(i + 2).copied().unwrap_or(0));
                push(out, kind, i, i + len, true);
                i += len;
            }
            _ if is_word_byte(c) => {
                let mut end = i + 1;
                while end < n && is_word_byte(s[end]) {
                    end += 1;
                }
                let kind = classify(&s[i..end]);
                push(out, kind, i, end, true);
                i = end;
            }
            _ => {
                push(out, Kind::Other, i, i + 1, true);
                i += 1;
            }
        }
    }
    // A bare word directly followed by `(` is a function call.
    for k in 0..out.len().saturating_sub(1) {
        if out[k].kind == Kind::Bare && out[k + 1].kind == Kind::LParen && s.get(out[k].end) != Some(&b'`') {
            out[k].kind = Kind::Func;
        }
    }
}

fn scan_number(s: &[u8], start: usize) -> usize {
    let n = s.len();
    let mut i = start;
    if s[i] == b'0' && matches!(s.get(i + 1), Some(b'x' | b'X' | b'b' | b'B')) {
        let hex = matches!(s[i + 1], b'x' | b'X');
        let mut j = i + 2;
        while j < n
            && (if hex {
                s[j].is_ascii_hexdigit()
            } else {
                matches!(s[j], b'0' | b'1')
            })
        {
            j += 1;
        }
        if j > i + 2 {
            return j;
        }
    }
    while i < n && s[i].is_ascii_digit() {
        i += 1;
    }
    if i < n && s[i] == b'.' {
        i += 1;
        while i < n && s[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < n && matches!(s[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < n && matches!(s[j], b'+' | b'-') {
            j += 1;
        }
        if j < n && s[j].is_ascii_digit() {
            while j < n && s[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// The kind and length of the operator starting with bytes `a`, `b`, `c`.
fn operator(a: u8, b: u8, c: u8) -> (Kind, usize) {
    match (a, b, c) {
        (b'<', b'=', b'>') => (Kind::Cmp, 3),
        (b'|', b'|', _) | (b'&', b'&', _) => (Kind::Logic, 2),
        (b'<', b'=' | b'>', _) | (b'>' | b'!', b'=', _) | (b'!', b'<' | b'>', _) => (Kind::Cmp, 2),
        (b'<', b'<', _) | (b'>', b'>', _) | (b':', b':' | b'=', _) => (Kind::Op, 2),
        (b'=' | b'<' | b'>', _, _) => (Kind::Cmp, 1),
        (b':', _, _) => (Kind::Other, 1),
        _ => (Kind::Op, 1),
    }
}

/// Lowercase copy of a word into `buf`, or None when it is too long to be a keyword.
fn lower<'b>(w: &[u8], buf: &'b mut [u8; 24]) -> Option<&'b [u8]> {
    let dst = buf.get_mut(..w.len())?;
    for (d, s) in dst.iter_mut().zip(w) {
        *d = s.to_ascii_lowercase();
    }
    Some(dst)
}

fn classify(w: &[u8]) -> Kind {
    let mut buf = [0u8; 24];
    let Some(l) = lower(w, &mut buf) else {
        return Kind::Bare;
    };
    match l {
        b"and" | b"or" | b"xor" => Kind::Logic,
        b"like" | b"rlike" | b"regexp" | b"is" | b"in" | b"between" | b"sounds" | b"glob" | b"ilike"
        | b"similar" => Kind::Cmp,
        b"not" | b"div" | b"mod" | b"collate" | b"escape" | b"binary" => Kind::Op,
        b"union" | b"intersect" | b"except" | b"minus" => Kind::Union,
        b"select" => Kind::Select,
        b"insert" | b"update" | b"delete" | b"drop" | b"create" | b"alter" | b"truncate" | b"exec"
        | b"execute" | b"declare" | b"shutdown" | b"grant" | b"revoke" | b"waitfor" | b"set" | b"call"
        | b"replace" | b"rename" | b"load" | b"copy" | b"merge" | b"handler" => Kind::Stmt,
        b"from" | b"where" | b"limit" | b"offset" | b"order" | b"group" | b"having" | b"into"
        | b"procedure" | b"join" | b"values" | b"case" | b"when" | b"then" | b"else" | b"end" | b"as"
        | b"by" | b"distinct" | b"all" | b"top" | b"asc" | b"desc" | b"fetch" | b"returning" => Kind::Clause,
        b"true" | b"false" | b"null" | b"unknown" | b"current_user" | b"session_user" | b"system_user"
        | b"current_database" | b"localtime" | b"current_timestamp" => Kind::Value,
        _ => Kind::Bare,
    }
}

/// What a run of tokens that should form one SQL expression looked like.
#[derive(Default)]
struct Expr {
    /// Ended at the end of input, a comment, `;` or a clause keyword, not in the middle of prose.
    clean: bool,
    /// Had at least one operand.
    nonempty: bool,
    /// Had a comparison, function call, variable, constant, sub-select, or ended in a comment or `;`.
    strong: bool,
    /// Had an operator (comparison or other) and no bare word: `''-'`, `-0-`.
    literal_op: bool,
    /// Where it stopped.
    stop: usize,
}

struct View<'a> {
    s: &'a [u8],
    t: &'a [Tok],
}

impl View<'_> {
    fn kind(&self, i: usize) -> Option<Kind> {
        self.t.get(i).map(|t| t.kind)
    }

    /// Whether token `i` is the word `w` (lowercase ASCII).
    fn is(&self, i: usize, w: &[u8]) -> bool {
        self.t
            .get(i)
            .is_some_and(|t| t.kind != Kind::Str && self.s[t.start..t.end].eq_ignore_ascii_case(w))
    }

    fn is_any(&self, i: usize, ws: &[&[u8]]) -> bool {
        ws.iter().any(|w| self.is(i, w))
    }

    fn word<'b>(&self, i: usize, buf: &'b mut [u8; 24]) -> &'b [u8] {
        match self.t.get(i) {
            Some(t) => lower(&self.s[t.start..t.end], buf).unwrap_or(&[]),
            None => &[],
        }
    }

    fn skip(&self, mut i: usize, kind: Kind) -> usize {
        while self.kind(i) == Some(kind) {
            i += 1;
        }
        i
    }

    /// Where the injected code starts after the value that a breakout closes at `i`: past closing
    /// parentheses, a MySQL full-text `in boolean mode)`, and a derived-table alias (`as x where`).
    fn breakout(&self, i: usize) -> usize {
        let mut j = self.skip(i, Kind::RParen);
        if self.is(j, b"in") && self.is(j + 1, b"boolean") && self.is(j + 2, b"mode") {
            j = self.skip(j + 3, Kind::RParen);
        }
        if self.is(j, b"as")
            && self.kind(j + 1) == Some(Kind::Bare)
            && matches!(self.kind(j + 2), Some(Kind::Clause | Kind::Semi))
        {
            j += 2;
        }
        j
    }

    fn analyze(&self, ctx: Ctx, high: bool) -> Option<&'static str> {
        // Named techniques first, so that the reason is the most specific one.
        for i in 0..self.t.len() {
            if let Some(why) = self.anywhere(i, high) {
                return Some(why);
            }
        }
        if ctx != Ctx::AsIs {
            if let Some(why) = self.after_quote(0, high) {
                return Some(why);
            }
        } else if let Some(why) = self.numeric_start(high).or_else(|| self.continuation()) {
            return Some(why);
        }
        (0..self.t.len()).find_map(|i| self.string_then_boolean(i, ctx, high))
    }

    /// A string that closes in the middle of the input, followed by a boolean expression.
    fn string_then_boolean(&self, i: usize, ctx: Ctx, high: bool) -> Option<&'static str> {
        let t = self.t[i];
        if t.kind != Kind::Str || !t.closed || i == 0 && ctx != Ctx::AsIs {
            return None;
        }
        let j = self.breakout(i + 1);
        (self.kind(j) == Some(Kind::Logic) && self.boolean(j + 1, high))
            .then_some("boolean expression after string")
    }

    /// Rules that hold wherever token `i` stands.
    fn anywhere(&self, i: usize, high: bool) -> Option<&'static str> {
        match self.t[i].kind {
            Kind::Union if self.union_select(i) => Some("union select"),
            Kind::Semi if self.strong_statement(i + 1, false) => Some("stacked query"),
            Kind::Semi
                if self.kind(i + 1) == Some(Kind::Func) && {
                    let e = self.expr(i + 1);
                    e.clean && e.literal_op && self.has_cmp(i + 1, e.stop)
                } =>
            {
                Some("stacked function call")
            }
            Kind::Semi if high && matches!(self.kind(i + 1), Some(Kind::Stmt | Kind::Select)) => {
                Some("stacked statement keyword")
            }
            Kind::Select if self.select_query(i) => Some("select statement"),
            Kind::Stmt if i == 0 && self.strong_statement(i, true) => Some("sql statement"),
            Kind::Stmt if high && self.strong_statement(i, true) => Some("sql statement"),
            Kind::Stmt if self.is(i, b"waitfor") && self.is_any(i + 1, &[b"delay", b"time"]) => {
                Some("time-based (waitfor)")
            }
            Kind::Stmt
                if self.is_any(i, &[b"exec", b"execute"])
                    && (self.is(i + 1, b"master") || self.word_prefixed(i + 1, &[b"xp_", b"sp_"])) =>
            {
                Some("exec of system procedure")
            }
            Kind::Clause if self.is(i, b"into") && self.is_any(i + 1, &[b"outfile", b"dumpfile"]) => {
                Some("into outfile")
            }
            Kind::Func => self.dangerous_call(i, high),
            Kind::Bare => self.system_object(i),
            Kind::Var => self.system_variable(i, high),
            _ => None,
        }
    }

    fn word_prefixed(&self, i: usize, prefixes: &[&[u8]]) -> bool {
        let mut buf = [0u8; 24];
        let w = self.word(i, &mut buf);
        prefixes.iter().any(|p| w.starts_with(p))
    }

    /// Rules for what follows the closed string at token `i` (the quote context's breakout).
    fn after_quote(&self, i: usize, high: bool) -> Option<&'static str> {
        let first = self.t.get(i)?;
        if first.kind != Kind::Str || !first.closed {
            return None;
        }
        let j = self.breakout(i + 1);
        let next = self.t.get(j)?;
        match next.kind {
            Kind::Comment if next.closed || high || self.s[next.start] != b'#' => Some("comment after quote"),
            Kind::Semi if matches!(self.kind(j + 1), None | Some(Kind::Comment)) => {
                Some("statement end after quote")
            }
            Kind::Logic if self.boolean(j + 1, high) => Some("tautology after quote"),
            Kind::Logic if self.is_any(j, &[b"||", b"&&"]) => {
                let e = self.expr(j + 1);
                (e.clean && e.nonempty).then_some("symbolic operator after quote")
            }
            Kind::Cmp => {
                let e = self.expr(j + 1);
                (e.clean && e.nonempty).then_some("comparison after quote")
            }
            Kind::Op if self.is(j, b"::") && self.kind(j + 1) == Some(Kind::Bare) => Some("cast after quote"),
            Kind::Op if !self.is(j, b"not") => {
                let e = self.expr(j + 1);
                (e.clean
                    && e.nonempty
                    && (e.strong || e.literal_op || high && !self.bare_only(j + 1, e.stop)))
                .then_some("operator after quote")
            }
            Kind::Select | Kind::Stmt if self.strong_statement(j, false) => Some("statement after quote"),
            Kind::Clause => self.clause(j, high),
            Kind::Comma => self.list_item(j + 1),
            // A probe that stops at the keywords: `' union select`, `' union all select`.
            Kind::Union if self.union_keywords(j).is_some() => Some("union select after quote"),
            _ => None,
        }
    }

    /// An injected item of a value list (`INSERT ... VALUES`, `ORDER BY`) at `j`: a conditional
    /// expression that compares literals, such as `(case when 1=1 then 1 else 0 end)` or `iif(1=1,1,1/0)`.
    fn list_item(&self, j: usize) -> Option<&'static str> {
        if !matches!(self.kind(j), Some(Kind::LParen | Kind::Func)) {
            return None;
        }
        let e = self.expr(j);
        (e.clean
            && e.literal_op
            && self.has_cmp(j, e.stop)
            && (e.stop == self.t.len() || self.kind(e.stop) == Some(Kind::Comment)))
        .then_some("conditional expression in a list")
    }

    /// Rules for input that starts with a number (a numeric context such as `id=1`).
    fn numeric_start(&self, high: bool) -> Option<&'static str> {
        let mut i = 0;
        if self.kind(0) == Some(Kind::Op) && self.is_any(0, &[b"-", b"+"]) {
            i = 1;
        }
        let start = self.kind(i)?;
        if start == Kind::LParen {
            // A parenthesized comparison of literals, then arithmetic: `(1=1)*1` (not `(>=18)`).
            let e = self.expr(i);
            return (matches!(self.kind(i + 1), Some(Kind::Num | Kind::Str))
                && e.clean
                && e.literal_op
                && self.has_cmp(i, e.stop)
                && e.stop == self.t.len())
            .then_some("boolean expression in parentheses");
        }
        if start != Kind::Num && !(high && start == Kind::Bare) {
            return None;
        }
        let j = self.breakout(i + 1);
        match self.kind(j)? {
            Kind::Logic if self.boolean(j + 1, high) => Some("boolean expression after number"),
            Kind::Clause => self.clause(j, high),
            Kind::Comma => self.list_item(j + 1),
            Kind::Comment if high && start == Kind::Num => Some("comment after number"),
            _ => None,
        }
    }

    /// Input that continues a query the application wrote, as appended to a number: `and 1=1`,
    /// `or x=x--`, `order by 3#`, `having 1=0`, `as t where 1=1`.
    fn continuation(&self) -> Option<&'static str> {
        // Prose starts with these words too ("and is it", "where is George", "group by 2, then",
        // "and 24/7", "or 2 -- maybe"), so only a comparison counts: of literals, or with a literal
        // and ended by a comment or a UNION, or the same word on both sides.
        let code = |k: usize| {
            let e = self.expr(k);
            e.clean
                && e.nonempty
                && self.has_cmp(k, e.stop)
                && (e.literal_op
                    || !self.bare_only(k, e.stop)
                        && matches!(self.kind(e.stop), Some(Kind::Comment | Kind::Semi | Kind::Union)))
                || self.same_word_tautology(self.skip(k, Kind::LParen))
        };
        let j = self.breakout(0);
        let ok = match self.kind(j)? {
            Kind::Logic => code(j + 1),
            Kind::Clause if self.is_any(j, &[b"having", b"where"]) => code(j + 1),
            Kind::Clause if self.is_any(j, &[b"order", b"group"]) && self.is(j + 1, b"by") => {
                self.kind(j + 2) == Some(Kind::Num) && self.kind(j + 3) == Some(Kind::Comment) || {
                    let e = self.expr(j + 2);
                    e.clean && e.nonempty && self.is(e.stop, b"having") && code(e.stop + 1)
                }
            }
            Kind::Union => self.union_keywords(j).is_some_and(|k| {
                self.is(j + 1, b"all")
                    || matches!(
                        self.kind(k + 1),
                        None | Some(Kind::Num | Kind::Value | Kind::Comment)
                    )
            }),
            _ => false,
        };
        ok.then_some("code continuing a query")
    }

    /// Whether a comparison operator stands between tokens `from` and `to`.
    fn has_cmp(&self, from: usize, to: usize) -> bool {
        self.t
            .get(from..to.min(self.t.len()))
            .is_some_and(|ts| ts.iter().any(|t| t.kind == Kind::Cmp))
    }

    /// `x=x`: the same bare word on both sides of `=`, as only a tautology has it.
    fn same_word_tautology(&self, k: usize) -> bool {
        let (mut a, mut b) = ([0u8; 24], [0u8; 24]);
        let (left, right) = (self.word(k, &mut a), self.word(k + 2, &mut b));
        self.kind(k) == Some(Kind::Bare)
            && self.is(k + 1, b"=")
            && self.kind(k + 2) == Some(Kind::Bare)
            && !left.is_empty()
            && left == right
            && matches!(self.kind(k + 3), None | Some(Kind::Comment | Kind::RParen))
    }

    /// A clause keyword at `j` right after a breakout: `order by 3--`, `having 1=1`, `limit 1`, ...
    fn clause(&self, j: usize, high: bool) -> Option<&'static str> {
        let mut buf = [0u8; 24];
        let ok = match self.word(j, &mut buf) {
            b"order" | b"group" => {
                self.is(j + 1, b"by") && {
                    let e = self.expr(j + 2);
                    e.clean && e.nonempty
                }
            }
            b"having" | b"where" => self.boolean(j + 1, high),
            b"limit" => self.kind(j + 1) == Some(Kind::Num),
            b"procedure" => self.kind(j + 1) == Some(Kind::Func),
            b"into" => self.kind(j + 1) == Some(Kind::Var) || self.is_any(j + 1, &[b"outfile", b"dumpfile"]),
            _ => false,
        };
        ok.then_some("sql clause after breakout")
    }

    /// Whether the tokens from `j` form the right-hand side of an injected boolean operator.
    fn boolean(&self, j: usize, high: bool) -> bool {
        let e = self.expr(j);
        e.clean && e.nonempty && (e.strong || e.literal_op || high && !self.bare_only(j, e.stop))
    }

    /// Whether the operands between `j` and `stop` are all bare words.
    fn bare_only(&self, j: usize, stop: usize) -> bool {
        self.t[j..stop.min(self.t.len())]
            .iter()
            .all(|t| !matches!(t.kind, Kind::Num | Kind::Str | Kind::Var | Kind::Value))
    }

    /// Scans an expression from `j`: operands separated by operators, parentheses and commas.
    fn expr(&self, j: usize) -> Expr {
        let (mut e, bare, op) = self.expr_scan(j);
        e.literal_op = op && !bare && e.nonempty;
        e
    }

    fn expr_scan(&self, j: usize) -> (Expr, bool, bool) {
        let mut e = Expr {
            stop: j,
            ..Expr::default()
        };
        let mut prev_operand = false;
        let mut prev_kind = Kind::Other;
        let mut bare = false;
        let mut op = false;
        let mut cases = 0u32;
        let mut k = j;
        let limit = (j + LOOKAHEAD).min(self.t.len());
        while k < limit {
            let kind = self.t[k].kind;
            match kind {
                Kind::Comment | Kind::Semi => {
                    e.clean = true;
                    e.strong |= e.nonempty;
                    e.stop = k;
                    return (e, bare, op);
                }
                // A searched CASE expression: `case when 1=1 then 1 else 0 end`.
                // (Or a simple one: `case 5 when 5 then 1 end`.)
                Kind::Clause
                    if !prev_operand
                        && self.is(k, b"case")
                        && (self.is(k + 1, b"when")
                            || matches!(self.kind(k + 1), Some(Kind::Num | Kind::Bare | Kind::Str))
                                && self.is(k + 2, b"when")) =>
                {
                    cases += 1;
                    e.strong = true;
                }
                Kind::Clause if cases > 0 && self.is_any(k, &[b"when", b"then", b"else"]) => {
                    prev_operand = false;
                }
                Kind::Clause if cases > 0 && prev_operand && self.is(k, b"end") => cases -= 1,
                Kind::Clause | Kind::Union | Kind::Stmt => {
                    e.clean = e.nonempty;
                    e.stop = k;
                    return (e, bare, op);
                }
                Kind::Str | Kind::Num | Kind::Bare | Kind::Var | Kind::Value => {
                    if prev_operand && !(kind == Kind::Str && prev_kind == Kind::Str) {
                        e.stop = k;
                        return (e, bare, op);
                    }
                    e.nonempty = true;
                    e.strong |= matches!(kind, Kind::Var | Kind::Value);
                    bare |= kind == Kind::Bare;
                    prev_operand = true;
                }
                Kind::Func | Kind::LParen => {
                    if prev_operand {
                        e.stop = k;
                        return (e, bare, op);
                    }
                    e.strong |= kind == Kind::Func;
                    prev_operand = false;
                }
                Kind::Select => {
                    e.strong = true;
                    e.nonempty = true;
                    prev_operand = false;
                }
                Kind::RParen => prev_operand = true,
                Kind::Cmp => {
                    e.strong = true;
                    op = true;
                    prev_operand = false;
                }
                // `count(*)`: the wildcard is the only argument.
                Kind::Op
                    if prev_kind == Kind::LParen
                        && self.is(k, b"*")
                        && self.kind(k + 1) == Some(Kind::RParen) =>
                {
                    e.nonempty = true;
                    prev_operand = true;
                }
                Kind::Op => {
                    e.strong |= self.is(k, b"::");
                    op = true;
                    prev_operand = false;
                }
                Kind::Logic | Kind::Comma | Kind::Dot => prev_operand = false,
                Kind::Other => {
                    e.stop = k;
                    return (e, bare, op);
                }
            }
            prev_kind = kind;
            k += 1;
        }
        // Well-formed SQL as far as a rule looks ahead: prose breaks the shape long before that.
        e.clean = k == self.t.len() || e.strong && e.nonempty;
        e.stop = k;
        (e, bare, op)
    }

    /// `union [all|distinct] [(] select` followed by something.
    fn union_select(&self, i: usize) -> bool {
        self.union_keywords(i).is_some_and(|k| self.kind(k + 1).is_some())
    }

    /// `union [all|distinct] [(] select` at `i`: the index of `select`.
    fn union_keywords(&self, i: usize) -> Option<usize> {
        let mut k = i + 1;
        // `+` stands for a space when a form-encoded value was not decoded: `union+all+select`.
        while self.kind(k) == Some(Kind::Clause) && self.is_any(k, &[b"all", b"distinct"])
            || self.kind(k) == Some(Kind::LParen)
            || self.is(k, b"+")
        {
            k += 1;
        }
        (self.kind(k) == Some(Kind::Select)).then_some(k)
    }

    /// `select` followed by a select list that is SQL, not prose.
    fn select_query(&self, i: usize) -> bool {
        let mut k = i + 1;
        while self.kind(k) == Some(Kind::Clause) && self.is_any(k, &[b"all", b"distinct", b"top"]) {
            k += 1;
            if self.kind(k) == Some(Kind::Num) {
                k += 1;
            }
        }
        let Some(first) = self.kind(k) else {
            return false;
        };
        if first == Kind::Op && self.is(k, b"*") {
            return matches!(
                self.kind(k + 1),
                None | Some(Kind::Comment | Kind::Comma | Kind::RParen)
            ) || self.is(k + 1, b"from");
        }
        let e = self.expr(k);
        let shaped = match first {
            Kind::Num | Kind::Var | Kind::Value | Kind::Func | Kind::LParen => true,
            Kind::Clause => self.is(k, b"case") && self.is(k + 1, b"when") && self.has_cmp(k, e.stop),
            // A quoted word after "select" is prose (`the "Select" button`) unless a list or FROM follows.
            Kind::Str => {
                self.t[k].closed
                    && (matches!(
                        self.kind(k + 1),
                        None | Some(Kind::Comma | Kind::Comment | Kind::Semi | Kind::Union)
                    ) || self.is(k + 1, b"from"))
            }
            Kind::Bare => {
                matches!(self.kind(k + 1), Some(Kind::Comma | Kind::Dot)) || self.is(k + 1, b"from")
            }
            _ => false,
        };
        shaped
            && e.clean
            && e.nonempty
            && (e.stop >= self.t.len() || !self.is(e.stop, b"from") || self.table_after_from(e.stop))
    }

    /// After `from` at `i`: a table (a name, a table function such as `generate_series(1,9)`, or a
    /// subquery), an optional alias, then something SQL or the end.
    fn table_after_from(&self, i: usize) -> bool {
        let mut k = i + 1;
        match self.kind(k) {
            Some(Kind::Bare) => {
                k += 1;
                while self.kind(k) == Some(Kind::Dot) && matches!(self.kind(k + 1), Some(Kind::Bare)) {
                    k += 2;
                }
            }
            Some(Kind::Func) => match self.closing_paren(k + 1) {
                Some(close) => k = close + 1,
                None => return false,
            },
            Some(Kind::LParen) => return self.kind(k + 1) == Some(Kind::Select),
            _ => return false,
        }
        let ends = |k: usize| {
            matches!(
                self.kind(k),
                Some(Kind::Comment | Kind::Semi | Kind::RParen | Kind::Comma | Kind::Union | Kind::Clause)
            )
        };
        if self.is(k, b"as") && self.kind(k + 1) == Some(Kind::Bare) || self.kind(k) == Some(Kind::Bare) {
            k += if self.is(k, b"as") { 2 } else { 1 };
            return ends(k);
        }
        // A tail that balances the breakout's quotes and parentheses: `... from t and (('a'='a`.
        self.kind(k).is_none()
            || ends(k)
            || self.kind(k) == Some(Kind::Logic) && matches!(self.kind(k + 1), Some(Kind::LParen | Kind::Str))
    }

    /// The index of the parenthesis that closes the one at `open`, within the lookahead.
    fn closing_paren(&self, open: usize) -> Option<usize> {
        if self.kind(open) != Some(Kind::LParen) {
            return None;
        }
        let mut depth = 0usize;
        for k in open..(open + LOOKAHEAD).min(self.t.len()) {
            match self.t[k].kind {
                Kind::LParen => depth += 1,
                Kind::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(k);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// A statement keyword at `i` with the words that make it an actual statement. `strict` is for a
    /// statement with nothing before it, where only unmistakable shapes count.
    fn strong_statement(&self, i: usize, strict: bool) -> bool {
        let Some(kind) = self.kind(i) else {
            return false;
        };
        if kind == Kind::Select {
            return self.select_query(i);
        }
        if kind != Kind::Stmt {
            return false;
        }
        let mut buf = [0u8; 24];
        match self.word(i, &mut buf) {
            b"drop" | b"create" | b"alter" | b"truncate" | b"rename" => {
                self.is_any(
                    i + 1,
                    &[
                        b"table",
                        b"database",
                        b"schema",
                        b"user",
                        b"view",
                        b"index",
                        b"procedure",
                        b"proc",
                        b"function",
                        b"trigger",
                        b"login",
                        b"role",
                        b"column",
                        b"temporary",
                        b"temp",
                        b"event",
                        b"sequence",
                        b"extension",
                        b"tablespace",
                    ],
                ) && (!strict || self.is(i + 2, b"if") || self.object_name_ends(i + 2))
            }
            b"delete" => {
                self.is(i + 1, b"from") && self.object_name_ends(i + 2)
                    || self.kind(i + 1) == Some(Kind::Bare)
                        && (matches!(self.kind(i + 2), None | Some(Kind::Comment | Kind::Semi))
                            || self.is(i + 2, b"where"))
            }
            b"insert" | b"replace" => {
                self.is(i + 1, b"into")
                    && matches!(self.kind(i + 2), Some(Kind::Bare | Kind::Func))
                    && (self.is(i + 3, b"values")
                        || matches!(self.kind(i + 3), Some(Kind::LParen | Kind::Select | Kind::Dot)))
                    || self.kind(i + 2) == Some(Kind::Func)
            }
            b"update" => self.kind(i + 1) == Some(Kind::Bare) && self.is(i + 2, b"set"),
            b"exec" | b"execute" | b"call" if strict => {
                self.is(i + 1, b"master")
                    || self.word_prefixed(i + 1, &[b"xp_", b"sp_"])
                    || matches!(self.kind(i + 1), Some(Kind::LParen | Kind::Var))
            }
            // `call` takes a procedure call, `call p(1)`: "; call me" is prose.
            b"call" => self.kind(i + 1) == Some(Kind::Func),
            b"exec" | b"execute" => {
                matches!(
                    self.kind(i + 1),
                    Some(Kind::Bare | Kind::Func | Kind::LParen | Kind::Var | Kind::Str)
                )
            }
            b"declare" => self.kind(i + 1) == Some(Kind::Var),
            b"waitfor" => self.is_any(i + 1, &[b"delay", b"time"]),
            b"shutdown" => {
                matches!(self.kind(i + 1), Some(Kind::Comment | Kind::Semi))
                    || !strict && self.kind(i + 1).is_none()
                    || self.is(i + 1, b"with")
            }
            _ if strict => false,
            b"set" => {
                self.kind(i + 1) == Some(Kind::Var)
                    || self.kind(i + 1) == Some(Kind::Bare) && self.kind(i + 2) == Some(Kind::Cmp)
            }
            b"grant" | b"revoke" => self.is_any(
                i + 1,
                &[
                    b"all",
                    b"select",
                    b"insert",
                    b"update",
                    b"delete",
                    b"execute",
                    b"dba",
                    b"create",
                    b"alter",
                    b"drop",
                    b"usage",
                    b"file",
                    b"super",
                    b"connect",
                    b"resource",
                ],
            ),
            b"load" => self.is_any(i + 1, &[b"data", b"xml"]),
            b"copy" => {
                self.kind(i + 1) == Some(Kind::LParen)
                    || self.kind(i + 1) == Some(Kind::Bare) && self.is_any(i + 2, &[b"to", b"from"])
            }
            _ => false,
        }
    }

    /// A (possibly qualified) object name at `k` that ends where a statement can end.
    fn object_name_ends(&self, mut k: usize) -> bool {
        if !matches!(self.kind(k), Some(Kind::Bare | Kind::Str)) {
            return false;
        }
        k += 1;
        while self.kind(k) == Some(Kind::Dot) && self.kind(k + 1) == Some(Kind::Bare) {
            k += 2;
        }
        matches!(
            self.kind(k),
            None | Some(Kind::Comment | Kind::Semi | Kind::Comma | Kind::LParen)
        ) || self.is_any(
            k,
            &[b"cascade", b"restrict", b"purge", b"where", b"values", b"as"],
        )
    }

    /// A call of a function that only an attack calls from a login field.
    fn dangerous_call(&self, i: usize, high: bool) -> Option<&'static str> {
        let mut buf = [0u8; 24];
        let name = self.word(i, &mut buf);
        match name {
            b"sleep" | b"pg_sleep" | b"benchmark" | b"randomblob" | b"sys_sleep" => {
                // The argument must look like code: `sleep(5)`, not `sleep(8 hours)`.
                let a = i + 2;
                let ok = match self.kind(a) {
                    Some(Kind::Num) => matches!(
                        self.kind(a + 1),
                        None | Some(Kind::RParen | Kind::Comma | Kind::Op | Kind::Cmp | Kind::Comment)
                    ),
                    Some(Kind::Var | Kind::Func | Kind::LParen | Kind::Select | Kind::Str) => true,
                    _ => false,
                };
                ok.then_some("time-based function")
            }
            b"extractvalue"
            | b"updatexml"
            | b"name_const"
            | b"exp"
            | b"geometrycollection"
            | b"multipoint"
            | b"polygon"
            | b"linestring"
            | b"multilinestring"
            | b"multipolygon"
            | b"gtid_subset"
            | b"json_keys"
            | b"xmltype" => {
                let inner = self.kind(i + 2);
                let code = matches!(
                    inner,
                    Some(
                        Kind::Num
                            | Kind::Func
                            | Kind::LParen
                            | Kind::Select
                            | Kind::Op
                            | Kind::Var
                            | Kind::Str
                    )
                );
                (code && (name == b"extractvalue" || name == b"updatexml" || self.expr(i + 1).strong || high))
                    .then_some("error-based function")
            }
            // Conditionals that blind injections call with a literal comparison: `elt(1=1,5)`.
            b"elt" | b"make_set" | b"iif" => {
                let e = self.expr(i);
                (e.clean && e.literal_op && self.kind(i + 3) == Some(Kind::Cmp))
                    .then_some("conditional function on a comparison")
            }
            b"load_file" | b"pg_read_file" | b"pg_ls_dir" | b"lo_import" | b"lo_export" | b"sys_eval"
            | b"sys_exec" | b"xp_cmdshell" | b"openrowset" | b"opendatasource" | b"utl_inaddr"
            | b"utl_http" | b"dbms_pipe" => Some("file or command access function"),
            b"receive_message" | b"get_host_name" | b"request" | b"sleep_ms"
                if i >= 2
                    && self.kind(i - 1) == Some(Kind::Dot)
                    && self.word_prefixed(i - 2, &[b"dbms_", b"utl_", b"sys"]) =>
            {
                Some("oracle package call")
            }
            b"char" | b"chr" | b"nchar" | b"concat" | b"concat_ws" | b"group_concat" | b"unhex" | b"hex"
            | b"ascii" | b"ord" | b"substring" | b"substr" | b"mid" | b"version" | b"database" | b"user"
            | b"schema" | b"cast" | b"convert" | b"if" | b"count" | b"length" | b"rand" | b"floor"
            | b"md5" | b"sha1" | b"current_setting" | b"string_agg" | b"listagg" | b"xmlagg" | b"exists"
                if high =>
            {
                let inner = self.kind(i + 2);
                matches!(
                    inner,
                    Some(Kind::Num | Kind::Str | Kind::Var | Kind::Func | Kind::RParen | Kind::Select)
                )
                .then_some("sql function call")
            }
            _ => None,
        }
    }

    /// System catalogs and procedures that no ordinary text names.
    fn system_object(&self, i: usize) -> Option<&'static str> {
        let mut buf = [0u8; 24];
        match self.word(i, &mut buf) {
            b"information_schema"
            | b"sysobjects"
            | b"syscolumns"
            | b"sysdatabases"
            | b"sqlite_master"
            | b"sqlite_schema"
            | b"pg_catalog"
            | b"pg_shadow"
            | b"msysobjects"
            | b"all_tab_columns"
            | b"user_tab_columns"
            | b"xp_cmdshell"
            | b"xp_dirtree"
            | b"xp_regread"
            | b"xp_fileexist"
            | b"sp_oacreate"
            | b"sp_executesql"
            | b"sp_makewebtask"
            | b"sp_configure"
            | b"sp_addlogin"
            | b"sp_password"
            | b"openrowset"
            | b"opendatasource" => Some("system catalog or procedure"),
            b"mysql" if self.kind(i + 1) == Some(Kind::Dot) && self.is_any(i + 2, &[b"user", b"db"]) => {
                Some("system catalog or procedure")
            }
            _ => None,
        }
    }

    fn system_variable(&self, i: usize, high: bool) -> Option<&'static str> {
        let t = self.t[i];
        let v = &self.s[t.start..t.end];
        if !v.starts_with(b"@@") {
            return None;
        }
        let mut buf = [0u8; 24];
        let known = matches!(
            lower(&v[2..], &mut buf).unwrap_or(&[]),
            b"version"
                | b"datadir"
                | b"hostname"
                | b"basedir"
                | b"servername"
                | b"tmpdir"
                | b"spid"
                | b"language"
                | b"version_compile_os"
                | b"plugin_dir"
                | b"secure_file_priv"
                | b"identity"
        );
        (known || high && v.len() > 2).then_some("system variable")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(s: &str, high: bool) -> Option<String> {
        detect(s.as_bytes(), high)
    }

    /// Each input is flagged at low for a reason that contains one of its `|`-separated words.
    fn assert_flagged_at_low(cases: &[(&str, &str)]) {
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(input, want)| match flagged(input, false) {
                Some(r) if want.split('|').any(|w| r.contains(w)) => None,
                other => Some(format!("{input}: {other:?}")),
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn fingerprints_and_contexts() {
        let r = flagged("' or 1=1--", false).expect("flagged");
        assert!(r.contains("s&1o1c") && r.contains("context '"), "{r}");
        let r = flagged("\" or \"\"=\"", false).expect("flagged");
        assert!(r.contains("context \""), "{r}");
        let r = flagged("1 or 1=1", false).expect("flagged");
        assert!(r.contains("context as-is"), "{r}");
    }

    #[test]
    fn techniques_flagged_at_low() {
        let cases: &[(&str, &str)] = &[
            ("' or 1=1--", "tautology"),
            ("' OR 'a'='a", "tautology"),
            ("admin'--", "comment"),
            ("admin' #", "comment"),
            ("admin'/*", "comment"),
            ("1 or true", "boolean"),
            ("') or ('1'='1", "tautology"),
            ("x'='x", "comparison"),
            ("' union select username, password from users--", "union"),
            ("1 UNION ALL SELECT null,null--", "union"),
            ("'/**/uNiOn/**/sElEcT/**/1,2--", "union"),
            ("' /*!50000union*/ /*!50000select*/ 1,2--", "union"),
            ("'; drop table users--", "stacked"),
            ("1; shutdown--", "stacked"),
            ("x'; insert into users values('a','b')--", "stacked"),
            ("1' and sleep(5)#", "time-based"),
            ("1 and benchmark(5000000,md5(1))", "time-based"),
            ("'||pg_sleep(10)--", "time-based"),
            ("'; waitfor delay '0:0:5'--", "stacked"),
            ("' waitfor delay '0:0:5'--", "waitfor"),
            ("' and extractvalue(1,concat(0x7e,version()))--", "error-based"),
            ("' and updatexml(1,concat(0x7e,user()),1)--", "error-based"),
            ("' or username=0x61646d696e--", "tautology"),
            ("' or name=char(97,100,109)--", "tautology"),
            (
                "' union select table_name from information_schema.tables--",
                "union",
            ),
            ("information_schema.columns", "system catalog"),
            ("' union select 1 into outfile '/var/www/x.php'--", "union"),
            ("1 into outfile '/tmp/x'", "outfile|clause"),
            ("' or `id`=1--", "tautology"),
            ("'::int--", "cast"),
            ("1'::text::int", "cast"),
            ("' and 1=cast($$abc$$ as int)--", "tautology"),
            ("'; exec master..xp_cmdshell 'dir'--", "stacked"),
            ("exec xp_cmdshell 'net user'", "statement"),
            ("' order by 5--", "clause"),
            ("' having 1=1--", "clause"),
            ("1 order by 3#", "clause"),
            ("' and 1=(select count(*) from users)--", "tautology|select"),
            ("@@version", "system variable"),
            ("' and dbms_pipe.receive_message('a',5)=1--", "oracle"),
            ("O'Brien' or 1=1--", "boolean"),
            ("select * from users", "select"),
            ("drop table users", "statement"),
        ];
        assert_flagged_at_low(cases);
    }

    /// Shapes that automated injection tools send: derived-table aliases, full-text breakouts, CASE
    /// expressions, `count(*)` subqueries, table functions, stacked conditionals, list items, and
    /// conditions appended to a number. All but three (caught by their UNION or comment) were missed
    /// before the rules for these shapes.
    #[test]
    fn tool_shapes_flagged_at_low() {
        let cases: &[(&str, &str)] = &[
            ("7')) as qx where 4411=4411 or 2290=7315--", "boolean|clause"),
            ("-12\") as zz where 31=31 union all select 1,2,3#", "union"),
            ("9' in boolean mode) order by 3--", "clause"),
            ("9' in boolean mode) and (42=42)*7#", "tautology"),
            (
                "4 and (select 8 from (select(case when (7=7) then 1 else 0 end))t)",
                "select",
            ),
            ("4' or 8=(case when (5=5) then 8 else 0 end)-- x", "tautology"),
            (
                "1;select count(*) from pg_tables t1,pg_tables t2--",
                "stacked|select",
            ),
            (
                "8');select count(*) from generate_series(1,900000)--",
                "stacked|select",
            ),
            ("8\"));iif(12=34,1,1/0)", "stacked function"),
            ("make_set(61=61,9)", "conditional function"),
            ("elt(3=7,5)", "conditional function"),
            ("5,(case when 44=21 then 5 else null end)", "list"),
            ("5',iif(8=8,5,1/0)", "list|conditional"),
            ("(77=77)*3", "parentheses"),
            ("' union select ", "union select after quote"),
            (" UNION ALL SELECT", "continuing"),
            (" or qq=qq--", "continuing"),
            (") or (b=b", "continuing"),
            (" group by uid having 1=1--", "continuing"),
            ("'; grant connect to x; --", "stacked"),
            (" AND 6021=6021", "continuing"),
            (" or 3=4#", "continuing"),
            (" ORDER BY 12-- ", "continuing"),
            (" having 5=5--", "continuing"),
            ("and 1=1 union all select null--", "union"),
            (
                "3 and char(65)||char(66)||char(67)||char(68)||char(69)||char(70)||char(71)||char(72)||char(73)=lower(char(74))--",
                "boolean",
            ),
            (
                "select 'ab'||(case 77 when 77 then 1 else 0 end)||'cd' from dual",
                "select|boolean",
            ),
        ];
        assert_flagged_at_low(cases);
    }

    #[test]
    fn prose_with_sql_words_passes_at_low() {
        for input in [
            "select the union jack",
            "drop it like it's hot",
            "I'll be there or else",
            "1=1 is always true",
            "order by date please",
            "1 or 2 people",
            "I need sleep(8 hours)",
            "Jones' or Smith's",
            "the \"best\" or worst option",
            "delete me from your list please",
            "Apt #5",
            "it's 5 o'clock",
            "Tom's - great",
            "$$ money $$",
            "john@@example.com",
            "0xDEADBEEF",
            "and is it you?",
            "Where is George",
            "Group by age, then by height",
            "order by 5 pm",
            "and true love",
            "or x=y",
            "in case when it rains",
            "select 5 from the list and go",
            "limit 2 per customer",
            "Pick one, (or two)",
            "as we said where it was",
            "or x=y",
            "group by age having fun",
            "Group by 2, then by age",
            "Order by 1",
            "and 24/7",
            "or 50%",
            "and 3; call me",
            "or 2 -- maybe",
            "Or True",
            "(<3)",
            "(>=18)",
            "Smith; ext(555-1234)",
            "3, max(1-2)",
            "select case when ready",
        ] {
            assert_eq!(flagged(input, false), None, "{input}");
        }
    }

    #[test]
    fn high_adds_weak_signals() {
        for input in ["char(97,98)", "version()", "1--", "@@foo", "' or 2", "1; select"] {
            assert_eq!(flagged(input, false), None, "{input} at low");
            assert!(flagged(input, true).is_some(), "{input} at high");
        }
    }

    #[test]
    fn token_cap_holds() {
        let input = "( ".repeat(10_000);
        let mut toks = Vec::new();
        tokenize(input.as_bytes(), None, &mut toks);
        assert_eq!(toks.len(), MAX_SQL_TOKENS);
    }
}
