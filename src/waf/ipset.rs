//! IP sets: CIDRs folded into sorted, merged address ranges, looked up by binary search.

use std::net::IpAddr;

use ipnet::IpNet;

/// An immutable set of IPv4 and IPv6 networks.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// Builds the set; overlapping and adjacent networks are merged.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpSet {
            v4: merge(v4, |x| x.saturating_add(1)),
            v6: merge(v6, |x| x.saturating_add(1)),
        }
    }

    /// Whether `ip` is in the set (IPv4-mapped IPv6 addresses are looked up as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match crate::config::canonical_ip(ip) {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Number of merged ranges.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// True when the set covers every IPv4 and IPv6 address.
    pub fn is_universe(&self) -> bool {
        self.v4 == [(0, u32::MAX)] && self.v6 == [(0, u128::MAX)]
    }

    /// True when the set holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sorts and merges overlapping or adjacent ranges; `next` is the successor (saturating).
fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: fn(T) -> T) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= next(last.1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before x is the only candidate.
    let idx = ranges.partition_point(|r| r.0 <= x);
    idx > 0 && ranges[idx - 1].1 >= x
}

/// Parses an IP list file: one address or CIDR per line, `#` starts a comment. Returns the networks, or
/// the 1-based line and message of the first bad entry.
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let cidr: crate::config::types::Cidr = entry
            .parse()
            .map_err(|e: crate::config::types::ValueError| (i + 1, e.0))?;
        out.push(cidr.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cidrs: &[&str]) -> IpSet {
        IpSet::new(cidrs.iter().map(|c| c.parse::<IpNet>().unwrap()))
    }

    #[test]
    fn lookups_v4_v6_and_mapped() {
        let s = set(&["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "10.1.0.0/16"]);
        assert_eq!(s.len(), 3, "the /16 folds into the /8");
        for (ip, want) in [
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::", false),
            ("::ffff:10.0.0.1", true),
        ] {
            assert_eq!(s.contains(ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn adjacent_ranges_merge_and_edges_hold() {
        let s = set(&["0.0.0.0/1", "128.0.0.0/1"]);
        assert_eq!(s.len(), 1);
        assert!(s.contains("255.255.255.255".parse().unwrap()));
        assert!(s.contains("0.0.0.0".parse().unwrap()));
        assert!(!IpSet::default().contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn big_sets_agree_with_a_linear_scan() {
        let nets: Vec<IpNet> = (0..5000u32)
            .map(|i| {
                let a = i.wrapping_mul(2_654_435_761);
                format!("{}/{}", std::net::Ipv4Addr::from(a), 16 + (i % 17))
                    .parse::<IpNet>()
                    .unwrap()
                    .trunc()
            })
            .collect();
        let s = IpSet::new(nets.clone());
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i.wrapping_mul(40_503).rotate_left(7)));
            assert_eq!(s.contains(ip), nets.iter().any(|n| n.contains(&ip)), "{ip}");
        }
    }

    #[test]
    fn list_files() {
        let nets = parse_list("# bad hosts\n203.0.113.0/24\n\n198.51.100.7 # one host\n").unwrap();
        assert_eq!(nets.len(), 2);
        assert_eq!(parse_list("1.2.3.4\nnot-an-ip\n").unwrap_err().0, 2);
    }
}
