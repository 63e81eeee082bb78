//! HEP version 3 (the Homer Encapsulation Protocol, sipcapture's
//! "HEP3" format) encoding: wraps one captured message — a SIP message
//! trunkd received or sent, or an RTCP report — with its addresses, ports,
//! time and capture agent id, so a Homer or sngrep collector can show the
//! call flow without a packet capture on the host.
//!
//! Pure: bytes in, bytes out. The daemon's `hep` module does the I/O.
//!
//! Wire format: the ASCII `HEP3`, the total length (u16, network order,
//! this header included), then chunks. Each chunk is a vendor id (u16, 0 =
//! generic), a type (u16), a length (u16, the 6-byte chunk header
//! included) and the value. Integers are big-endian.

use std::net::{IpAddr, SocketAddr};

/// Chunk types of the generic vendor (0) that trunkd writes.
pub mod chunk {
    /// Chunk 1.
    pub const IP_FAMILY: u16 = 1;
    /// Chunk 2.
    pub const IP_PROTOCOL: u16 = 2;
    /// Chunk 3.
    pub const SRC_IPV4: u16 = 3;
    /// Chunk 4.
    pub const DST_IPV4: u16 = 4;
    /// Chunk 5.
    pub const SRC_IPV6: u16 = 5;
    /// Chunk 6.
    pub const DST_IPV6: u16 = 6;
    /// Chunk 7.
    pub const SRC_PORT: u16 = 7;
    /// Chunk 8.
    pub const DST_PORT: u16 = 8;
    /// Chunk 9.
    pub const TIME_SECONDS: u16 = 9;
    /// Chunk 10.
    pub const TIME_MICROS: u16 = 10;
    /// Chunk 11.
    pub const PROTOCOL_TYPE: u16 = 11;
    /// Chunk 12.
    pub const CAPTURE_ID: u16 = 12;
    /// Chunk 14.
    pub const AUTH_KEY: u16 = 14;
    /// Chunk 15.
    pub const PAYLOAD: u16 = 15;
    /// Chunk 17.
    pub const CORRELATION_ID: u16 = 17;
}

/// `AF_INET` / `AF_INET6` as HEP writes them (chunk 1).
const FAMILY_V4: u8 = 2;
const FAMILY_V6: u8 = 10;

/// The IP protocol the message travelled over (chunk 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepTransport {
    /// IP protocol 17.
    Udp,
    /// IP protocol 6 (TLS too: HEP has no number for it).
    Tcp,
}

impl HepTransport {
    fn number(self) -> u8 {
        match self {
            HepTransport::Udp => 17,
            HepTransport::Tcp => 6,
        }
    }
}

/// What the payload is (chunk 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepPayload {
    /// A SIP message, as on the wire.
    Sip,
    /// An RTCP report rendered as JSON.
    RtcpJson,
}

impl HepPayload {
    fn number(self) -> u8 {
        match self {
            HepPayload::Sip => 1,
            HepPayload::RtcpJson => 5,
        }
    }
}

/// One captured message to encode.
#[derive(Debug, Clone, Copy)]
pub struct HepMessage<'a> {
    /// Who sent it.
    pub src: SocketAddr,
    /// Who it was for.
    pub dst: SocketAddr,
    /// UDP or TCP.
    pub transport: HepTransport,
    /// Capture time since the Unix epoch: seconds and microseconds.
    pub seconds: u32,
    /// The microseconds within `seconds`.
    pub micros: u32,
    /// What `payload` is.
    pub kind: HepPayload,
    /// The capture agent id (`[hep] capture_id`).
    pub capture_id: u32,
    /// The collector's password (`[hep] password`), sent as the auth key.
    pub auth_key: Option<&'a str>,
    /// Groups this message with a call (the Call-ID), for RTCP.
    pub correlation_id: Option<&'a [u8]>,
    /// The message as on the wire.
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a message cannot be encapsulated.
pub enum HepError {
    /// HEP lengths are 16 bits: a bigger message cannot be encapsulated.
    #[error("the HEP packet would be {0} bytes; at most 65535 fit")]
    TooLarge(usize),
    /// One packet carries one family for both addresses.
    #[error("source {src} and destination {dst} are of different IP families")]
    MixedFamilies {
        /// The source address.
        src: IpAddr,
        /// The destination address.
        dst: IpAddr,
    },
}

/// Encodes `m` as one HEP3 packet.
pub fn encode(m: &HepMessage<'_>) -> Result<Vec<u8>, HepError> {
    let mut out = Vec::with_capacity(128 + m.payload.len());
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]); // the total length, set at the end
    match (m.src.ip(), m.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(&mut out, chunk::IP_FAMILY, &[FAMILY_V4]);
            put(&mut out, chunk::IP_PROTOCOL, &[m.transport.number()]);
            put(&mut out, chunk::SRC_IPV4, &s.octets());
            put(&mut out, chunk::DST_IPV4, &d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            put(&mut out, chunk::IP_FAMILY, &[FAMILY_V6]);
            put(&mut out, chunk::IP_PROTOCOL, &[m.transport.number()]);
            put(&mut out, chunk::SRC_IPV6, &s.octets());
            put(&mut out, chunk::DST_IPV6, &d.octets());
        }
        (src, dst) => return Err(HepError::MixedFamilies { src, dst }),
    }
    put(&mut out, chunk::SRC_PORT, &m.src.port().to_be_bytes());
    put(&mut out, chunk::DST_PORT, &m.dst.port().to_be_bytes());
    put(&mut out, chunk::TIME_SECONDS, &m.seconds.to_be_bytes());
    put(&mut out, chunk::TIME_MICROS, &m.micros.to_be_bytes());
    put(&mut out, chunk::PROTOCOL_TYPE, &[m.kind.number()]);
    put(&mut out, chunk::CAPTURE_ID, &m.capture_id.to_be_bytes());
    if let Some(key) = m.auth_key {
        put(&mut out, chunk::AUTH_KEY, key.as_bytes());
    }
    if let Some(id) = m.correlation_id {
        put(&mut out, chunk::CORRELATION_ID, id);
    }
    put(&mut out, chunk::PAYLOAD, m.payload);
    // Every chunk is shorter than the whole, so checking the whole covers
    // the chunk lengths `put` truncated.
    let total = u16::try_from(out.len()).map_err(|_| HepError::TooLarge(out.len()))?;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    Ok(out)
}

fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = (value.len() + 6).min(usize::from(u16::MAX)) as u16;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(payload: &[u8]) -> HepMessage<'_> {
        HepMessage {
            src: "192.0.2.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5080".parse().unwrap(),
            transport: HepTransport::Udp,
            seconds: 0x6000_0001,
            micros: 0x0001_e240, // 123456
            kind: HepPayload::Sip,
            capture_id: 2001,
            auth_key: None,
            correlation_id: None,
            payload,
        }
    }

    /// Checked by hand against sipcapture's HEP3 chunk table.
    #[test]
    fn an_ipv4_udp_sip_message_encodes_to_the_hand_checked_bytes() {
        let got = encode(&sip(b"OPTIONS")).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &b"HEP3"[..], &[0, 106],
            &[0, 0, 0, 1, 0, 7, 2],                     // family AF_INET
            &[0, 0, 0, 2, 0, 7, 17],                    // protocol UDP
            &[0, 0, 0, 3, 0, 10, 192, 0, 2, 1],         // src IPv4
            &[0, 0, 0, 4, 0, 10, 10, 0, 0, 2],          // dst IPv4
            &[0, 0, 0, 7, 0, 8, 0x13, 0xc4],            // src port 5060
            &[0, 0, 0, 8, 0, 8, 0x13, 0xd8],            // dst port 5080
            &[0, 0, 0, 9, 0, 10, 0x60, 0, 0, 1],        // seconds
            &[0, 0, 0, 10, 0, 10, 0, 1, 0xe2, 0x40],    // microseconds
            &[0, 0, 0, 11, 0, 7, 1],                    // SIP
            &[0, 0, 0, 12, 0, 10, 0, 0, 0x07, 0xd1],    // capture id 2001
            &[0, 0, 0, 15, 0, 13], b"OPTIONS",          // payload
        ]
        .concat();
        assert_eq!(got, want);
        assert_eq!(got.len(), 106);
    }

    #[test]
    fn a_password_adds_the_auth_key_and_a_call_id_the_correlation_id() {
        let mut m = sip(b"x");
        m.auth_key = Some("pw");
        m.correlation_id = Some(b"c1");
        m.kind = HepPayload::RtcpJson;
        let got = encode(&m).unwrap();
        let tail: Vec<u8> = [
            &[0, 0, 0, 11, 0, 7, 5][..],
            &[0, 0, 0, 12, 0, 10, 0, 0, 0x07, 0xd1],
            &[0, 0, 0, 14, 0, 8],
            b"pw",
            &[0, 0, 0, 17, 0, 8],
            b"c1",
            &[0, 0, 0, 15, 0, 7],
            b"x",
        ]
        .concat();
        assert!(got.ends_with(&tail), "{got:?}");
        assert_eq!(usize::from(u16::from_be_bytes([got[4], got[5]])), got.len());
    }

    #[test]
    fn ipv6_addresses_use_chunks_5_and_6() {
        let mut m = sip(b"");
        m.src = "[2001:db8::1]:5060".parse().unwrap();
        m.dst = "[::1]:5061".parse().unwrap();
        m.transport = HepTransport::Tcp;
        let got = encode(&m).unwrap();
        assert_eq!(&got[6..20], &[0, 0, 0, 1, 0, 7, 10, 0, 0, 0, 2, 0, 7, 6]);
        let mut src = vec![0, 0, 0, 5, 0, 22];
        src.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&got[20..42], &src[..]);
        assert_eq!(&got[42..48], &[0, 0, 0, 6, 0, 22]);
        assert_eq!(got[63], 1);
    }

    #[test]
    fn mixed_families_and_oversized_payloads_are_errors() {
        let mut m = sip(b"");
        m.dst = "[::1]:5060".parse().unwrap();
        assert!(matches!(encode(&m), Err(HepError::MixedFamilies { .. })));
        let big = vec![b'a'; 65_535];
        assert_eq!(encode(&sip(&big)), Err(HepError::TooLarge(65_535 + 99)));
    }
}
