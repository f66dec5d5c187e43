//! X.509 name constraints (RFC 5280 §4.2.1.10) of the interception CA, for the two name
//! forms tollgate's leaves carry: a DNS name or an IP address (the SAN), and for DNS names
//! the same name as subject CN. Evaluated the way rustls/webpki clients evaluate them
//! (`rustls-webpki` `subject_name`), so a leaf tollgate agrees to make is one those
//! clients accept:
//!
//! - a DNS subtree `example.com` matches `example.com` and every name below it; a subtree
//!   `.example.com` only the names below it; an empty subtree every name;
//! - an IP subtree is an address and a mask; it matches addresses of its family inside it;
//! - if any permitted subtree has a name's form, the name must match one of them; if none
//!   has, that form is not constrained; a name inside any excluded subtree is refused.
//!
//! Pure: [`NameConstraints::from_x509`] reads the extension, [`NameConstraints::permits`]
//! decides one host, [`NameConstraints::permits_pattern`] a route's host pattern (every
//! name a wildcard can match).

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use tollgate_rules::{HostKind, HostPattern};
use x509_parser::extensions::{GeneralName, GeneralSubtree};

/// A host a leaf certificate is made for: its SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LeafName {
    /// Lower-case, without a trailing dot.
    Dns(String),
    /// An IP literal (a CONNECT to `10.1.2.3:443` or `[2001:db8::1]:443`).
    Ip(IpAddr),
}

impl LeafName {
    /// The CONNECT host as a leaf name: brackets and one trailing dot removed, lower-cased.
    /// `None` for an empty host.
    pub fn parse(host: &str) -> Option<LeafName> {
        let h = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Some(LeafName::Ip(ip));
        }
        let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
        (!h.is_empty()).then_some(LeafName::Dns(h))
    }
}

impl fmt::Display for LeafName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafName::Dns(d) => f.write_str(d),
            LeafName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Subtrees of the two forms tollgate evaluates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subtrees {
    /// Lower-case DNS subtrees, as written in the certificate (`example.com`, `.example.com`, ``).
    pub dns: Vec<String>,
    /// IP subtrees.
    pub ip: Vec<IpNet>,
}

impl Subtrees {
    fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ip.is_empty()
    }
}

impl fmt::Display for Subtrees {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if !self.dns.is_empty() {
            let dns: Vec<String> = self
                .dns
                .iter()
                .map(|d| {
                    if d.is_empty() {
                        "(every name)".to_owned()
                    } else {
                        d.clone()
                    }
                })
                .collect();
            parts.push(format!("DNS {}", dns.join(", ")));
        }
        if !self.ip.is_empty() {
            let ip: Vec<String> = self.ip.iter().map(IpNet::to_string).collect();
            parts.push(format!("IP {}", ip.join(", ")));
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// The CA's name constraints (both lists empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraints {
    /// Names of a form listed here must match one of its subtrees.
    pub permitted: Subtrees,
    /// Names matching one of these are refused.
    pub excluded: Subtrees,
}

/// Why a name or pattern may not be signed, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotPermitted(pub String);

impl fmt::Display for NotPermitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Does DNS name `name` (lower-case, relative) fall inside DNS subtree `c`?
pub(crate) fn dns_in_subtree(name: &str, c: &str) -> bool {
    let c = c.to_ascii_lowercase();
    if c.is_empty() {
        return true;
    }
    if c.starts_with('.') {
        name.len() > c.len() && name.ends_with(&c)
    } else {
        name == c
            || (name.len() > c.len()
                && name.ends_with(&c)
                && name.as_bytes()[name.len() - c.len() - 1] == b'.')
    }
}

/// Is every name below `suffix` (a wildcard's `.example.com`) inside subtree `c`?
fn subdomains_in_subtree(suffix: &str, c: &str) -> bool {
    let c = c.to_ascii_lowercase();
    // Any name below `suffix` ends with it; it is inside `c` for all of them exactly when
    // the shortest such "name", `suffix` itself read as a leading-dot subtree, is.
    c.is_empty() || suffix == c || suffix.ends_with(&format!(".{}", c.trim_start_matches('.')))
}

/// Does subtree `c` hold some (not necessarily every) name below `suffix`?
fn subtree_meets_subdomains(suffix: &str, c: &str) -> bool {
    let base = c.trim_start_matches('.').to_ascii_lowercase();
    subdomains_in_subtree(suffix, c) || base.ends_with(suffix)
}

impl NameConstraints {
    /// Reads the extension from a CA certificate. Constraint forms that a leaf for a host
    /// never carries (e-mail, URI, other names) do not affect tollgate's leaves and are
    /// skipped; a directoryName subtree is refused, because rustls/webpki clients reject
    /// every leaf with a subject under one, and so is a malformed IP subtree.
    pub fn from_x509(
        cert: &x509_parser::certificate::X509Certificate<'_>,
    ) -> Result<NameConstraints, String> {
        let ext = cert
            .name_constraints()
            .map_err(|e| format!("its name constraints cannot be read: {e}"))?;
        let Some(ext) = ext else {
            return Ok(NameConstraints::default());
        };
        let read = |subtrees: &Option<Vec<GeneralSubtree<'_>>>, which: &str| {
            let mut out = Subtrees::default();
            for s in subtrees.iter().flatten() {
                match &s.base {
                    GeneralName::DNSName(d) => out.dns.push(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => out.ip.push(ip_subtree(bytes).ok_or_else(
                        || format!("its {which} IP name constraint {bytes:02x?} is not an address and a CIDR mask"),
                    )?),
                    GeneralName::DirectoryName(_) => {
                        return Err(format!(
                            "it has a {which} directoryName name constraint, which tollgate does not support \
                             (rustls and webpki clients refuse every certificate issued under one)"
                        ))
                    }
                    _ => {}
                }
            }
            Ok(out)
        };
        Ok(NameConstraints {
            permitted: read(&ext.value.permitted_subtrees, "permitted")?,
            excluded: read(&ext.value.excluded_subtrees, "excluded")?,
        })
    }

    /// No constraints at all.
    pub fn is_empty(&self) -> bool {
        self.permitted.is_empty() && self.excluded.is_empty()
    }

    /// May a leaf for `name` be made?
    pub fn permits(&self, name: &LeafName) -> Result<(), NotPermitted> {
        match name {
            LeafName::Dns(d) => {
                if let Some(c) = self.excluded.dns.iter().find(|c| dns_in_subtree(d, c)) {
                    return Err(NotPermitted(format!(
                        "{d} is inside the excluded DNS subtree {}",
                        shown_dns(c)
                    )));
                }
                if !self.permitted.dns.is_empty()
                    && !self.permitted.dns.iter().any(|c| dns_in_subtree(d, c))
                {
                    return Err(NotPermitted(format!(
                        "{d} is outside the permitted DNS subtrees ({})",
                        self.permitted.dns.join(", ")
                    )));
                }
                Ok(())
            }
            LeafName::Ip(ip) => {
                if let Some(n) = self.excluded.ip.iter().find(|n| n.contains(ip)) {
                    return Err(NotPermitted(format!(
                        "{ip} is inside the excluded IP range {n}"
                    )));
                }
                if !self.permitted.ip.is_empty()
                    && !self.permitted.ip.iter().any(|n| n.contains(ip))
                {
                    let nets: Vec<String> =
                        self.permitted.ip.iter().map(IpNet::to_string).collect();
                    return Err(NotPermitted(format!(
                        "{ip} is outside the permitted IP ranges ({})",
                        nets.join(", ")
                    )));
                }
                Ok(())
            }
        }
    }

    /// May a leaf be made for every host `pattern` matches? (An exact host: that host;
    /// `*.example.com`: every name below `example.com`.) The port does not matter.
    pub fn permits_pattern(&self, pattern: &HostPattern) -> Result<(), NotPermitted> {
        match &pattern.kind {
            HostKind::Exact(h) => match LeafName::parse(h) {
                Some(name) => self.permits(&name),
                None => Err(NotPermitted(format!("{h:?} is not a host name"))),
            },
            HostKind::Wildcard(suffix) => {
                let shown = format!("*{suffix}");
                if let Some(c) = self
                    .excluded
                    .dns
                    .iter()
                    .find(|c| subtree_meets_subdomains(suffix, c))
                {
                    return Err(NotPermitted(format!(
                        "{shown} reaches into the excluded DNS subtree {}",
                        shown_dns(c)
                    )));
                }
                if !self.permitted.dns.is_empty()
                    && !self
                        .permitted
                        .dns
                        .iter()
                        .any(|c| subdomains_in_subtree(suffix, c))
                {
                    return Err(NotPermitted(format!(
                        "{shown} is not inside the permitted DNS subtrees ({})",
                        self.permitted.dns.join(", ")
                    )));
                }
                Ok(())
            }
        }
    }
}

fn shown_dns(c: &str) -> String {
    if c.is_empty() {
        "(every name)".to_owned()
    } else {
        c.to_owned()
    }
}

/// An IP subtree from its encoding: address then mask (8 or 32 bytes), the mask a
/// contiguous prefix.
fn ip_subtree(bytes: &[u8]) -> Option<IpNet> {
    let (addr, mask): (IpAddr, u32) = match bytes.len() {
        8 => {
            let a: [u8; 4] = bytes[..4].try_into().ok()?;
            let m = u32::from_be_bytes(bytes[4..].try_into().ok()?);
            (IpAddr::from(a), prefix_len(u128::from(m) << 96)?)
        }
        32 => {
            let a: [u8; 16] = bytes[..16].try_into().ok()?;
            let m = u128::from_be_bytes(bytes[16..].try_into().ok()?);
            (IpAddr::from(a), prefix_len(m)?)
        }
        _ => return None,
    };
    let prefix = u8::try_from(mask).ok()?;
    IpNet::new(addr, prefix).ok().map(|n| n.trunc())
}

/// The prefix length of a left-aligned mask, or `None` when it is not contiguous.
fn prefix_len(mask: u128) -> Option<u32> {
    let ones = mask.leading_ones();
    (mask.checked_shl(ones).unwrap_or(0) == 0).then_some(ones)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str) -> LeafName {
        LeafName::Dns(name.to_owned())
    }

    fn ip(s: &str) -> LeafName {
        LeafName::Ip(s.parse().expect("an IP"))
    }

    fn nc(
        permitted_dns: &[&str],
        permitted_ip: &[&str],
        excluded_dns: &[&str],
        excluded_ip: &[&str],
    ) -> NameConstraints {
        let nets = |v: &[&str]| v.iter().map(|s| s.parse().expect("a CIDR")).collect();
        let strs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        NameConstraints {
            permitted: Subtrees {
                dns: strs(permitted_dns),
                ip: nets(permitted_ip),
            },
            excluded: Subtrees {
                dns: strs(excluded_dns),
                ip: nets(excluded_ip),
            },
        }
    }

    #[test]
    fn leaf_names_from_connect_hosts() {
        assert_eq!(
            LeafName::parse("API.Example.com."),
            Some(dns("api.example.com"))
        );
        assert_eq!(LeafName::parse("10.1.2.3"), Some(ip("10.1.2.3")));
        assert_eq!(LeafName::parse("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(LeafName::parse("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(LeafName::parse(""), None);
        assert_eq!(LeafName::parse("."), None);
    }

    #[test]
    fn dns_subtrees_as_webpki_reads_them() {
        assert!(dns_in_subtree("example.com", "example.com"));
        assert!(dns_in_subtree("a.example.com", "example.com"));
        assert!(dns_in_subtree("a.b.example.com", "EXAMPLE.com"));
        assert!(!dns_in_subtree("badexample.com", "example.com"));
        assert!(!dns_in_subtree("example.com", ".example.com"));
        assert!(dns_in_subtree("a.example.com", ".example.com"));
        assert!(!dns_in_subtree("aexample.com", ".example.com"));
        assert!(dns_in_subtree("anything.at.all", ""));
        assert!(!dns_in_subtree("com", "example.com"));
    }

    #[test]
    fn no_constraints_permit_everything() {
        let c = NameConstraints::default();
        assert!(c.is_empty());
        assert_eq!(c.permits(&dns("x.y")), Ok(()));
        assert_eq!(c.permits(&ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn permitted_dns_only_leaves_ips_unconstrained() {
        // RFC 5280: a form with no permitted subtree is not constrained. That is why
        // `tollgate ca init --for-config` also excludes every IP when it has no IP hosts.
        let c = nc(&["billing.example.com"], &[], &[], &[]);
        assert_eq!(c.permits(&dns("api.billing.example.com")), Ok(()));
        assert_eq!(c.permits(&dns("billing.example.com")), Ok(()));
        let err = c.permits(&dns("api.other.com")).expect_err("outside");
        assert_eq!(
            err.0,
            "api.other.com is outside the permitted DNS subtrees (billing.example.com)"
        );
        assert_eq!(c.permits(&ip("10.0.0.1")), Ok(()));
    }

    #[test]
    fn excluded_wins_over_permitted() {
        let c = nc(
            &["example.com"],
            &["10.0.0.0/8"],
            &["secret.example.com"],
            &["10.9.0.0/16"],
        );
        assert_eq!(c.permits(&dns("a.example.com")), Ok(()));
        assert!(c.permits(&dns("x.secret.example.com")).is_err());
        assert_eq!(c.permits(&ip("10.1.2.3")), Ok(()));
        let err = c.permits(&ip("10.9.1.1")).expect_err("excluded");
        assert!(err.0.contains("excluded IP range 10.9.0.0/16"), "{err}");
        let err = c.permits(&ip("11.0.0.1")).expect_err("outside");
        assert!(
            err.0
                .contains("outside the permitted IP ranges (10.0.0.0/8)"),
            "{err}"
        );
        // A permitted IPv4 subtree constrains IPv6 too (same name form).
        assert!(c.permits(&ip("2001:db8::1")).is_err());
    }

    #[test]
    fn excluding_every_ip() {
        let c = nc(&["example.com"], &[], &[], &["0.0.0.0/0", "::/0"]);
        assert!(c.permits(&ip("1.2.3.4")).is_err());
        assert!(c.permits(&ip("::1")).is_err());
        assert_eq!(c.permits(&dns("example.com")), Ok(()));
    }

    fn pattern(p: &str) -> HostPattern {
        HostPattern::parse(p).expect("a host pattern")
    }

    #[test]
    fn wildcard_patterns_need_the_whole_subtree() {
        let c = nc(&["example.com"], &[], &[], &[]);
        assert_eq!(c.permits_pattern(&pattern("*.example.com")), Ok(()));
        assert_eq!(c.permits_pattern(&pattern("*.eu.example.com:443")), Ok(()));
        assert!(c.permits_pattern(&pattern("*.com")).is_err());
        assert!(c.permits_pattern(&pattern("*.badexample.com")).is_err());
        let c = nc(&[".example.com"], &[], &[], &[]);
        assert_eq!(c.permits_pattern(&pattern("*.example.com")), Ok(()));
        assert!(c.permits_pattern(&pattern("example.com")).is_err());
        let c = nc(&["api.example.com"], &[], &[], &[]);
        let err = c
            .permits_pattern(&pattern("*.example.com"))
            .expect_err("wider");
        assert_eq!(
            err.0,
            "*.example.com is not inside the permitted DNS subtrees (api.example.com)"
        );
    }

    #[test]
    fn wildcard_patterns_must_not_reach_an_excluded_subtree() {
        let c = nc(&["example.com"], &[], &["secret.example.com"], &[]);
        let err = c
            .permits_pattern(&pattern("*.example.com"))
            .expect_err("excluded inside");
        assert!(
            err.0.contains("excluded DNS subtree secret.example.com"),
            "{err}"
        );
        assert_eq!(c.permits_pattern(&pattern("*.eu.example.com")), Ok(()));
        let c = nc(&[], &[], &["com"], &[]);
        assert!(c.permits_pattern(&pattern("*.example.com")).is_err());
        let c = nc(&[], &[], &[""], &[]);
        assert!(c.permits_pattern(&pattern("*.example.com")).is_err());
    }

    #[test]
    fn exact_ip_patterns() {
        let c = nc(&["invalid"], &["10.1.2.3/32"], &[], &[]);
        assert_eq!(c.permits_pattern(&pattern("10.1.2.3:443")), Ok(()));
        assert!(c.permits_pattern(&pattern("10.1.2.4")).is_err());
        assert!(c.permits_pattern(&pattern("api.example.com")).is_err());
    }

    #[test]
    fn ip_subtree_encoding() {
        assert_eq!(
            ip_subtree(&[10, 0, 0, 0, 255, 0, 0, 0]),
            Some("10.0.0.0/8".parse().expect("net"))
        );
        assert_eq!(
            ip_subtree(&[10, 1, 2, 3, 255, 255, 255, 255]),
            Some("10.1.2.3/32".parse().expect("net"))
        );
        assert_eq!(ip_subtree(&[0; 8]), Some("0.0.0.0/0".parse().expect("net")));
        let mut v6 = [0u8; 32];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[16] = 0xff;
        v6[17] = 0xff;
        assert_eq!(ip_subtree(&v6), Some("2001::/16".parse().expect("net")));
        // Not a contiguous mask; wrong lengths.
        assert_eq!(ip_subtree(&[10, 0, 0, 0, 255, 0, 255, 0]), None);
        assert_eq!(ip_subtree(&[10, 0, 0, 0]), None);
        assert_eq!(ip_subtree(&[]), None);
    }

    #[test]
    fn subtrees_display() {
        let c = nc(&["a.com", ""], &["10.0.0.0/8"], &[], &[]);
        assert_eq!(
            c.permitted.to_string(),
            "DNS a.com, (every name); IP 10.0.0.0/8"
        );
        assert_eq!(Subtrees::default().to_string(), "nothing");
    }
}
