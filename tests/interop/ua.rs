//! A small SIP user agent for media tests: enough SIP over UDP to set up a
//! call through trunkd (INVITE/200/ACK, BYE), with SDP naming real RTP
//! sockets the test then drives. SIPp cannot play per-packet loss, RTCP
//! reports or NAT-shifted sources; this peer can.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

pub struct Ua {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
    pub ip: String,
    pub tag: String,
}

/// One SIP message read off the wire.
#[derive(Debug, Clone)]
pub struct Msg {
    pub text: String,
    pub from: SocketAddr,
}

impl Msg {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.text.split("\r\n\r\n").next()?;
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }

    /// The RTP address an SDP body names (c= and the first m=).
    pub fn sdp_rtp(&self) -> SocketAddr {
        let b = self.body();
        let ip = b
            .lines()
            .filter_map(|l| l.strip_prefix("c=IN IP4 "))
            .next_back()
            .expect("c= line");
        let port = b
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|r| r.split(' ').next())
            .expect("m= line");
        format!("{}:{}", ip.trim(), port).parse().unwrap()
    }

    pub fn status(&self) -> Option<u16> {
        self.first_line()
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
    }
}

impl Ua {
    pub fn new(ip: &str) -> Ua {
        let sip = UdpSocket::bind((ip, 0)).unwrap();
        sip.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        // An even RTP port with RTCP on the next one.
        let (rtp, rtcp) = loop {
            let r = UdpSocket::bind((ip, 0)).unwrap();
            let p = r.local_addr().unwrap().port();
            if p.is_multiple_of(2) {
                if let Ok(c) = UdpSocket::bind((ip, p + 1)) {
                    break (r, c);
                }
            }
        };
        for s in [&rtp, &rtcp] {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        Ua {
            sip,
            rtp,
            rtcp,
            ip: ip.to_owned(),
            tag: format!("ua{}", std::process::id()),
        }
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.sip.local_addr().unwrap()
    }

    pub fn rtp_addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }

    pub fn sdp(&self, direction: &str) -> String {
        self.sdp_with("RTP/AVP", direction, &[])
    }

    /// An SDP with this profile and these `a=crypto` values.
    pub fn sdp_with(&self, proto: &str, direction: &str, crypto: &[String]) -> String {
        let port = self.rtp_addr().port();
        let mut s = format!(
            "v=0\r\no=ua 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na={direction}\r\n",
            ip = self.ip
        );
        for c in crypto {
            s.push_str(&format!("a=crypto:{c}\r\n"));
        }
        s
    }

    pub fn send(&self, to: SocketAddr, text: &str) {
        self.sip.send_to(text.as_bytes(), to).unwrap();
    }

    /// Waits (bounded) for a message that `want` accepts; answers nothing.
    pub fn recv_until(&self, limit: Duration, want: impl Fn(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, from)) = self.sip.recv_from(&mut buf) {
                let m = Msg {
                    text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    from,
                };
                if want(&m) {
                    return m;
                }
            }
        }
        panic!("no expected SIP message within {limit:?}");
    }

    /// A 200 (or other final) for a request, built from it.
    pub fn respond(&self, req: &Msg, status: &str, body: Option<&str>) {
        let contact = format!("<sip:ua@{}>", self.sip_addr());
        self.send(
            req.from,
            &response_to(req, status, &self.tag, &contact, body),
        );
    }
}

/// A response to `req` with `status`, the To tag `tag`, this Contact and body.
pub fn response_to(
    req: &Msg,
    status: &str,
    tag: &str,
    contact: &str,
    body: Option<&str>,
) -> String {
    {
        let mut out = format!("SIP/2.0 {status}\r\n");
        let head = req.text.split("\r\n\r\n").next().unwrap_or("");
        for l in head.lines().skip(1) {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match name.as_str() {
                "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{l}\r\n")),
                "to" if !l.contains("tag=") => out.push_str(&format!("{l};tag={tag}\r\n")),
                "to" => out.push_str(&format!("{l}\r\n")),
                _ => {}
            }
        }
        out.push_str(&format!("Contact: {contact}\r\n"));
        match body {
            Some(b) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out
    }
}

/// The caller's side of a call set up by [`call`].
pub struct Dialog {
    pub call_id: String,
    pub to: String,
    pub cseq: u32,
    pub target: SocketAddr,
    /// Where trunkd wants this side's RTP (from the SDP it sent).
    pub trunkd_rtp: SocketAddr,
}

/// Places a call from `caller` to `callee` through trunkd at `trunkd`;
/// returns both sides' views: (caller dialog, the INVITE the callee got).
pub fn call(
    caller: &Ua,
    callee: &Ua,
    trunkd: SocketAddr,
    dialled: &str,
    from_user: &str,
) -> (Dialog, Msg) {
    let (d, offer, _) = call_with(
        caller,
        callee,
        trunkd,
        dialled,
        from_user,
        &caller.sdp("sendrecv"),
        &callee.sdp("sendrecv"),
    );
    (d, offer)
}

/// Sends an INVITE with `sdp` from `caller` to trunkd; returns its Call-ID.
pub fn send_invite(
    caller: &Ua,
    trunkd: SocketAddr,
    dialled: &str,
    from_user: &str,
    sdp: &str,
) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let call_id = format!(
        "media-{}-{}-{n}",
        std::process::id(),
        caller.rtp_addr().port()
    );
    let invite = format!(
        "INVITE sip:{dialled}@{trunkd} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-1;rport\r\nMax-Forwards: 70\r\n\
         From: <sip:{from_user}@{ip}>;tag={tag}\r\nTo: <sip:{dialled}@{trunkd}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:ua@{me}>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        me = caller.sip_addr(),
        ip = caller.ip,
        tag = caller.tag,
        len = sdp.len()
    );
    caller.send(trunkd, &invite);
    call_id
}

/// [`call`] with the caller's offer and the callee's answer given; also
/// returns the 200 the caller got (trunkd's answer).
pub fn call_with(
    caller: &Ua,
    callee: &Ua,
    trunkd: SocketAddr,
    dialled: &str,
    from_user: &str,
    sdp: &str,
    answer: &str,
) -> (Dialog, Msg, Msg) {
    let call_id = send_invite(caller, trunkd, dialled, from_user, sdp);
    let offer = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("INVITE ")
    });
    callee.respond(&offer, "200 OK", Some(answer));
    let ok = caller.recv_until(Duration::from_secs(5), |m| m.status() == Some(200));
    let to = ok.header("To").unwrap();
    let ack = format!(
        "ACK sip:trunkd@{trunkd} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{call_id}-ack\r\nMax-Forwards: 70\r\n\
         From: <sip:{from_user}@{ip}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        me = caller.sip_addr(),
        ip = caller.ip,
        tag = caller.tag,
    );
    caller.send(trunkd, &ack);
    callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("ACK ")
    });
    let d = Dialog {
        call_id,
        to,
        cseq: 1,
        target: trunkd,
        trunkd_rtp: ok.sdp_rtp(),
    };
    (d, offer, ok)
}

/// The caller hangs up; the callee answers trunkd's BYE.
pub fn hang_up(caller: &Ua, callee: &Ua, d: &mut Dialog, from_user: &str) {
    d.cseq += 1;
    let bye = format!(
        "BYE sip:trunkd@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{cid}-bye{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:{from_user}@{ip}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {n} BYE\r\nContent-Length: 0\r\n\r\n",
        t = d.target,
        me = caller.sip_addr(),
        ip = caller.ip,
        tag = caller.tag,
        to = d.to,
        cid = d.call_id,
        n = d.cseq
    );
    caller.send(d.target, &bye);
    let b = callee.recv_until(Duration::from_secs(5), |m| {
        m.first_line().starts_with("BYE ")
    });
    callee.respond(&b, "200 OK", None);
    caller.recv_until(Duration::from_secs(5), |m| {
        m.status() == Some(200) && m.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
    });
}

/// A 172-byte G.711 RTP packet (12-byte header + 160 bytes payload).
pub fn rtp_packet(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[1] = 0; // PCMU
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in p[12..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    p
}

/// Receives RTP on `sock` until `n` arrived or `limit` passed; returns the
/// packets and the source they came from.
pub fn receive_rtp(
    sock: &UdpSocket,
    n: usize,
    limit: Duration,
) -> (Vec<Vec<u8>>, Option<SocketAddr>) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut src = None;
    let mut buf = [0u8; 2048];
    while got.len() < n && Instant::now() < deadline {
        if let Ok((len, from)) = sock.recv_from(&mut buf) {
            got.push(buf[..len].to_vec());
            src = Some(from);
        }
    }
    (got, src)
}
