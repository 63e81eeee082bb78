//! Via (RFC 3261 §20.42, §18.2.1; RFC 3581 rport; RFC 5118 IPv6).
//!
//! `sent-protocol` allows whitespace around the slashes and a line fold
//! anywhere LWS is allowed (RFC 4475 §3.1.1.1), so the parser skips SWS
//! between every element.

use std::net::IpAddr;

use bytes::Bytes;

use crate::chars::{is_token, is_token_str, is_ws, parse_digits, skip_ws};
use crate::error::SyntaxError;
use crate::params::Params;
use crate::sub;
use crate::uri::{parse_port, Host};

/// Transport of a Via (`transport` in RFC 3261 §25.1, RFC 7118 for WS).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP
    Udp,
    /// TCP
    Tcp,
    /// TLS
    Tls,
    /// SCTP
    Sctp,
    /// TLS-SCTP
    TlsSctp,
    /// WebSocket (RFC 7118)
    Ws,
    /// Secure WebSocket (RFC 7118)
    Wss,
    /// `other-transport = token`, as received.
    Other(Bytes),
}

impl Transport {
    fn parse(t: Bytes) -> Transport {
        const KNOWN: [(&[u8], Transport); 7] = [
            (b"UDP", Transport::Udp),
            (b"TCP", Transport::Tcp),
            (b"TLS", Transport::Tls),
            (b"SCTP", Transport::Sctp),
            (b"TLS-SCTP", Transport::TlsSctp),
            (b"WS", Transport::Ws),
            (b"WSS", Transport::Wss),
        ];
        KNOWN
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(&t))
            .map_or(Transport::Other(t), |(_, k)| k.clone())
    }

    /// Upper-case name as written on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Transport::Udp => b"UDP",
            Transport::Tcp => b"TCP",
            Transport::Tls => b"TLS",
            Transport::Sctp => b"SCTP",
            Transport::TlsSctp => b"TLS-SCTP",
            Transport::Ws => b"WS",
            Transport::Wss => b"WSS",
            Transport::Other(b) => b,
        }
    }
}

/// One `via-parm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `protocol-name`, normally `SIP`.
    pub protocol_name: Bytes,
    /// `protocol-version`, normally `2.0`.
    pub protocol_version: Bytes,
    /// Transport.
    pub transport: Transport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, when present.
    pub port: Option<u16>,
    /// `via-params` in order (branch, received, rport, ...).
    pub params: Params,
}

/// RFC 3261 §8.1.1.7 magic cookie.
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

/// A Via value up to its parameters: sent-protocol and sent-by.
struct Head {
    protocol_name: Bytes,
    protocol_version: Bytes,
    transport: Transport,
    host: Host,
    port: Option<u16>,
}

impl Head {
    /// The head of `v` and where its parameters start.
    fn parse(v: &Bytes) -> Result<(Head, usize), SyntaxError> {
        let s = &v[..];
        let mut i = skip_ws(s, 0);
        let token = |i: &mut usize| -> Result<Bytes, SyntaxError> {
            let start = *i;
            while *i < s.len() && is_token(s[*i]) {
                *i += 1;
            }
            if *i == start {
                return Err(SyntaxError("invalid sent-protocol"));
            }
            Ok(sub(v, &s[start..*i]))
        };
        let slash = |i: &mut usize| -> Result<(), SyntaxError> {
            *i = skip_ws(s, *i);
            if s.get(*i) != Some(&b'/') {
                return Err(SyntaxError("invalid sent-protocol"));
            }
            *i = skip_ws(s, *i + 1);
            Ok(())
        };
        let protocol_name = token(&mut i)?;
        slash(&mut i)?;
        let protocol_version = token(&mut i)?;
        slash(&mut i)?;
        let transport = Transport::parse(token(&mut i)?);
        if !s.get(i).copied().is_some_and(is_ws) {
            return Err(SyntaxError("missing sent-by"));
        }
        i = skip_ws(s, i);
        let host_start = i;
        if s.get(i) == Some(&b'[') {
            while i < s.len() && s[i] != b']' {
                i += 1;
            }
            i = (i + 1).min(s.len());
        } else {
            while i < s.len() && !is_ws(s[i]) && s[i] != b':' && s[i] != b';' {
                i += 1;
            }
        }
        let host = Host::parse(v, &s[host_start..i])?;
        let mut port = None;
        let j = skip_ws(s, i);
        if s.get(j) == Some(&b':') {
            let k = skip_ws(s, j + 1);
            let mut e = k;
            while e < s.len() && s[e].is_ascii_digit() {
                e += 1;
            }
            port = Some(parse_port(&s[k..e])?);
            i = e;
        }
        Ok((
            Head {
                protocol_name,
                protocol_version,
                transport,
                host,
                port,
            },
            i,
        ))
    }
}

/// A via-param's value as RFC 3261 §20.42 and RFC 3581 want it: branch a
/// token, received an address, rport empty or a port, ttl 0..=255, maddr
/// a host. Others are generic parameters.
fn param_ok(name: &[u8], v: Option<&[u8]>) -> bool {
    if name.eq_ignore_ascii_case(b"branch") {
        v.is_some_and(is_token_str)
    } else if name.eq_ignore_ascii_case(b"received") {
        v.and_then(parse_received).is_some()
    } else if name.eq_ignore_ascii_case(b"rport") {
        v.is_none_or(|v| parse_port(v).is_ok())
    } else if name.eq_ignore_ascii_case(b"ttl") {
        v.and_then(parse_digits).is_some_and(|t| t <= 255)
    } else if name.eq_ignore_ascii_case(b"maddr") {
        v.is_some_and(|v| Host::parse(&Bytes::new(), v).is_ok())
    } else {
        true
    }
}

/// What is read of a Via on every message: the transport and sent-by
/// that key a server transaction (RFC 3261 §17.2.3), its branch, and the
/// rport a response goes back by (RFC 3581), with no parameter list built.
/// The transaction layer and the transport read the top Via of every
/// message a few times each, and a whole [`Via`] (sent-protocol copied,
/// every parameter in a list) was about 5 % of a call's signalling
/// instructions (issue 15). Accepts and rejects exactly what
/// [`Via::parse`] does, with the same errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaIds {
    /// Transport.
    pub transport: Transport,
    /// sent-by host.
    pub host: Host,
    /// sent-by port, when present.
    pub port: Option<u16>,
    /// The value of the first `branch` parameter, as [`Via::branch`].
    pub branch: Option<Bytes>,
    /// The first `rport` parameter, as [`Via::rport`].
    pub rport: Option<Option<u16>>,
}

impl ViaIds {
    /// Reads one Via value (one element of the comma-separated list).
    pub fn parse(v: &Bytes) -> Result<ViaIds, SyntaxError> {
        let (head, rest) = Head::parse(v)?;
        let (mut branch, mut rport) = (None, None);
        let mut values_ok = true;
        Params::visit_header(&v[rest..], |name, value| {
            values_ok &= param_ok(name, value);
            if branch.is_none() && name.eq_ignore_ascii_case(b"branch") {
                branch = Some(value.map(|b| sub(v, b)));
            } else if rport.is_none() && name.eq_ignore_ascii_case(b"rport") {
                rport = Some(value.and_then(|p| parse_port(p).ok()));
            }
        })?;
        if !values_ok {
            return Err(SyntaxError("invalid Via parameter"));
        }
        Ok(ViaIds {
            transport: head.transport,
            host: head.host,
            port: head.port,
            branch: branch.flatten(),
            rport,
        })
    }
}

impl Via {
    /// Parses one Via value (one element of the comma-separated list).
    pub fn parse(v: &Bytes) -> Result<Via, SyntaxError> {
        let (head, rest) = Head::parse(v)?;
        let params = Params::parse_header(v, &v[rest..])?;
        let via = Via {
            protocol_name: head.protocol_name,
            protocol_version: head.protocol_version,
            transport: head.transport,
            host: head.host,
            port: head.port,
            params,
        };
        via.check_params()?;
        Ok(via)
    }

    /// Checks one Via value as [`Via::parse`] would, with the same errors,
    /// building no parameter list: each parameter goes to `each` (the
    /// parser's validation keeps no Via).
    pub(crate) fn check(
        v: &Bytes,
        mut each: impl FnMut(&[u8], Option<&[u8]>),
    ) -> Result<(), SyntaxError> {
        let (_, rest) = Head::parse(v)?;
        // Syntax errors in any parameter come before a bad value, as in
        // `parse`, which reads the whole list before checking values.
        let mut values_ok = true;
        Params::visit_header(&v[rest..], |name, value| {
            values_ok &= param_ok(name, value);
            each(name, value);
        })?;
        if values_ok {
            Ok(())
        } else {
            Err(SyntaxError("invalid Via parameter"))
        }
    }

    /// The value of the first parameter called `name` of the Via value
    /// `v`, read without parsing the rest: sent-protocol, host and port
    /// hold no `;`, so the parameters start at the first one. For messages
    /// the parser has validated (their top Via parsed whole): the host is
    /// not checked here. Every parameter is still read with
    /// [`Params::parse_header`]'s grammar.
    pub fn header_param(v: &Bytes, name: &str) -> Result<Option<Bytes>, SyntaxError> {
        match memchr::memchr(b';', v) {
            Some(at) => Params::header_value(v, &v[at..], name),
            None => Ok(None),
        }
    }

    fn check_params(&self) -> Result<(), SyntaxError> {
        if self
            .params
            .iter()
            .all(|p| param_ok(&p.name, p.value.as_deref()))
        {
            Ok(())
        } else {
            Err(SyntaxError("invalid Via parameter"))
        }
    }

    /// What [`ViaIds::parse`] reads of this Via.
    pub fn ids(&self) -> ViaIds {
        ViaIds {
            transport: self.transport.clone(),
            host: self.host.clone(),
            port: self.port,
            branch: self.branch().cloned(),
            rport: self.rport(),
        }
    }

    /// The branch parameter (transaction id, RFC 3261 §17.2.3).
    pub fn branch(&self) -> Option<&Bytes> {
        self.params.value("branch")
    }

    /// True when the branch starts with the RFC 3261 magic cookie.
    pub fn has_magic_cookie(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(MAGIC_COOKIE))
    }

    /// The `received` address (brackets around IPv6 accepted, RFC 5118 §4.5).
    pub fn received(&self) -> Option<IpAddr> {
        self.params
            .value("received")
            .and_then(|v| parse_received(v))
    }

    /// `None`: no rport; `Some(None)`: `;rport` (a request for it,
    /// RFC 3581 §3); `Some(Some(p))`: the port filled in by a server.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|p| p.value.as_deref().and_then(|v| parse_port(v).ok()))
    }

    /// The `ttl` parameter.
    pub fn ttl(&self) -> Option<u8> {
        self.params
            .value("ttl")
            .and_then(|v| parse_digits(v))
            .and_then(|t| u8::try_from(t).ok())
    }

    /// The `maddr` parameter, as received.
    pub fn maddr(&self) -> Option<&Bytes> {
        self.params.value("maddr")
    }

    /// Writes the value in canonical single-space form.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.protocol_name);
        out.push(b'/');
        out.extend_from_slice(&self.protocol_version);
        out.push(b'/');
        out.extend_from_slice(self.transport.as_bytes());
        out.push(b' ');
        self.host.write_to(out);
        if let Some(p) = self.port {
            out.push(b':');
            out.extend_from_slice(p.to_string().as_bytes());
        }
        self.params.write_to(out);
    }
}

fn parse_received(v: &[u8]) -> Option<IpAddr> {
    let inner = v
        .strip_prefix(b"[")
        .and_then(|r| r.strip_suffix(b"]"))
        .unwrap_or(v);
    std::str::from_utf8(inner).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(s: &'static str) -> Result<Via, SyntaxError> {
        Via::parse(&Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn simple() {
        let v = via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw;rport").unwrap();
        assert_eq!(v.transport, Transport::Udp);
        assert_eq!(v.host, Host::Ipv4("192.0.2.1".parse().unwrap()));
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch().map(|b| &b[..]), Some(&b"z9hG4bKkdjuw"[..]));
        assert!(v.has_magic_cookie());
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), None);
    }

    #[test]
    fn lws_everywhere() {
        let v = via("SIP  /   2.0  /UDP     192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(&v.protocol_version[..], b"2.0");
        assert!(!v.has_magic_cookie());
        let v = via("SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239").unwrap();
        assert_eq!(v.branch().map(|b| &b[..]), Some(&b"z9hG4bK30239"[..]));
        let v = via("SIP/2.0/TCP host.example.com : 5061 ;received=192.0.2.5;rport=5061").unwrap();
        assert_eq!(v.port, Some(5061));
        assert_eq!(v.rport(), Some(Some(5061)));
        assert_eq!(v.received(), Some("192.0.2.5".parse().unwrap()));
    }

    #[test]
    fn ipv6() {
        let v = via(
            "SIP/2.0/UDP [2001:db8::9:1]:5060;received=[2001:db8::9:255];branch=z9hG4bKas3-111",
        )
        .unwrap();
        assert_eq!(v.host, Host::Ipv6("2001:db8::9:1".parse().unwrap()));
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        let v =
            via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3").unwrap();
        assert!(v.received().is_some());
        assert_eq!(v.transport.as_bytes(), b"UDP");
    }

    #[test]
    fn unknown_transport() {
        let v = via("SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en").unwrap();
        assert_eq!(
            v.transport,
            Transport::Other(Bytes::from_static(b"UNKNOWN"))
        );
        assert_eq!(via("SIP/2.0/tls h").unwrap().transport, Transport::Tls);
    }

    #[test]
    fn invalid() {
        for s in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDP host;received=host",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;ttl=300",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host x",
            "",
            "SIP/2.0/UDP [::1",
        ] {
            assert!(via(s).is_err(), "{s}");
        }
    }

    #[test]
    fn write() {
        let v = via("SIP / 2.0 / UDP  h.example.com : 5060 ; branch = z9hG4bK1 ; rport").unwrap();
        let mut out = Vec::new();
        v.write_to(&mut out);
        assert_eq!(out, b"SIP/2.0/UDP h.example.com:5060;branch=z9hG4bK1;rport");
        assert_eq!(v.ttl(), None);
        assert_eq!(v.maddr(), None);
    }

    proptest::proptest! {
        /// A Via's ids are its parse's fields: the first branch and the
        /// first rport whatever their case and how many there are, and
        /// the parse's error where it fails.
        #[test]
        fn via_ids_are_what_the_parse_reads(
            head in proptest::sample::select(vec![
                "SIP/2.0/UDP 192.0.2.1:5060",
                "SIP / 2.0 / TCP host.example.com",
                "SIP/2.0/TLS [2001:db8::1]:5061",
                "SIP/2.0/UDP -bad",
            ]),
            params in proptest::collection::vec(proptest::sample::select(vec![
                ";branch=z9hG4bK1",
                ";BRANCH=z9hG4bK2",
                " ; Branch = z9hG4bK3",
                ";rport",
                ";rport=5062",
                ";RPORT=7",
                ";rport=x",
                ";received=192.0.2.9",
                ";x=1",
            ]), 0..5),
        ) {
            let v = Bytes::from(format!("{head}{}", params.concat()));
            proptest::prop_assert_eq!(ViaIds::parse(&v), Via::parse(&v).map(|via| via.ids()));
        }
    }
}
