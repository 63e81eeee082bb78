//! Request methods (RFC 3261 §7.1 and the extension RFCs a trunk meets).
//!
//! Method names are case-sensitive (RFC 3261 §7.1): `invite` is not INVITE
//! but an extension method, and `RE%47IST%45R` is not REGISTER (RFC 4475
//! §3.1.1.5) — `%` is not an escape in a method.

use std::fmt;

use bytes::Bytes;

use crate::chars::is_token_str;
use crate::error::SyntaxError;

/// A SIP request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// RFC 3261
    Invite,
    /// RFC 3261
    Ack,
    /// RFC 3261
    Bye,
    /// RFC 3261
    Cancel,
    /// RFC 3261
    Options,
    /// RFC 3261
    Register,
    /// RFC 3262
    Prack,
    /// RFC 3311
    Update,
    /// RFC 6086
    Info,
    /// RFC 3515
    Refer,
    /// RFC 3428
    Message,
    /// RFC 6665
    Subscribe,
    /// RFC 6665
    Notify,
    /// RFC 3903
    Publish,
    /// Any other `token` (RFC 3261 §25.1 `extension-method`).
    Extension(Bytes),
}

impl Method {
    /// Parses a method token, keeping a zero-copy slice for extension methods.
    pub fn parse(token: &Bytes) -> Result<Method, SyntaxError> {
        Ok(match &token[..] {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            other if is_token_str(other) => Method::Extension(token.clone()),
            _ => return Err(SyntaxError("method is not a token")),
        })
    }

    /// The method name as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Update => b"UPDATE",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Message => b"MESSAGE",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Notify => b"NOTIFY",
            Method::Publish => b"PUBLISH",
            Method::Extension(b) => b,
        }
    }

    /// True for methods outside the known set.
    pub fn is_extension(&self) -> bool {
        matches!(self, Method::Extension(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_extension() {
        assert_eq!(
            Method::parse(&Bytes::from_static(b"INVITE")),
            Ok(Method::Invite)
        );
        let m = Method::parse(&Bytes::from_static(b"invite")).unwrap();
        assert_eq!(m, Method::Extension(Bytes::from_static(b"invite")));
        let m = Method::parse(&Bytes::from_static(b"RE%47IST%45R")).unwrap();
        assert!(m.is_extension());
        assert_eq!(m.as_bytes(), b"RE%47IST%45R");
        assert!(Method::parse(&Bytes::from_static(b"IN VITE")).is_err());
        assert!(Method::parse(&Bytes::new()).is_err());
        assert_eq!(Method::Publish.to_string(), "PUBLISH");
    }
}
