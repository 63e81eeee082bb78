//! trunkd-b2bua: the call.
//!
//! A [`Call`] joins an A leg (the side that sent the INVITE) and a B leg
//! (the side trunkd calls), each with its own Call-ID, tags and CSeq space.
//! It is a sans-IO state machine in the shape of STYLE.md: the I/O shell
//! feeds it [`CallInput`]s (requests, responses and transaction outcomes
//! already matched to this call) and `now`, then drains [`CallOutput`]s
//! (messages to send through the transaction layer, registrations of
//! Call-IDs, and events for records and metrics) and sleeps until
//! [`Call::poll_timeout`].
//!
//! A [`UasCall`] is the one-leg call trunkd answers itself (a recording
//! session, an application call), with the same inputs and outputs.
//!
//! Topology hiding is structural: a message for one leg is always built from
//! that leg's own dialog state; from the other leg only the body and an
//! explicit list of end-to-end headers ([`leg::END_TO_END`]) are copied, never
//! Via, Contact, Record-Route, Route, Call-ID or tags.

pub mod call;
pub mod leg;
pub mod media;
mod rng;
pub mod uac;
pub mod uas;

use std::fmt::Write as _;
use std::net::SocketAddr;
use trunkd_sip::Ipv4Text;

pub use call::{Call, CallEnd, CallEvent, CallInput, CallOutput, Hop, NewCall};
pub use leg::LegState;
pub use media::{MediaAnchor, MediaRefusal, PassThrough, SdpRole};
pub use rng::push_hex;
pub use uac::{NewUacLeg, UacEvent, UacFailure, UacLeg};
pub use uas::{NewUasCall, SdpAnswerer, UasCall};

pub use trunkd_sip::transaction::{Peer, ServerTxId, TxTransport};

/// The transport's name in a Via (`SIP/2.0/UDP`).
pub fn via_name(t: TxTransport) -> &'static str {
    match t {
        TxTransport::Udp => "UDP",
        TxTransport::Tcp => "TCP",
        TxTransport::Tls => "TLS",
    }
}

fn uri_param(t: TxTransport) -> Option<&'static str> {
    match t {
        TxTransport::Udp => None,
        TxTransport::Tcp => Some("tcp"),
        TxTransport::Tls => Some("tls"),
    }
}

/// The transaction layer's transport for a configured route protocol.
pub fn tx_transport(t: trunkd_core::Transport) -> TxTransport {
    match t {
        trunkd_core::Transport::Udp => TxTransport::Udp,
        trunkd_core::Transport::Tcp => TxTransport::Tcp,
        trunkd_core::Transport::Tls => TxTransport::Tls,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// How trunkd appears on the wire: the host and ports in its Via and
/// Contact headers, per transport.
#[derive(Clone, Debug)]
pub struct LocalAddrs {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// The TLS listener: Via and Contact of TLS legs must
    /// name it, or the peer's in-dialog requests would arrive in clear.
    pub tls: Option<SocketAddr>,
    /// Shown instead of the listener's IP (NAT, public name).
    pub advertised: Option<String>,
}

impl LocalAddrs {
    /// `host:port` for Via sent-by and Contact on `proto`.
    pub fn host_port(&self, proto: TxTransport) -> String {
        let mut out = String::with_capacity(24);
        self.write_host_port(proto, &mut out);
        out
    }

    /// Writes `host:port` into `out`: one allocation for a Via or Contact
    /// (these were three, for the address, the port and the joined text).
    pub fn write_host_port(&self, proto: TxTransport, out: &mut String) {
        let sock = match proto {
            TxTransport::Udp => self.udp.or(self.tcp),
            TxTransport::Tcp => self.tcp.or(self.udp),
            TxTransport::Tls => self.tls.or(self.tcp).or(self.udp),
        };
        let port = sock.map(|s| s.port()).unwrap_or(5060);
        // Writing to a String cannot fail.
        let _ = match (&self.advertised, sock) {
            (Some(a), _) => write!(out, "{a}:{port}"),
            (None, Some(SocketAddr::V6(s))) => write!(out, "[{}]:{port}", s.ip()),
            (None, Some(SocketAddr::V4(s))) => write!(out, "{}:{port}", Ipv4Text::new(*s.ip())),
            (None, None) => write!(out, "127.0.0.1:{port}"),
        };
    }

    /// `"name" <sip:user@host:port>` (or without the display name): the
    /// caller as trunkd presents it from its own address, in the From and
    /// P-Asserted-Identity of the requests it originates.
    pub fn name_addr(&self, user: &str, name: Option<&str>, proto: TxTransport) -> String {
        let mut out = String::with_capacity(64);
        if let Some(name) = name {
            out.push('"');
            out.push_str(name);
            out.push_str("\" ");
        }
        out.push_str("<sip:");
        out.push_str(user);
        out.push('@');
        self.write_host_port(proto, &mut out);
        out.push('>');
        out
    }

    /// The Contact URI trunkd puts in its messages on `proto`.
    pub fn contact(&self, proto: TxTransport) -> String {
        let mut out = String::with_capacity(48);
        out.push_str("<sip:trunkd@");
        self.write_host_port(proto, &mut out);
        if let Some(t) = uri_param(proto) {
            out.push_str(";transport=");
            out.push_str(t);
        }
        out.push('>');
        out
    }
}

/// The next queued output of a call or leg state machine; once the queue
/// is drained its room is freed. A call's queue holds a few ~300-byte
/// outputs per input, and inputs come seconds or minutes apart: keeping the
/// room would hold it for the call's life (issue 15, memory per call).
pub(crate) fn pop_output<T>(out: &mut std::collections::VecDeque<T>) -> Option<T> {
    let next = out.pop_front();
    if next.is_none() && out.capacity() > 0 {
        *out = std::collections::VecDeque::new();
    }
    next
}

#[cfg(test)]
mod call_tests;

#[cfg(test)]
mod local_addr_tests {
    use super::*;

    #[test]
    fn tls_legs_name_the_tls_listener() {
        let local = LocalAddrs {
            udp: Some("127.0.0.1:5060".parse().unwrap()),
            tcp: Some("127.0.0.1:5060".parse().unwrap()),
            tls: Some("127.0.0.1:5061".parse().unwrap()),
            advertised: None,
        };
        assert_eq!(local.host_port(TxTransport::Tls), "127.0.0.1:5061");
        assert_eq!(
            local.contact(TxTransport::Tls),
            "<sip:trunkd@127.0.0.1:5061;transport=tls>"
        );
        assert_eq!(local.host_port(TxTransport::Tcp), "127.0.0.1:5060");
    }

    #[test]
    fn ipv6_hosts_are_bracketed_and_an_advertised_name_wins() {
        let mut local = LocalAddrs {
            udp: Some("[2001:db8::5]:5070".parse().unwrap()),
            tcp: None,
            tls: None,
            advertised: None,
        };
        assert_eq!(local.host_port(TxTransport::Udp), "[2001:db8::5]:5070");
        // No TLS listener: the UDP one is named, with the transport asked.
        assert_eq!(
            local.contact(TxTransport::Tls),
            "<sip:trunkd@[2001:db8::5]:5070;transport=tls>"
        );
        local.advertised = Some("sbc.example.net".to_owned());
        assert_eq!(local.host_port(TxTransport::Udp), "sbc.example.net:5070");
        assert_eq!(
            local.contact(TxTransport::Udp),
            "<sip:trunkd@sbc.example.net:5070>"
        );
    }

    #[test]
    fn the_callers_name_addr_is_quoted_only_with_a_display_name() {
        let local = LocalAddrs {
            udp: Some("192.0.2.10:5060".parse().unwrap()),
            tcp: None,
            tls: None,
            advertised: None,
        };
        assert_eq!(
            local.name_addr("+15550100", Some("Alice Example"), TxTransport::Udp),
            "\"Alice Example\" <sip:+15550100@192.0.2.10:5060>"
        );
        assert_eq!(
            local.name_addr("+15550100", None, TxTransport::Udp),
            "<sip:+15550100@192.0.2.10:5060>"
        );
    }
}
