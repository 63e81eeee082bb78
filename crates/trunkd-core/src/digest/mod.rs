//! HTTP Digest authentication as SIP uses it (RFC 3261 §22.4, RFC 7616,
//! RFC 2617; RFC 2069 compatibility for clients that send no `qop`).
//!
//! Server side (customer PBXs authenticating to a voice connector, SPEC
//! §2.1): [`NonceIssuer`] makes stateless nonces and the 407 challenge
//! values, [`DigestResponse::parse`] reads the `Proxy-Authorization`
//! value, and [`verify`] checks it against the VC's credentials with a
//! [`NonceCounter`] for replay protection. Client side (trunkd's B leg
//! answering a carrier's 401/407): [`Challenge::best`] and
//! [`answer_challenge`].
//!
//! Supported: algorithms MD5, MD5-sess, SHA-256, SHA-256-sess; `qop=auth`
//! or no qop. Not supported: `qop=auth-int` (SIP bodies are rewritten by
//! the B2BUA anyway), `userhash=true`, `username*`.
//!
//! The realm is the daemon's `outbound_host_domain` (SPEC §3.1): the name
//! customers send to, so a PBX shows a meaningful realm, and the realm a
//! stored HA1 (`ha1_md5`/`ha1_sha256`) must have been computed with.

mod hash;
mod header;
mod nonce;

use std::fmt;
use std::time::SystemTime;

use thiserror::Error;

pub use hash::Algorithm;
pub use nonce::{IssuedAt, NonceCounter, NonceIssuer, NONCE_SALT_LEN};

use crate::secret::DigestCredential;
use hash::Inputs;

/// Why a digest exchange failed. Each maps to one SIP outcome in
/// admission: `Stale`, `Replay`, `BadNonce`, `WrongRealm`, `Malformed`
/// and `Unsupported` in a request get a new challenge (407); `UnknownUser`
/// and `WrongResponse` get the same 403 so usernames cannot be probed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DigestError {
    #[error("no credential has this username")]
    UnknownUser,
    #[error("the digest response does not match the credential")]
    WrongResponse,
    #[error("the nonce has expired or may have been forgotten")]
    Stale,
    #[error("the nonce count is not above the last one seen for this nonce")]
    Replay,
    #[error("the nonce was not issued by this server for this realm")]
    BadNonce,
    #[error("the realm is not this server's")]
    WrongRealm,
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Quality of protection (RFC 7616 §3.3): only `auth` is supported.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Qop {
    Auth,
}

/// A digest challenge (`WWW-Authenticate`/`Proxy-Authenticate`, RFC 7616
/// §3.3) that trunkd can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// `Some(Auth)` when the server offered `auth`; `None` for an RFC 2069
    /// challenge without qop.
    pub qop: Option<Qop>,
    pub stale: bool,
}

impl Challenge {
    /// Parses one header value holding a single Digest challenge.
    ///
    /// # Errors
    /// `Malformed` when unreadable or missing realm/nonce; `Unsupported`
    /// for another scheme, an unknown algorithm, a qop list without `auth`,
    /// or a `-sess` algorithm without qop.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let items = header::parse(value)?;
        match items.as_slice() {
            [one] => Self::from_item(one),
            [] => Err(DigestError::Malformed("empty challenge".into())),
            _ => Err(DigestError::Malformed(
                "several challenges in one value".into(),
            )),
        }
    }

    /// The challenge to answer among a response's header values (each may
    /// join several challenges): the first SHA-256 one, else the first
    /// other Digest challenge trunkd supports (RFC 7616 §3.7: the client
    /// uses the strongest algorithm it supports).
    ///
    /// # Errors
    /// The error of the last unusable challenge, or `Malformed` when there
    /// is no Digest challenge at all.
    pub fn best<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Self, DigestError> {
        let mut usable = Vec::new();
        let mut last_err = DigestError::Malformed("no Digest challenge".into());
        for v in values {
            match header::parse(v) {
                Ok(items) => {
                    for item in items.iter().filter(|i| i.is_digest()) {
                        match Self::from_item(item) {
                            Ok(c) => usable.push(c),
                            Err(e) => last_err = e,
                        }
                    }
                }
                Err(e) => last_err = e,
            }
        }
        let pick = usable
            .iter()
            .position(|c| c.algorithm.is_sha256())
            .unwrap_or(0);
        if usable.is_empty() {
            Err(last_err)
        } else {
            Ok(usable.swap_remove(pick))
        }
    }

    fn from_item(item: &header::AuthItem) -> Result<Self, DigestError> {
        if !item.is_digest() {
            return Err(DigestError::Unsupported(format!("scheme {}", item.scheme)));
        }
        let algorithm = item
            .get("algorithm")
            .map_or(Ok(Algorithm::Md5), str::parse)?;
        let qop = match item.get("qop") {
            None => None,
            Some(list)
                if list
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth")) =>
            {
                Some(Qop::Auth)
            }
            Some(list) => return Err(DigestError::Unsupported(format!("qop {list:?}"))),
        };
        if algorithm.is_session() && qop.is_none() {
            return Err(DigestError::Unsupported(format!("{algorithm} without qop")));
        }
        Ok(Challenge {
            realm: item.require("realm")?.to_owned(),
            nonce: item.require("nonce")?.to_owned(),
            opaque: item.get("opaque").map(str::to_owned),
            algorithm,
            qop,
            stale: item
                .get("stale")
                .is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }
}

impl fmt::Display for Challenge {
    /// The header value, e.g. `Digest realm="r", nonce="n",
    /// algorithm=SHA-256, qop="auth"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("Digest realm=");
        header::push_quoted(&mut s, &self.realm);
        s.push_str(", nonce=");
        header::push_quoted(&mut s, &self.nonce);
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            header::push_quoted(&mut s, o);
        }
        s.push_str(", algorithm=");
        s.push_str(self.algorithm.as_str());
        if self.qop.is_some() {
            s.push_str(", qop=\"auth\"");
        }
        if self.stale {
            s.push_str(", stale=true");
        }
        f.write_str(&s)
    }
}

/// The credentials of an `Authorization`/`Proxy-Authorization` header
/// (RFC 7616 §3.4).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DigestResponse {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// Hex, as sent.
    pub response: String,
    /// MD5 when the header has none (RFC 7616 §3.3).
    pub algorithm: Algorithm,
    pub cnonce: Option<String>,
    pub qop: Option<Qop>,
    /// The nonce count exactly as sent (1–8 hex digits; RFC 7616 says 8):
    /// the response hash covers the text, not the number.
    pub nc: Option<String>,
    pub opaque: Option<String>,
}

impl DigestResponse {
    /// Parses a header value.
    ///
    /// # Errors
    /// `Malformed` when unreadable or a required parameter is missing
    /// (username, realm, nonce, uri, response; cnonce and nc with qop);
    /// `Unsupported` for another scheme, an unknown algorithm, qop other
    /// than `auth`, `userhash=true` or `username*`.
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let items = header::parse(value)?;
        let item = items
            .first()
            .ok_or_else(|| DigestError::Malformed("empty credentials".into()))?;
        if !item.is_digest() {
            return Err(DigestError::Unsupported(format!("scheme {}", item.scheme)));
        }
        if items.len() > 1 {
            return Err(DigestError::Malformed(
                "several credentials in one value".into(),
            ));
        }
        if item
            .get("userhash")
            .is_some_and(|u| u.eq_ignore_ascii_case("true"))
        {
            return Err(DigestError::Unsupported("userhash".into()));
        }
        if item.get("username").is_none() && item.get("username*").is_some() {
            return Err(DigestError::Unsupported("username*".into()));
        }
        let algorithm = item
            .get("algorithm")
            .map_or(Ok(Algorithm::Md5), str::parse)?;
        let qop = match item.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => Some(Qop::Auth),
            Some(q) => return Err(DigestError::Unsupported(format!("qop {q:?}"))),
        };
        let cnonce = item.get("cnonce").map(str::to_owned);
        let nc = item.get("nc").map(str::to_owned);
        if let Some(nc) = &nc {
            if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DigestError::Malformed(format!(
                    "nc {nc:?} is not 1 to 8 hex digits"
                )));
            }
        }
        if qop.is_some() && (cnonce.is_none() || nc.is_none()) {
            return Err(DigestError::Malformed("qop without cnonce and nc".into()));
        }
        if algorithm.is_session() && cnonce.is_none() {
            return Err(DigestError::Malformed(format!(
                "{algorithm} without cnonce"
            )));
        }
        Ok(DigestResponse {
            username: item.require("username")?.to_owned(),
            realm: item.require("realm")?.to_owned(),
            nonce: item.require("nonce")?.to_owned(),
            uri: item.require("uri")?.to_owned(),
            response: item.require("response")?.to_owned(),
            algorithm,
            cnonce,
            qop,
            nc,
            opaque: item.get("opaque").map(str::to_owned),
        })
    }

    /// The nonce count as a number, when `nc` was sent.
    pub fn nonce_count(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|nc| u32::from_str_radix(nc, 16).ok())
    }

    fn inputs<'a>(&'a self, method: &'a str) -> Inputs<'a> {
        Inputs {
            algorithm: self.algorithm,
            username: &self.username,
            realm: &self.realm,
            nonce: &self.nonce,
            method,
            uri: &self.uri,
            qop_auth: match (self.qop, &self.nc, &self.cnonce) {
                (Some(Qop::Auth), Some(nc), Some(cnonce)) => Some((nc, cnonce)),
                _ => None,
            },
            cnonce: self.cnonce.as_deref(),
        }
    }
}

impl fmt::Display for DigestResponse {
    /// The header value, parameters in the order of RFC 7616 §3.9.1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::from("Digest username=");
        header::push_quoted(&mut s, &self.username);
        for (name, v) in [
            ("realm", &self.realm),
            ("nonce", &self.nonce),
            ("uri", &self.uri),
            ("response", &self.response),
        ] {
            s.push_str(", ");
            s.push_str(name);
            s.push('=');
            header::push_quoted(&mut s, v);
        }
        s.push_str(", algorithm=");
        s.push_str(self.algorithm.as_str());
        if let Some(c) = &self.cnonce {
            s.push_str(", cnonce=");
            header::push_quoted(&mut s, c);
        }
        if self.qop.is_some() {
            s.push_str(", qop=auth");
        }
        if let Some(nc) = &self.nc {
            s.push_str(", nc=");
            s.push_str(nc);
        }
        if let Some(o) = &self.opaque {
            s.push_str(", opaque=");
            header::push_quoted(&mut s, o);
        }
        f.write_str(&s)
    }
}

/// Checks only the digest arithmetic of `auth` against `credential` for a
/// request with `method` (no nonce, realm or replay checks: see
/// [`verify`]).
///
/// # Errors
/// `WrongResponse` on a mismatch; `Unsupported` when the credential is an
/// HA1 of the other algorithm family.
pub fn check_response(
    credential: &DigestCredential,
    auth: &DigestResponse,
    method: &str,
) -> Result<(), DigestError> {
    let inputs = auth.inputs(method);
    let ha1 = hash::ha1(&credential.secret, &inputs)?;
    let expected = hash::response(&ha1, &inputs);
    if hash::hex_eq(&expected, &auth.response) {
        Ok(())
    } else {
        Err(DigestError::WrongResponse)
    }
}

/// Verifies a request's credentials (RFC 7616 §3.4, §3.5) and returns the
/// credential that matched.
///
/// Order matters for what a client can learn: the nonce's integrity comes
/// first (a forged nonce gets a new challenge whatever the username), then
/// the user and the response (unknown user and wrong password look alike
/// to the caller), then the nonce's age (`Stale` only when the password was
/// right, as RFC 7616 §3.3 asks for `stale=true`), then the nonce count.
/// Without qop (RFC 2069 clients) there is no nonce count: such a request
/// can be replayed until its nonce expires.
///
/// # Errors
/// `WrongRealm`, `BadNonce`, `UnknownUser`, `WrongResponse`,
/// `Unsupported`, `Stale`, `Replay`, in that order of checking.
pub fn verify<'c>(
    issuer: &NonceIssuer,
    credentials: &'c [DigestCredential],
    auth: &DigestResponse,
    method: &str,
    realm: &str,
    now: SystemTime,
    counter: &mut NonceCounter,
) -> Result<&'c DigestCredential, DigestError> {
    if auth.realm != realm {
        return Err(DigestError::WrongRealm);
    }
    let issued = issuer.open(&auth.nonce, realm)?;
    let credential = credentials
        .iter()
        .find(|c| c.username == auth.username)
        .ok_or(DigestError::UnknownUser)?;
    check_response(credential, auth, method)?;
    if !issuer.is_fresh(issued, now) {
        return Err(DigestError::Stale);
    }
    if let Some(nc) = auth.nonce_count() {
        counter.check_and_record(&auth.nonce, issued, nc)?;
    }
    Ok(credential)
}

/// The `Authorization`/`Proxy-Authorization` value answering `challenge`
/// (RFC 7616 §3.4), for trunkd's B leg when a carrier sends 401/407.
/// `cnonce` comes from the caller's RNG; `nc` counts the requests made with
/// this nonce, from 1. `uri` is the request-URI of the request being
/// authenticated (RFC 3261 §22.4).
pub fn answer_challenge(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let nc_text = format!("{nc:08x}");
    let with_qop = challenge.qop.is_some();
    let inputs = Inputs {
        algorithm: challenge.algorithm,
        username,
        realm: &challenge.realm,
        nonce: &challenge.nonce,
        method,
        uri,
        qop_auth: with_qop.then_some((nc_text.as_str(), cnonce)),
        cnonce: Some(cnonce),
    };
    let secret =
        crate::secret::DigestSecret::Password(crate::secret::Secret::new(password.to_owned()));
    // A password works with every algorithm; a parsed Challenge never has
    // a -sess algorithm without qop. Neither ha1 error can happen.
    let response = hash::ha1(&secret, &inputs)
        .map(|h| hash::response(&h, &inputs))
        .unwrap_or_default();
    DigestResponse {
        username: username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: uri.to_owned(),
        response,
        algorithm: challenge.algorithm,
        cnonce: (with_qop || challenge.algorithm.is_session()).then(|| cnonce.to_owned()),
        qop: challenge.qop,
        nc: with_qop.then_some(nc_text),
        opaque: challenge.opaque.clone(),
    }
    .to_string()
}

#[cfg(test)]
mod tests;
