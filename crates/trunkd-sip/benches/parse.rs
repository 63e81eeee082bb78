//! Parse cost of a typical trunk INVITE with SDP and of a 200 OK, for
//! trunkd-sip and, for comparison, rsip 0.4.
//!
//! `parse`: split into start line, header rows and body, plus trunkd-sip's
//! mandatory-header validation (rsip does no validation at this step).
//! `parse+read`: additionally read top Via branch, From tag, To, Call-ID and
//! CSeq through the typed views — what a B2BUA does for every message.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rsip::prelude::*;
use trunkd_sip::SipMessage;

const INVITE: &str = "INVITE sip:+4930123456@trunk.example.net:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-1---7fbe1c0a5f6d1e2a;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:+4989111222@198.51.100.17:5060;transport=udp>\r\n\
To: <sip:+4930123456@trunk.example.net;user=phone>\r\n\
From: \"Alice Example\" <sip:+4989111222@pbx.example.com;user=phone>;tag=a73kszlfl\r\n\
Call-ID: 3c26700c-1b8a-4d4a-8d1e-5b5f2a7c9e11@198.51.100.17\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, NOTIFY\r\n\
Supported: replaces, timer, 100rel\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Min-SE: 90\r\n\
User-Agent: ExamplePBX 16.3.1\r\n\
P-Asserted-Identity: <sip:+4989111222@pbx.example.com;user=phone>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 330\r\n\
\r\n\
v=0\r\n\
o=- 3912843671 3912843671 IN IP4 198.51.100.17\r\n\
s=ExamplePBX\r\n\
c=IN IP4 198.51.100.17\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 18 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp:40001\r\n\
a=maxptime:150\r\n\
a=label:main-audio\r\n";

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-1---7fbe1c0a5f6d1e2a;rport=5060;received=198.51.100.17\r\n\
Record-Route: <sip:203.0.113.5;lr;ftag=a73kszlfl>\r\n\
Contact: <sip:+4930123456@203.0.113.80:5060>\r\n\
To: <sip:+4930123456@trunk.example.net;user=phone>;tag=8321234356\r\n\
From: \"Alice Example\" <sip:+4989111222@pbx.example.com;user=phone>;tag=a73kszlfl\r\n\
Call-ID: 3c26700c-1b8a-4d4a-8d1e-5b5f2a7c9e11@198.51.100.17\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK\r\n\
Supported: timer\r\n\
Session-Expires: 1800;refresher=uac\r\n\
Require: timer\r\n\
Server: Carrier SBC\r\n\
Content-Length: 0\r\n\
\r\n";

fn read_trunkd(m: &SipMessage) -> usize {
    let h = m.headers();
    let via = h.top_via().ok();
    let from = h.from().ok();
    let to = h.to().ok();
    let cid = h.call_id().ok();
    let cseq = h.cseq().ok();
    via.and_then(|v| v.branch().map(|b| b.len())).unwrap_or(0)
        + from.and_then(|f| f.tag().map(|t| t.len())).unwrap_or(0)
        + usize::from(to.is_some())
        + cid.map(|c| c.as_bytes().len()).unwrap_or(0)
        + cseq.map(|c| c.seq as usize).unwrap_or(0)
}

fn read_rsip(m: &rsip::SipMessage) -> usize {
    let branch = m
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string().len()));
    let tag = m
        .from_header()
        .ok()
        .and_then(|f| f.tag().ok().flatten())
        .map(|t| t.to_string().len());
    let to = m.to_header().ok().and_then(|t| t.typed().ok()).is_some();
    let cid = m.call_id_header().ok().map(|c| c.value().len());
    let cseq = m
        .cseq_header()
        .ok()
        .and_then(|c| c.typed().ok())
        .map(|c| c.seq as usize);
    branch.unwrap_or(0) + tag.unwrap_or(0) + usize::from(to) + cid.unwrap_or(0) + cseq.unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    for (name, text) in [("invite_sdp", INVITE), ("ok_200", OK)] {
        let input = Bytes::from_static(text.as_bytes());
        assert!(SipMessage::parse(input.clone()).is_ok(), "{name} parses");
        assert!(
            rsip::SipMessage::try_from(text.as_bytes()).is_ok(),
            "{name} parses with rsip"
        );
        assert!(read_trunkd(&SipMessage::parse(input.clone()).unwrap()) > 0);

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("trunkd-sip/parse", |b| {
            b.iter(|| SipMessage::parse(black_box(input.clone())))
        });
        g.bench_function("rsip/parse", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(text.as_bytes())))
        });
        g.bench_function("trunkd-sip/parse+read", |b| {
            b.iter(|| SipMessage::parse(black_box(input.clone())).map(|m| read_trunkd(&m)))
        });
        g.bench_function("rsip/parse+read", |b| {
            b.iter(|| rsip::SipMessage::try_from(black_box(text.as_bytes())).map(|m| read_rsip(&m)))
        });
        let parsed = SipMessage::parse(input.clone()).unwrap();
        g.bench_function("trunkd-sip/serialize", |b| {
            b.iter(|| {
                let mut out = Vec::with_capacity(1024);
                black_box(&parsed).write_to(&mut out);
                out
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
