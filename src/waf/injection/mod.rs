//! SQL-injection and XSS detection for the web ACL's `sqli` and `xss` statements (pure safe Rust).

mod sqli;
mod xss;

pub use sqli::MAX_SQL_TOKENS;

/// How eager the detectors are.
///
/// `Low` flags only structures that ordinary text does not produce, so names such as O'Brien,
/// passphrases with SQL words and `a < b` pass; `High` adds weaker signals (lone SQL functions, any
/// HTML tag, `{{ }}` template expressions) for fields such as the query arguments of admin APIs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Few false positives: for login and sign-up fields (names, emails, passphrases).
    #[default]
    Low,
    /// Catch more, at the cost of flagging some unusual but legitimate text (e.g. admin API arguments).
    High,
}

/// Why input was flagged, for `authward explain` and logs (never includes the whole input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// `"sqli"` or `"xss"`.
    pub kind: &'static str,
    /// The evidence, e.g. `tautology after quote (fingerprint s&1o1c, context ')` or `script tag`.
    pub reason: String,
}

/// Bytes of a field that the detectors examine; the rest is ignored.
///
/// Bounds: only the first `MAX_EXAMINED_BYTES` bytes are examined; the SQL tokenizer also stops after
/// [`MAX_SQL_TOKENS`] tokens per quote context; every rule looks ahead a bounded number of tokens or
/// bytes, and nothing recurses. Time and memory are linear in the examined length. Pair the statements
/// with a `size_constraint` rule if longer fields must be refused outright.
pub const MAX_EXAMINED_BYTES: usize = 8 * 1024;

fn examined(input: &[u8]) -> &[u8] {
    input.get(..MAX_EXAMINED_BYTES).unwrap_or(input)
}

/// Flags SQL injection in `input` (raw bytes, after the rule's transformations; any bytes, UTF-8 or not).
///
/// The input is tokenized as SQL as-is (a numeric or identifier context), as if it followed a single
/// quote, a double quote and a backtick, the way libinjection evaluates quote contexts. Structural
/// rules then read each token stream: a string closed early followed by a boolean expression, a
/// comment, a comparison or a clause; `UNION SELECT`; stacked statements; time-based, error-based and
/// file-access functions; system catalogs and procedures. The reason names the rule, the fingerprint of
/// token types (e.g. `s&1o1c`) and the quote context.
pub fn detect_sqli(input: &[u8], sensitivity: Sensitivity) -> Option<Detection> {
    sqli::detect(examined(input), sensitivity == Sensitivity::High)
        .map(|reason| Detection { kind: "sqli", reason })
}

/// Flags cross-site scripting in `input` (raw bytes, after the rule's transformations; any bytes).
///
/// A lenient HTML5-style scanner reads every tag: script-running tags, event handler attributes,
/// script URLs in any attribute (through whitespace and character-reference obfuscation), CSS
/// expressions. Context-free checks catch payloads for attribute, URL, comment and script-string
/// contexts that carry no tag (`" onfocus="...`, `javascript:...`, `--><b>`, `";alert(1)//`).
pub fn detect_xss(input: &[u8], sensitivity: Sensitivity) -> Option<Detection> {
    xss::detect(examined(input), sensitivity == Sensitivity::High)
        .map(|reason| Detection { kind: "xss", reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQLI: &str = include_str!("../../../tests/corpus/sqli.txt");
    const XSS: &str = include_str!("../../../tests/corpus/xss.txt");
    const BENIGN: &str = include_str!("../../../tests/corpus/benign.txt");
    const HOLDOUT_SQLI: &str = include_str!("../../../tests/corpus/holdout_sqli.txt");
    const HOLDOUT_XSS: &str = include_str!("../../../tests/corpus/holdout_xss.txt");
    const HOLDOUT_BENIGN: &str = include_str!("../../../tests/corpus/holdout_benign.txt");

    fn lines(corpus: &str) -> Vec<&str> {
        corpus.lines().filter(|l| !l.is_empty()).collect()
    }

    /// Share of `lines` for which `flag` answers true, and the lines that went the other way.
    fn rate<'a>(lines: &[&'a str], flag: impl Fn(&[u8]) -> bool, want: bool) -> (f64, Vec<&'a str>) {
        let hits = lines.iter().filter(|l| flag(l.as_bytes())).count();
        let odd = lines
            .iter()
            .filter(|l| flag(l.as_bytes()) != want)
            .copied()
            .collect();
        (hits as f64 * 100.0 / lines.len() as f64, odd)
    }

    struct Figures {
        sqli: f64,
        xss: f64,
        benign: f64,
    }

    fn measure(name: &str, sqli: &str, xss: &str, benign: &str, s: Sensitivity) -> Figures {
        let (sq, sq_miss) = rate(&lines(sqli), |b| detect_sqli(b, s).is_some(), true);
        let (xs, xs_miss) = rate(&lines(xss), |b| detect_xss(b, s).is_some(), true);
        let either = |b: &[u8]| detect_sqli(b, s).is_some() || detect_xss(b, s).is_some();
        let (bn, bn_hit) = rate(&lines(benign), either, false);
        println!(
            "{name} {s:?}: sqli {sq:.2}% of {} flagged, xss {xs:.2}% of {} flagged, benign {bn:.2}% of {} flagged",
            lines(sqli).len(),
            lines(xss).len(),
            lines(benign).len()
        );
        for l in sq_miss.iter().chain(&xs_miss) {
            println!("  missed: {l}");
        }
        for l in &bn_hit {
            println!(
                "  benign flagged: {l} -> {:?} {:?}",
                detect_sqli(l.as_bytes(), s).map(|d| d.reason),
                detect_xss(l.as_bytes(), s).map(|d| d.reason)
            );
        }
        Figures {
            sqli: sq,
            xss: xs,
            benign: bn,
        }
    }

    #[test]
    fn corpus_rates() {
        assert!(lines(SQLI).len() >= 300 && lines(XSS).len() >= 200 && lines(BENIGN).len() >= 1000);
        let low = measure("corpus", SQLI, XSS, BENIGN, Sensitivity::Low);
        let high = measure("corpus", SQLI, XSS, BENIGN, Sensitivity::High);
        assert!(low.sqli >= 99.0, "sqli detection at low: {:.2}%", low.sqli);
        assert!(low.xss >= 99.0, "xss detection at low: {:.2}%", low.xss);
        assert!(low.benign <= 0.1, "benign flagged at low: {:.2}%", low.benign);
        assert!(high.sqli >= low.sqli && high.xss >= low.xss);
    }

    #[test]
    fn holdout_rates() {
        let low = measure(
            "holdout",
            HOLDOUT_SQLI,
            HOLDOUT_XSS,
            HOLDOUT_BENIGN,
            Sensitivity::Low,
        );
        measure(
            "holdout",
            HOLDOUT_SQLI,
            HOLDOUT_XSS,
            HOLDOUT_BENIGN,
            Sensitivity::High,
        );
        assert!(low.sqli >= 95.0, "holdout sqli at low: {:.2}%", low.sqli);
        assert!(low.xss >= 95.0, "holdout xss at low: {:.2}%", low.xss);
        assert!(
            low.benign <= 1.0,
            "holdout benign flagged at low: {:.2}%",
            low.benign
        );
    }

    const LOGIN_FIELDS: &[&str] = &[
        "O'Brien",
        "D'Angelo",
        "Anne-Marie",
        "Zoë",
        "李小龙",
        "José María",
        "Ngũgĩ wa Thiong'o",
        "O'Neil-Smith",
        "o'reilly@example.com",
        "john.smith+newsletter@example.co.uk",
        "select the union jack",
        "drop it like it's hot",
        "I'll be there or else",
        "1=1 is always true",
        "order by date please",
        "tom & jerry <3",
        "a < b and c > d",
        "I <3 you",
        "Rock 'n' roll or jazz",
        "\"Bob\" <bob@example.com>",
        "{\"user\": \"bob\", \"remember\": true}",
        "https://example.com/search?q=shoes&page=2",
        "Apt #5, 12 O'Connell St.",
        "I love javascript: it's great",
        "my facial expression (sad)",
        "turn on=off",
    ];

    #[test]
    fn login_fields_pass_at_low() {
        for f in LOGIN_FIELDS {
            assert_eq!(detect_sqli(f.as_bytes(), Sensitivity::Low), None, "{f}");
            assert_eq!(detect_xss(f.as_bytes(), Sensitivity::Low), None, "{f}");
        }
    }

    #[test]
    fn plain_names_pass_at_high() {
        for f in LOGIN_FIELDS.iter().take(10) {
            assert_eq!(detect_sqli(f.as_bytes(), Sensitivity::High), None, "{f}");
            assert_eq!(detect_xss(f.as_bytes(), Sensitivity::High), None, "{f}");
        }
    }

    #[test]
    fn detection_names_kind_and_hides_input() {
        let d = detect_sqli(b"' or 1=1-- secretpayloadmarker", Sensitivity::Low).expect("flagged");
        assert_eq!(d.kind, "sqli");
        assert!(d.reason.contains("s&1o1c"), "{}", d.reason);
        assert!(!d.reason.contains("secretpayloadmarker"));
        let d =
            detect_xss(b"<script>alert('secretpayloadmarker')</script>", Sensitivity::Low).expect("flagged");
        assert_eq!(d.kind, "xss");
        assert!(!d.reason.contains("secretpayloadmarker"));
    }

    #[test]
    fn sensitivity_schema_names() {
        assert_eq!(Sensitivity::default(), Sensitivity::Low);
        let schema = schemars::schema_for!(Sensitivity).as_value().to_string();
        assert!(
            schema.contains("\"low\"") && schema.contains("\"high\""),
            "{schema}"
        );
    }

    /// A small xorshift generator: deterministic "random" bytes without a rand dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // Bytes drawn from an alphabet rich in SQL and HTML syntax, plus arbitrary bytes.
        const ALPHABET: &[u8] =
            b"'\"`<>/=!-#*();,.@$:&|+ \t\n\r\0\\{}[]%01xXaAsSoOnNeElLcCtTrRuUiIjJvVdD\x80\xc3\xa9\xff";
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let len = (rng.next() % 96) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if round % 3 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r as usize) % ALPHABET.len()]
                    }
                })
                .collect();
            for s in [Sensitivity::Low, Sensitivity::High] {
                let _ = detect_sqli(&bytes, s);
                let _ = detect_xss(&bytes, s);
            }
        }
    }

    #[test]
    fn long_and_pathological_inputs_are_bounded() {
        let cases: Vec<Vec<u8>> = vec![
            b"'".repeat(100_000),
            b"<a ".repeat(50_000),
            b"<a".repeat(50_000),
            b"<p style=x:e/*".repeat(10_000),
            b"e/*".repeat(30_000),
            b"{{(".repeat(30_000),
            b"\"; ".repeat(30_000),
            b"j\t".repeat(50_000),
            b"(".repeat(100_000),
            b"/*".repeat(50_000),
            b"on".repeat(50_000),
            b"&#".repeat(50_000),
            b"select ".repeat(20_000),
            b"-- ".repeat(20_000),
            vec![0xff; 100_000],
        ];
        for c in &cases {
            let t = std::time::Instant::now();
            for s in [Sensitivity::Low, Sensitivity::High] {
                let _ = detect_sqli(c, s);
                let _ = detect_xss(c, s);
            }
            assert!(
                t.elapsed() < std::time::Duration::from_millis(500),
                "slow on {:?}",
                &c[..8]
            );
        }
        // Past the cap nothing is examined.
        let mut padded = vec![b'a'; MAX_EXAMINED_BYTES];
        padded.extend_from_slice(b" ' or 1=1--");
        assert_eq!(detect_sqli(&padded, Sensitivity::High), None);
    }
}
