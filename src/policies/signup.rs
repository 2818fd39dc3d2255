//! Who may create accounts, and who may call admin-only operations.

use std::net::IpAddr;

use super::file::{FileSignUp, SignUpAccess};
use super::respond::Reason;
use crate::waf::ipset::IpSet;

/// The compiled sign-up policy.
#[derive(Debug, Default)]
pub struct SignUp {
    pub access: SignUpAccess,
    ranges: IpSet,
}

impl SignUp {
    pub fn compile(f: FileSignUp) -> SignUp {
        SignUp {
            access: f.access,
            ranges: super::ranges(&f.ranges),
        }
    }

    /// Why a sign-up from `ip` is refused, if it is.
    pub fn check(&self, ip: IpAddr) -> Option<Reason> {
        match self.access {
            SignUpAccess::Open => None,
            SignUpAccess::Closed => Some(Reason::SignUpClosed),
            SignUpAccess::Ranges => (!self.ranges.contains(ip)).then_some(Reason::SignUpClosed),
            SignUpAccess::Challenge => Some(Reason::SignUpChallenge),
        }
    }
}

/// The compiled admin-only policy.
#[derive(Debug, Default)]
pub struct Admin {
    pub profiles: Vec<glob::Pattern>,
    pub grants: Vec<String>,
    pub ranges: IpSet,
}

impl Admin {
    /// Whether the profile is an admin operation.
    pub fn covers_profile(&self, profile: &str) -> bool {
        self.profiles.iter().any(|p| p.matches(profile))
    }

    /// Whether the OAuth grant is an admin operation.
    pub fn covers_grant(&self, grant: &str) -> bool {
        self.grants.iter().any(|g| g == grant)
    }

    /// Whether `ip` is a trusted caller.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.ranges.contains(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::Cidr;

    fn sign_up(access: SignUpAccess, ranges: &[&str]) -> SignUp {
        SignUp::compile(FileSignUp {
            mode: super::super::file::Mode::Enforce,
            access,
            ranges: ranges.iter().map(|r| r.parse::<Cidr>().unwrap()).collect(),
        })
    }

    #[test]
    fn access_decides_who_signs_up() {
        let (inside, outside): (IpAddr, IpAddr) =
            ("10.1.2.3".parse().unwrap(), "203.0.113.9".parse().unwrap());
        assert_eq!(sign_up(SignUpAccess::Open, &[]).check(outside), None);
        assert_eq!(
            sign_up(SignUpAccess::Closed, &["10.0.0.0/8"]).check(inside),
            Some(Reason::SignUpClosed)
        );
        let ranges = sign_up(SignUpAccess::Ranges, &["10.0.0.0/8"]);
        assert_eq!(ranges.check(inside), None);
        assert_eq!(ranges.check(outside), Some(Reason::SignUpClosed));
        assert_eq!(
            sign_up(SignUpAccess::Challenge, &[]).check(inside),
            Some(Reason::SignUpChallenge)
        );
    }
}
