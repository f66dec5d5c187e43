//! `tollgate ca init --out DIR [--for-config FILE] [--force] [--lifetime D]`: writes a new
//! interception CA, `DIR/ca.crt` (0644) and `DIR/ca.key` (0600): ECDSA P-256,
//! `CA:TRUE, pathlen:0`, keyUsage keyCertSign and cRLSign. With `--for-config` it carries
//! name constraints limited to the hosts of the config's `connect: intercept` routes, so
//! a leaked key cannot sign for anything else:
//!
//! - an exact host `api.example.com` becomes the DNS subtree `api.example.com` (which
//!   X.509 reads as that name and the names below it);
//! - a wildcard `*.example.com` becomes the subtree `example.com`;
//! - an IP host becomes a /32 or /128 IP subtree;
//! - with no IP host, every IP is excluded (`0.0.0.0/0`, `::/0`), and with no DNS host
//!   only the reserved `invalid` name is permitted: a form with no permitted subtree
//!   would otherwise be unconstrained (RFC 5280).

use super::constraints::{dns_in_subtree, NameConstraints, Subtrees};
use ipnet::IpNet;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree,
    IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use ring::rand::SecureRandom;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tollgate_rules::{Config, HostKind};

/// The default `--lifetime` of a new CA.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(365 * 86400);

/// Name constraints for a config, with a note per subtree saying where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub constraints: NameConstraints,
    /// `(subtree, why)` lines for the summary.
    pub notes: Vec<(String, String)>,
}

/// The constraints `--for-config` puts in the CA. `Err` when no route intercepts.
pub fn constraints_for(config: &Config) -> Result<Planned, String> {
    let mut dns: Vec<(String, String)> = Vec::new();
    let mut ip: Vec<(IpNet, String)> = Vec::new();
    let mut routes = 0;
    for route in config.intercepting_routes() {
        routes += 1;
        for host in &route.matcher.hosts {
            match &host.kind {
                HostKind::Exact(h) => match h.parse::<std::net::IpAddr>() {
                    Ok(addr) => {
                        let net = IpNet::from(addr);
                        if !ip.iter().any(|(n, _)| *n == net) {
                            ip.push((net, format!("route {}", route.name)));
                        }
                    }
                    Err(_) => dns.push((h.clone(), format!("route {}: {h}", route.name))),
                },
                HostKind::Wildcard(suffix) => dns.push((
                    suffix.trim_start_matches('.').to_owned(),
                    format!("route {}: *{suffix}", route.name),
                )),
            }
        }
    }
    if routes == 0 {
        return Err(
            "no route has `connect: intercept`, so a CA constrained to their hosts could sign for nothing; add the routes first, or leave out --for-config"
                .to_owned(),
        );
    }
    // Keep the widest subtrees: a name already inside another subtree adds nothing (its
    // note joins the subtree's).
    let mut kept: Vec<(String, String)> = Vec::new();
    for (d, _) in &dns {
        let covered = dns.iter().any(|(o, _)| o != d && dns_in_subtree(d, o));
        if !covered && !kept.iter().any(|(k, _)| k == d) {
            kept.push((d.clone(), String::new()));
        }
    }
    for (d, why) in &dns {
        if let Some((_, notes)) = kept.iter_mut().find(|(k, _)| dns_in_subtree(d, k)) {
            if !notes.is_empty() {
                notes.push_str(", ");
            }
            notes.push_str(why);
        }
    }
    let mut planned = Planned {
        constraints: NameConstraints::default(),
        notes: Vec::new(),
    };
    if kept.is_empty() {
        planned.constraints.permitted.dns.push("invalid".to_owned());
        planned.notes.push((
            "permitted DNS invalid".to_owned(),
            "no route intercepts a host name; `invalid` is reserved and never resolves".to_owned(),
        ));
    }
    for (d, why) in kept {
        planned.notes.push((format!("permitted DNS {d}"), why));
        planned.constraints.permitted.dns.push(d);
    }
    if ip.is_empty() {
        for net in ["0.0.0.0/0", "::/0"] {
            if let Ok(n) = net.parse() {
                planned.constraints.excluded.ip.push(n);
            }
        }
        planned.notes.push((
            "excluded IP 0.0.0.0/0, ::/0".to_owned(),
            "no route intercepts an IP address".to_owned(),
        ));
    }
    for (net, why) in ip {
        planned.notes.push((format!("permitted IP {net}"), why));
        planned.constraints.permitted.ip.push(net);
    }
    Ok(planned)
}

fn subtrees(s: &Subtrees) -> Vec<GeneralSubtree> {
    let mut out: Vec<GeneralSubtree> = s.dns.iter().cloned().map(GeneralSubtree::DnsName).collect();
    out.extend(s.ip.iter().map(|n| {
        GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(n.addr(), n.prefix_len()))
    }));
    out
}

/// A new CA: its certificate (PEM), its key (PEM; a secret) and its subject.
pub struct NewCa {
    pub cert_pem: String,
    key_pem: String,
    pub subject: String,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for NewCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCa")
            .field("subject", &self.subject)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Makes a CA valid from an hour before `now` for `lifetime`.
pub fn generate(
    now: SystemTime,
    lifetime: Duration,
    constraints: Option<&NameConstraints>,
) -> Result<NewCa, String> {
    let err = |e: rcgen::Error| format!("making the CA failed: {e}");
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| "no randomness available".to_owned())?;
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let date = humantime::format_rfc3339_seconds(now).to_string();
    let common_name = format!(
        "tollgate interception CA {} {:02x}{:02x}",
        date.get(..10).unwrap_or(&date),
        serial[1],
        serial[2]
    );
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tollgate");
    dn.push(DnType::CommonName, common_name.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let start = super::leaf::whole_seconds(now) - Duration::from_secs(3600);
    let not_after = super::leaf::whole_seconds(now) + lifetime;
    params.not_before = start.into();
    params.not_after = not_after.into();
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    if let Some(c) = constraints {
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: subtrees(&c.permitted),
            excluded_subtrees: subtrees(&c.excluded),
        });
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        subject: format!("O=tollgate, CN={common_name}"),
        not_after,
    })
}

/// Writes `DIR/ca.key` (0600) then `DIR/ca.crt` (0644), each through a temporary file
/// renamed into place, so a reader never sees half a file and the key is never readable
/// by others, not even briefly. Refuses existing files unless `force`.
pub fn write(dir: &Path, ca: &NewCa, force: bool) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("ca.crt");
    let key = dir.join("ca.key");
    if !force {
        for p in [&cert, &key] {
            if p.symlink_metadata().is_ok() {
                return Err(format!(
                    "{} exists; pass --force to replace it (clients that trust the old CA will no longer trust tollgate's certificates)",
                    p.display()
                ));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_file(&key, ca.key_pem.as_bytes(), 0o600)?;
    write_file(&cert, ca.cert_pem.as_bytes(), 0o644)?;
    Ok((cert, key))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    let done = f
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| f.write_all(bytes))
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    Ok(())
}

/// The command: prints what it wrote and constrained; returns the exit code.
pub fn run(out: &Path, for_config: Option<&Path>, force: bool, lifetime: Duration) -> i32 {
    let planned = match for_config {
        None => None,
        Some(path) => {
            let Some(config) = crate::commands::load(path) else {
                return crate::cli::EX_CONFIG;
            };
            match constraints_for(&config) {
                Ok(p) => Some(p),
                Err(e) => {
                    eprintln!("tollgate ca init: {}: {e}", path.display());
                    return crate::cli::EX_CONFIG;
                }
            }
        }
    };
    let ca = match generate(
        SystemTime::now(),
        lifetime,
        planned.as_ref().map(|p| &p.constraints),
    ) {
        Ok(ca) => ca,
        Err(e) => {
            eprintln!("tollgate ca init: {e}");
            return 1;
        }
    };
    let (cert, key) = match write(out, &ca, force) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("tollgate ca init: {e}");
            return 1;
        }
    };
    println!("wrote {} (CA certificate, mode 0644)", cert.display());
    println!(
        "wrote {} (private key, mode 0600: keep it secret)",
        key.display()
    );
    println!(
        "CA: {}, ECDSA P-256, CA:TRUE pathlen:0, valid until {}",
        ca.subject,
        humantime::format_rfc3339_seconds(ca.not_after)
    );
    match (&planned, for_config) {
        (Some(p), Some(path)) => {
            println!(
                "name constraints, from the `connect: intercept` routes of {}:",
                path.display()
            );
            for (subtree, why) in &p.notes {
                println!("  {subtree}  ({why})");
            }
            println!("tollgate refuses a config that intercepts a host outside these; make a new CA when the routes change.");
        }
        _ => println!(
            "no name constraints: this CA can sign for any host. Prefer --for-config FILE to limit it to the hosts you intercept."
        ),
    }
    println!(
        "Clients must trust {}: curl --cacert, REQUESTS_CA_BUNDLE (Python), NODE_EXTRA_CA_CERTS (Node), SSL_CERT_FILE (OpenSSL, Go).",
        cert.display()
    );
    // Absolute: tollgate resolves relative paths against its working directory.
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    println!("In tollgate.yaml:");
    println!("  interception:");
    println!("    ca_cert_file: {}", abs(&cert).display());
    println!("    ca_key_file: {}", abs(&key).display());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routes: &str) -> Config {
        let yaml = format!(
            "credentials:\n  c:\n    token_url: https://idp.example.com/t\n    client_id: x\n    client_secret: y\nroutes:\n{routes}"
        );
        tollgate_rules::load_str("t.yaml", &yaml, &|_: &str| None).unwrap_or_else(|e| panic!("{e}"))
    }

    fn intercept(name: &str, hosts: &str) -> String {
        format!("  - name: {name}\n    match: {{ hosts: [{hosts}] }}\n    action: inject\n    credential: c\n    connect: intercept\n")
    }

    #[test]
    fn subtrees_from_intercepting_routes() {
        let c = config(&format!(
            "{}{}  - name: p\n    match: {{ hosts: [github.com] }}\n    action: pass\n  - name: r\n    match: {{ hosts: [refused.example.org] }}\n    action: inject\n    credential: c\n",
            intercept("billing", "api.billing.example.com, \"*.billing.example.com\", \"billing.example.com:443\""),
            intercept("ledger", "ledger.example.net"),
        ));
        let p = constraints_for(&c).expect("planned");
        // api.billing.example.com is inside billing.example.com; pass and refusing
        // inject routes are not intercepted.
        assert_eq!(
            p.constraints.permitted.dns,
            ["billing.example.com", "ledger.example.net"]
        );
        assert!(p.constraints.permitted.ip.is_empty());
        assert_eq!(
            p.constraints.excluded.ip,
            [
                "0.0.0.0/0".parse::<IpNet>().expect("net"),
                "::/0".parse().expect("net")
            ]
        );
        let note = &p
            .notes
            .iter()
            .find(|(s, _)| s == "permitted DNS billing.example.com")
            .expect("note")
            .1;
        assert_eq!(
            note,
            "route billing: api.billing.example.com, route billing: *.billing.example.com, route billing: billing.example.com"
        );
    }

    #[test]
    fn ip_hosts_and_no_dns_hosts() {
        let c = config(&intercept(
            "ips",
            "10.1.2.3, \"[2001:db8::1]:443\", 10.1.2.3:8443",
        ));
        let p = constraints_for(&c).expect("planned");
        assert_eq!(p.constraints.permitted.dns, ["invalid"]);
        assert_eq!(
            p.constraints.permitted.ip,
            [
                "10.1.2.3/32".parse::<IpNet>().expect("net"),
                "2001:db8::1/128".parse().expect("net")
            ]
        );
        assert!(p.constraints.excluded.ip.is_empty());
    }

    #[test]
    fn nothing_to_constrain_is_an_error() {
        let c = config("  - name: p\n    match: { hosts: [github.com] }\n    action: pass\n");
        let e = constraints_for(&c).expect_err("no intercepting routes");
        assert!(e.contains("no route has `connect: intercept`"), "{e}");
    }

    #[test]
    fn writes_files_with_modes_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tollgate-ca-init-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ca = generate(SystemTime::now(), DEFAULT_CA_LIFETIME, None).expect("ca");
        let (cert, key) = write(&dir.join("sub"), &ca, false).expect("written");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        let err = write(&dir.join("sub"), &ca, false).expect_err("exists");
        assert!(err.contains("exists; pass --force"), "{err}");
        let again = generate(SystemTime::now(), DEFAULT_CA_LIFETIME, None).expect("ca");
        write(&dir.join("sub"), &again, true).expect("forced");
        assert_eq!(
            std::fs::read_to_string(&cert).expect("read"),
            again.cert_pem
        );
        assert_eq!(mode(&key), 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("sub"))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert!(!format!("{again:?}").contains("PRIVATE"), "{again:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
