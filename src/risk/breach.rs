//! The compromised-password filter: SHA-1 prefixes of breached passwords in a mapped binary fuse filter.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};
use xorf::{BinaryFuse8Ref, BinaryFuse16, BinaryFuse16Ref, DmaSerializable, Filter, FilterRef};

/// The demo's filter: the passwords of `data/breach/demo-passwords.txt` (see `data/breach/README.md`).
pub const DEMO_FILTER: &[u8] = include_bytes!("../../data/breach/demo.bin");

/// The most distinct keys a filter holds: xorf indexes fingerprints with `u32`, and 2^31 keys need
/// about 2.4 × 10^9 slots.
pub const MAX_KEYS: u64 = 1 << 31;

const MAGIC: [u8; 4] = *b"AWBF";
const VERSION: u16 = 1;
/// Key derivation 1: the first 8 bytes of SHA-1(password) as a big-endian `u64`, which is the number
/// the first 16 hex digits of a Pwned Passwords line spell.
const KEY_SHA1_PREFIX_BE64: u8 = 1;
/// Filter kind 1: xorf 0.13's `BinaryFuse8` (its 20-byte DMA descriptor, then one byte per slot). Read,
/// no longer written: one password in 256 that is in no breach matched it.
const FILTER_BINARY_FUSE8: u8 = 1;
/// Filter kind 2: xorf 0.13's `BinaryFuse16` (the same descriptor, then two bytes per slot, little-endian).
const FILTER_BINARY_FUSE16: u8 = 2;
const DESCRIPTOR: std::ops::Range<usize> = 24..44;
/// Even, so that the fingerprints of a mapped file (pages are aligned) are aligned for `u16`.
const HEADER_LEN: usize = 48;
const _: () = assert!(<BinaryFuse16 as DmaSerializable>::DESCRIPTOR_LEN == DESCRIPTOR.end - DESCRIPTOR.start);

/// Longer lines are malformed (a Pwned Passwords line is 40 hex digits, `:` and a count: under 64 bytes).
const MAX_LINE: u64 = 256;
/// How many lines `build` reads between two calls of its progress callback.
pub const PROGRESS_EVERY: u64 = 1_000_000;
const MALFORMED_HASH: &str = "expected a 40-digit hexadecimal SHA-1 (`SHA1HEX` or `SHA1HEX:COUNT`)";

/// A set of compromised passwords, as the first 64 bits of their SHA-1, in a binary fuse filter.
///
/// **False positives.** The filter is xorf's `BinaryFuse16`: 16-bit fingerprints, so a password that is
/// not in the set is reported as compromised with probability ≈ 2^-16 (0.0015 %), at ≈ 2.26 bytes per
/// key (226 MB for 10^8 keys). It never misses a password that is in the set. Filters of 8-bit
/// fingerprints (`BinaryFuse8`, half the size), which earlier versions built, are still read, but their
/// 2^-8 (0.39 %) is too much where a match blocks a sign-in: one user in 256 with a strong password of
/// their own was refused on every sign-in (a benign corpus of random passwords met 15 in 3 000). Rebuild
/// such a filter. Truncating SHA-1 to 64 bits adds a chance of about 10^9 / 2^64 (negligible) that a
/// password shares a prefix with a listed one.
///
/// **File format** (little-endian): magic `AWBF`, `u16` version 1, `u8` key derivation (1: the SHA-1
/// prefix above), `u8` filter kind (2: `BinaryFuse16` of xorf 0.13; 1: `BinaryFuse8`), `u64` key
/// count, `u64` fingerprint length in bytes, the 20-byte xorf descriptor (seed, segment length, segment mask, segment count × length),
/// 4 zero bytes, then the fingerprints. The file carries no checksum: [`BreachFilter::open`] checks
/// every header field and length, but cannot tell a flipped fingerprint byte.
///
/// **Memory.** [`BreachFilter::build`] holds every key (8 bytes each) plus xorf's construction
/// tables: about 28.5 bytes per key at the peak (2.85 GB measured for 10^8 hashes).
/// [`BreachFilter::open`] maps the file instead of reading it: its pages are page cache, loaded as
/// lookups touch them, shared by every process that maps the same file, and reclaimable by the kernel.
/// Lookups are spread evenly, so under steady traffic the whole file ends up resident (counted as
/// file-backed RSS, not heap).
pub struct BreachFilter {
    storage: Storage,
    keys: u64,
}

/// Where the fingerprints are, and how wide.
enum Storage {
    /// A mapped file of 8-bit fingerprints.
    Mapped8(memmap2::Mmap),
    /// A mapped file of 16-bit ones (on a little-endian machine; its pages are aligned for `u16`).
    Mapped16(memmap2::Mmap),
    /// 8-bit fingerprints in memory.
    Memory8(Cow<'static, [u8]>),
    /// 16-bit ones decoded into memory (bytes in memory may not be aligned for `u16`).
    Memory16(BinaryFuse16),
}

impl Storage {
    /// The storage of validated filter bytes of `kind`, mapped or in memory.
    fn new(kind: u8, mapped: Option<memmap2::Mmap>, bytes: Cow<'static, [u8]>) -> Storage {
        let little = cfg!(target_endian = "little");
        match (kind, mapped) {
            (FILTER_BINARY_FUSE8, Some(map)) => Storage::Mapped8(map),
            (FILTER_BINARY_FUSE8, None) => Storage::Memory8(bytes),
            (_, Some(map)) if little => Storage::Mapped16(map),
            (_, map) => {
                let raw: &[u8] = map.as_deref().unwrap_or(&bytes);
                let word = |at: usize| u32::from_le_bytes(std::array::from_fn(|i| raw[at + i]));
                Storage::Memory16(BinaryFuse16 {
                    // xorf's descriptor: seed, segment length, its mask, segment count × length.
                    descriptor: xorf::Descriptor {
                        seed: u64::from_le_bytes(std::array::from_fn(|i| raw[DESCRIPTOR.start + i])),
                        segment_length: word(32),
                        segment_length_mask: word(36),
                        segment_count_length: word(40),
                    },
                    fingerprints: raw[HEADER_LEN..]
                        .chunks_exact(2)
                        .map(|b| u16::from_le_bytes([b[0], b[1]]))
                        .collect(),
                })
            }
        }
    }
}

impl fmt::Debug for BreachFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreachFilter")
            .field("keys", &self.keys)
            .field("fingerprint_bits", &self.fingerprint_bits())
            .field(
                "mapped",
                &matches!(self.storage, Storage::Mapped8(_) | Storage::Mapped16(_)),
            )
            .finish()
    }
}

/// What [`BreachFilter::build`] read and wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildStats {
    /// Lines read, blank ones included.
    pub lines: u64,
    /// Hash lines read and kept.
    pub hashes: u64,
    /// Hash lines left out because their count was under the minimum.
    pub below_min_count: u64,
    /// Distinct 64-bit keys in the filter (hash lines less repeated hashes and shared prefixes).
    pub keys: u64,
    /// Size of the written file.
    pub bytes: u64,
}

/// Why a filter could not be built or opened.
#[derive(Debug, thiserror::Error)]
pub enum BreachError {
    #[error("reading the hash list: {0}")]
    Read(io::Error),
    /// A line of the hash list is not `SHA1HEX`, `SHA1HEX:COUNT` or blank; `line` counts from 1.
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: &'static str },
    #[error("{keys} distinct hashes: more than a filter holds ({MAX_KEYS})")]
    TooManyKeys { keys: u64 },
    #[error("building the filter: {0}")]
    Construction(&'static str),
    #[error("writing {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
    #[error("{}: {error}", path.display())]
    Open { path: PathBuf, error: io::Error },
    /// The bytes are not a filter this build can read; `origin` is the path or "embedded filter".
    #[error("{origin}: {error}")]
    Invalid { origin: String, error: FormatError },
}

/// What is wrong with a filter file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("not an authward breach filter (no `AWBF` magic)")]
    NotAFilter,
    #[error("truncated: {actual} bytes where the header announces {expected}")]
    Truncated { expected: u64, actual: u64 },
    #[error("{0} unexpected bytes after the fingerprints")]
    TrailingBytes(u64),
    #[error("format version {0} is not supported (this build reads version {VERSION}); rebuild the filter")]
    Version(u16),
    #[error("key derivation {0} is not supported")]
    KeyDerivation(u8),
    #[error("filter kind {0} is not supported")]
    FilterKind(u8),
    #[error("inconsistent filter parameters: {0}")]
    Parameters(&'static str),
}

impl BreachFilter {
    /// Builds a filter file from a Pwned Passwords hash list and writes it to `output` atomically (a
    /// temporary file beside it, then a rename).
    ///
    /// Each line is `SHA1HEX:COUNT` or `SHA1HEX`, hex digits in either case, LF or CRLF; blank lines are
    /// skipped and repeated hashes count once. An empty list gives a filter that contains nothing.
    /// `progress` receives the number of lines read every [`PROGRESS_EVERY`] lines. Memory: see
    /// [`BreachFilter`].
    pub fn build(
        input: impl BufRead,
        output: &Path,
        progress: impl FnMut(u64),
    ) -> Result<BuildStats, BreachError> {
        Self::build_min_count(input, output, 1, progress)
    }

    /// [`BreachFilter::build`], keeping only the hashes seen at least `min_count` times (the `COUNT` of
    /// `SHA1HEX:COUNT`; a line without a count is kept). The full Pwned Passwords list makes a filter near
    /// 1 GB; the often-seen passwords, the ones attackers try, make a much smaller one.
    pub fn build_min_count(
        input: impl BufRead,
        output: &Path,
        min_count: u64,
        progress: impl FnMut(u64),
    ) -> Result<BuildStats, BreachError> {
        let (mut keys, lines, below_min_count) = read_keys(input, PROGRESS_EVERY, min_count, progress)?;
        let hashes = keys.len() as u64;
        keys.sort_unstable();
        keys.dedup();
        let filter = build_filter(&keys)?;
        let bytes = write_filter(output, &filter, keys.len() as u64)?;
        Ok(BuildStats {
            lines,
            hashes,
            below_min_count,
            keys: keys.len() as u64,
            bytes,
        })
    }

    /// Opens a filter file by mapping it into memory, after checking its header and length.
    ///
    /// Replace the file only by renaming a new one over it (as [`BreachFilter::build`] does): writing
    /// into a file that is mapped changes or removes bytes under the lookups.
    pub fn open(path: &Path) -> Result<Self, BreachError> {
        let open_error = |error| BreachError::Open {
            path: path.to_path_buf(),
            error,
        };
        let file = File::open(path).map_err(open_error)?;
        let map = map_read_only(&file).map_err(open_error)?;
        let (kind, keys) = validate(&map).map_err(|error| BreachError::Invalid {
            origin: path.display().to_string(),
            error,
        })?;
        Ok(Self {
            storage: Storage::new(kind, Some(map), Cow::Borrowed(&[])),
            keys,
        })
    }

    /// A filter from bytes in memory, such as [`DEMO_FILTER`] embedded in the binary.
    pub fn from_bytes(bytes: impl Into<Cow<'static, [u8]>>) -> Result<Self, BreachError> {
        let bytes = bytes.into();
        let (kind, keys) = validate(&bytes).map_err(|error| BreachError::Invalid {
            origin: "embedded filter".to_string(),
            error,
        })?;
        Ok(Self {
            storage: Storage::new(kind, None, bytes),
            keys,
        })
    }

    /// Whether the password is (probably: see [`BreachFilter`]) in the set.
    pub fn contains_password(&self, password: &str) -> bool {
        let digest: [u8; 20] = Sha1::digest(password.as_bytes()).into();
        self.contains_sha1(&digest)
    }

    /// Whether the password with this SHA-1 is (probably) in the set.
    pub fn contains_sha1(&self, sha1: &[u8; 20]) -> bool {
        self.contains_key(key_of(sha1))
    }

    /// The width of the filter's fingerprints: 16, or 8 for a filter built by an earlier version (one
    /// password in 256 falsely found).
    pub fn fingerprint_bits(&self) -> u32 {
        match self.storage {
            Storage::Mapped8(_) | Storage::Memory8(_) => 8,
            Storage::Mapped16(_) | Storage::Memory16(_) => 16,
        }
    }

    /// The number of distinct keys the filter was built from.
    pub fn key_count(&self) -> u64 {
        self.keys
    }

    fn contains_key(&self, key: u64) -> bool {
        // An empty set has only unused (zero) slots, which would match every key whose fingerprint is 0.
        if self.keys == 0 {
            return false;
        }
        // `validate` checked that the header is whole and that every slot the descriptor can index lies
        // inside the fingerprints, so neither the slicing nor xorf's indexing can go out of bounds.
        match &self.storage {
            Storage::Mapped8(map) => {
                BinaryFuse8Ref::from_dma(&map[DESCRIPTOR], &map[HEADER_LEN..]).contains(&key)
            }
            Storage::Memory8(b) => BinaryFuse8Ref::from_dma(&b[DESCRIPTOR], &b[HEADER_LEN..]).contains(&key),
            Storage::Mapped16(map) => {
                BinaryFuse16Ref::from_dma(&map[DESCRIPTOR], &map[HEADER_LEN..]).contains(&key)
            }
            Storage::Memory16(filter) => filter.contains(&key),
        }
    }
}

/// The filter key of a SHA-1: its first 8 bytes, big-endian.
fn key_of(sha1: &[u8; 20]) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *sha1;
    u64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// Reads the keys of every hash line, and the number of lines; calls `progress` every `every` lines.
fn read_keys(
    mut input: impl BufRead,
    every: u64,
    min_count: u64,
    mut progress: impl FnMut(u64),
) -> Result<(Vec<u64>, u64, u64), BreachError> {
    let mut keys = Vec::new();
    let mut below = 0u64;
    let mut line = Vec::with_capacity(64);
    let mut number = 0u64;
    loop {
        line.clear();
        let n = (&mut input)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .map_err(BreachError::Read)?;
        if n == 0 {
            break;
        }
        number += 1;
        if n as u64 == MAX_LINE && line.last() != Some(&b'\n') {
            return Err(BreachError::Malformed {
                line: number,
                reason: "line longer than 256 bytes",
            });
        }
        let text = match line.strip_prefix("\u{feff}".as_bytes()) {
            Some(rest) if number == 1 => rest,
            _ => &line,
        };
        let key = parse_line(text).map_err(|reason| BreachError::Malformed { line: number, reason })?;
        match key {
            Some((_, Some(count))) if count < min_count => below += 1,
            Some((key, _)) => keys.push(key),
            None => {}
        }
        if number % every == 0 {
            progress(number);
        }
    }
    Ok((keys, number, below))
}

/// The key and count of one line, `None` for a blank line.
fn parse_line(line: &[u8]) -> Result<Option<(u64, Option<u64>)>, &'static str> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let (hash, rest) = line.split_at_checked(40).ok_or(MALFORMED_HASH)?;
    let mut digest = [0u8; 20];
    hex::decode_to_slice(hash, &mut digest).map_err(|_| MALFORMED_HASH)?;
    let count = match rest {
        [] => None,
        [b':', count @ ..] if !count.is_empty() && count.iter().all(u8::is_ascii_digit) => {
            // All digits: only an overflow can fail, and a count that large passes any minimum.
            Some(
                std::str::from_utf8(count)
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(u64::MAX),
            )
        }
        _ => return Err(MALFORMED_HASH),
    };
    Ok(Some((key_of(&digest), count)))
}

/// The filter of distinct keys.
fn build_filter(keys: &[u64]) -> Result<BinaryFuse16, BreachError> {
    let count = keys.len() as u64;
    if count > MAX_KEYS {
        return Err(BreachError::TooManyKeys { keys: count });
    }
    BinaryFuse16::try_from(keys).map_err(BreachError::Construction)
}

/// Writes the header and fingerprints to a temporary file beside `output`, then renames it over
/// `output`; returns the size written.
fn write_filter(output: &Path, filter: &BinaryFuse16, keys: u64) -> Result<u64, BreachError> {
    let write_error = |error| BreachError::Write {
        path: output.to_path_buf(),
        error,
    };
    let name = output
        .file_name()
        .ok_or_else(|| write_error(io::Error::new(io::ErrorKind::InvalidInput, "not a file name")))?;
    let temp = output.with_file_name(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    // Little-endian whatever the machine (xorf's own bytes are in its order).
    let fingerprints: Vec<u8> = filter.fingerprints.iter().flat_map(|f| f.to_le_bytes()).collect();
    let header = header(filter, FILTER_BINARY_FUSE16, keys);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(write_error)?;
    let written = (|| {
        file.write_all(&header)?;
        file.write_all(&fingerprints)?;
        file.sync_all()?;
        fs::rename(&temp, output)
    })();
    if let Err(error) = written {
        // Best effort: the write error is the one to report.
        let _ = fs::remove_file(&temp);
        return Err(write_error(error));
    }
    Ok((header.len() + fingerprints.len()) as u64)
}

fn header(filter: &impl DmaSerializable, kind: u8, keys: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&VERSION.to_le_bytes());
    header[6] = KEY_SHA1_PREFIX_BE64;
    header[7] = kind;
    header[8..16].copy_from_slice(&keys.to_le_bytes());
    header[16..24].copy_from_slice(&(filter.dma_fingerprints().len() as u64).to_le_bytes());
    filter.dma_copy_descriptor_to(&mut header[DESCRIPTOR]);
    header
}

/// Checks the header and the length of a filter; returns its kind and key count.
fn validate(bytes: &[u8]) -> Result<(u8, u64), FormatError> {
    let actual = bytes.len() as u64;
    if bytes.get(..MAGIC.len()).is_some_and(|magic| magic != MAGIC) {
        return Err(FormatError::NotAFilter);
    }
    let Some(header) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(FormatError::Truncated {
            expected: HEADER_LEN as u64,
            actual,
        });
    };
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    if header[6] != KEY_SHA1_PREFIX_BE64 {
        return Err(FormatError::KeyDerivation(header[6]));
    }
    let width = match header[7] {
        FILTER_BINARY_FUSE8 => 1,
        FILTER_BINARY_FUSE16 => 2,
        kind => return Err(FormatError::FilterKind(kind)),
    };
    if header[44..48] != [0; 4] {
        return Err(FormatError::Parameters("reserved header bytes are not zero"));
    }
    let keys = u64::from_le_bytes(std::array::from_fn(|i| header[8 + i]));
    let length = u64::from_le_bytes(std::array::from_fn(|i| header[16 + i]));
    if length % width != 0 {
        return Err(FormatError::Parameters(
            "fingerprint length is not a whole number of slots",
        ));
    }
    let slots = length / width;
    let expected = length
        .checked_add(HEADER_LEN as u64)
        .ok_or(FormatError::Parameters("fingerprint length overflows"))?;
    if actual < expected {
        return Err(FormatError::Truncated { expected, actual });
    }
    if actual > expected {
        return Err(FormatError::TrailingBytes(actual - expected));
    }
    // xorf's descriptor: seed (24..32), segment length, segment mask, segment count × length.
    let le_u32 = |at: usize| u64::from(u32::from_le_bytes(std::array::from_fn(|i| header[at + i])));
    let (segment_length, mask, segment_count_length) = (le_u32(32), le_u32(36), le_u32(40));
    if !segment_length.is_power_of_two() || mask != segment_length - 1 {
        return Err(FormatError::Parameters("segment length and mask disagree"));
    }
    // A key's three slots are below `segment_count_length + 2 × segment_length`, computed in u32.
    let reach = segment_count_length + 2 * segment_length;
    if reach > slots || reach > u64::from(u32::MAX) {
        return Err(FormatError::Parameters("segments reach past the fingerprints"));
    }
    if keys > slots || keys > MAX_KEYS {
        return Err(FormatError::Parameters("more keys than fingerprint slots"));
    }
    Ok((header[7], keys))
}

/// Maps a filter file read-only.
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: a memory map is only sound while no one changes the file under it (a write shows through
    // the `&[u8]` that Rust assumes immutable; a truncation turns reads into SIGBUS). The file is opened
    // read-only and authward never writes a filter in place: `BreachFilter::build` writes a new file
    // and renames it over the old name, which leaves a mapped inode untouched, and the docs of `open`
    // and the README say to replace filters only that way. Lookups read bytes, for which any value is
    // valid, within bounds `validate` checks before the first lookup. The map is worth it: a filter of
    // 10^8 passwords is ~113 MB, which read onto the heap would be resident in every replica against a
    // 64 MB memory target, whereas mapped pages are shared, reclaimable page cache loaded on demand.
    let map = unsafe { memmap2::Mmap::map(file) }?;
    // Lookups touch three random slots: read-ahead would only load pages no lookup asked for. This is
    // a hint, and a kernel that refuses it changes nothing but read-ahead.
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Random);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// SplitMix64: deterministic test data without a seeded-RNG dependency.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn random_sha1(state: &mut u64) -> [u8; 20] {
        let mut digest = [0u8; 20];
        for chunk in digest.chunks_mut(8) {
            let bytes = splitmix(state).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        digest
    }

    fn build_bytes(text: &str) -> Result<(BuildStats, Vec<u8>), BreachError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filter.bin");
        let stats = BreachFilter::build(Cursor::new(text.as_bytes()), &path, |_| {})?;
        Ok((stats, fs::read(&path).unwrap()))
    }

    #[test]
    fn a_generated_list_builds_opens_mapped_and_finds_every_hash() {
        let mut state = 1;
        let hashes: Vec<[u8; 20]> = (0..100_000).map(|_| random_sha1(&mut state)).collect();
        // Every accepted form: upper case with a count, bare lower case, CRLF, blank lines, repeats.
        let mut text = String::from("\r\n");
        for (i, hash) in hashes.iter().enumerate() {
            let hex = hex::encode_upper(hash);
            match i % 4 {
                0 => text.push_str(&format!("{hex}:{}\n", i + 1)),
                1 => text.push_str(&format!("{}\r\n", hex.to_lowercase())),
                2 => text.push_str(&format!("{hex}:7\r\n\n")),
                _ => text.push_str(&format!("{hex}\n{hex}:2\n")),
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("hashes.txt");
        let path = dir.path().join("filter.bin");
        fs::write(&list, &text).unwrap();
        let input = io::BufReader::new(File::open(&list).unwrap());
        let stats = BreachFilter::build(input, &path, |_| {}).unwrap();
        assert_eq!(stats.hashes, 125_000);
        assert_eq!(stats.keys, 100_000);
        assert_eq!(stats.lines, 1 + 100_000 + 25_000 + 25_000);
        assert_eq!(stats.bytes, fs::metadata(&path).unwrap().len());
        // xorf sizes small sets more generously: ≈ 1.19 slots per key at 10^5 keys, 1.13 from 10^6; two
        // bytes a slot.
        assert!(
            stats.bytes < 2 * 100_000 * 120 / 100 + HEADER_LEN as u64,
            "{stats:?}"
        );

        let filter = BreachFilter::open(&path).unwrap();
        assert_eq!(filter.key_count(), 100_000);
        assert!(matches!(filter.storage, Storage::Mapped16(_)));
        assert_eq!(filter.fingerprint_bits(), 16);
        assert!(hashes.iter().all(|h| filter.contains_sha1(h)));

        // 2^-16 of a million probes is 15; 8-bit fingerprints, as before, matched 3 900 (0.39 %): one
        // user in 256 with a strong password of their own was refused on every sign-in.
        let false_positives = (0..1_000_000)
            .filter(|_| filter.contains_sha1(&random_sha1(&mut state)))
            .count();
        assert!(false_positives < 60, "{false_positives} false positives in 10^6");
    }

    /// A filter file of 8-bit fingerprints, as earlier versions wrote them.
    fn eight_bit_file(keys: &[u64]) -> Vec<u8> {
        let filter = xorf::BinaryFuse8::try_from(keys).unwrap();
        let mut bytes = header(&filter, FILTER_BINARY_FUSE8, keys.len() as u64).to_vec();
        bytes.extend_from_slice(filter.dma_fingerprints());
        bytes
    }

    #[test]
    fn an_eight_bit_filter_is_still_read_and_any_bytes_in_memory_serve() {
        let mut state = 3;
        let mut keys: Vec<u64> = (0..20_000).map(|_| splitmix(&mut state)).collect();
        keys.sort_unstable();
        keys.dedup();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.bin");
        fs::write(&path, eight_bit_file(&keys)).unwrap();
        for old in [
            BreachFilter::open(&path).unwrap(),
            BreachFilter::from_bytes(fs::read(&path).unwrap()).unwrap(),
        ] {
            assert_eq!(old.fingerprint_bits(), 8);
            assert!(keys.iter().all(|k| old.contains_key(*k)));
        }
        // A 16-bit filter from bytes at an odd address (an `include_bytes!` has no alignment): decoded
        // into memory, it answers as the mapped file does.
        let path = dir.path().join("new.bin");
        write_filter(&path, &build_filter(&keys).unwrap(), keys.len() as u64).unwrap();
        let file = fs::read(&path).unwrap();
        let mut shifted = vec![0u8; file.len() + 1];
        let at = usize::from(shifted.as_ptr().align_offset(2) == 0);
        shifted[at..at + file.len()].copy_from_slice(&file);
        let odd: &'static [u8] = Vec::leak(shifted)[at..at + file.len()].as_ref();
        assert_eq!(odd.as_ptr() as usize % 2, 1);
        let memory = BreachFilter::from_bytes(odd).unwrap();
        let mapped = BreachFilter::open(&path).unwrap();
        assert!(matches!(memory.storage, Storage::Memory16(_)));
        for key in keys
            .iter()
            .copied()
            .chain((0..100_000).map(|_| splitmix(&mut state)))
        {
            assert_eq!(memory.contains_key(key), mapped.contains_key(key), "{key:#x}");
        }
    }

    #[test]
    fn the_mapped_lookup_agrees_with_xorfs_in_memory_filter() {
        let mut state = 7;
        let mut keys: Vec<u64> = (0..50_000).map(|_| splitmix(&mut state)).collect();
        keys.sort_unstable();
        keys.dedup();
        let in_memory = build_filter(&keys).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filter.bin");
        write_filter(&path, &in_memory, keys.len() as u64).unwrap();
        let mapped = BreachFilter::open(&path).unwrap();
        let probes = keys
            .iter()
            .copied()
            .chain((0..1_000_000).map(|_| splitmix(&mut state)));
        let mut positives = 0;
        for key in probes {
            assert_eq!(mapped.contains_key(key), in_memory.contains(&key), "key {key:#x}");
            positives += usize::from(mapped.contains_key(key));
        }
        // Both answered yes for the members and for some non-members, so agreement is not vacuous.
        assert!(positives > keys.len(), "{positives}");
    }

    #[test]
    fn a_password_is_found_by_its_sha1() {
        // SHA-1("password") and SHA-1("123456"), as Pwned Passwords lists them.
        let text = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:52256179\n\
                    7C4A8D09CA3762AF61E59520943DC26494F8941B:37359195\n";
        let (_, bytes) = build_bytes(text).unwrap();
        let filter = BreachFilter::from_bytes(bytes).unwrap();
        assert!(filter.contains_password("password"));
        assert!(filter.contains_password("123456"));
        assert!(!filter.contains_password("correct-horse-battery"));
    }

    #[test]
    fn a_malformed_line_is_an_error_with_its_line_number() {
        let good = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3";
        let cases = [
            "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD",
            "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FDX:3",
            "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:",
            "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3x",
            "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8 3",
            "8846F7EAEE8FB117AD06BDD830B7586C:3",
            "password123",
        ];
        for case in cases {
            let text = format!("{good}\n\n{case}\n{good}\n");
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("filter.bin");
            let err = BreachFilter::build(Cursor::new(text), &path, |_| {}).unwrap_err();
            assert!(
                matches!(err, BreachError::Malformed { line: 3, .. }),
                "{case}: {err}"
            );
            assert!(err.to_string().starts_with("line 3: "), "{err}");
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                0,
                "{case}: nothing written"
            );
        }
        let long = format!("{good}\n{}\n", "0".repeat(300));
        let err = build_bytes(&long).unwrap_err();
        assert!(matches!(err, BreachError::Malformed { line: 2, .. }), "{err}");
    }

    #[test]
    fn progress_is_reported_every_so_many_lines() {
        let line = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8:3\n";
        let mut seen = Vec::new();
        let (keys, lines, below) = read_keys(Cursor::new(line.repeat(25)), 10, 1, |n| seen.push(n)).unwrap();
        assert_eq!(below, 0);
        assert_eq!((keys.len(), lines, seen), (25, 25, vec![10, 20]));
    }

    #[test]
    fn an_empty_list_gives_a_filter_that_contains_nothing() {
        for text in ["", "\n\r\n\n"] {
            let (stats, bytes) = build_bytes(text).unwrap();
            assert_eq!(stats.keys, 0);
            let filter = BreachFilter::from_bytes(bytes).unwrap();
            let mut state = 3;
            assert!((0..10_000).all(|_| !filter.contains_sha1(&random_sha1(&mut state))));
            assert!(!filter.contains_password("password"));
        }
    }

    #[test]
    fn truncated_or_corrupt_files_are_clear_errors() {
        let mut state = 11;
        let text: String = (0..1000)
            .map(|_| format!("{}:1\n", hex::encode_upper(random_sha1(&mut state))))
            .collect();
        let (_, bytes) = build_bytes(&text).unwrap();
        let len = bytes.len();
        assert!(BreachFilter::from_bytes(bytes.clone()).is_ok());

        let invalid = |bytes: Vec<u8>| match BreachFilter::from_bytes(bytes) {
            Err(BreachError::Invalid { error, .. }) => error,
            other => panic!("expected an invalid filter, got {other:?}"),
        };
        for cut in [0, 3, 4, 20, HEADER_LEN - 1] {
            let expected = HEADER_LEN as u64;
            let actual = cut as u64;
            assert_eq!(
                invalid(bytes[..cut].to_vec()),
                FormatError::Truncated { expected, actual }
            );
        }
        for cut in [HEADER_LEN, HEADER_LEN + 1, len - 1] {
            let error = invalid(bytes[..cut].to_vec());
            assert!(matches!(error, FormatError::Truncated { actual, .. } if actual == cut as u64));
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(invalid(longer), FormatError::TrailingBytes(1));

        let corrupt = |at: usize, value: u8| {
            let mut copy = bytes.clone();
            copy[at] = value;
            invalid(copy)
        };
        assert_eq!(corrupt(0, b'X'), FormatError::NotAFilter);
        assert_eq!(corrupt(4, 2), FormatError::Version(2));
        assert_eq!(corrupt(6, 9), FormatError::KeyDerivation(9));
        assert_eq!(corrupt(7, 9), FormatError::FilterKind(9));
        assert!(matches!(
            corrupt(16, bytes[16] ^ 1),
            FormatError::Truncated { .. } | FormatError::TrailingBytes(_) | FormatError::Parameters(_)
        ));
        assert!(matches!(
            corrupt(16, bytes[16] ^ 2),
            FormatError::Truncated { .. } | FormatError::TrailingBytes(_)
        ));
        // The segment length, its mask, and a segment count that would index past the fingerprints.
        for at in [32, 36, 42, 43] {
            assert!(
                matches!(corrupt(at, 0xff), FormatError::Parameters(_)),
                "byte {at}"
            );
        }
        assert!(matches!(corrupt(45, 1), FormatError::Parameters(_)));

        // The same checks guard a file on disk, named in the error.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.bin");
        fs::write(&path, &bytes[..len / 2]).unwrap();
        let err = BreachFilter::open(&path).unwrap_err();
        assert!(err.to_string().contains("cut.bin: truncated"), "{err}");
        fs::write(&path, b"").unwrap();
        let err = BreachFilter::open(&path).unwrap_err();
        assert!(err.to_string().contains("cut.bin: truncated: 0 bytes"), "{err}");
        let err = BreachFilter::open(&dir.path().join("missing.bin")).unwrap_err();
        assert!(matches!(err, BreachError::Open { .. }), "{err}");
    }

    #[test]
    fn an_existing_filter_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filter.bin");
        let first = "5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8\n";
        BreachFilter::build(Cursor::new(first), &path, |_| {}).unwrap();
        let old = BreachFilter::open(&path).unwrap();
        let second = "7C4A8D09CA3762AF61E59520943DC26494F8941B\n";
        BreachFilter::build(Cursor::new(second), &path, |_| {}).unwrap();
        // The rename left the mapped file intact; a new open sees the new set; no temporary file is left.
        assert!(old.contains_password("password"));
        let new = BreachFilter::open(&path).unwrap();
        assert!(new.contains_password("123456") && !new.contains_password("password"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn demo_passwords() -> Vec<&'static str> {
        include_str!("../../data/breach/demo-passwords.txt")
            .lines()
            .filter(|line| !line.is_empty())
            .collect()
    }

    #[test]
    fn the_demo_filter_holds_the_common_passwords_and_is_current() {
        let demo = BreachFilter::from_bytes(DEMO_FILTER).unwrap();
        for password in ["password123", "123456", "qwerty"] {
            assert!(demo.contains_password(password), "{password}");
        }
        assert!(!demo.contains_password("correct-horse-battery"));

        let passwords = demo_passwords();
        assert!(passwords.len() >= 150, "{}", passwords.len());
        assert!(!passwords.contains(&"correct-horse-battery"));
        let text: String = passwords
            .iter()
            .map(|p| format!("{}\n", hex::encode_upper(Sha1::digest(p.as_bytes()))))
            .collect();
        let (stats, bytes) = build_bytes(&text).unwrap();
        let rebuilt = BreachFilter::from_bytes(bytes).unwrap();
        assert_eq!(
            demo.key_count(),
            stats.keys,
            "demo.bin is stale: see data/breach/README.md"
        );
        for password in passwords {
            assert!(
                demo.contains_password(password),
                "demo.bin is stale: {password} is missing"
            );
            assert!(rebuilt.contains_password(password));
        }
    }

    #[test]
    fn a_minimum_count_keeps_only_often_seen_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let sha = |p: &str| hex::encode_upper(Sha1::digest(p.as_bytes()));
        let text = format!(
            "{}:250\n{}:3\n{}\n{}:10\n",
            sha("password123"),
            sha("rarely-seen-7"),
            sha("no-count-given"),
            sha("qwerty")
        );
        let stats = BreachFilter::build_min_count(Cursor::new(text), &path, 10, |_| {}).unwrap();
        assert_eq!((stats.hashes, stats.below_min_count), (3, 1));
        let f = BreachFilter::open(&path).unwrap();
        assert!(f.contains_password("password123") && f.contains_password("qwerty"));
        assert!(
            f.contains_password("no-count-given"),
            "a line without a count is kept"
        );
        assert!(!f.contains_password("rarely-seen-7"));
    }
}
