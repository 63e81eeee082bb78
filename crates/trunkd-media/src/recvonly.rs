//! The SDP answer of a session trunkd only receives (SIPREC, RFC 7866;
//! SPEC §2.6): every offered stream answered `a=recvonly` on trunkd's own
//! address and ports, one codec each.
//!
//! A bridged call's SDP is the other peer's, rewritten ([`crate::sdp`]); a
//! session trunkd terminates has no other peer, so its answer is built
//! here from the offer alone (RFC 3264 §6), as a pure function the anchor
//! feeds with the ports it bound:
//!
//! * one `m=` line per offered line, in order (RFC 3264 §6);
//! * a stream the offerer rejected (port 0), a stream the anchor has no
//!   ports for, a stream that is not RTP and a stream with no codec are
//!   answered with port 0 and the offered formats;
//! * one codec per stream, from the offer: the first PCMU or PCMA (what a
//!   recorder decodes), else the first other codec; plus the offer's
//!   `telephone-event` at the codec's clock rate (RFC 4733: digits are
//!   part of what is recorded). The offer's `a=rtpmap`/`a=fmtp` of both
//!   are kept;
//! * `a=label` kept (RFC 4574; SIPREC metadata names streams by label);
//! * direction: `recvonly` for a stream the offerer sends on (`sendrecv`,
//!   `sendonly`), `inactive` for one it does not (`recvonly`, `inactive`);
//!   trunkd never sends;
//! * `a=rtcp` when trunkd's RTCP port is not RTP + 1; SDES keys
//!   ([`MediaSecurity`]) on the first stream, which the relay decrypts.
//!
//! [`application_answer`] is the sibling for an application call (trunkd
//! plays and listens): one G.711 audio stream, `sendrecv`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::sdes::MediaSecurity;
use crate::sdp::{Direction, OriginOverride, Sdp};

/// The codec a stream was answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredCodec {
    pub payload_type: u8,
    /// Upper-case encoding name (`PCMU`, `PCMA`, `G722`, …; empty for a
    /// dynamic type without `a=rtpmap`).
    pub encoding: String,
    pub clock_rate: u32,
}

/// One `m=` line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnsweredStream {
    /// `audio`, `video`, …
    pub kind: String,
    /// trunkd's (RTP, RTCP) ports; `None`: answered with port 0.
    pub ports: Option<(u16, u16)>,
    pub direction: Direction,
    pub codec: Option<AnsweredCodec>,
    /// The `telephone-event` payload type kept, if any.
    pub telephone_event: Option<u8>,
    /// The offer's `a=label`, kept in the answer.
    pub label: Option<String>,
}

/// A built answer: the SDP text and what it says per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecvOnlyAnswer {
    pub sdp: String,
    pub streams: Vec<AnsweredStream>,
}

/// Whether an `m=` proto is an RTP profile (`RTP/AVP`, `RTP/SAVP`,
/// `UDP/TLS/RTP/SAVPF`, …).
fn is_rtp(proto: &str) -> bool {
    proto.to_ascii_uppercase().split('/').any(|p| p == "RTP")
}

/// The encoding and clock rate of payload type `pt` in media section `i`:
/// its `a=rtpmap`, else the RFC 3551 static names the recorder knows.
fn encoding_of(offer: &Sdp, i: usize, pt: u8) -> Option<(String, u32)> {
    let m = offer.media().get(i)?;
    if let Some(map) = m.rtpmaps().iter().find(|r| r.payload_type == pt) {
        return Some((map.encoding.to_ascii_uppercase(), map.clock_rate));
    }
    let name = match pt {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        8 => "PCMA",
        9 => "G722",
        13 => "CN",
        18 => "G729",
        _ => return None,
    };
    Some((name.to_owned(), m.clock_rate(pt).unwrap_or(8000)))
}

/// The codec of media section `i`: the first PCMU/PCMA, else (unless
/// `g711_only`) the first format that is neither an event nor comfort noise.
fn choose_codec(offer: &Sdp, i: usize, g711_only: bool) -> Option<AnsweredCodec> {
    let m = offer.media().get(i)?;
    let candidates: Vec<AnsweredCodec> = m
        .formats()
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|pt| *pt < 128)
        .map(|pt| {
            let (encoding, clock_rate) = encoding_of(offer, i, pt).unwrap_or((String::new(), 8000));
            AnsweredCodec {
                payload_type: pt,
                encoding,
                clock_rate,
            }
        })
        .filter(|c| c.encoding != "TELEPHONE-EVENT" && c.encoding != "CN")
        .collect();
    candidates
        .iter()
        .find(|c| c.encoding == "PCMU" || c.encoding == "PCMA")
        .or(candidates.first().filter(|_| !g711_only))
        .cloned()
}

/// The offered `a=<name>:<pt> …` line for `pt`, as offered (without `a=`).
fn attr_for<'s>(attrs: &[&'s str], name: &str, pt: u8) -> Option<&'s str> {
    let prefix = format!("{name}:{pt}");
    attrs.iter().copied().find(|a| {
        a.strip_prefix(&prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    })
}

/// Builds the answer to `offer`. `ports[i]` is trunkd's (RTP, RTCP) pair
/// for offered stream `i`, `None` to refuse it (the anchor passes `None`
/// for the offerer's rejected streams and those it could not anchor);
/// `origin` is trunkd's `o=` for this dialog; `security` (SDES) applies to
/// the first stream.
pub fn recvonly_answer(
    offer: &Sdp,
    addr: IpAddr,
    ports: &[Option<(u16, u16)>],
    origin: OriginOverride<'_>,
    security: Option<&MediaSecurity>,
) -> RecvOnlyAnswer {
    build_answer(offer, addr, ports, origin, security, Mode::Record)
}

/// Builds the answer of an application call (SPEC §6: trunkd answers, plays
/// and listens): like [`recvonly_answer`], except that
///
/// * only the first audio stream with a PCMU or PCMA format is taken (what
///   trunkd plays and records); every other stream is refused (port 0);
/// * its direction mirrors the offer's: `sendrecv` for `sendrecv` (or
///   none), `recvonly` for `sendonly`, `sendonly` for `recvonly`,
///   `inactive` for `inactive` (RFC 3264 §6.1).
///
/// The `telephone-event` format at 8 kHz is kept when offered: digits are
/// what an application listens for.
pub fn application_answer(
    offer: &Sdp,
    addr: IpAddr,
    ports: &[Option<(u16, u16)>],
    origin: OriginOverride<'_>,
    security: Option<&MediaSecurity>,
) -> RecvOnlyAnswer {
    build_answer(offer, addr, ports, origin, security, Mode::Application)
}

/// Who answers: a recorder (every stream, receive only) or an application
/// (one G.711 audio stream, both ways).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Record,
    Application,
}

fn build_answer(
    offer: &Sdp,
    addr: IpAddr,
    ports: &[Option<(u16, u16)>],
    origin: OriginOverride<'_>,
    security: Option<&MediaSecurity>,
    mode: Mode,
) -> RecvOnlyAnswer {
    let app = mode == Mode::Application;
    let mut taken = false;
    let family = match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    };
    let mut sdp = String::with_capacity(256 + 160 * offer.media().len());
    // `write!` to a String cannot fail; the results are ignored on purpose.
    let _ = write!(
        sdp,
        "v=0\r\no={} {} {} IN {family} {addr}\r\ns=trunkd\r\nc=IN {family} {addr}\r\nt=0 0\r\n",
        origin.username, origin.session_id, origin.version
    );
    let mut streams = Vec::with_capacity(offer.media().len());
    for (i, m) in offer.media().iter().enumerate() {
        let attrs = offer.media_attributes(i);
        let label = attrs
            .iter()
            .find_map(|a| a.strip_prefix("label:"))
            .map(|l| l.trim().to_owned());
        let wanted = !app || (!taken && m.kind().eq_ignore_ascii_case("audio"));
        let codec = (is_rtp(m.proto()) && wanted)
            .then(|| choose_codec(offer, i, app))
            .flatten();
        let pair = ports.get(i).copied().flatten().filter(|_| !m.is_rejected());
        let (Some(codec), Some((rtp, rtcp))) = (codec, pair) else {
            // RFC 3264 §6: a refused stream keeps its line, port 0, with
            // the offered formats.
            let _ = write!(sdp, "m={} 0 {}", m.kind(), m.proto());
            for f in m.formats() {
                let _ = write!(sdp, " {f}");
            }
            sdp.push_str("\r\n");
            streams.push(AnsweredStream {
                kind: m.kind().to_owned(),
                ports: None,
                direction: Direction::Inactive,
                codec: None,
                telephone_event: None,
                label,
            });
            continue;
        };
        let te = m
            .rtpmaps()
            .iter()
            .find(|r| {
                r.encoding.eq_ignore_ascii_case("telephone-event")
                    && r.clock_rate == codec.clock_rate
                    && m.formats()
                        .iter()
                        .any(|f| f.parse::<u8>().ok() == Some(r.payload_type))
            })
            .map(|r| r.payload_type);
        taken = true;
        let direction = match (mode, offer.direction(i)) {
            (Mode::Record, Some(Direction::SendRecv | Direction::SendOnly) | None) => {
                Direction::RecvOnly
            }
            (Mode::Record, Some(Direction::RecvOnly | Direction::Inactive)) => Direction::Inactive,
            (Mode::Application, Some(Direction::SendRecv) | None) => Direction::SendRecv,
            (Mode::Application, Some(Direction::SendOnly)) => Direction::RecvOnly,
            (Mode::Application, Some(Direction::RecvOnly)) => Direction::SendOnly,
            (Mode::Application, Some(Direction::Inactive)) => Direction::Inactive,
        };
        let proto = match security.filter(|_| i == 0) {
            Some(sec) if !sec.proto.is_empty() => sec.proto.as_str(),
            _ => m.proto(),
        };
        let _ = write!(sdp, "m={} {rtp} {proto} {}", m.kind(), codec.payload_type);
        if let Some(te) = te {
            let _ = write!(sdp, " {te}");
        }
        sdp.push_str("\r\n");
        for pt in std::iter::once(codec.payload_type).chain(te) {
            match attr_for(&attrs, "rtpmap", pt) {
                Some(line) => {
                    let _ = write!(sdp, "a={line}\r\n");
                }
                // A static type without a=rtpmap: named anyway, for
                // readers that want one (RFC 8866 allows it).
                None if !codec.encoding.is_empty() && pt == codec.payload_type => {
                    let _ = write!(
                        sdp,
                        "a=rtpmap:{pt} {}/{}\r\n",
                        codec.encoding, codec.clock_rate
                    );
                }
                None => {}
            }
            if let Some(line) = attr_for(&attrs, "fmtp", pt) {
                let _ = write!(sdp, "a={line}\r\n");
            }
        }
        if let Some(l) = &label {
            let _ = write!(sdp, "a=label:{l}\r\n");
        }
        if rtp.checked_add(1) != Some(rtcp) {
            let _ = write!(sdp, "a=rtcp:{rtcp}\r\n");
        }
        if let (0, Some(sec)) = (i, security) {
            for c in &sec.crypto {
                let _ = write!(sdp, "a=crypto:{c}\r\n");
            }
        }
        let _ = write!(
            sdp,
            "a={}\r\n",
            match direction {
                Direction::Inactive => "inactive",
                Direction::RecvOnly => "recvonly",
                Direction::SendOnly => "sendonly",
                Direction::SendRecv => "sendrecv",
            }
        );
        streams.push(AnsweredStream {
            kind: m.kind().to_owned(),
            ports: Some((rtp, rtcp)),
            direction,
            codec: Some(codec),
            telephone_event: te,
            label,
        });
    }
    RecvOnlyAnswer { sdp, streams }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUNKD: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn origin(version: u64) -> OriginOverride<'static> {
        OriginOverride {
            username: "trunkd",
            session_id: "7",
            version,
        }
    }

    /// A SIPREC offer (RFC 7866 §8.1.1 shape): two audio streams the SRC
    /// sends, labelled 1 and 2.
    const SIPREC: &str = "v=0\r\n\
o=SRC 2890844526 2890844526 IN IP4 198.51.100.10\r\n\
s=-\r\n\
c=IN IP4 198.51.100.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=label:1\r\n\
a=sendonly\r\n\
m=audio 49180 RTP/AVP 0 8\r\n\
a=label:2\r\n\
a=sendonly\r\n";

    #[test]
    fn siprec_two_streams_are_answered_recvonly_with_labels_exactly() {
        let offer = Sdp::parse(SIPREC).unwrap();
        let a = recvonly_answer(
            &offer,
            TRUNKD,
            &[Some((40000, 40001)), Some((40010, 40011))],
            origin(1),
            None,
        );
        assert_eq!(
            a.sdp,
            "v=0\r\n\
o=trunkd 7 1 IN IP4 127.0.0.1\r\n\
s=trunkd\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=label:1\r\n\
a=recvonly\r\n\
m=audio 40010 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=label:2\r\n\
a=recvonly\r\n"
        );
        assert_eq!(a.streams.len(), 2);
        assert_eq!(
            a.streams[0].codec,
            Some(AnsweredCodec {
                payload_type: 8,
                encoding: "PCMA".into(),
                clock_rate: 8000
            })
        );
        assert_eq!(a.streams[0].telephone_event, Some(101));
        assert_eq!(a.streams[1].label.as_deref(), Some("2"));
        // What trunkd answers parses, and says what the streams say.
        let back = Sdp::parse(&a.sdp).unwrap();
        assert_eq!(back.direction(0), Some(Direction::RecvOnly));
        assert_eq!(back.media()[1].port(), 40010);
    }

    #[test]
    fn inactive_stays_inactive_rejected_stays_rejected_and_rtcp_is_named() {
        let offer = Sdp::parse(
            "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\na=inactive\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 4004 RTP/AVP 0\r\na=recvonly\r\n\
m=image 4006 udptl t38\r\n\
m=audio 4008 RTP/AVP 0\r\n",
        )
        .unwrap();
        let a = recvonly_answer(
            &offer,
            TRUNKD,
            &[
                Some((41000, 41003)),
                None,
                Some((41010, 41011)),
                Some((41020, 41021)),
                // The anchor had no ports for the fifth.
                None,
            ],
            origin(3),
            None,
        );
        assert_eq!(
            a.sdp,
            "v=0\r\n\
o=trunkd 7 3 IN IP4 127.0.0.1\r\n\
s=trunkd\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 41000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtcp:41003\r\n\
a=inactive\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=audio 41010 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=inactive\r\n\
m=image 0 udptl t38\r\n\
m=audio 0 RTP/AVP 0\r\n"
        );
        let dirs: Vec<_> = a.streams.iter().map(|s| (s.ports, s.direction)).collect();
        assert_eq!(
            dirs,
            [
                (Some((41000, 41003)), Direction::Inactive),
                (None, Direction::Inactive),
                (Some((41010, 41011)), Direction::Inactive),
                (None, Direction::Inactive),
                (None, Direction::Inactive),
            ]
        );
    }

    #[test]
    fn codec_choice_prefers_g711_then_the_first_codec() {
        let offer = Sdp::parse(
            "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 101 9 18 0\r\na=rtpmap:101 telephone-event/8000\r\n\
m=audio 4002 RTP/AVP 101 96 18\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n\
m=audio 4004 RTP/AVP 101 13\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        let a = recvonly_answer(
            &offer,
            TRUNKD,
            &[Some((5000, 5001)), Some((5002, 5003)), Some((5004, 5005))],
            origin(1),
            None,
        );
        let chosen: Vec<_> = a
            .streams
            .iter()
            .map(|s| (s.codec.as_ref().map(|c| c.payload_type), s.telephone_event))
            .collect();
        // PCMU over G.722 and G.729; opus (telephone-event at 8 kHz does
        // not go with a 48 kHz codec); no codec at all (events and comfort
        // noise only): refused.
        assert_eq!(
            chosen,
            [(Some(0), Some(101)), (Some(96), None), (None, None)]
        );
        assert!(a.sdp.contains(
            "m=audio 5002 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\n"
        ));
        assert!(a.sdp.ends_with("m=audio 0 RTP/AVP 101 13\r\n"));
    }

    #[test]
    fn sdes_keys_go_on_the_first_stream() {
        let offer = Sdp::parse(
            "v=0\r\no=x 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n\
m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AAAA\r\n",
        )
        .unwrap();
        let sec = MediaSecurity {
            proto: "RTP/SAVP".into(),
            crypto: vec!["1 AES_CM_128_HMAC_SHA1_80 inline:BBBB".into()],
        };
        let a = recvonly_answer(
            &offer,
            "::1".parse().unwrap(),
            &[Some((6000, 6001))],
            origin(1),
            Some(&sec),
        );
        assert_eq!(
            a.sdp,
            "v=0\r\no=trunkd 7 1 IN IP6 ::1\r\ns=trunkd\r\nc=IN IP6 ::1\r\nt=0 0\r\n\
m=audio 6000 RTP/SAVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:BBBB\r\na=recvonly\r\n"
        );
    }

    #[test]
    fn an_application_answers_the_first_g711_audio_stream_sendrecv_and_refuses_the_rest() {
        // Video first, then an audio stream without G.711, then the one
        // taken (PCMA preferred over G.722 by being G.711; telephone-event
        // kept), then a second G.711 audio stream.
        let offer = Sdp::parse(
            "v=0\r\no=phone 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
m=audio 5002 RTP/AVP 18\r\n\
m=audio 5004 RTP/AVP 9 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
m=audio 5006 RTP/AVP 0\r\na=sendonly\r\n",
        )
        .unwrap();
        let ports: Vec<_> = (0..4u16)
            .map(|i| Some((42000 + 2 * i, 42001 + 2 * i)))
            .collect();
        let a = application_answer(&offer, TRUNKD, &ports, origin(1), None);
        assert_eq!(
            a.sdp,
            "v=0\r\n\
o=trunkd 7 1 IN IP4 127.0.0.1\r\n\
s=trunkd\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=video 0 RTP/AVP 96\r\n\
m=audio 0 RTP/AVP 18\r\n\
m=audio 42004 RTP/AVP 8 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=sendrecv\r\n\
m=audio 0 RTP/AVP 0\r\n"
        );
        let taken: Vec<_> = a.streams.iter().map(|s| s.ports.is_some()).collect();
        assert_eq!(taken, [false, false, true, false]);
        assert_eq!(a.streams[2].direction, Direction::SendRecv);
        assert_eq!(a.streams[2].telephone_event, Some(101));
        assert_eq!(
            a.streams[2].codec.as_ref().map(|c| c.encoding.as_str()),
            Some("PCMA")
        );
    }

    #[test]
    fn an_application_answer_mirrors_a_one_way_offer() {
        let one = |dir: &str| {
            let offer = Sdp::parse(&format!(
                "v=0\r\no=x 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n{dir}"
            ))
            .unwrap();
            let a = application_answer(&offer, TRUNKD, &[Some((6000, 6001))], origin(1), None);
            a.sdp.rsplit("\r\n").nth(1).unwrap_or_default().to_owned()
        };
        assert_eq!(one(""), "a=sendrecv");
        assert_eq!(one("a=sendonly\r\n"), "a=recvonly");
        assert_eq!(one("a=recvonly\r\n"), "a=sendonly");
        assert_eq!(one("a=inactive\r\n"), "a=inactive");
    }
}
