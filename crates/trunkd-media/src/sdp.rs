//! Sans-IO SDP (RFC 8866, formerly RFC 4566) parsing and rewriting for a
//! B2BUA media anchor.
//!
//! trunkd anchors all media (SPEC §2.4): the SDP one leg sends is passed to
//! the other leg with the connection address and ports replaced by trunkd's
//! own, so that both peers send their RTP/RTCP to trunkd's relay. Everything
//! else — codecs, direction, crypto, bandwidth, unknown attributes — is
//! passed through byte for byte, because trunkd does not transcode and the
//! two ends negotiate with each other through it.
//!
//! The parser keeps every line in order and records, per line, what the
//! rewrite has to touch; it reads only what the anchor needs: connection
//! addresses, `m=` ports/proto/formats, `a=rtcp` (RFC 3605), direction
//! attributes, `a=rtpmap` clock rates (the quality code converts jitter from
//! RTP timestamp units) and whether `a=crypto` (RFC 4568) is present.
//!
//! # What the rewrite changes, and why
//!
//! | line | rewrite |
//! |---|---|
//! | `o=` | address (and `IP4`/`IP6`) becomes trunkd's, as rtpengine does, so no internal address leaks (topology hiding). Username and session id are kept; the version is the caller's choice: see [`OriginOverride`] and [`LegOrigin`]. |
//! | `c=` (session and media level) | trunkd's address, `IN IP4`/`IN IP6` by its family. A `c=` holding the unspecified address (`0.0.0.0`, `::`: RFC 2543 hold) stays unspecified (in trunkd's family), so the hold still means "don't send". |
//! | `m=` | port only (a `/<count>` suffix is dropped: trunkd gives one pair per stream); `0` for a stream the caller rejects. |
//! | `a=rtcp:` | trunkd's RTCP port (and address, if the line had one). Added when trunkd's RTCP port is not RTP + 1. Dropped from rejected streams. |
//! | `a=candidate`, `a=ice-*`, `a=remote-candidates`, `a=end-of-candidates` | removed: the candidates are the peer's addresses, which would leak through and invite the other side to send around the anchor. trunkd does not do ICE (rtpengine's `ICE=remove`). |
//!
//! The output always uses CRLF line ends (RFC 8866 §5); input may use LF.
//!
//! Parsing never panics (a proptest feeds it arbitrary input) and every error
//! names the line and what is wrong with it, so a 488 can carry a useful
//! reason and the log says which peer sends broken SDP.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::sdes::MediaSecurity;
pub use smol_str::SmolStr;

/// What is wrong with an SDP body. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body is empty")]
    Empty,
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    #[error("SDP line {line}: not of the form <letter>=<value>")]
    Syntax { line: usize },
    #[error("SDP line {line}: the first line must be v=0")]
    Version { line: usize },
    #[error("SDP has no o= (origin) line")]
    MissingOrigin,
    #[error("SDP line {line}: bad o= (origin): {reason}")]
    Origin { line: usize, reason: &'static str },
    #[error("SDP line {line}: bad c= (connection): {reason}")]
    Connection { line: usize, reason: &'static str },
    #[error("SDP line {line}: bad m= (media): {reason}")]
    Media { line: usize, reason: &'static str },
    #[error("SDP line {line}: bad a=rtcp: {reason}")]
    Rtcp { line: usize, reason: &'static str },
    #[error("SDP line {line}: bad a=rtpmap: {reason}")]
    Rtpmap { line: usize, reason: &'static str },
    #[error(
        "SDP media section {index} (m= on line {line}) has no c= and there is no session-level c="
    )]
    NoConnection { index: usize, line: usize },
    #[error("rewrite got {ports} port pairs for {media} m= lines")]
    PortCount { media: usize, ports: usize },
}

/// Media direction (RFC 3264 §5.1, RFC 8866 §6.7). Absent means sendrecv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(name: &str) -> Option<Self> {
        match name {
            "sendrecv" => Some(Self::SendRecv),
            "sendonly" => Some(Self::SendOnly),
            "recvonly" => Some(Self::RecvOnly),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

/// The `o=` line's fields (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: SmolStr,
    pub session_id: SmolStr,
    pub version: u64,
    pub address: SmolStr,
}

/// An `a=rtpmap` (RFC 8866 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: SmolStr,
    pub clock_rate: u32,
    /// Encoding parameters (channels for audio), verbatim.
    pub params: Option<SmolStr>,
}

/// One `m=` section, with what the anchor reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    kind: SmolStr,
    port: u16,
    proto: SmolStr,
    formats: Vec<SmolStr>,
    connection: Option<IpAddr>,
    rtcp_port: Option<u16>,
    rtcp_addr: Option<IpAddr>,
    direction: Option<Direction>,
    rtpmaps: Vec<RtpMap>,
    /// `a=crypto` values (what follows `a=crypto:`), in order.
    crypto: Vec<String>,
    rtcp_mux: bool,
    /// Line index (0-based) of the `m=` line.
    m_line: usize,
}

impl Media {
    /// `audio`, `video`, `image` (T.38), ...
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// The `m=` port; 0 means the stream is rejected or disabled.
    pub fn port(&self) -> u16 {
        self.port
    }
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub fn proto(&self) -> &str {
        &self.proto
    }
    /// The format list (payload types for RTP), verbatim.
    pub fn formats(&self) -> &[SmolStr] {
        &self.formats
    }
    /// The media-level `c=` address only; see [`Sdp::connection`] for the
    /// effective one.
    pub fn media_connection(&self) -> Option<IpAddr> {
        self.connection
    }
    /// The RTCP port: `a=rtcp` if present (RFC 3605), else RTP + 1 (RFC 3550
    /// §11). `None` for port 65535 without `a=rtcp`.
    pub fn rtcp_port(&self) -> Option<u16> {
        self.rtcp_port.or_else(|| self.port.checked_add(1))
    }
    /// The media-level direction attribute, if any.
    pub fn media_direction(&self) -> Option<Direction> {
        self.direction
    }
    pub fn rtpmaps(&self) -> &[RtpMap] {
        &self.rtpmaps
    }
    /// Whether any `a=crypto` (SDES, RFC 4568) line is present. The keys
    /// themselves are passed through untouched.
    pub fn has_crypto(&self) -> bool {
        !self.crypto.is_empty()
    }

    /// The `a=crypto` attribute values (RFC 4568), without `a=crypto:`.
    pub fn crypto(&self) -> &[String] {
        &self.crypto
    }
    /// Whether `a=rtcp-mux` (RFC 5761) is present. Passed through: both ends
    /// see each other's offer/answer, so they agree on muxing and the relay
    /// needs no special case (it forwards whatever arrives on the RTP socket
    /// to the other RTP socket).
    pub fn rtcp_mux(&self) -> bool {
        self.rtcp_mux
    }

    /// Clock rate of a payload type: the `a=rtpmap` if present, else the
    /// RFC 3551 static table. Used to convert jitter from timestamp units.
    pub fn clock_rate(&self, payload_type: u8) -> Option<u32> {
        self.rtpmaps
            .iter()
            .find(|m| m.payload_type == payload_type)
            .map(|m| m.clock_rate)
            .or_else(|| static_clock_rate(payload_type))
    }

    /// The RFC 4733 telephone-event payload type and its clock rate.
    pub fn telephone_event(&self) -> Option<(u8, u32)> {
        self.rtpmaps
            .iter()
            .find(|m| m.encoding.eq_ignore_ascii_case("telephone-event"))
            .map(|m| (m.payload_type, m.clock_rate))
    }
}

/// RFC 3551 §6 static payload types. G.722 is 8000 by the RFC's famous
/// historical error, which is what goes into RTP timestamps.
fn static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        16 => Some(11025),
        17 => Some(22050),
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => Some(90000),
        _ => None,
    }
}

/// What the rewrite does with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Keep,
    Origin,
    /// A `c=` line; the bool says whether its address is unspecified.
    Connection {
        unspecified: bool,
    },
    MediaLine,
    /// `a=rtcp`; the bool says whether it carried an address.
    Rtcp {
        with_addr: bool,
    },
    /// ICE attributes, removed by the rewrite.
    Ice,
    /// `a=crypto` (SDES keys): replaced when the rewrite is given a
    /// [`MediaSecurity`], since keys never cross legs.
    Crypto,
}

/// One non-empty line of the body: where it is in [`Sdp::text`] (without
/// its line ending) and what the rewrite does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    start: usize,
    end: usize,
    role: Role,
}

/// A parsed SDP body. Owned, so a call actor can keep the last offer and
/// answer of each leg without lifetimes.
///
/// The body is kept as one string and its lines as ranges of it, not as a
/// `String` per line: a call parses half a dozen bodies of a dozen lines
/// each, and an allocation per line was an eighth of a call's allocations
/// (issue 15).
#[derive(Debug, Clone)]
pub struct Sdp {
    /// The body as received.
    text: Box<str>,
    lines: Vec<Line>,
    origin: Origin,
    session_connection: Option<IpAddr>,
    session_direction: Option<Direction>,
    media: Vec<Media>,
}

/// The origin the rewrite writes into `o=`: username and session id kept
/// fixed on a leg, and the version the leg's [`LegOrigin`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginOverride<'a> {
    pub username: &'a str,
    pub session_id: &'a str,
    pub version: u64,
}

impl PartialEq for Sdp {
    /// Equal when the lines are (whatever the line endings and blank lines
    /// between them) and so is what was parsed from them.
    fn eq(&self, other: &Sdp) -> bool {
        self.lines.len() == other.lines.len()
            && self
                .lines
                .iter()
                .zip(&other.lines)
                .all(|(a, b)| a.role == b.role && self.line(a) == other.line(b))
            && self.origin == other.origin
            && self.session_connection == other.session_connection
            && self.session_direction == other.session_direction
            && self.media == other.media
    }
}

impl Eq for Sdp {}

impl Sdp {
    /// The text of one of this body's lines.
    fn line(&self, l: &Line) -> &str {
        // Ranges are made by `parse` on line boundaries of `text`.
        self.text.get(l.start..l.end).unwrap_or_default()
    }

    /// Parses a body that should be UTF-8 (SDP is ASCII in practice; the
    /// `a=charset` attribute is only for free-text fields).
    pub fn parse_bytes(body: &[u8]) -> Result<Self, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        Self::parse(text)
    }

    /// Parses an SDP body, keeping every non-empty line in order.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut lines: Vec<Line> = Vec::new();
        let mut origin: Option<Origin> = None;
        let mut session_connection = None;
        let mut session_direction = None;
        let mut media: Vec<Media> = Vec::new();

        let mut next = 0;
        for (idx, raw) in lines_inclusive(text).enumerate() {
            let start = next;
            next += raw.len();
            let line = raw.strip_suffix('\n').unwrap_or(raw);
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let lineno = idx + 1;
            let bytes = line.as_bytes();
            if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
                return Err(SdpError::Syntax { line: lineno });
            }
            let kind = bytes[0];
            // `line[2..]` is on a char boundary: bytes 0 and 1 are ASCII.
            let value = &line[2..];
            if lines.is_empty() && (kind != b'v' || value.trim() != "0") {
                return Err(SdpError::Version { line: lineno });
            }
            let index = lines.len();
            let role = match kind {
                b'o' if media.is_empty() => {
                    origin = Some(parse_origin(value, lineno)?);
                    Role::Origin
                }
                b'c' => {
                    let ip = parse_connection(value, lineno)?;
                    match media.last_mut() {
                        Some(m) => m.connection = Some(ip),
                        None => session_connection = Some(ip),
                    }
                    Role::Connection {
                        unspecified: ip.is_unspecified(),
                    }
                }
                b'm' => {
                    media.push(parse_media_line(value, lineno, index)?);
                    Role::MediaLine
                }
                b'a' => {
                    let (name, attr_value) = match split_at_byte(value, b':') {
                        Some((n, v)) => (n, Some(v)),
                        None => (value, None),
                    };
                    let name = name.trim();
                    if is_ice_attribute(name) {
                        Role::Ice
                    } else if let Some(dir) = Direction::from_attr(name) {
                        match media.last_mut() {
                            Some(m) => m.direction = Some(dir),
                            None => session_direction = Some(dir),
                        }
                        Role::Keep
                    } else if let Some(m) = media.last_mut() {
                        match (name, attr_value) {
                            ("rtcp", Some(v)) => {
                                let (port, addr) = parse_rtcp(v, lineno)?;
                                m.rtcp_port = Some(port);
                                m.rtcp_addr = addr;
                                Role::Rtcp {
                                    with_addr: addr.is_some(),
                                }
                            }
                            ("rtcp", None) => {
                                return Err(SdpError::Rtcp {
                                    line: lineno,
                                    reason: "no port",
                                })
                            }
                            ("rtpmap", Some(v)) => {
                                m.rtpmaps.push(parse_rtpmap(v, lineno)?);
                                Role::Keep
                            }
                            ("crypto", v) => {
                                m.crypto.push(v.unwrap_or("").trim().to_owned());
                                Role::Crypto
                            }
                            ("rtcp-mux", None) => {
                                m.rtcp_mux = true;
                                Role::Keep
                            }
                            _ => Role::Keep,
                        }
                    } else {
                        Role::Keep
                    }
                }
                _ => Role::Keep,
            };
            lines.push(Line {
                start,
                end: start + line.len(),
                role,
            });
        }

        if lines.is_empty() {
            return Err(SdpError::Empty);
        }
        let origin = origin.ok_or(SdpError::MissingOrigin)?;
        for (index, m) in media.iter().enumerate() {
            if m.connection.is_none() && session_connection.is_none() && !m.is_rejected() {
                return Err(SdpError::NoConnection {
                    index,
                    line: m.m_line + 1,
                });
            }
        }
        Ok(Self {
            text: text.into(),
            lines,
            origin,
            session_connection,
            session_direction,
            media,
        })
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The session-level `c=` address.
    pub fn session_connection(&self) -> Option<IpAddr> {
        self.session_connection
    }

    /// The session-level direction attribute, if any.
    pub fn session_direction(&self) -> Option<Direction> {
        self.session_direction
    }

    pub fn media(&self) -> &[Media] {
        &self.media
    }

    /// The effective connection address of media section `index`: its own
    /// `c=`, else the session's.
    pub fn connection(&self, index: usize) -> Option<IpAddr> {
        let m = self.media.get(index)?;
        m.connection.or(self.session_connection)
    }

    /// The effective direction of media section `index` (media level, else
    /// session level, else sendrecv: RFC 3264 §5.1).
    pub fn direction(&self, index: usize) -> Option<Direction> {
        let m = self.media.get(index)?;
        Some(
            m.direction
                .or(self.session_direction)
                .unwrap_or(Direction::SendRecv),
        )
    }

    /// Where the peer wants RTP for media section `index`, or `None` when it
    /// wants none: rejected stream (port 0), or unspecified address (RFC 2543
    /// hold). This is the relay's initial peer before latching.
    pub fn remote_rtp(&self, index: usize) -> Option<SocketAddr> {
        let m = self.media.get(index)?;
        let ip = self.connection(index)?;
        if m.port == 0 || ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, m.port))
    }

    /// Where the peer wants RTCP for media section `index`: `a=rtcp` port and
    /// address if given, else RTP port + 1 at the connection address.
    pub fn remote_rtcp(&self, index: usize) -> Option<SocketAddr> {
        let rtp = self.remote_rtp(index)?;
        let m = &self.media[index];
        let ip = m.rtcp_addr.unwrap_or(rtp.ip());
        if ip.is_unspecified() {
            return None;
        }
        Some(SocketAddr::new(ip, m.rtcp_port()?))
    }

    /// The attribute lines of media section `index`, without `a=` and in
    /// order (`rtpmap:0 PCMU/8000`, `label:1`, `sendonly`, …); empty for a
    /// section that does not exist.
    pub fn media_attributes(&self, index: usize) -> Vec<&str> {
        let Some(m) = self.media.get(index) else {
            return Vec::new();
        };
        let end = self
            .media
            .get(index + 1)
            .map_or(self.lines.len(), |next| next.m_line);
        self.lines
            .get(m.m_line + 1..end)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| self.line(l).strip_prefix("a="))
            .collect()
    }

    /// Whether any media section carries `a=crypto` (SPEC §2.4: an encrypted
    /// VC refuses an offer without SRTP).
    pub fn has_crypto(&self) -> bool {
        self.media.iter().any(Media::has_crypto)
    }

    /// Rewrites the SDP for the anchor: `addr` is trunkd's media address,
    /// `ports[i]` is trunkd's `(rtp, rtcp)` pair for media section `i`, or
    /// `None` to reject it (port 0). `origin`: `None` keeps the peer's `o=`
    /// username, session id and version (only the address changes); a leg
    /// that sends several SDPs in one dialog passes the values its
    /// [`LegOrigin`] pinned, so the version goes up exactly when the body
    /// changes (RFC 3264 §8).
    pub fn rewrite(
        &self,
        addr: IpAddr,
        ports: &[Option<(u16, u16)>],
        origin: Option<OriginOverride<'_>>,
    ) -> Result<String, SdpError> {
        self.rewrite_secured(addr, ports, origin, None)
    }

    /// [`Sdp::rewrite`], and with `security`: every `a=crypto` line of the
    /// input is dropped, the first media section (the anchored stream) gets
    /// `security.proto` as its transport protocol and `security.crypto` as
    /// its `a=crypto` lines (trunkd's own keys for this leg, see
    /// [`crate::sdes`]).
    pub fn rewrite_secured(
        &self,
        addr: IpAddr,
        ports: &[Option<(u16, u16)>],
        origin: Option<OriginOverride<'_>>,
        security: Option<&MediaSecurity>,
    ) -> Result<String, SdpError> {
        self.rewrite_streams(addr, ports, origin, &[security])
    }

    /// [`Sdp::rewrite_secured`] per media section: `security[i]` (missing:
    /// `None`) is section `i`'s protocol and `a=crypto` lines (each
    /// anchored stream has its own SDES keys). When any section has one,
    /// every `a=crypto` line of the input is dropped, so a peer's keys never
    /// reach the other leg, not even on a rejected section.
    pub fn rewrite_streams(
        &self,
        addr: IpAddr,
        ports: &[Option<(u16, u16)>],
        origin: Option<OriginOverride<'_>>,
        security: &[Option<&MediaSecurity>],
    ) -> Result<String, SdpError> {
        let drop_crypto = security.iter().any(Option::is_some);
        let security = |i: usize| security.get(i).copied().flatten();
        if ports.len() != self.media.len() {
            return Err(SdpError::PortCount {
                media: self.media.len(),
                ports: ports.len(),
            });
        }
        // The lines trunkd writes are pushed piece by piece, an IPv4
        // address and the numbers without the formatter: a call rewrites
        // two SDPs, and `write!` cost about a third of a rewrite.
        let (v4, v6);
        let (family, addr, unspecified) = match addr {
            IpAddr::V4(a) => {
                v4 = trunkd_sip::Ipv4Text::new(a);
                ("IP4", v4.as_str(), "0.0.0.0")
            }
            IpAddr::V6(a) => {
                v6 = a.to_string();
                ("IP6", v6.as_str(), "::")
            }
        };
        let mut num = itoa::Buffer::new();
        let mut out = String::with_capacity(self.text.len() + 64);
        // `section` is None before the first m=, then the media index.
        let mut section: Option<usize> = None;
        for l in &self.lines {
            let (line, role) = (self.line(l), &l.role);
            if *role == Role::MediaLine {
                if let Some(prev) = section {
                    self.end_section(&mut out, prev, ports[prev], security(prev));
                }
                section = Some(section.map_or(0, |s| s + 1));
            }
            let pair = section.and_then(|s| ports[s]);
            match *role {
                Role::Keep => {
                    out.push_str(line);
                }
                Role::Ice => continue,
                Role::Crypto if drop_crypto => continue,
                Role::Crypto => out.push_str(line),
                Role::Origin => {
                    let o = &self.origin;
                    let (user, sid, version) = match origin {
                        Some(ov) => (ov.username, ov.session_id, ov.version),
                        None => (o.username.as_str(), o.session_id.as_str(), o.version),
                    };
                    for piece in ["o=", user, " ", sid, " ", num.format(version), " IN "] {
                        out.push_str(piece);
                    }
                    for piece in [family, " ", addr] {
                        out.push_str(piece);
                    }
                }
                Role::Connection { unspecified: hold } => {
                    let ip = if hold { unspecified } else { addr };
                    for piece in ["c=IN ", family, " ", ip] {
                        out.push_str(piece);
                    }
                }
                Role::MediaLine => {
                    // Parsing guaranteed "<media> <port> ...": replace the port token.
                    let value = &line[2..];
                    let mut parts = value.splitn(3, ' ');
                    let kind = parts.next().unwrap_or("");
                    let _old_port = parts.next();
                    let rest = parts.next().unwrap_or("");
                    let port = pair.map_or(0, |(rtp, _)| rtp);
                    for piece in ["m=", kind, " ", num.format(port), " "] {
                        out.push_str(piece);
                    }
                    match section.and_then(security) {
                        Some(sec) => {
                            let fmts = rest.split_once(' ').map_or("", |(_, f)| f);
                            for piece in [sec.proto.as_str(), " ", fmts] {
                                out.push_str(piece);
                            }
                        }
                        None => out.push_str(rest),
                    }
                    let trimmed = out.trim_end_matches(' ').len();
                    out.truncate(trimmed);
                }
                Role::Rtcp { with_addr } => {
                    // Rejected stream: its a=rtcp is meaningless, drop it.
                    let Some((_, rtcp)) = pair else { continue };
                    out.push_str("a=rtcp:");
                    out.push_str(num.format(rtcp));
                    if with_addr {
                        for piece in [" IN ", family, " ", addr] {
                            out.push_str(piece);
                        }
                    }
                }
            }
            out.push_str("\r\n");
        }
        if let Some(last) = section {
            self.end_section(&mut out, last, ports[last], security(last));
        }
        Ok(out)
    }

    /// Lines added at the end of media section `index`: `a=rtcp` when
    /// needed, and trunkd's `a=crypto` lines on a secured anchored stream.
    fn end_section(
        &self,
        out: &mut String,
        index: usize,
        pair: Option<(u16, u16)>,
        security: Option<&MediaSecurity>,
    ) {
        self.push_added_rtcp(out, index, pair);
        if let (Some(sec), Some(_)) = (security, pair) {
            for c in &sec.crypto {
                let _ = write!(out, "a=crypto:{c}\r\n");
            }
        }
    }

    /// Adds `a=rtcp:<port>` at the end of media section `index` when trunkd's
    /// RTCP port is not RTP + 1 and the section has no `a=rtcp` of its own
    /// (which the main loop rewrites instead).
    fn push_added_rtcp(&self, out: &mut String, index: usize, pair: Option<(u16, u16)>) {
        let Some((rtp, rtcp)) = pair else { return };
        if self.media[index].rtcp_port.is_some() || rtp.checked_add(1) == Some(rtcp) {
            return;
        }
        let _ = write!(out, "a=rtcp:{rtcp}\r\n");
    }
}

/// Per-leg `o=` bookkeeping for the SDPs trunkd sends on one leg.
///
/// RFC 3264 §8: within a dialog the origin's username and session id stay
/// the same and the version goes up by one each time the SDP changes (and
/// stays when it doesn't). The SDP trunkd sends to leg B is built from what
/// leg A sent (and vice versa), but A's `o=` may change under trunkd: after a
/// failover the answer comes from another carrier with another session id.
/// So the first SDP sent on a leg pins username and session id, and the
/// version is trunkd's own counter, bumped exactly when the rewritten body
/// differs from the previous one sent on this leg. rtpengine's
/// `replace-origin` does the same.
#[derive(Debug, Clone, Default)]
pub struct LegOrigin {
    pinned: Option<(SmolStr, SmolStr, u64)>,
    /// A hash of the last SDP sent on this leg, not the SDP: only "did it
    /// change" is asked, and a call keeps two of these for its whole life
    /// (issue 15). SipHash with fixed keys: deterministic, and a collision
    /// (a change not noticed, 2^-64 per re-offer) is far below any other
    /// failure.
    last_sent: Option<u64>,
}

fn body_hash(body: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

impl LegOrigin {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites `sdp` for sending on this leg (see [`Sdp::rewrite`]) with the
    /// leg's pinned origin, bumping the version iff the result differs from
    /// the last SDP sent on this leg.
    pub fn rewrite(
        &mut self,
        sdp: &Sdp,
        addr: IpAddr,
        ports: &[Option<(u16, u16)>],
    ) -> Result<String, SdpError> {
        self.rewrite_secured(sdp, addr, ports, None)
    }

    /// [`LegOrigin::rewrite`] with [`Sdp::rewrite_secured`]'s `security`.
    pub fn rewrite_secured(
        &mut self,
        sdp: &Sdp,
        addr: IpAddr,
        ports: &[Option<(u16, u16)>],
        security: Option<&MediaSecurity>,
    ) -> Result<String, SdpError> {
        self.rewrite_streams(sdp, addr, ports, &[security])
    }

    /// [`LegOrigin::rewrite`] with [`Sdp::rewrite_streams`]'s per-section
    /// `security`.
    pub fn rewrite_streams(
        &mut self,
        sdp: &Sdp,
        addr: IpAddr,
        ports: &[Option<(u16, u16)>],
        security: &[Option<&MediaSecurity>],
    ) -> Result<String, SdpError> {
        let (user, sid, version) = self.pinned.get_or_insert_with(|| {
            let o = sdp.origin();
            (o.username.clone(), o.session_id.clone(), o.version)
        });
        let mut out = sdp.rewrite_streams(
            addr,
            ports,
            Some(OriginOverride {
                username: user,
                session_id: sid,
                version: *version,
            }),
            security,
        )?;
        if self.last_sent.is_some_and(|last| last != body_hash(&out)) {
            *version = version.wrapping_add(1);
            out = sdp.rewrite_streams(
                addr,
                ports,
                Some(OriginOverride {
                    username: user,
                    session_id: sid,
                    version: *version,
                }),
                security,
            )?;
        }
        self.last_sent = Some(body_hash(&out));
        Ok(out)
    }

    /// The version of the last SDP sent on this leg.
    pub fn version(&self) -> Option<u64> {
        self.pinned.as_ref().map(|p| p.2)
    }
}

fn is_ice_attribute(name: &str) -> bool {
    name == "candidate"
        || name == "remote-candidates"
        || name == "end-of-candidates"
        || name.starts_with("ice-")
}

fn parse_origin(value: &str, line: usize) -> Result<Origin, SdpError> {
    let err = |reason| SdpError::Origin { line, reason };
    let mut it = value.split_ascii_whitespace();
    let username = it.next().ok_or(err("missing username"))?;
    let session_id = it.next().ok_or(err("missing session id"))?;
    let version = it.next().ok_or(err("missing session version"))?;
    let version = version
        .parse::<u64>()
        .map_err(|_| err("session version is not a number"))?;
    let _nettype = it.next().ok_or(err("missing network type"))?;
    let _addrtype = it.next().ok_or(err("missing address type"))?;
    let address = it.next().ok_or(err("missing address"))?;
    if it.next().is_some() {
        return Err(err("more than six fields"));
    }
    Ok(Origin {
        username: username.into(),
        session_id: session_id.into(),
        version,
        address: address.into(),
    })
}

/// `IN IP4 <addr>[/<ttl>][/<count>]`. Only IP literals: the relay needs an
/// address to send to and resolving a name here would be I/O; an FQDN is
/// refused with a clear reason (rtpengine does not resolve either).
fn parse_connection(value: &str, line: usize) -> Result<IpAddr, SdpError> {
    let err = |reason| SdpError::Connection { line, reason };
    let mut it = value.split_ascii_whitespace();
    let nettype = it.next().ok_or(err("missing network type"))?;
    if nettype != "IN" {
        return Err(err("network type is not IN"));
    }
    let addrtype = it.next().ok_or(err("missing address type"))?;
    let address = it.next().ok_or(err("missing address"))?;
    if it.next().is_some() {
        return Err(err("more than three fields"));
    }
    let host = address.split('/').next().unwrap_or(address);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| err("address is not an IP literal (host names are not supported)"))?;
    match (addrtype, ip) {
        ("IP4", IpAddr::V4(_)) | ("IP6", IpAddr::V6(_)) => Ok(ip),
        ("IP4" | "IP6", _) => Err(err("address does not match its address type")),
        _ => Err(err("address type is not IP4 or IP6")),
    }
}

fn parse_media_line(value: &str, line: usize, index: usize) -> Result<Media, SdpError> {
    let err = |reason| SdpError::Media { line, reason };
    // Tokens are separated by single spaces (RFC 8866 §9 grammar); the
    // rewrite relies on that to replace the port token in place.
    let mut it = value.split(' ');
    let kind = it
        .next()
        .filter(|k| !k.is_empty())
        .ok_or(err("missing media type"))?;
    let port_token = it
        .next()
        .filter(|p| !p.is_empty())
        .ok_or(err("missing port"))?;
    let port_str = port_token.split('/').next().unwrap_or(port_token);
    let port = port_str
        .parse::<u16>()
        .map_err(|_| err("port is not a number in 0..=65535"))?;
    let proto = it
        .next()
        .filter(|p| !p.is_empty())
        .ok_or(err("missing protocol"))?;
    let formats = it.filter(|f| !f.is_empty()).map(SmolStr::new).collect();
    Ok(Media {
        kind: kind.into(),
        port,
        proto: proto.into(),
        formats,
        connection: None,
        rtcp_port: None,
        rtcp_addr: None,
        direction: None,
        rtpmaps: Vec::new(),
        crypto: Vec::new(),
        rtcp_mux: false,
        m_line: index,
    })
}

/// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
fn parse_rtcp(value: &str, line: usize) -> Result<(u16, Option<IpAddr>), SdpError> {
    let err = |reason| SdpError::Rtcp { line, reason };
    let mut it = value.split_ascii_whitespace();
    let port = it
        .next()
        .ok_or(err("no port"))?
        .parse::<u16>()
        .map_err(|_| err("port is not a number in 0..=65535"))?;
    let Some(nettype) = it.next() else {
        return Ok((port, None));
    };
    let addrtype = it.next().ok_or(err("missing address type"))?;
    let address = it.next().ok_or(err("missing address"))?;
    let conn = format!("{nettype} {addrtype} {address}");
    let ip = parse_connection(&conn, line).map_err(|_| err("bad connection address"))?;
    Ok((port, Some(ip)))
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<params>]`.
/// `text`'s lines, each with its `\n` (the last may have none), as
/// `str::split_inclusive('\n')` gives them. `memchr` finds the ends: a
/// body's lines are a few dozen bytes, and std's char searcher cost more per
/// line than reading the line did.
fn lines_inclusive(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', rest.as_bytes()).map_or(rest.len(), |i| i + 1);
        // `end` follows an ASCII byte or is the end: a char boundary.
        let (line, tail) = rest.split_at(end);
        rest = tail;
        Some(line)
    })
}

fn parse_rtpmap(value: &str, line: usize) -> Result<RtpMap, SdpError> {
    let err = |reason| SdpError::Rtpmap { line, reason };
    let (pt, rest) = split_at_byte(value.trim(), b' ').ok_or(err("missing encoding"))?;
    let payload_type = pt
        .parse::<u8>()
        .ok()
        .filter(|pt| *pt <= 127)
        .ok_or(err("payload type is not a number in 0..=127"))?;
    // encoding "/" clock rate [ "/" parameters ]: the parameters keep any
    // further slash.
    let (encoding, rest) = split_at_byte(rest.trim(), b'/').ok_or(err("missing clock rate"))?;
    if encoding.is_empty() {
        return Err(err("missing encoding"));
    }
    let (clock_rate, params) = match split_at_byte(rest, b'/') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let clock_rate = clock_rate
        .parse::<u32>()
        .ok()
        .filter(|c| *c > 0)
        .ok_or(err("clock rate is not a positive number"))?;
    Ok(RtpMap {
        payload_type,
        encoding: encoding.into(),
        clock_rate,
        params: params.map(SmolStr::new),
    })
}

/// `s.split_once(b)` for an ASCII byte, found with `memchr` (std's char
/// searcher costs about a hundred instructions a call on these short
/// values). Both halves are on char boundaries: `b` is ASCII.
fn split_at_byte(s: &str, b: u8) -> Option<(&str, &str)> {
    let i = memchr::memchr(b, s.as_bytes())?;
    Some((&s[..i], &s[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn crlf(s: &str) -> String {
        s.lines().map(|l| format!("{l}\r\n")).collect()
    }

    /// Lines are what a body is made of: bare LF or CRLF endings and blank
    /// lines between them parse to the same SDP with the same attributes;
    /// a changed line makes another SDP.
    #[test]
    fn line_endings_and_blank_lines_do_not_change_the_parse() {
        let crlf_body = Sdp::parse(&crlf(OFFER)).unwrap();
        let lf_body = Sdp::parse(OFFER).unwrap();
        let spaced = Sdp::parse(&OFFER.replace("\nt=0 0\n", "\n\r\nt=0 0\n\n")).unwrap();
        assert_eq!(crlf_body, lf_body);
        assert_eq!(crlf_body, spaced);
        let attributes = [
            "rtpmap:0 PCMU/8000",
            "rtpmap:8 PCMA/8000",
            "rtpmap:101 telephone-event/8000",
            "fmtp:101 0-16",
            "ptime:20",
            "sendrecv",
        ];
        assert_eq!(crlf_body.media_attributes(0), attributes);
        assert_eq!(spaced.media_attributes(0), attributes);
        assert_ne!(
            lf_body,
            Sdp::parse(&OFFER.replace("s=call", "s=other")).unwrap()
        );
    }

    const OFFER: &str = "v=0
o=pbx 4242 7 IN IP4 192.168.1.10
s=call
c=IN IP4 192.168.1.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
";

    fn ours() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5))
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_audio_offer() -> Result<(), SdpError> {
        let sdp = Sdp::parse(OFFER)?;
        assert_eq!(sdp.origin().session_id, "4242");
        assert_eq!(sdp.origin().version, 7);
        assert_eq!(sdp.media().len(), 1);
        let m = &sdp.media()[0];
        assert_eq!(m.kind(), "audio");
        assert_eq!(m.port(), 40000);
        assert_eq!(m.proto(), "RTP/AVP");
        assert_eq!(m.formats(), ["0", "8", "101"]);
        assert_eq!(m.clock_rate(0), Some(8000));
        assert_eq!(m.clock_rate(8), Some(8000));
        assert_eq!(m.clock_rate(9), Some(8000));
        assert_eq!(m.clock_rate(101), Some(8000));
        assert_eq!(m.clock_rate(96), None);
        assert_eq!(m.telephone_event(), Some((101, 8000)));
        assert!(!m.has_crypto());
        assert_eq!(sdp.direction(0), Some(Direction::SendRecv));
        assert_eq!(sdp.remote_rtp(0), Some(sa("192.168.1.10:40000")));
        assert_eq!(sdp.remote_rtcp(0).map(|a| a.port()), Some(40001));
        Ok(())
    }

    #[test]
    fn rewrite_audio_with_telephone_event() -> Result<(), SdpError> {
        let sdp = Sdp::parse(OFFER)?;
        let out = sdp.rewrite(ours(), &[Some((30000, 30001))], None)?;
        let expected = crlf(
            "v=0
o=pbx 4242 7 IN IP4 203.0.113.5
s=call
c=IN IP4 203.0.113.5
t=0 0
m=audio 30000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv",
        );
        assert_eq!(out, expected);
        // The output parses and reads back as ours.
        let back = Sdp::parse(&out)?;
        assert_eq!(back.remote_rtp(0).map(|a| a.port()), Some(30000));
        Ok(())
    }

    #[test]
    fn rewrite_rtcp_attribute_and_add_when_not_adjacent() -> Result<(), SdpError> {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\nc=IN IP4 10.0.0.1\r\na=rtcp:40011 IN IP4 10.0.0.2\r\na=rtcp-mux\r\nm=audio 40002 RTP/AVP 8\r\nc=IN IP4 10.0.0.1\r\n";
        let sdp = Sdp::parse(offer)?;
        assert_eq!(
            sdp.remote_rtcp(0),
            Some(SocketAddr::from(([10, 0, 0, 2], 40011)))
        );
        assert!(sdp.media()[0].rtcp_mux());
        assert_eq!(
            sdp.remote_rtcp(1),
            Some(SocketAddr::from(([10, 0, 0, 1], 40003)))
        );
        let out = sdp.rewrite(ours(), &[Some((30000, 30001)), Some((30002, 30009))], None)?;
        let expected = crlf(
            "v=0
o=- 1 1 IN IP4 203.0.113.5
s=-
t=0 0
m=audio 30000 RTP/AVP 0
c=IN IP4 203.0.113.5
a=rtcp:30001 IN IP4 203.0.113.5
a=rtcp-mux
m=audio 30002 RTP/AVP 8
c=IN IP4 203.0.113.5
a=rtcp:30009",
        );
        assert_eq!(out, expected);
        Ok(())
    }

    #[test]
    fn rewrite_ipv6_both_ways() -> Result<(), SdpError> {
        let offer = "v=0\no=- 5 9 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 7078 RTP/AVP 0\n";
        let sdp = Sdp::parse(offer)?;
        assert_eq!(sdp.remote_rtp(0), Some(sa("[2001:db8::1]:7078")));
        // Ours is IPv4: families switch.
        let out = sdp.rewrite(ours(), &[Some((30000, 30001))], None)?;
        assert_eq!(
            out,
            crlf("v=0\no=- 5 9 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/AVP 0")
        );
        // An IPv4 offer rewritten to our IPv6 address.
        let v6: IpAddr = "2001:db8::53".parse().unwrap();
        let out = Sdp::parse(OFFER)?.rewrite(v6, &[Some((30000, 30001))], None)?;
        assert!(out.contains("o=pbx 4242 7 IN IP6 2001:db8::53\r\n"));
        assert!(out.contains("c=IN IP6 2001:db8::53\r\n"));
        Ok(())
    }

    #[test]
    fn secured_rewrite_replaces_keys_and_profile_and_never_forwards_keys() -> Result<(), SdpError> {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/SAVP 0 101\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PEERKEYPEERKEYPEERKEYPEERKEYPEERKEYPEERKE\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:PEERKEYPEERKEYPEERKEYPEERKEYPEERKEYPEERKE\na=sendrecv\nm=video 0 RTP/SAVP 96\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:VIDEOKEYVIDEOKEYVIDEOKEYVIDEOKEYVIDEOKEY\n";
        let sdp = Sdp::parse(offer)?;
        assert_eq!(sdp.media()[0].crypto().len(), 2);
        let plain = MediaSecurity {
            proto: "RTP/AVP".into(),
            crypto: vec![],
        };
        let out = sdp.rewrite_secured(ours(), &[Some((30000, 30001)), None], None, Some(&plain))?;
        assert!(out.contains("m=audio 30000 RTP/AVP 0 101\r\n"), "{out}");
        assert!(
            !out.contains("crypto"),
            "interworking: no key survives: {out}"
        );
        assert!(
            out.contains("m=video 0 RTP/SAVP 96\r\n"),
            "only the anchored stream changes"
        );

        let ours_key = MediaSecurity {
            proto: "RTP/SAVP".into(),
            crypto: vec!["2 AES_CM_128_HMAC_SHA1_32 inline:TRUNKDKEY".into()],
        };
        let out =
            sdp.rewrite_secured(ours(), &[Some((30000, 30001)), None], None, Some(&ours_key))?;
        assert!(
            !out.contains("PEERKEY") && !out.contains("VIDEOKEY"),
            "{out}"
        );
        assert!(
            out.contains("m=audio 30000 RTP/SAVP 0 101\r\na=sendrecv\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:TRUNKDKEY\r\nm=video"),
            "{out}"
        );
        Ok(())
    }

    #[test]
    fn each_section_gets_its_own_security() -> Result<(), SdpError> {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PEERAUDIO\nm=video 4002 RTP/SAVP 96\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PEERVIDEO\nm=video 0 RTP/SAVP 97\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PEERREJECTED\n";
        let sdp = Sdp::parse(offer)?;
        let audio = MediaSecurity {
            proto: "RTP/SAVP".into(),
            crypto: vec!["1 AES_CM_128_HMAC_SHA1_80 inline:OURAUDIO".into()],
        };
        let video = MediaSecurity {
            proto: "RTP/AVP".into(),
            crypto: vec![],
        };
        let out = sdp.rewrite_streams(
            ours(),
            &[Some((30000, 30001)), Some((30002, 30003)), None],
            None,
            &[Some(&audio), Some(&video), None],
        )?;
        assert_eq!(
            out,
            crlf("v=0\no=- 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=audio 30000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:OURAUDIO\nm=video 30002 RTP/AVP 96\nm=video 0 RTP/SAVP 97\n")
        );
        Ok(())
    }

    #[test]
    fn rewrite_two_media_one_rejected() -> Result<(), SdpError> {
        let offer = "v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0
a=rtcp:40001
m=video 0 RTP/AVP 96
a=rtpmap:96 H264/90000
a=rtcp:40003
";
        let sdp = Sdp::parse(offer)?;
        assert!(sdp.media()[1].is_rejected());
        assert_eq!(sdp.remote_rtp(1), None);
        assert_eq!(sdp.media()[1].clock_rate(96), Some(90000));
        let out = sdp.rewrite(ours(), &[Some((30000, 30001)), None], None)?;
        let expected = crlf(
            "v=0
o=- 1 1 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=audio 30000 RTP/AVP 0
a=rtcp:30001
m=video 0 RTP/AVP 96
a=rtpmap:96 H264/90000",
        );
        assert_eq!(out, expected);
        Ok(())
    }

    #[test]
    fn hold_sendonly_kept_and_zero_address_stays_zero() -> Result<(), SdpError> {
        let held = OFFER.replace("a=sendrecv", "a=sendonly");
        let sdp = Sdp::parse(&held)?;
        assert_eq!(sdp.direction(0), Some(Direction::SendOnly));
        let out = sdp.rewrite(ours(), &[Some((30000, 30001))], None)?;
        assert!(out.ends_with("a=ptime:20\r\na=sendonly\r\n"));

        let old_hold = OFFER.replace("c=IN IP4 192.168.1.10", "c=IN IP4 0.0.0.0");
        let sdp = Sdp::parse(&old_hold)?;
        assert_eq!(sdp.remote_rtp(0), None);
        let out = sdp.rewrite(ours(), &[Some((30000, 30001))], None)?;
        assert!(out.contains("\r\nc=IN IP4 0.0.0.0\r\n"));
        assert!(out.contains("o=pbx 4242 7 IN IP4 203.0.113.5\r\n"));
        Ok(())
    }

    #[test]
    fn session_level_direction_and_crypto() -> Result<(), SdpError> {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=recvonly\nm=audio 4000 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\nm=audio 4002 RTP/AVP 0\na=inactive\n";
        let sdp = Sdp::parse(offer)?;
        assert_eq!(sdp.session_direction(), Some(Direction::RecvOnly));
        assert_eq!(sdp.direction(0), Some(Direction::RecvOnly));
        assert_eq!(sdp.direction(1), Some(Direction::Inactive));
        assert!(sdp.media()[0].has_crypto());
        assert!(!sdp.media()[1].has_crypto());
        assert!(sdp.has_crypto());
        let out = sdp.rewrite(ours(), &[Some((30000, 30001)), Some((30002, 30003))], None)?;
        assert!(out.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n"));
        Ok(())
    }

    #[test]
    fn ice_removed_t38_kept() -> Result<(), SdpError> {
        let offer = "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=ice-lite\nm=image 5000 udptl t38\na=T38FaxVersion:0\na=T38FaxUdpEC:t38UDPRedundancy\na=ice-ufrag:abcd\na=candidate:1 1 UDP 2130706431 10.0.0.1 5000 typ host\na=end-of-candidates\n";
        let sdp = Sdp::parse(offer)?;
        assert_eq!(sdp.media()[0].kind(), "image");
        assert_eq!(sdp.media()[0].proto(), "udptl");
        let out = sdp.rewrite(ours(), &[Some((30000, 30001))], None)?;
        assert_eq!(
            out,
            crlf("v=0\no=- 1 1 IN IP4 203.0.113.5\ns=-\nc=IN IP4 203.0.113.5\nt=0 0\nm=image 30000 udptl t38\na=T38FaxVersion:0\na=T38FaxUdpEC:t38UDPRedundancy")
        );
        Ok(())
    }

    #[test]
    fn leg_origin_bumps_version_only_on_change() -> Result<(), SdpError> {
        let mut leg = LegOrigin::new();
        let first = Sdp::parse(OFFER)?;
        let out1 = leg.rewrite(&first, ours(), &[Some((30000, 30001))])?;
        assert!(out1.contains("o=pbx 4242 7 IN IP4 203.0.113.5\r\n"));
        // Same SDP again (e.g. a session refresh): same version.
        let out2 = leg.rewrite(&first, ours(), &[Some((30000, 30001))])?;
        assert_eq!(out1, out2);
        // Another origin (failover to another carrier), body changes: session
        // id and username pinned, version + 1.
        let other = Sdp::parse(
            &OFFER
                .replace("o=pbx 4242 7", "o=carrier 999 1")
                .replace("a=sendrecv", "a=sendonly"),
        )?;
        let out3 = leg.rewrite(&other, ours(), &[Some((30000, 30001))])?;
        assert!(
            out3.contains("o=pbx 4242 8 IN IP4 203.0.113.5\r\n"),
            "{out3}"
        );
        assert_eq!(leg.version(), Some(8));
        // The peer bumping its own version without changing anything else
        // changes nothing on our side.
        let same = Sdp::parse(
            &OFFER
                .replace("o=pbx 4242 7", "o=carrier 999 2")
                .replace("a=sendrecv", "a=sendonly"),
        )?;
        let out4 = leg.rewrite(&same, ours(), &[Some((30000, 30001))])?;
        assert_eq!(out3, out4);
        Ok(())
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(Sdp::parse(""), Err(SdpError::Empty));
        assert_eq!(Sdp::parse("\r\n\r\n"), Err(SdpError::Empty));
        assert_eq!(Sdp::parse("x"), Err(SdpError::Syntax { line: 1 }));
        assert_eq!(Sdp::parse("s=foo\n"), Err(SdpError::Version { line: 1 }));
        assert_eq!(Sdp::parse("v=0\ns=-\n"), Err(SdpError::MissingOrigin));
        assert_eq!(
            Sdp::parse("v=0\no=- 1 x IN IP4 1.2.3.4\n"),
            Err(SdpError::Origin {
                line: 2,
                reason: "session version is not a number"
            })
        );
        assert_eq!(
            Sdp::parse("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 pbx.example.com\n"),
            Err(SdpError::Connection {
                line: 3,
                reason: "address is not an IP literal (host names are not supported)"
            })
        );
        assert_eq!(
            Sdp::parse("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 70000 RTP/AVP 0\n"),
            Err(SdpError::Media {
                line: 4,
                reason: "port is not a number in 0..=65535"
            })
        );
        assert_eq!(
            Sdp::parse("v=0\no=- 1 1 IN IP4 1.2.3.4\nm=audio 7000 RTP/AVP 0\n"),
            Err(SdpError::NoConnection { index: 0, line: 3 })
        );
        assert_eq!(
            Sdp::parse("v=0\no=- 1 1 IN IP4 1.2.3.4\nc=IN IP4 1.2.3.4\nm=audio 7000 RTP/AVP 0\na=rtpmap:0 PCMU\n"),
            Err(SdpError::Rtpmap { line: 5, reason: "missing clock rate" })
        );
        let sdp = Sdp::parse(OFFER);
        assert!(matches!(
            sdp.map(|s| s.rewrite(ours(), &[], None)),
            Ok(Err(SdpError::PortCount { media: 1, ports: 0 }))
        ));
        let msg = SdpError::Rtcp {
            line: 7,
            reason: "no port",
        }
        .to_string();
        assert_eq!(msg, "SDP line 7: bad a=rtcp: no port");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn sdp_line() -> impl Strategy<Value = String> {
            // Weighted towards lines that parse, so most cases reach the
            // rewrite; the junk ones check the error paths.
            prop_oneof![
                1 => Just("v=0".to_owned()),
                1 => Just("o=- 1 1 IN IP4 10.0.0.1".to_owned()),
                2 => Just("c=IN IP4 10.0.0.1".to_owned()),
                1 => Just("c=IN IP6 ::".to_owned()),
                4 => "m=(audio|video|image) [0-9]{1,5}(/[0-9])? [A-Z/a-z]{1,8}( [0-9]{1,3}){0,3}",
                2 => "a=rtcp:[0-9]{1,4}( IN IP4 10\\.0\\.0\\.[0-9])?",
                2 => "a=rtpmap:[0-9]{1,2} [a-zA-Z-]{1,6}/[1-9][0-9]{0,5}(/[0-9])?",
                2 => Just("a=sendonly".to_owned()),
                1 => Just("a=rtcp-mux".to_owned()),
                1 => Just("a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host".to_owned()),
                3 => "[b-z]=[ -~]{0,20}",
                1 => "a=rtcp:[0-9]{0,6}( IN IP[46] [0-9.:a-f]{0,12})?",
                1 => "a=rtpmap:[0-9]{0,4} [a-zA-Z-]{0,6}(/[0-9]{0,7}){0,3}",
                1 => "[ -~]{0,12}",
                1 => "\\PC{0,8}",
            ]
        }

        proptest! {
            #[test]
            fn lines_are_split_as_std_splits_them(text in "(\\PC{0,6}[\r\n]{0,2}){0,8}") {
                let ours: Vec<&str> = lines_inclusive(&text).collect();
                let std: Vec<&str> = text.split_inclusive('\n').collect();
                prop_assert_eq!(ours, std);
            }

            #[test]
            fn never_panics_on_arbitrary_text(text in "\\PC*") {
                let _ = Sdp::parse(&text);
            }

            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = Sdp::parse_bytes(&bytes);
            }

            #[test]
            fn never_panics_on_sdp_like_lines_and_rewrite_roundtrips(
                lines in proptest::collection::vec(sdp_line(), 0..14),
                v6 in any::<bool>(),
                base in 1024u16..60000,
                reject in any::<bool>(),
            ) {
                // Mostly valid heads, so that most cases get to the rewrite.
                let text = format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.1\r\n{}", lines.join("\r\n"));
                if let Ok(sdp) = Sdp::parse(&text) {
                    let ours: IpAddr = if v6 { IpAddr::V6(Ipv6Addr::LOCALHOST) } else { IpAddr::V4(Ipv4Addr::LOCALHOST) };
                    let ports: Vec<_> = (0..sdp.media().len())
                        .map(|i| {
                            // As a caller would: never give ports to a stream the peer rejected.
                            if sdp.media()[i].is_rejected() || (reject && i % 2 == 1) {
                                None
                            } else {
                                Some((base, base + 3))
                            }
                        })
                        .collect();
                    let out = sdp.rewrite(ours, &ports, None);
                    prop_assert!(out.is_ok());
                    let out = out.unwrap_or_default();
                    // What we emit must parse again, with our ports.
                    let back = Sdp::parse(&out);
                    prop_assert!(back.is_ok(), "{:?} from {:?}", back, out);
                    if let Ok(back) = back {
                        prop_assert_eq!(back.media().len(), ports.len());
                        for (m, p) in back.media().iter().zip(&ports) {
                            prop_assert_eq!(m.port(), p.map_or(0, |p| p.0));
                            if p.is_some() {
                                prop_assert_eq!(m.rtcp_port(), Some(base + 3));
                            }
                        }
                    }
                }
            }
        }
    }
}
