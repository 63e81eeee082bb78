//! Small validated values used across the resource model.

use std::fmt;
use std::net::IpAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU8};
use std::str::FromStr;

use thiserror::Error;

/// A value outside its allowed range; the message names the range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{value} is out of range {min}..={max}")]
pub struct RangeError {
    pub value: i64,
    pub min: i64,
    pub max: i64,
}

fn in_range(value: i64, min: i64, max: i64) -> Result<i64, RangeError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(RangeError { value, min, max })
    }
}

/// Route, target and group-member priority: 1 is tried first.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Priority(NonZeroU8);

impl Priority {
    pub const MAX: u8 = 100;

    /// # Errors
    /// When `v` is not in `1..=max` (`max` ≤ 100: 100 for routes, 99 inside a
    /// voice connector group).
    pub fn new(v: i64, max: u8) -> Result<Self, RangeError> {
        let v = in_range(v, 1, i64::from(max.min(Self::MAX)))?;
        // In 1..=100 by the check above, so both conversions succeed.
        Ok(Priority(NonZeroU8::new(v as u8).unwrap_or(NonZeroU8::MIN)))
    }

    pub fn get(self) -> u8 {
        self.0.get()
    }
}

/// Relative share among routes of equal priority, 1..=100.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Weight(NonZeroU8);

impl Weight {
    /// # Errors
    /// When `v` is not in `1..=100`.
    pub fn new(v: i64) -> Result<Self, RangeError> {
        let v = in_range(v, 1, 100)?;
        Ok(Weight(NonZeroU8::new(v as u8).unwrap_or(NonZeroU8::MIN)))
    }

    pub fn get(self) -> u8 {
        self.0.get()
    }
}

/// Calls per second a voice connector may start (token bucket rate), ≥ 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CpsLimit(NonZeroU32);

impl CpsLimit {
    pub const DEFAULT: CpsLimit = CpsLimit(NonZeroU32::MIN);
    pub const MAX: i64 = 100_000;

    /// # Errors
    /// When `v` is not in `1..=100000`.
    pub fn new(v: i64) -> Result<Self, RangeError> {
        let v = in_range(v, 1, Self::MAX)?;
        Ok(CpsLimit(
            NonZeroU32::new(v as u32).unwrap_or(NonZeroU32::MIN),
        ))
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// A UDP/TCP port of a remote peer (never 0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Port(NonZeroU16);

impl Port {
    /// # Errors
    /// When `v` is not in `1..=65535`.
    pub fn new(v: i64) -> Result<Self, RangeError> {
        let v = in_range(v, 1, 65535)?;
        Ok(Port(NonZeroU16::new(v as u16).unwrap_or(NonZeroU16::MIN)))
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether trunkd offers SRTP (SDES) to a leg's peer when it is the one
/// offering. When the peer offers, trunkd answers in kind, except that
/// [`SrtpPolicy::Require`] refuses plain RTP.
///
/// trunkd's rule: a hop reached over TLS is offered SRTP (SDES keys are
/// only as secret as the signalling that carries them), a hop to a voice
/// connector with `require_encryption` requires it, any other hop is
/// offered plain RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SrtpPolicy {
    /// Offer plain RTP (unless the leg is already encrypted).
    #[default]
    Off,
    /// Offer SRTP; a plain answer or offer from the peer is accepted.
    Offer,
    /// SRTP only: a plain answer or offer from the peer is refused (488).
    Require,
}

impl SrtpPolicy {
    /// The policy for a hop: see the type's docs. `configured` is the
    /// route's or carrier host's own `srtp` setting (`None`: `auto`, the
    /// rule above); a VC requiring encryption always requires it.
    pub fn for_hop(
        transport: Transport,
        require_encryption: bool,
        configured: Option<SrtpPolicy>,
    ) -> Self {
        match (require_encryption, configured, transport) {
            (true, _, _) => SrtpPolicy::Require,
            (false, Some(p), _) => p,
            (false, None, Transport::Tls) => SrtpPolicy::Offer,
            (false, None, _) => SrtpPolicy::Off,
        }
    }
}

impl FromStr for SrtpPolicy {
    type Err = EnumError;
    fn from_str(s: &str) -> Result<Self, EnumError> {
        match s {
            "off" => Ok(SrtpPolicy::Off),
            "offer" => Ok(SrtpPolicy::Offer),
            "require" => Ok(SrtpPolicy::Require),
            _ => Err(EnumError(s.to_owned(), "auto, off, offer, require")),
        }
    }
}

/// SIP transport of a route or carrier host.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is not one of {1}")]
pub struct EnumError(pub String, pub &'static str);

impl FromStr for Transport {
    type Err = EnumError;
    fn from_str(s: &str) -> Result<Self, EnumError> {
        match s {
            "UDP" => Ok(Transport::Udp),
            "TCP" => Ok(Transport::Tcp),
            "TLS" => Ok(Transport::Tls),
            _ => Err(EnumError(s.to_owned(), "UDP, TCP, TLS")),
        }
    }
}

impl Transport {
    /// The name as the configuration and SPEC spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which IP families a voice connector's signalling and media may use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum NetworkType {
    #[default]
    Ipv4Only,
    DualStack,
}

impl FromStr for NetworkType {
    type Err = EnumError;
    fn from_str(s: &str) -> Result<Self, EnumError> {
        match s {
            "IPV4_ONLY" => Ok(NetworkType::Ipv4Only),
            "DUAL_STACK" => Ok(NetworkType::DualStack),
            _ => Err(EnumError(s.to_owned(), "IPV4_ONLY, DUAL_STACK")),
        }
    }
}

/// A peer's host: an IP address or a DNS name (RFC 1123 labels).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0:?} is neither an IP address nor a valid host name")]
pub struct HostError(pub String);

impl FromStr for Host {
    type Err = HostError;
    fn from_str(s: &str) -> Result<Self, HostError> {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if is_hostname(s) {
            Ok(Host::Name(s.to_ascii_lowercase()))
        } else {
            Err(HostError(s.to_owned()))
        }
    }
}

/// RFC 1123 host name: dot-separated labels of 1–63 letters, digits and
/// hyphens, not starting or ending with a hyphen, 253 characters at most, and
/// not all-numeric in the last label (so `1.2.3.999` is not taken for a name).
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let last_not_numeric = s
        .rsplit('.')
        .next()
        .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && last_not_numeric
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => a.fmt(f),
            Host::Name(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ranges_are_named_in_errors() {
        assert_eq!(
            Weight::new(0).unwrap_err().to_string(),
            "0 is out of range 1..=100"
        );
        assert_eq!(
            Priority::new(100, 99).unwrap_err().to_string(),
            "100 is out of range 1..=99"
        );
        assert_eq!(
            Port::new(70000).unwrap_err().to_string(),
            "70000 is out of range 1..=65535"
        );
        assert_eq!(
            CpsLimit::new(0).unwrap_err().to_string(),
            "0 is out of range 1..=100000"
        );
        assert_eq!(CpsLimit::DEFAULT.get(), 1);
    }

    #[test]
    fn hosts() {
        assert_eq!(
            "127.0.0.1".parse::<Host>().unwrap(),
            Host::Ip([127, 0, 0, 1].into())
        );
        assert!(matches!(
            "[::1]".parse::<Host>().unwrap(),
            Host::Ip(IpAddr::V6(_))
        ));
        assert_eq!(
            "Sip.Carrier.example".parse::<Host>().unwrap(),
            Host::Name("sip.carrier.example".into())
        );
        for bad in [
            "",
            "-a.example",
            "a..b",
            "a_b.example",
            "1.2.3.999",
            "host:5060",
            "a b",
        ] {
            assert!(bad.parse::<Host>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn weight_accepts_exactly_1_to_100(v in -1000i64..1000) {
            prop_assert_eq!(Weight::new(v).is_ok(), (1..=100).contains(&v));
            if let Ok(w) = Weight::new(v) { prop_assert_eq!(i64::from(w.get()), v); }
        }

        #[test]
        fn port_accepts_exactly_1_to_65535(v in -10i64..70000) {
            prop_assert_eq!(Port::new(v).is_ok(), (1..=65535).contains(&v));
        }

        #[test]
        fn host_parse_never_panics(s in "\\PC*") { let _ = s.parse::<Host>(); }
    }
}

#[cfg(test)]
mod srtp_policy_tests {
    use super::*;

    #[test]
    fn a_hop_is_offered_srtp_over_tls_and_a_route_setting_overrides_unless_required() {
        use SrtpPolicy::*;
        assert_eq!(SrtpPolicy::for_hop(Transport::Tls, false, None), Offer);
        assert_eq!(SrtpPolicy::for_hop(Transport::Udp, false, None), Off);
        assert_eq!(SrtpPolicy::for_hop(Transport::Tcp, false, None), Off);
        assert_eq!(
            SrtpPolicy::for_hop(Transport::Udp, false, Some(Offer)),
            Offer
        );
        assert_eq!(SrtpPolicy::for_hop(Transport::Tls, false, Some(Off)), Off);
        for t in [Transport::Udp, Transport::Tcp, Transport::Tls] {
            for c in [None, Some(Off), Some(Offer), Some(Require)] {
                assert_eq!(SrtpPolicy::for_hop(t, true, c), Require, "{t} {c:?}");
            }
        }
    }
}
