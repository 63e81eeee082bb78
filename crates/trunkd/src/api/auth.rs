//! Who may call what on the admin listener (SPEC §8, §11): bearer tokens
//! from `[admin] tokens`, stored as SHA-256 hashes, each with a role.
//!
//! The rules are pure ([`required_role`], [`authenticate`]) and tested as
//! a table; the axum middleware in `super` only applies them.

use axum::http::Method;
use trunkd_config::{AdminRole, AdminToken};

/// What a request must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing: open to whoever reaches the listener.
    Open,
    Role(AdminRole),
}

/// The role a request needs, by method and path (query excluded).
///
/// - `/metrics` and `/healthz` are open while `open_metrics` is on (the
///   default: Prometheus scrapes without credentials), `/openapi.json`
///   always (it holds nothing secret);
/// - every other read needs `read-only`;
/// - the number lifecycle (update, delete, restore, associate and
///   disassociate), hanging up calls, application calls, reload and
///   flushing records need `operator`;
/// - every other write (resources, settings) needs `admin`.
pub fn required_role(method: &Method, path: &str, open_metrics: bool) -> Need {
    let path = path.trim_end_matches('/');
    if method == Method::GET || method == Method::HEAD {
        return match path {
            "/metrics" | "/healthz" if open_metrics => Need::Open,
            "/openapi.json" => Need::Open,
            _ => Need::Role(AdminRole::ReadOnly),
        };
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let operator = match segments.as_slice() {
        ["reload"] | ["records", "flush"] => true,
        ["phone-numbers"] | ["phone-numbers", _] => true,
        ["calls", _] => method == Method::DELETE,
        ["sip-media-applications", _, "calls"] | ["sip-media-applications", _, "calls", _] => {
            method == Method::POST
        }
        // associate / disassociate: the query says which; a POST on a VC
        // or group itself is nothing else.
        ["voice-connectors", _] | ["voice-connector-groups", _] => method == Method::POST,
        _ => false,
    };
    Need::Role(if operator {
        AdminRole::Operator
    } else {
        AdminRole::Admin
    })
}

/// The token behind an `Authorization` header value, if it is one of
/// `tokens` (compared as SHA-256 digests, in constant time per entry).
pub fn authenticate<'t>(tokens: &'t [AdminToken], header: Option<&str>) -> Option<&'t AdminToken> {
    use sha2::Digest;
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for t in tokens {
        // No early exit on the first differing byte: the time taken says
        // nothing about how close a guess was.
        let diff = t
            .sha256
            .iter()
            .zip(digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(t);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn token(name: &str, role: AdminRole, secret: &str) -> AdminToken {
        AdminToken {
            name: name.into(),
            role,
            sha256: sha2::Sha256::digest(secret.as_bytes()).into(),
        }
    }

    #[test]
    fn each_route_needs_the_role_the_spec_gives_it() {
        use AdminRole::*;
        let cases: &[(Method, &str, Need)] = &[
            (Method::GET, "/metrics", Need::Open),
            (Method::GET, "/healthz", Need::Open),
            (Method::GET, "/openapi.json", Need::Open),
            (Method::GET, "/voice-connectors", Need::Role(ReadOnly)),
            (Method::GET, "/calls", Need::Role(ReadOnly)),
            (Method::GET, "/status", Need::Role(ReadOnly)),
            (Method::POST, "/reload", Need::Role(Operator)),
            (Method::POST, "/records/flush", Need::Role(Operator)),
            (
                Method::POST,
                "/phone-numbers/+12065550100",
                Need::Role(Operator),
            ),
            (
                Method::DELETE,
                "/phone-numbers/+12065550100",
                Need::Role(Operator),
            ),
            (Method::DELETE, "/calls/abc", Need::Role(Operator)),
            (
                Method::POST,
                "/sip-media-applications/sma-1/calls",
                Need::Role(Operator),
            ),
            (
                Method::POST,
                "/sip-media-applications/sma-1/calls/t1",
                Need::Role(Operator),
            ),
            (Method::POST, "/voice-connectors/vc-1", Need::Role(Operator)),
            (
                Method::POST,
                "/voice-connector-groups/g-1",
                Need::Role(Operator),
            ),
            (Method::DELETE, "/voice-connectors/vc-1", Need::Role(Admin)),
            (
                Method::PUT,
                "/voice-connectors/vc-1/logging-configuration",
                Need::Role(Admin),
            ),
            (Method::DELETE, "/sip-rules/r-1", Need::Role(Admin)),
            (Method::POST, "/voice-connectors", Need::Role(Admin)),
        ];
        for (m, p, need) in cases {
            assert_eq!(required_role(m, p, true), *need, "{m} {p}");
        }
        assert_eq!(
            required_role(&Method::GET, "/metrics", false),
            Need::Role(ReadOnly)
        );
    }

    #[test]
    fn only_a_listed_bearer_token_authenticates() {
        let tokens = [
            token("grafana", AdminRole::ReadOnly, "t-read"),
            token("ops", AdminRole::Admin, "t-admin"),
        ];
        let who = |h: Option<&str>| authenticate(&tokens, h).map(|t| t.name.as_str());
        assert_eq!(who(Some("Bearer t-read")), Some("grafana"));
        assert_eq!(who(Some("bearer   t-admin ")), Some("ops"));
        assert_eq!(who(Some("Bearer t-wrong")), None);
        assert_eq!(who(Some("Basic dDp0")), None);
        assert_eq!(who(Some("Bearer ")), None);
        assert_eq!(who(Some("t-read")), None);
        assert_eq!(who(None), None);
    }
}
