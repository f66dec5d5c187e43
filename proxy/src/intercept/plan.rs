//! What a CONNECT to a route does, and why: one pure decision, for the data path and for
//! `tollgate route URL --method CONNECT`.

use super::authority::Authority;
use super::constraints::{LeafName, NotPermitted};
use std::fmt;
use tollgate_rules::{Action, Connect, Route};

/// How a CONNECT to a route is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectPlan {
    /// 200, then the bytes are relayed untouched (`connect: tunnel`, pass routes).
    Tunnel,
    /// 403 before any 200.
    Refuse(Refusal),
    /// 200, then plain HTTP is served as if sent to the proxy; TLS as [`TlsPlan`] says.
    Intercept(TlsPlan),
}

/// Why a CONNECT is refused (the error code in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// An inject route without `connect: intercept` (`connect_not_allowed`).
    InjectRoute,
    /// A pass route with `connect: refuse` (`connect_not_allowed`).
    PassRoute,
    /// A deny route (`denied`).
    Denied,
}

impl Refusal {
    /// The error code of the 403.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::InjectRoute | Refusal::PassRoute => "connect_not_allowed",
            Refusal::Denied => "denied",
        }
    }
}

/// What happens to TLS inside an intercepted tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPlan {
    /// Terminated with a leaf for the CONNECT host, signed by the CA with this subject.
    Terminate(String),
    /// Closed (logged, counted): the config has no `interception` CA.
    NoCa,
    /// Closed (logged, counted): the CA's name constraints do not allow the host.
    NotPermitted(NotPermitted),
}

/// What a CONNECT for `host` to `route` does, given the CA in use.
pub fn plan(route: &Route, host: &str, authority: Option<&Authority>) -> ConnectPlan {
    match (&route.action, route.connect) {
        (Action::Deny, _) => ConnectPlan::Refuse(Refusal::Denied),
        (Action::Pass, Connect::Tunnel) => ConnectPlan::Tunnel,
        (Action::Pass, _) => ConnectPlan::Refuse(Refusal::PassRoute),
        (Action::Inject(_), Connect::Intercept) => ConnectPlan::Intercept(match authority {
            None => TlsPlan::NoCa,
            Some(ca) => match LeafName::parse(host).map(|n| ca.may_sign(&n)) {
                Some(Ok(())) => TlsPlan::Terminate(ca.subject().to_owned()),
                Some(Err(why)) => TlsPlan::NotPermitted(why),
                None => TlsPlan::NotPermitted(NotPermitted("the host is empty".to_owned())),
            },
        }),
        (Action::Inject(_), _) => ConnectPlan::Refuse(Refusal::InjectRoute),
    }
}

impl fmt::Display for ConnectPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectPlan::Tunnel => f.write_str("tunnelled: 200, then the bytes are relayed untouched (connect: tunnel)"),
            ConnectPlan::Refuse(Refusal::InjectRoute) => f.write_str(
                "refused: 403 connect_not_allowed (a token cannot be added inside a tunnel tollgate does not read; set `connect: intercept`, or send http:// and give the route an https upstream)",
            ),
            ConnectPlan::Refuse(Refusal::PassRoute) => {
                f.write_str("refused: 403 connect_not_allowed (connect: refuse)")
            }
            ConnectPlan::Refuse(Refusal::Denied) => f.write_str("refused: 403 denied (action: deny)"),
            ConnectPlan::Intercept(tls) => {
                f.write_str("intercepted: 200, then plain HTTP inside is served like a request to the proxy; ")?;
                match tls {
                    TlsPlan::Terminate(ca) => write!(
                        f,
                        "TLS is terminated with a leaf certificate for the CONNECT host signed by {ca}"
                    ),
                    TlsPlan::NoCa => f.write_str(
                        "TLS is closed (no `interception` CA is configured)",
                    ),
                    TlsPlan::NotPermitted(why) => write!(
                        f,
                        "TLS is closed: the interception CA may not sign for this host ({why})"
                    ),
                }
            }
        }
    }
}
