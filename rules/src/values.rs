//! Parsers for single config values (host patterns, URLs, CIDRs, header names, `${VAR}`).
//!
//! Each returns `Err(message)` with a message that may quote the value it was given; the
//! caller decides whether that value may be shown (a secret never is) and adds the
//! location.

use crate::load::Env;
use crate::model::{HostKind, HostPattern, PortMatch, Scheme, Upstream};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

/// One problem found while expanding `${NAME}` in a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// `${NAME}` with NAME unset (or not valid UTF-8) in the environment.
    Unset(String),
    /// `${` without a closing `}`.
    Unterminated,
    /// `${...}` whose content is not a variable name.
    BadName,
}

impl ExpandError {
    pub fn message(&self) -> String {
        match self {
            ExpandError::Unset(name) => {
                format!("environment variable `{name}` is not set")
            }
            ExpandError::Unterminated => "`${` without a closing `}`".to_owned(),
            ExpandError::BadName => {
                "`${...}` must hold a variable name (letters, digits, `_`; not starting with a digit); write `$${` for a literal `${`"
                    .to_owned()
            }
        }
    }
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces each `${NAME}` by the environment variable NAME; `$${` is a literal `${`.
/// A `$` not followed by `{` is kept as is. Collects every error in the string.
pub(crate) fn expand(raw: &str, env: &dyn Env) -> Result<String, Vec<ExpandError>> {
    if !raw.contains("${") {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut errors = Vec::new();
    let mut rest = raw;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find('}') {
                None => {
                    errors.push(ExpandError::Unterminated);
                    rest = "";
                }
                Some(end) => {
                    let name = &after[..end];
                    if !is_var_name(name) {
                        errors.push(ExpandError::BadName);
                    } else {
                        match env.var(name) {
                            Some(v) => out.push_str(&v),
                            None => errors.push(ExpandError::Unset(name.to_owned())),
                        }
                    }
                    rest = &after[end + 1..];
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Quotes a value for a message: backticks, control characters escaped, long values cut.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 80;
    let mut out = String::from("`");
    for (n, c) in s.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// Like [`shown`] for a URL, with any `user:password@` replaced by `[redacted]@`.
pub(crate) fn shown_url(s: &str) -> String {
    if let Some(scheme_end) = s.find("://") {
        let after = &s[scheme_end + 3..];
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        if let Some(at) = after[..authority_end].rfind('@') {
            let redacted = format!("{}[redacted]{}", &s[..scheme_end + 3], &after[at..]);
            return shown(&redacted);
        }
    }
    shown(s)
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad port {}", shown(p)));
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {} is not in 1..=65535", shown(p))),
        Ok(n) => Ok(n),
    }
}

/// The port of a host pattern: a number, or `*` for any port.
fn parse_pattern_port(p: &str) -> Result<PortMatch, String> {
    if p == "*" {
        return Ok(PortMatch::Any);
    }
    parse_port(p).map(PortMatch::Exact)
}

fn check_dns_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".to_owned());
    }
    if host.len() > 253 {
        return Err("host name longer than 253 characters".to_owned());
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err("empty label in host name (`..`, or a leading or trailing dot)".to_owned());
        }
        if label.len() > 63 {
            return Err("host name label longer than 63 characters".to_owned());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "character {} is not allowed in a host name (use the punycode `xn--` form for international names)",
                shown(&c.to_string())
            ));
        }
    }
    Ok(())
}

impl HostPattern {
    /// Parses a `match.hosts` entry: `api.example.com`, `*.example.com`, `10.1.2.3`,
    /// `[2001:db8::1]`, or any of these followed by `:PORT`. Host names are lower-cased
    /// and IP literals canonicalised.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        if s.is_empty() {
            return Err("empty host pattern".to_owned());
        }
        if s.chars().any(char::is_whitespace) {
            return Err("a host pattern cannot contain whitespace".to_owned());
        }
        if s.contains("://") {
            return Err(
                "a host pattern has no scheme: write `api.example.com`, not a URL".to_owned(),
            );
        }
        if s.contains('/') {
            return Err("a host pattern has no path: use `match.path_prefixes`".to_owned());
        }
        if let Some(c) = s.chars().find(|c| matches!(c, '@' | '?' | '#' | '%')) {
            return Err(format!(
                "character {} is not allowed in a host pattern",
                shown(&c.to_string())
            ));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err("`[` without a closing `]`".to_owned());
            };
            let ip: Ipv6Addr = rest[..end]
                .parse()
                .map_err(|_| format!("{} is not an IPv6 address", shown(&rest[..end])))?;
            let after = &rest[end + 1..];
            let port = if after.is_empty() {
                PortMatch::Default
            } else if let Some(p) = after.strip_prefix(':') {
                parse_pattern_port(p)?
            } else {
                return Err(format!("unexpected {} after `]`", shown(after)));
            };
            return Ok(HostPattern {
                kind: HostKind::Exact(ip.to_string()),
                port,
            });
        }
        if s.bytes().filter(|b| *b == b':').count() > 1 {
            return match s.parse::<Ipv6Addr>() {
                Ok(ip) => Ok(HostPattern {
                    kind: HostKind::Exact(ip.to_string()),
                    port: PortMatch::Default,
                }),
                Err(_) => Err(
                    "not a host name or IPv6 address (an IPv6 address with a port is written `[2001:db8::1]:8080`)"
                        .to_owned(),
                ),
            };
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, parse_pattern_port(p)?),
            None => (s, PortMatch::Default),
        };
        let host = host.to_ascii_lowercase();
        if host == "*" {
            return Err(
                "a bare `*` matches every host; use `default_action` for requests no route matches"
                    .to_owned(),
            );
        }
        if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.contains('*') {
                return Err(
                    "`*` is allowed only once, as the whole first label (`*.example.com`)"
                        .to_owned(),
                );
            }
            check_dns_name(suffix)?;
            return Ok(HostPattern {
                kind: HostKind::Wildcard(format!(".{suffix}")),
                port,
            });
        }
        if host.contains('*') {
            return Err(
                "`*` is allowed only as the whole first label, as in `*.example.com`".to_owned(),
            );
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(HostPattern {
                kind: HostKind::Exact(ip.to_string()),
                port,
            });
        }
        check_dns_name(&host)?;
        Ok(HostPattern {
            kind: HostKind::Exact(host),
            port,
        })
    }

    /// Does this pattern match a request for `host` (lower-case, no brackets, no trailing
    /// dot) on `port`, whose scheme's default port is `default_port`? A wildcard never
    /// matches an IP literal.
    pub fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        if !self.port.admits(port, default_port) {
            return false;
        }
        match &self.kind {
            HostKind::Exact(h) => {
                if h == host {
                    return true;
                }
                match (h.parse::<IpAddr>(), host.parse::<IpAddr>()) {
                    (Ok(a), Ok(b)) => a == b,
                    _ => false,
                }
            }
            HostKind::Wildcard(suffix) => {
                host.parse::<IpAddr>().is_err()
                    && host.len() > suffix.len()
                    && host.ends_with(suffix.as_str())
            }
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            HostKind::Exact(h) if h.contains(':') => write!(f, "[{h}]")?,
            HostKind::Exact(h) => f.write_str(h)?,
            HostKind::Wildcard(s) => write!(f, "*{s}")?,
        }
        match self.port {
            PortMatch::Default => Ok(()),
            PortMatch::Any => f.write_str(":*"),
            PortMatch::Exact(p) => write!(f, ":{p}"),
        }
    }
}

/// `listen.*`: an `IP:PORT` socket address.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "{} is not an IP:PORT address (for example `127.0.0.1:3128`, `0.0.0.0:3128` or `[::]:3128`)",
            shown(s)
        )
    })
}

/// `clients` entry: a CIDR (`10.0.0.0/8`) or a single address (`10.1.2.3`). Host bits are
/// cleared (`10.1.2.3/8` is `10.0.0.0/8`).
pub(crate) fn parse_client(s: &str) -> Result<ipnet::IpNet, String> {
    if let Ok(net) = s.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    Err(format!(
        "{} is not a CIDR such as `10.0.0.0/8` or an IP address",
        shown(s)
    ))
}

fn url_host(url: &Url) -> Option<String> {
    match url.host()? {
        Host::Domain(d) => Some(d.to_ascii_lowercase()),
        Host::Ipv4(a) => Some(a.to_string()),
        Host::Ipv6(a) => Some(a.to_string()),
    }
}

/// `routes[].upstream`: `http(s)://host[:port]` with no path other than `/`, no query,
/// fragment or user info.
pub(crate) fn parse_upstream(s: &str) -> Result<Upstream, String> {
    if s.chars().any(char::is_whitespace) {
        return Err("an upstream URL cannot contain whitespace".to_owned());
    }
    let url = Url::parse(s).map_err(|e| format!("{} is not a URL: {e}", shown_url(s)))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "scheme {} is not supported: use `http://` or `https://`",
                shown(other)
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("an upstream URL cannot contain user info (`user:password@`)".to_owned());
    }
    let Some(host) = url_host(&url) else {
        return Err(format!("{} has no host", shown_url(s)));
    };
    if !(url.path().is_empty() || url.path() == "/") {
        return Err(format!(
            "an upstream has no path ({}): requests keep their own path",
            shown(url.path())
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("an upstream URL cannot have a query or fragment".to_owned());
    }
    let port = url.port().unwrap_or(scheme.default_port());
    Ok(Upstream { scheme, host, port })
}

/// Is `host` (as in a URL) a loopback host: `localhost`, 127.0.0.0/8 or `::1`?
pub(crate) fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(a)) => a.is_loopback(),
        Some(Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// `credentials.*.token_url`: https, or http on a loopback host; no user info or fragment.
pub(crate) fn parse_token_url(s: &str) -> Result<Url, String> {
    if s.chars().any(char::is_whitespace) {
        return Err("token_url cannot contain whitespace".to_owned());
    }
    let url = Url::parse(s).map_err(|e| format!("{} is not a URL: {e}", shown_url(s)))?;
    if url.host().is_none() {
        return Err(format!("{} has no host", shown_url(s)));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_url(&url) => {}
        "http" => {
            return Err(format!(
                "{} must use https (plain http is allowed only for localhost, 127.0.0.0/8 or ::1)",
                shown_url(s)
            ))
        }
        other => {
            return Err(format!(
                "scheme {} is not supported: use https",
                shown(other)
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "token_url cannot contain user info: use client_id and client_secret".to_owned(),
        );
    }
    if url.fragment().is_some() {
        return Err("token_url cannot have a fragment (`#...`)".to_owned());
    }
    Ok(url)
}

/// An OIDC issuer (`issuer:`): a token URL's rules, and no query (OpenID Connect
/// Discovery §3: the issuer is an https URL with no query or fragment).
pub(crate) fn parse_issuer(s: &str) -> Result<Url, String> {
    let url = parse_token_url(s).map_err(|e| e.replace("token_url", "issuer"))?;
    if url.query().is_some() {
        return Err("an issuer has no query (`?...`)".to_owned());
    }
    Ok(url)
}

/// Headers that cannot carry a token (framing, hop-by-hop, or never forwarded).
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// `routes[].header`: an HTTP header name (RFC 9110 token) that can carry a token.
pub(crate) fn check_header_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty header name".to_owned());
    }
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if let Some(c) = s.chars().find(|c| !tchar(*c)) {
        return Err(format!(
            "{} is not a valid header name (character {} is not allowed)",
            shown(s),
            shown(&c.to_string())
        ));
    }
    if FORBIDDEN_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(s)) {
        return Err(format!("header {} cannot carry a token", shown(s)));
    }
    Ok(())
}

/// `routes[].prefix`: must be a valid start of a header value (no control characters).
pub(crate) fn check_header_value_part(s: &str) -> Result<(), String> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err("a header value cannot contain control characters (CR, LF, ...)".to_owned());
    }
    Ok(())
}

/// `match.methods` entry: an HTTP method token; returned upper-cased.
pub(crate) fn parse_method(s: &str) -> Result<String, String> {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if s.is_empty() || !s.chars().all(tchar) {
        return Err(format!("{} is not an HTTP method", shown(s)));
    }
    Ok(s.to_ascii_uppercase())
}

/// `match.path_prefixes` entry: starts with `/`, no whitespace, query or fragment.
pub(crate) fn check_path_prefix(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("path prefix {} must start with `/`", shown(s)));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a path prefix cannot contain whitespace".to_owned());
    }
    if s.contains(['?', '#']) {
        return Err("a path prefix matches the path only: no `?` query or `#` fragment".to_owned());
    }
    Ok(())
}

/// `scopes` entry: RFC 6749 scope-token (printable ASCII except space, `"` and `\`).
pub(crate) fn check_scope(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty scope".to_owned());
    }
    if s.chars().any(char::is_whitespace) {
        return Err(format!(
            "scope {} contains whitespace: list each scope as its own item",
            shown(s)
        ));
    }
    if s.chars()
        .any(|c| !c.is_ascii_graphic() || c == '"' || c == '\\')
    {
        return Err(format!(
            "scope {} has a character OAuth2 does not allow",
            shown(s)
        ));
    }
    Ok(())
}

/// `routes[].callers` entries: a caller name, or a prefix ending in one `*`.
pub(crate) fn parse_caller_pattern(s: &str) -> Result<crate::model::CallerPattern, String> {
    use crate::model::CallerPattern;
    if s.is_empty() {
        return Err("empty caller name".to_owned());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("caller {} cannot contain whitespace", shown(s)));
    }
    if s.len() > 1024 {
        return Err("caller name longer than 1024 bytes".to_owned());
    }
    match s.find('*') {
        None => Ok(CallerPattern::Exact(s.to_owned())),
        Some(i) if i == s.len() - 1 => Ok(CallerPattern::Prefix(s[..i].to_owned())),
        Some(_) => Err(format!(
            "caller pattern {} may have `*` only at its end (`system:serviceaccount:billing:*`)",
            shown(s)
        )),
    }
}

/// Names of routes and credentials: used in logs, metrics and errors.
pub(crate) fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty name".to_owned());
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("name {} cannot contain whitespace", shown(s)));
    }
    if s.chars().count() > 128 {
        return Err("name longer than 128 characters".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> impl Fn(&str) -> Option<String> {
        let m: HashMap<&str, &str> = [("A", "1"), ("EMPTY", ""), ("IDP", "idp.example.com")]
            .into_iter()
            .collect();
        move |k: &str| m.get(k).map(|v| (*v).to_owned())
    }

    #[test]
    fn expand_substitutes_and_escapes() {
        let e = env();
        assert_eq!(expand("x", &e), Ok("x".to_owned()));
        assert_eq!(expand("${A}", &e), Ok("1".to_owned()));
        assert_eq!(
            expand("https://${IDP}/t", &e),
            Ok("https://idp.example.com/t".to_owned())
        );
        assert_eq!(expand("a${A}b${A}c", &e), Ok("a1b1c".to_owned()));
        assert_eq!(expand("$${A}", &e), Ok("${A}".to_owned()));
        assert_eq!(expand("$A $ $$ ${EMPTY}x", &e), Ok("$A $ $$ x".to_owned()));
        assert_eq!(expand("é${A}ü", &e), Ok("é1ü".to_owned()));
    }

    #[test]
    fn expand_collects_errors() {
        let e = env();
        assert_eq!(
            expand("${NOPE} ${ALSO_NOT}", &e),
            Err(vec![
                ExpandError::Unset("NOPE".to_owned()),
                ExpandError::Unset("ALSO_NOT".to_owned())
            ])
        );
        assert_eq!(expand("${A", &e), Err(vec![ExpandError::Unterminated]));
        assert_eq!(expand("${1A}", &e), Err(vec![ExpandError::BadName]));
        assert_eq!(expand("${}", &e), Err(vec![ExpandError::BadName]));
        assert_eq!(expand("${A-B}", &e), Err(vec![ExpandError::BadName]));
    }

    #[test]
    fn host_patterns() {
        let ok = |s: &str| HostPattern::parse(s).map(|p| p.to_string());
        assert_eq!(ok("API.Example.com"), Ok("api.example.com".into()));
        assert_eq!(ok("*.Example.com:8443"), Ok("*.example.com:8443".into()));
        assert_eq!(ok("10.0.0.1:80"), Ok("10.0.0.1:80".into()));
        assert_eq!(ok("[2001:DB8:0::1]:443"), Ok("[2001:db8::1]:443".into()));
        assert_eq!(ok("::1"), Ok("[::1]".into()));
        assert_eq!(ok("my_host"), Ok("my_host".into()));
        for bad in [
            "",
            "*",
            "*.",
            "**.a.com",
            "a.*.com",
            "*a.com",
            "a*.com",
            "*.*.com",
            "a .com",
            " a.com",
            "https://a.com",
            "a.com/x",
            "a.com:",
            "a.com:0",
            "a.com:65536",
            "a.com:http",
            "a..com",
            ".a.com",
            "a.com.",
            "[::1",
            "[::1]x",
            "[nope]:80",
            "1:2:3",
            "a@b.com",
            "ä.com",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn host_pattern_matching() {
        let p = |s: &str| HostPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(p("*.example.com").matches("a.example.com", 80, 80));
        assert!(p("*.example.com").matches("a.b.example.com", 443, 443));
        assert!(!p("*.example.com").matches("example.com", 80, 80));
        assert!(!p("*.example.com").matches("aexample.com", 80, 80));
        assert!(!p("*.example.com:443").matches("a.example.com", 80, 80));
        assert!(p("[::1]").matches("0:0::1", 80, 80));
        assert!(!p("*.0.0.1").matches("10.0.0.1", 80, 80));
    }

    #[test]
    fn a_pattern_without_a_port_means_the_default_port() {
        let p = |s: &str| HostPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(p("api.test").port, PortMatch::Default);
        assert!(p("api.test").matches("api.test", 80, 80));
        assert!(p("api.test").matches("api.test", 443, 443));
        assert!(!p("api.test").matches("api.test", 22, 443));
        assert!(!p("api.test").matches("api.test", 443, 80));
        assert_eq!(p("api.test:*").port, PortMatch::Any);
        assert!(p("api.test:*").matches("api.test", 22, 443));
        assert!(p("*.test:*").matches("a.test", 6379, 80));
        assert!(p("[::1]:*").matches("::1", 9, 80));
        assert_eq!(p("api.test:8443").port, PortMatch::Exact(8443));
        assert!(!p("api.test:8443").matches("api.test", 443, 443));
        assert_eq!(p("api.test:*").to_string(), "api.test:*");
        assert_eq!(p("api.test").to_string(), "api.test");
        for bad in ["api.test:**", "api.test:*1", "*:*"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstreams() {
        let u = parse_upstream("https://API.example.com:8443/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Https, "api.example.com", 8443)
        );
        let u = parse_upstream("http://[::1]").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        let u = parse_upstream("https://a.example.com:443").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(u.port, 443);
        for bad in [
            "a.example.com:443",
            "ftp://a.example.com",
            "https://a.example.com/v2",
            "https://a.example.com/?x=1",
            "https://u:p@a.example.com",
            "https://a.example.com/#f",
            "https://",
            "https:// a.example.com",
            "not a url",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn token_urls() {
        for good in [
            "https://idp.example.com/oauth2/token",
            "http://localhost:8080/token",
            "http://127.0.0.2/token",
            "http://[::1]:9/token",
            "https://idp.example.com/token?tenant=x",
        ] {
            assert!(parse_token_url(good).is_ok(), "{good:?} should be accepted");
        }
        for bad in [
            "http://idp.example.com/token",
            "http://10.0.0.1/token",
            "http://localhost.example.com/token",
            "ftp://localhost/token",
            "idp.example.com/token",
            "https://user:pw@idp.example.com/token",
            "https://idp.example.com/token#x",
        ] {
            assert!(parse_token_url(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn shown_url_hides_userinfo() {
        assert_eq!(
            shown_url("https://user:hunter2@h/x"),
            "`https://[redacted]@h/x`"
        );
        assert_eq!(shown_url("https://h/x@y"), "`https://h/x@y`");
        assert!(!shown("a\nb").contains('\n'));
    }

    #[test]
    fn small_checks() {
        assert!(check_header_name("Authorization").is_ok());
        assert!(check_header_name("X-Api-Key").is_ok());
        assert!(check_header_name("Bad Header").is_err());
        assert!(check_header_name("").is_err());
        assert!(check_header_name("host").is_err());
        assert!(check_header_name("Proxy-Authorization").is_err());
        assert!(check_header_value_part("Bearer ").is_ok());
        assert!(check_header_value_part("Bearer\r\n").is_err());
        assert_eq!(parse_method("get"), Ok("GET".to_owned()));
        assert!(parse_method("GE T").is_err());
        assert!(check_path_prefix("/v2/").is_ok());
        assert!(check_path_prefix("v2").is_err());
        assert!(check_path_prefix("/v2?x").is_err());
        assert!(check_scope("invoices:read").is_ok());
        assert!(check_scope("a b").is_err());
        assert!(parse_client("10.1.2.3/8").map(|n| n.to_string()) == Ok("10.0.0.0/8".into()));
        assert!(parse_client("10.1.2.3").map(|n| n.to_string()) == Ok("10.1.2.3/32".into()));
        assert!(parse_client("10.0.0.0/33").is_err());
        assert!(parse_listen("127.0.0.1:3128").is_ok());
        assert!(parse_listen("[::]:3128").is_ok());
        assert!(parse_listen("localhost:3128").is_err());
        assert!(parse_listen("3128").is_err());
    }
}
