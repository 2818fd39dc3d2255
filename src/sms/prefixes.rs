//! Prefix lists (premium-rate and known-abused number ranges) from files, matched longest prefix first.

use std::collections::HashMap;

/// A line of a prefix list that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PrefixError {
    pub line: usize,
    pub message: String,
}

/// Blocked and allowed E.164 prefixes; the longest prefix of a number that is listed decides.
#[derive(Debug, Default)]
pub struct PrefixList {
    /// Digits (without `+`) → blocked (`true`) or allowed (`false`).
    entries: HashMap<Box<str>, bool>,
    longest: usize,
}

impl PrefixList {
    /// Adds the entries of one file: `+882` blocks the range, `!+88234` allows a range inside a blocked
    /// one; `#` starts a comment; blank lines are skipped. A later entry for the same prefix wins.
    pub fn add(&mut self, text: &str) -> Result<(), PrefixError> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| PrefixError { line: i + 1, message };
            let (blocked, entry) = match line.strip_prefix('!') {
                Some(rest) => (false, rest.trim_start()),
                None => (true, line),
            };
            let digits = entry
                .strip_prefix('+')
                .ok_or_else(|| err(format!("`{entry}`: write a prefix as + and digits, such as +882")))?;
            if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!("`{entry}`: a prefix is + and 1 to 15 digits")));
            }
            if digits.starts_with('0') {
                return Err(err(format!("`{entry}`: no country code starts with 0")));
            }
            self.longest = self.longest.max(digits.len());
            self.entries.insert(digits.into(), blocked);
        }
        Ok(())
    }

    /// The blocked prefix (`+882`) that decides for these E.164 digits, if the longest listed prefix of
    /// them blocks.
    pub fn blocked(&self, digits: &str) -> Option<String> {
        (1..=self.longest.min(digits.len()))
            .rev()
            .find_map(|n| self.entries.get(&digits[..n]).map(|b| (n, *b)))
            .filter(|(_, blocked)| *blocked)
            .map(|(n, _)| format!("+{}", &digits[..n]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_decides() {
        let mut l = PrefixList::default();
        l.add("# satellite\n+881   # GMSS\n+882\n!+88234\n+8823412 # but not this block\n\n")
            .unwrap();
        assert_eq!(l.blocked("8816123456").as_deref(), Some("+881"));
        assert_eq!(l.blocked("882991234").as_deref(), Some("+882"));
        assert_eq!(l.blocked("88234999999"), None, "allowed inside the blocked range");
        assert_eq!(l.blocked("88234123456").as_deref(), Some("+8823412"));
        assert_eq!(l.blocked("447911123456"), None);
        assert_eq!(l.blocked("88"), None, "shorter than every entry");
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, line) in [
            ("+44\n882\n", 2),
            ("+44x", 1),
            ("\n\n+", 3),
            ("+0800", 1),
            ("+1234567890123456", 1),
        ] {
            let e = PrefixList::default().add(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn the_shipped_list_reads() {
        let mut l = PrefixList::default();
        l.add(include_str!("../../rules/sms/premium-prefixes.txt"))
            .unwrap();
        assert!(l.blocked("882341234567").is_some());
        assert!(l.blocked("979123456789").is_some());
        assert!(l.blocked("447911123456").is_none());
    }
}
