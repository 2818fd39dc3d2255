//! XSS detection: an HTML5-style tag and attribute scanner plus checks for tag-less payloads.

/// Filler characters (tabs, newlines, entity-encoded controls) skipped between two letters of a
/// scheme or keyword; more than this and the word does not match.
const MAX_FILLERS: usize = 16;
/// Bytes of a tag name that are read; longer names match no list.
const MAX_TAG_NAME: usize = 32;
/// Bytes scanned for the end of a CSS comment inside a word; an unclosed one ends the word.
const MAX_CSS_COMMENT: usize = 64;
/// Bytes scanned for the end of a `{{ ... }}` template expression.
const TEMPLATE_WINDOW: usize = 256;

/// Tags that run script or change where the page's script and links come from.
const EXEC_TAGS: &[&str] = &[
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "base", "meta",
    "link", "style", "xml", "import", "isindex", "portal", "vmlframe", "xss", "animate", "handler", "layer",
    "ilayer",
];

/// Other HTML (and SVG) element names: flagged at High only.
const HTML_TAGS: &[&str] = &[
    "a",
    "abbr",
    "address",
    "area",
    "article",
    "aside",
    "audio",
    "b",
    "bdi",
    "bdo",
    "bgsound",
    "big",
    "blink",
    "blockquote",
    "body",
    "br",
    "button",
    "canvas",
    "caption",
    "center",
    "cite",
    "code",
    "col",
    "colgroup",
    "data",
    "datalist",
    "dd",
    "del",
    "details",
    "dfn",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "em",
    "fieldset",
    "figcaption",
    "figure",
    "font",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hr",
    "html",
    "i",
    "image",
    "img",
    "input",
    "ins",
    "kbd",
    "keygen",
    "label",
    "layer",
    "legend",
    "li",
    "listing",
    "main",
    "map",
    "mark",
    "marquee",
    "menu",
    "meter",
    "nav",
    "nobr",
    "noembed",
    "noframes",
    "noscript",
    "ol",
    "optgroup",
    "option",
    "output",
    "p",
    "param",
    "picture",
    "plaintext",
    "pre",
    "progress",
    "q",
    "rp",
    "rt",
    "ruby",
    "s",
    "samp",
    "section",
    "select",
    "slot",
    "small",
    "source",
    "span",
    "strike",
    "strong",
    "sub",
    "summary",
    "sup",
    "table",
    "tbody",
    "td",
    "template",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "time",
    "title",
    "tr",
    "track",
    "tt",
    "u",
    "ul",
    "var",
    "video",
    "wbr",
    "xmp",
    "set",
    "use",
    "foreignobject",
    "animatetransform",
    "animatemotion",
    "maction",
    "discard",
    "feimage",
];

/// DOM event handler names without their `on` prefix; used where no tag is in sight.
const EVENTS: &[&str] = &[
    "abort",
    "activate",
    "afterprint",
    "afterscriptexecute",
    "animationcancel",
    "animationend",
    "animationiteration",
    "animationstart",
    "auxclick",
    "beforeactivate",
    "beforecopy",
    "beforecut",
    "beforedeactivate",
    "beforeinput",
    "beforeprint",
    "beforescriptexecute",
    "beforetoggle",
    "beforeunload",
    "begin",
    "blur",
    "bounce",
    "cancel",
    "canplay",
    "canplaythrough",
    "change",
    "click",
    "close",
    "contentvisibilityautostatechange",
    "contextmenu",
    "copy",
    "cuechange",
    "cut",
    "dblclick",
    "deactivate",
    "drag",
    "dragend",
    "dragenter",
    "dragexit",
    "dragleave",
    "dragover",
    "dragstart",
    "drop",
    "durationchange",
    "emptied",
    "end",
    "ended",
    "error",
    "finish",
    "focus",
    "focusin",
    "focusout",
    "formdata",
    "fullscreenchange",
    "gotpointercapture",
    "hashchange",
    "input",
    "invalid",
    "keydown",
    "keypress",
    "keyup",
    "load",
    "loadeddata",
    "loadedmetadata",
    "loadend",
    "loadstart",
    "lostpointercapture",
    "message",
    "mousedown",
    "mouseenter",
    "mouseleave",
    "mousemove",
    "mouseout",
    "mouseover",
    "mouseup",
    "mousewheel",
    "offline",
    "online",
    "pagehide",
    "pageshow",
    "paste",
    "pause",
    "play",
    "playing",
    "pointercancel",
    "pointerdown",
    "pointerenter",
    "pointerleave",
    "pointermove",
    "pointerout",
    "pointerover",
    "pointerrawupdate",
    "pointerup",
    "popstate",
    "progress",
    "ratechange",
    "readystatechange",
    "repeat",
    "reset",
    "resize",
    "scroll",
    "scrollend",
    "search",
    "securitypolicyviolation",
    "seeked",
    "seeking",
    "select",
    "selectionchange",
    "selectstart",
    "show",
    "slotchange",
    "stalled",
    "start",
    "storage",
    "submit",
    "suspend",
    "timeupdate",
    "toggle",
    "touchcancel",
    "touchend",
    "touchmove",
    "touchstart",
    "transitioncancel",
    "transitionend",
    "transitionrun",
    "transitionstart",
    "unload",
    "volumechange",
    "waiting",
    "webkitanimationend",
    "webkitanimationstart",
    "webkittransitionend",
    "wheel",
    "zoom",
];

/// Attributes through which an HTML element loads or links a URL.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "poster",
    "data",
    "xlink:href",
    "lowsrc",
    "dynsrc",
    "codebase",
    "cite",
    "longdesc",
    "usemap",
    "ping",
    "manifest",
];

/// Whether an attribute value is an absolute URL to some host: `http://`, `https://`, `ftp://`, or
/// scheme-relative `//host` (and `\\\\host`, which browsers read the same way).
fn external_url(v: &[u8]) -> bool {
    let v = &v[skip_fillers(v, 0)..];
    let v = v.trim_ascii_start();
    v.starts_with(b"//")
        || v.starts_with(b"\\\\")
        || [&b"http://"[..], b"https://", b"ftp://"]
            .iter()
            .any(|p| starts_ci(v, 0, p))
}

/// Script sinks that follow a breakout from a JavaScript string (`";alert(1)//`).
const JS_SINKS: &[&str] = &[
    "alert",
    "prompt",
    "confirm",
    "eval",
    "settimeout",
    "setinterval",
    "function",
    "fetch",
    "import",
    "print",
    "atob",
    "constructor",
    "document",
    "window",
    "top",
    "self",
    "this",
    "globalthis",
    "location",
    "navigator",
    "open",
    "parent",
    "frames",
];

/// The reason `s` is cross-site scripting, if it is.
pub(super) fn detect(s: &[u8], high: bool) -> Option<String> {
    tags(s, high).or_else(|| text(s, high))
}

fn lower(c: u8) -> u8 {
    c.to_ascii_lowercase()
}

fn is_blank(c: u8) -> bool {
    c <= 0x20
}

/// Whether `s[at..]` starts with `word` (ASCII, case-insensitive).
fn starts_ci(s: &[u8], at: usize, word: &[u8]) -> bool {
    s.get(at..at + word.len())
        .is_some_and(|w| w.eq_ignore_ascii_case(word))
}

/// The entry of `list` equal to `name` (case-insensitive).
fn lookup(list: &[&'static str], name: &[u8]) -> Option<&'static str> {
    list.iter()
        .copied()
        .find(|t| t.as_bytes().eq_ignore_ascii_case(name))
}

fn skip_blanks(s: &[u8], mut i: usize, max: usize) -> usize {
    let stop = i.saturating_add(max).min(s.len());
    while i < stop && is_blank(s[i]) {
        i += 1;
    }
    i
}

/// Pass 1: every `<` that opens a tag, a closing tag, a comment or a declaration.
fn tags(s: &[u8], high: bool) -> Option<String> {
    let mut i = 0;
    // Attributes are parsed once: a `<` inside an already parsed tag gets only the tag-name checks.
    let mut parsed_to = 0;
    while let Some(off) = s.get(i..).and_then(|r| r.iter().position(|&c| c == b'<')) {
        let p = i + off;
        let (why, end) = tag_at(s, p, high, p >= parsed_to);
        if why.is_some() {
            return why;
        }
        parsed_to = parsed_to.max(end);
        i = p + 1;
    }
    None
}

/// Checks the markup opening at `s[p] == '<'`; returns a reason and where the tag ends.
fn tag_at(s: &[u8], p: usize, high: bool, parse_attrs: bool) -> (Option<String>, usize) {
    let q = p + 1;
    let Some(&c) = s.get(q) else {
        return (None, q);
    };
    match c {
        b'!' => (declaration(s, q + 1).map(str::to_owned), q + 1),
        b'?' => {
            let pi = s.get(q + 1).is_some_and(|c| c.is_ascii_alphabetic());
            (pi.then(|| "processing instruction".to_owned()), q + 1)
        }
        b'/' => {
            let (name, end) = tag_name(s, q + 1);
            let why = lookup(EXEC_TAGS, name)
                .or_else(|| if high { lookup(HTML_TAGS, name) } else { None })
                .map(|t| format!("closing </{t}> tag"));
            (why, end)
        }
        _ if c.is_ascii_alphabetic() => {
            let (name, end) = tag_name(s, q);
            if let Some(t) = lookup(EXEC_TAGS, name) {
                return (Some(format!("{t} tag")), end);
            }
            if name.len() > 4 && name[..4].eq_ignore_ascii_case(b"svg:") {
                return (Some("namespaced svg tag".to_owned()), end);
            }
            if parse_attrs {
                let element = lookup(HTML_TAGS, name).is_some();
                let (why, end) = attributes(s, end, element, high);
                if why.is_some() {
                    return (why, end);
                }
                if high {
                    if let Some(t) = lookup(HTML_TAGS, name) {
                        return (Some(format!("html tag <{t}>")), end);
                    }
                }
                return (None, end);
            }
            let why = if high {
                lookup(HTML_TAGS, name).map(|t| format!("html tag <{t}>"))
            } else {
                None
            };
            (why, end)
        }
        _ if high && is_blank(c) => {
            let at = skip_blanks(s, q, 8);
            let (name, end) = tag_name(s, at);
            (lookup(EXEC_TAGS, name).map(|t| format!("spaced {t} tag")), end)
        }
        _ => (None, q),
    }
}

/// The tag name starting at `at` and its end.
fn tag_name(s: &[u8], at: usize) -> (&[u8], usize) {
    let mut e = at;
    let stop = at.saturating_add(MAX_TAG_NAME).min(s.len());
    while e < stop && !is_blank(s[e]) && s[e] != b'/' && s[e] != b'>' {
        e += 1;
    }
    (s.get(at..e).unwrap_or(&[]), e)
}

/// `<!` followed by a comment that opens onto more markup, CDATA or an XML declaration.
fn declaration(s: &[u8], at: usize) -> Option<&'static str> {
    if starts_ci(s, at, b"--") {
        let mut k = at + 2;
        if s.get(k) == Some(&b'>') {
            k += 1;
        }
        let k = skip_blanks(s, k, 64);
        return (opens_markup(s, k) || starts_ci(s, k, b"[if")).then_some("comment breakout");
    }
    for decl in [&b"[cdata["[..], b"entity", b"doctype", b"element", b"attlist"] {
        if starts_ci(s, at, decl) {
            return Some("markup declaration");
        }
    }
    None
}

/// Whether `s[k..]` is `<` followed by a letter, `/` or `!`.
fn opens_markup(s: &[u8], k: usize) -> bool {
    s.get(k) == Some(&b'<')
        && s.get(k + 1)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'/' || c == b'!')
}

/// Parses attributes from `k` to the tag's `>` and checks each one; `element` when the tag is a known
/// HTML element.
fn attributes(s: &[u8], mut k: usize, element: bool, high: bool) -> (Option<String>, usize) {
    let n = s.len();
    loop {
        while k < n && (is_blank(s[k]) || s[k] == b'/') {
            k += 1;
        }
        if k >= n {
            return (None, n);
        }
        if s[k] == b'>' {
            return (None, k + 1);
        }
        let name_start = k;
        k += 1;
        while k < n && !is_blank(s[k]) && !matches!(s[k], b'/' | b'>' | b'=') {
            k += 1;
        }
        let name = &s[name_start..k];
        k = skip_blanks(s, k, n);
        let mut value = None;
        if k < n && s[k] == b'=' {
            k = skip_blanks(s, k + 1, n);
            if k < n && matches!(s[k], b'"' | b'\'' | b'`') {
                let q = s[k];
                let close = s[k + 1..].iter().position(|&c| c == q).map_or(n, |o| k + 1 + o);
                value = Some(&s[k + 1..close]);
                k = (close + 1).min(n);
            } else {
                let start = k;
                while k < n && !is_blank(s[k]) && s[k] != b'>' {
                    k += 1;
                }
                value = Some(&s[start..k]);
            }
        }
        if let Some(why) = attribute(name, value, high) {
            return (Some(why), k);
        }
        // Markup that loads or links another site (`<a href="http://...">`, `<img src=//...>`): HTML
        // injection, which a login field is never the place for. Relative links pass (content that
        // carries its own site's markup).
        if element
            && value.is_some_and(external_url)
            && URL_ATTRIBUTES
                .iter()
                .any(|a| name.eq_ignore_ascii_case(a.as_bytes()))
        {
            return (Some("external url in markup".to_owned()), k);
        }
    }
}

fn attribute(name: &[u8], value: Option<&[u8]>, high: bool) -> Option<String> {
    if name.len() > 2
        && name.len() <= 40
        && name[..2].eq_ignore_ascii_case(b"on")
        && name[2..].iter().all(u8::is_ascii_alphabetic)
        && (value.is_some() || high)
    {
        let handler: String = name.iter().map(|&c| char::from(lower(c))).collect();
        return Some(format!("event handler attribute {handler}"));
    }
    let value = value?;
    if script_url_at_start(value) {
        return Some("script url in attribute".to_owned());
    }
    if name.eq_ignore_ascii_case(b"style") && css_danger(value, true) {
        return Some("css expression in style attribute".to_owned());
    }
    if name.eq_ignore_ascii_case(b"srcdoc") {
        return Some("srcdoc attribute".to_owned());
    }
    // Legacy script carriers: `&{alert(1)};` entities and data binding to an island of HTML.
    if value.trim_ascii_start().starts_with(b"&{") {
        return Some("script entity in attribute".to_owned());
    }
    if name.eq_ignore_ascii_case(b"dataformatas") || name.eq_ignore_ascii_case(b"datasrc") {
        return Some("data binding attribute".to_owned());
    }
    // SVG animation that sets an event handler: `<set attributeName="onmouseover" to="alert(1)">`.
    if name.eq_ignore_ascii_case(b"attributename")
        && value
            .trim_ascii_start()
            .get(..2)
            .is_some_and(|v| v.eq_ignore_ascii_case(b"on"))
    {
        return Some("animation of an event handler".to_owned());
    }
    None
}

/// Reads one character at `i`: a byte, or an HTML character reference such as `&#106;`, `&#x6A;`,
/// `&colon;` or `&Tab;`. Returns it lowercased (0xff for non-ASCII) and the next index.
fn read_char(s: &[u8], i: usize) -> (u8, usize) {
    let c = s[i];
    if c != b'&' {
        return (lower(c), i + 1);
    }
    let mut k = i + 1;
    if s.get(k) == Some(&b'#') {
        k += 1;
        let hex = matches!(s.get(k), Some(b'x' | b'X'));
        if hex {
            k += 1;
        }
        let digits_start = k;
        let mut v: u32 = 0;
        while k < s.len() && k - digits_start < 10 {
            let d = match (s[k] as char).to_digit(if hex { 16 } else { 10 }) {
                Some(d) => d,
                None => break,
            };
            v = v.saturating_mul(if hex { 16 } else { 10 }).saturating_add(d);
            k += 1;
        }
        if k == digits_start {
            return (b'&', i + 1);
        }
        if s.get(k) == Some(&b';') {
            k += 1;
        }
        let ch = if v < 0x80 { lower(v as u8) } else { 0xff };
        return (ch, k);
    }
    let names: [(&[u8], u8); 13] = [
        (b"colon;", b':'),
        (b"tab;", b'\t'),
        (b"newline;", b'\n'),
        (b"lpar;", b'('),
        (b"rpar;", b')'),
        (b"sol;", b'/'),
        (b"quot;", b'"'),
        (b"apos;", b'\''),
        (b"lt;", b'<'),
        (b"gt;", b'>'),
        (b"amp;", b'&'),
        (b"period;", b'.'),
        (b"grave;", b'`'),
    ];
    for (name, ch) in names {
        if starts_ci(s, k, name) {
            return (ch, k + name.len());
        }
    }
    (b'&', i + 1)
}

/// Tab, newline and other control characters that browsers drop inside a URL scheme.
fn is_filler(c: u8) -> bool {
    c < 0x20
}

/// Matches `word` (lowercase ASCII) at `i`, letting fillers and character references stand between
/// its letters; returns the index after it.
fn match_word(s: &[u8], mut i: usize, word: &[u8]) -> Option<usize> {
    for (idx, &want) in word.iter().enumerate() {
        let mut fillers = 0;
        loop {
            if i >= s.len() {
                return None;
            }
            let (c, next) = read_char(s, i);
            if idx > 0 && is_filler(c) && fillers < MAX_FILLERS {
                fillers += 1;
                i = next;
                continue;
            }
            if c != want {
                return None;
            }
            i = next;
            break;
        }
    }
    Some(i)
}

/// Which script-running URL scheme starts at `i`, and the index after its colon.
fn scheme_at(s: &[u8], i: usize) -> Option<(&'static str, usize)> {
    for scheme in ["javascript:", "vbscript:", "livescript:", "mocha:"] {
        if let Some(end) = match_word(s, i, scheme.as_bytes()) {
            return Some((scheme, end));
        }
    }
    let end = match_word(s, i, b"data:")?;
    let end = skip_fillers(s, end);
    let mime: &[&[u8]] = &[
        b"text/html",
        b"text/javascript",
        b"text/xml",
        b"text/xsl",
        b"image/svg",
        b"application/javascript",
        b"application/x-javascript",
        b"application/ecmascript",
        b"application/xhtml",
        b"application/xml",
        b"application/x-shockwave",
    ];
    mime.iter()
        .find_map(|m| match_word(s, end, m))
        .map(|e| ("data:", e))
}

fn skip_fillers(s: &[u8], mut i: usize) -> usize {
    for _ in 0..MAX_FILLERS {
        if i >= s.len() {
            break;
        }
        let (c, next) = read_char(s, i);
        if !is_blank(c) {
            break;
        }
        i = next;
    }
    i
}

/// An attribute value that is a script URL (after leading blanks, as browsers strip them).
fn script_url_at_start(value: &[u8]) -> bool {
    let i = skip_fillers(value, 0);
    i < value.len() && scheme_at(value, i).is_some()
}

/// `expression(`, `-moz-binding`, `behavior:url(` or a script URL inside CSS.
fn css_danger(v: &[u8], in_style: bool) -> bool {
    (0..v.len()).any(|i| {
        let c = lower(v[i]);
        (c == b'e' || c == b'\\') && css_expression_at(v, i).is_some()
            || in_style
                && c == b'u'
                && css_word(v, i, b"url(").is_some_and(|e| script_url_at_start(trim_quote(v, e)))
            || c == b'-' && starts_ci(v, i, b"-moz-binding")
            || c == b'b'
                && css_word(v, i, b"behavior:")
                    .is_some_and(|e| css_word(v, skip_blanks(v, e, 8), b"url(").is_some())
    })
}

fn trim_quote(v: &[u8], mut e: usize) -> &[u8] {
    e = skip_blanks(v, e, 8);
    if matches!(v.get(e), Some(b'"' | b'\'')) {
        e += 1;
    }
    v.get(e..).unwrap_or(&[])
}

/// Reads one CSS character at `i`: a byte, a backslash escape (`\65`, `\e`) or a comment (read as a
/// blank). Returns it lowercased and the next index.
fn read_css_char(s: &[u8], i: usize) -> (u8, usize) {
    match s[i] {
        b'\\' => {
            let mut k = i + 1;
            let mut v: u32 = 0;
            while k < s.len() && k - i <= 6 && s[k].is_ascii_hexdigit() {
                v = v * 16 + (s[k] as char).to_digit(16).unwrap_or(0);
                k += 1;
            }
            if k > i + 1 {
                if k < s.len() && is_blank(s[k]) {
                    k += 1;
                }
                return (if v < 0x80 { lower(v as u8) } else { 0xff }, k);
            }
            match s.get(k) {
                Some(&c) => (lower(c), k + 1),
                None => (b'\\', k),
            }
        }
        b'/' if s.get(i + 1) == Some(&b'*') => {
            let end = s[i + 2..(i + 2 + MAX_CSS_COMMENT).min(s.len())]
                .windows(2)
                .position(|w| w == b"*/")
                .map_or(s.len(), |o| i + 2 + o + 2);
            (0, end)
        }
        c => (lower(c), i + 1),
    }
}

/// Matches a CSS word at `i` through escapes and comments; returns the index after it.
fn css_word(s: &[u8], mut i: usize, word: &[u8]) -> Option<usize> {
    for (idx, &want) in word.iter().enumerate() {
        let mut fillers = 0;
        loop {
            if i >= s.len() {
                return None;
            }
            let (c, next) = read_css_char(s, i);
            if idx > 0 && (c == 0 || (want == b'(' || want == b':') && is_blank(c)) && fillers < MAX_FILLERS {
                fillers += 1;
                i = next;
                continue;
            }
            if c != want {
                return None;
            }
            i = next;
            break;
        }
    }
    Some(i)
}

fn css_expression_at(s: &[u8], i: usize) -> Option<usize> {
    css_word(s, i, b"expression(")
}

/// Whether position `p` is where a URL would start: at the beginning (after blanks and quotes) or
/// right after `=`, a quote, `(` or `>`.
fn url_position(s: &[u8], p: usize) -> bool {
    let mut k = p;
    let mut steps = 0;
    while k > 0 && steps < MAX_FILLERS {
        let c = s[k - 1];
        if is_blank(c) {
            k -= 1;
            steps += 1;
            continue;
        }
        return matches!(c, b'=' | b'"' | b'\'' | b'(' | b'`' | b'>' | b',' | b'[');
    }
    k == 0
}

/// Pass 2: checks that need no tag around them.
fn text(s: &[u8], high: bool) -> Option<String> {
    let n = s.len();
    for p in 0..n {
        let c = lower(s[p]);
        let word_start = p == 0 || !s[p - 1].is_ascii_alphanumeric();
        let why = match c {
            b'd' if word_start => scheme_in_text(s, p, high).or_else(|| script_probe(s, p)),
            b'j' | b'v' | b'l' | b'm' | b'&' if word_start => scheme_in_text(s, p, high),
            b'o' if word_start => handler_in_text(s, p, high),
            b'e' | b'\\' if word_start => css_expression_at(s, p)
                .and_then(|_| {
                    let before = {
                        let mut k = p;
                        while k > 0 && is_blank(s[k - 1]) && p - k < 16 {
                            k -= 1;
                        }
                        k.checked_sub(1).map(|k| s[k])
                    };
                    (high || matches!(before, Some(b':' | b'=' | b'"' | b'\'')))
                        .then(|| "css expression".to_owned())
                })
                .or_else(|| if high { high_js(s, p) } else { None }),
            b'-' if starts_ci(s, p, b"-->") || starts_ci(s, p, b"--!>") => {
                let k = skip_blanks(s, p + if s[p + 2] == b'!' { 4 } else { 3 }, 64);
                (opens_markup(s, k) || high).then(|| "comment breakout".to_owned())
            }
            b'-' if starts_ci(s, p, b"-moz-binding") => Some("css binding".to_owned()),
            b'b' if word_start => css_word(s, p, b"behavior:")
                .filter(|&e| css_word(s, skip_blanks(s, e, 8), b"url(").is_some())
                .map(|_| "css behavior".to_owned()),
            b']' if starts_ci(s, p, b"]]>") && opens_markup(s, skip_blanks(s, p + 3, 64)) => {
                Some("cdata breakout".to_owned())
            }
            b'"' | b'\'' | b'`' => js_breakout(s, p).then(|| "script string breakout".to_owned()),
            b'{' if high && s.get(p + 1) == Some(&b'{') => template(s, p + 2, b"}}"),
            b'$' if high && s.get(p + 1) == Some(&b'{') => template(s, p + 2, b"}"),
            b'a' | b'p' | b'c' | b's' if word_start => {
                script_probe(s, p).or_else(|| if high { high_js(s, p) } else { None })
            }
            b'+' if starts_ci(s, p, b"+adw-") => Some("utf-7 encoded markup".to_owned()),
            _ => None,
        };
        if why.is_some() {
            return why;
        }
    }
    None
}

fn scheme_in_text(s: &[u8], p: usize, high: bool) -> Option<String> {
    let (scheme, end) = scheme_at(s, p)?;
    if scheme == "data:" {
        return Some("script data url".to_owned());
    }
    // Prose such as "JavaScript: The Good Parts" names the language; a URL has code after the colon.
    let glued = end < s.len() && !is_blank(read_char(s, end).0);
    (high || glued || url_position(s, p) && code_word(s, end))
        .then(|| format!("{} url", scheme.trim_end_matches(':')))
}

/// Whether the first word after blanks from `i` looks like code (has punctuation such as `(`).
fn code_word(s: &[u8], i: usize) -> bool {
    let start = skip_blanks(s, i, MAX_FILLERS);
    s[start..]
        .iter()
        .take(64)
        .take_while(|&&c| !is_blank(c))
        .any(|c| matches!(c, b'(' | b'`' | b'=' | b'.' | b'[' | b';' | b'\'' | b'"'))
}

/// `onerror=` and friends outside any tag: an injection into an attribute value.
fn handler_in_text(s: &[u8], p: usize, high: bool) -> Option<String> {
    if !starts_ci(s, p, b"on") {
        return None;
    }
    let before = p.checked_sub(1).map(|k| s[k]);
    if !matches!(before, None | Some(b'"' | b'\'' | b'`' | b'/' | b';')) && !before.is_some_and(is_blank) {
        return None;
    }
    let mut k = p + 2;
    while k < s.len() && k - p < 40 && s[k].is_ascii_alphabetic() {
        k += 1;
    }
    let name = &s[p + 2..k];
    if name.len() < 3 {
        return None;
    }
    let eq = skip_blanks(s, k, 8);
    if s.get(eq) != Some(&b'=') {
        return None;
    }
    // A quote right before (blanks aside) means the input closes an attribute value.
    let mut b = p;
    while b > 0 && is_blank(s[b - 1]) && p - b < 8 {
        b -= 1;
    }
    let breakout = b > 0 && matches!(s[b - 1], b'"' | b'\'' | b'`');
    let known = lookup(EVENTS, name).is_some();
    (high || known || breakout).then(|| {
        let handler: String = s[p..k].iter().map(|&c| char::from(lower(c))).collect();
        format!("event handler {handler}")
    })
}

/// A quote, an operator or `;`, then a script sink: `";alert(1)//`, `'-prompt(1)-'`.
fn js_breakout(s: &[u8], p: usize) -> bool {
    let mut k = skip_blanks(s, p + 1, 4);
    let ops_start = k;
    while k < s.len()
        && k - ops_start < 4
        && matches!(
            s[k],
            b';' | b'+' | b'-' | b'*' | b'|' | b'&' | b',' | b')' | b'}' | b'^' | b'%'
        )
    {
        k += 1;
    }
    if k == ops_start {
        return false;
    }
    k = skip_blanks(s, k, 4);
    let id_start = k;
    while k < s.len() && k - id_start < 16 && s[k].is_ascii_alphabetic() {
        k += 1;
    }
    let Some(sink) = lookup(JS_SINKS, &s[id_start..k]) else {
        return false;
    };
    let after = s.get(skip_blanks(s, k, 4)).copied();
    match sink {
        "document" | "window" | "top" | "self" | "this" | "globalthis" | "parent" | "frames"
        | "navigator" => {
            matches!(after, Some(b'.' | b'['))
        }
        "location" => matches!(after, Some(b'=' | b'.')),
        _ => matches!(after, Some(b'(' | b'`')),
    }
}

/// High only: a template expression with a call or a constructor in it.
fn template(s: &[u8], from: usize, close: &[u8]) -> Option<String> {
    let window = s.get(from..(from + TEMPLATE_WINDOW).min(s.len()))?;
    let end = window
        .windows(close.len())
        .position(|w| w == close)
        .unwrap_or(window.len());
    let inner = &window[..end];
    let code = inner.contains(&b'(') || inner.windows(11).any(|w| w.eq_ignore_ascii_case(b"constructor"));
    code.then(|| "template expression".to_owned())
}

/// The calls that XSS probes make, with the literal argument they make them with (`alert(1)`,
/// `prompt('xss')`, `` confirm`1` ``, `alert(document.cookie)`), and the DOM properties that only
/// script names: `document.cookie`, `document.write(`, `String.fromCharCode(`.
fn script_probe(s: &[u8], p: usize) -> Option<String> {
    for dom in [
        &b"document.cookie"[..],
        b"document.write(",
        b"document.domain",
        b"string.fromcharcode(",
    ] {
        if starts_ci(s, p, dom) {
            return Some("script dom access".to_owned());
        }
    }
    let call = [&b"alert"[..], b"prompt", b"confirm"]
        .into_iter()
        .find(|c| starts_ci(s, p, c))?;
    let k = p + call.len();
    let arg = match s.get(k) {
        Some(b'`') => return Some("script call".to_owned()),
        Some(b'(') => k + 1,
        _ => return None,
    };
    let end = s[arg..].iter().take(64).position(|&c| c == b')')? + arg;
    let inner = &s[arg..end];
    let literal = !inner.is_empty() && inner.iter().all(u8::is_ascii_digit)
        || inner.len() >= 2 && matches!(inner[0], b'\'' | b'"' | b'/') && inner[inner.len() - 1] == inner[0]
        || starts_ci(inner, 0, b"document.")
        || starts_ci(inner, 0, b"window.");
    literal.then(|| "script call".to_owned())
}

/// High only: well-known script calls in plain text, whatever their argument (low flags the DOM
/// properties and the probes' literal arguments: [`script_probe`]).
fn high_js(s: &[u8], p: usize) -> Option<String> {
    [&b"alert("[..], b"prompt(", b"confirm(", b"eval("]
        .iter()
        .any(|call| starts_ci(s, p, call))
        .then(|| "script call".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn techniques_flagged_at_low() {
        let cases: &[(&str, &str)] = &[
            ("<script>alert(1)</script>", "script tag"),
            ("<ScRiPt src=//evil.example/x.js>", "script tag"),
            ("<svg onload=alert(1)>", "svg tag"),
            ("<svg/onload=alert(1)>", "svg tag"),
            ("<img src=x onerror=alert(1)>", "event handler attribute onerror"),
            (
                "<img\tsrc=x\nonerror=alert(1)//",
                "event handler attribute onerror",
            ),
            ("<iframe src=javascript:alert(1)>", "iframe tag"),
            ("<object data=x>", "object tag"),
            ("<embed src=x.swf>", "embed tag"),
            ("<body onload=alert(1)>", "onload"),
            ("<details open ontoggle=alert(1)>", "ontoggle"),
            ("<math><mtext>x</mtext></math>", "math tag"),
            ("<a href=\"javascript:alert(1)\">x</a>", "script url in attribute"),
            (
                "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
                "script url in attribute",
            ),
            (
                "<a href=\"&#106;&#97;vascript&colon;alert(1)\">x</a>",
                "script url in attribute",
            ),
            (
                "<a href=\" java\tscript:alert(1)\">x</a>",
                "script url in attribute",
            ),
            ("javascript:alert(document.cookie)", "javascript url"),
            ("vbscript:msgbox(1)", "vbscript url"),
            ("data:text/html;base64,PHNjcmlwdD4=", "data url"),
            ("<div style=\"width: expression(alert(1))\">", "css expression"),
            ("<div style=\"x:exp/**/ression(alert(1))\">", "css expression"),
            ("<base href=//evil.example/>", "base tag"),
            (
                "<meta http-equiv=refresh content=\"0;url=//evil.example\">",
                "meta tag",
            ),
            ("--><img src=x onerror=alert(1)>", "onerror"),
            ("--><b>hi</b>", "comment breakout"),
            ("<!--<b>x</b>-->", "comment breakout"),
            ("\"><svg onload=alert(1)>", "svg tag"),
            ("' onmouseover='alert(1)", "event handler onmouseover"),
            ("\" autofocus onfocus=\"alert(1)", "event handler onfocus"),
            ("\" onxyzzy=\"alert(1)", "event handler onxyzzy"),
            ("\";alert(1);//", "script string breakout"),
            ("'-prompt(1)-'", "script string breakout"),
            ("</script><script>alert(1)</script>", "closing </script> tag"),
            ("<x onclick=alert(1)>click", "event handler attribute onclick"),
            (
                "<form action=javascript:alert(1)><input type=submit>",
                "script url in attribute",
            ),
        ];
        let mut wrong = Vec::new();
        for (input, want) in cases {
            match detect(input.as_bytes(), false) {
                Some(r) if want.split('|').any(|w| r.contains(w)) => {}
                other => wrong.push(format!("{input}: {other:?}")),
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn text_passes_at_low() {
        for input in [
            "tom & jerry <3",
            "a < b and c > d",
            "I <3 you",
            "<b>bold</b> move",
            "\"Bob\" <bob@example.com>",
            "I love javascript: it's great",
            "my facial expression (sad)",
            "turn on=off",
            "status online now",
            "Dad's \"best\" - ever",
            "{{name}} is a template",
            "Rock 'n' roll; document it",
            "x&y&amp;z &#",
            "data: 42",
        ] {
            assert_eq!(detect(input.as_bytes(), false), None, "{input}");
        }
    }

    #[test]
    fn high_adds_weak_signals() {
        for input in [
            "{{constructor.constructor('x')()}}",
            "<b>bold</b>",
            "< script>",
            "alert(x)",
            "${fetch(u)}",
            "eval(data)",
        ] {
            assert_eq!(detect(input.as_bytes(), false), None, "{input} at low");
            assert!(detect(input.as_bytes(), true).is_some(), "{input} at high");
        }
    }

    /// Probes and legacy carriers that XSS scanners send, flagged at low; and prose that merely names
    /// the words, which passes.
    #[test]
    fn probes_and_legacy_carriers_flagged_at_low() {
        for input in [
            "alert(1)",
            "\"prompt('x')\">",
            "confirm`7`",
            "alert(document.domain)",
            "x\";document.write(1)//",
            "&{document.cookie=1};",
            "<br size=\"&{alert(7)}\">",
            "<span datasrc=\"#d\" datafld=\"b\" dataformatas=\"html\"></span>",
            "<layer src=\"//evil.example/s.html\"></layer>",
            "<set attributeName=\"onmouseover\" to=\"alert(1)\"/>",
            "<set attributeName=\"href\" to=\"javascript:alert(1)\"/>",
            "+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
            "String.fromCharCode(88,83,83)",
            "<a href=\"http://evil.example/login\">Verify your account</a>",
            "<img src=//evil.example/pixel.gif>",
            "<svg:rect width=\"9\"/>",
        ] {
            assert!(detect(input.as_bytes(), false).is_some(), "{input}");
        }
        for input in [
            "red alert (level 2)",
            "Confirm your email",
            "prompt me later",
            "the document is cookie-free",
            "C++ADwin",
            "alert(x)",
            "see <a href=\"/help/sign-in\">help</a>",
            "Press <Enter> to continue",
            "Ready <Set> Go",
        ] {
            assert_eq!(detect(input.as_bytes(), false), None, "{input}");
        }
    }
}
