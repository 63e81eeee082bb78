//! Property tests: the parser never panics, serialisation round-trips, and
//! stream framing recovers messages however the stream is cut.

use bytes::Bytes;
use proptest::prelude::*;
use trunkd_sip::{frame, Frame, Method, Request, SipMessage, Uri};

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Cancel),
        Just(Method::Options),
        Just(Method::Register),
        Just(Method::Prack),
        Just(Method::Update),
        Just(Method::Info),
        Just(Method::Refer),
        Just(Method::Message),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Publish),
        "[a-zA-Z0-9.!%*_+`'~-]{1,12}".prop_map(|m| Method::parse(&Bytes::from(m)).unwrap()),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,7}(\\.[a-z][a-z0-9-]{0,6}[a-z0-9]){0,3}",
        any::<[u8; 4]>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| format!("[{}]", std::net::Ipv6Addr::from(a))),
    ]
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        prop::bool::ANY,
        prop::option::of("[a-zA-Z0-9_.!~*'()&=+$,;?/-]{1,12}"),
        host(),
        prop::option::of(1u16..),
        prop::collection::vec(("[a-z]{1,6}", prop::option::of("[a-zA-Z0-9]{1,6}")), 0..3),
    )
        .prop_map(|(secure, user, host, port, params)| {
            let mut s = String::from(if secure { "sips:" } else { "sip:" });
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            for (n, v) in params {
                s.push(';');
                s.push_str(&n);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(&v);
                }
            }
            s
        })
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.!%*_+`'~-]{1,16}"
}

prop_compose! {
    fn request()(
        method in method(),
        ruri in sip_uri(),
        via_host in host(),
        branch in token(),
        from in sip_uri(),
        from_tag in token(),
        to in sip_uri(),
        call_id in "[a-zA-Z0-9.!%*_+`'~()<>:/?{}-]{1,20}",
        seq in any::<u32>(),
        mf in any::<u8>(),
        extra in prop::collection::vec(("X-[a-zA-Z0-9-]{1,10}", "[!-~]([ -~]{0,20}[!-~])?"), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..200),
    ) -> Request {
        let uri = Uri::parse(&Bytes::from(ruri)).unwrap();
        let mut r = Request::new(method.clone(), uri);
        let h = &mut r.headers;
        h.append("Via", format!("SIP/2.0/UDP {via_host};branch=z9hG4bK{branch}")).unwrap();
        h.append("From", format!("<{from}>;tag={from_tag}")).unwrap();
        h.append("To", format!("<{to}>")).unwrap();
        h.append("Call-ID", call_id).unwrap();
        h.append("CSeq", format!("{seq} {method}")).unwrap();
        h.append("Max-Forwards", mf.to_string()).unwrap();
        for (n, v) in extra {
            h.append(&n, v).unwrap();
        }
        r.body = Bytes::from(body);
        r
    }
}

fn rows(m: &SipMessage) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.headers()
        .iter()
        .filter(|h| h.name().known() != Some(trunkd_sip::KnownHeader::ContentLength))
        .map(|h| (h.name().as_wire().to_vec(), h.value().to_vec()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        let input = Bytes::from(data);
        let _ = SipMessage::parse(input.clone());
        let _ = frame(&input, 1024);
    }

    #[test]
    fn parse_never_panics_on_sip_like_input(
        parts in prop::collection::vec(prop_oneof![
            Just("INVITE sip:a@b SIP/2.0\r\n".to_string()), Just("SIP/2.0 200 OK\r\n".to_string()),
            Just("Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n".to_string()), Just("\r\n".to_string()),
            Just(" ".to_string()), Just(";".to_string()), Just(",".to_string()), Just("\"".to_string()),
            Just("<".to_string()), Just(">".to_string()), Just(":".to_string()), Just("[".to_string()),
            Just("l: 5\r\n".to_string()), Just("%".to_string()), Just("@".to_string()),
            "[ -~]{0,8}".prop_map(|s| s),
            "(t|f|i|m|v|CSeq|To|From|Contact|Route):".prop_map(|s| s),
        ], 0..40)
    ) {
        let input = Bytes::from(parts.concat());
        if let Ok(m) = SipMessage::parse(input.clone()) {
            // Whatever parses must also be readable through the typed views
            // without panicking, and must re-parse after serialisation.
            let h = m.headers();
            let _ = (h.vias(), h.from(), h.to(), h.call_id(), h.cseq(), h.contact(), h.route(), h.content_type());
            prop_assert!(SipMessage::parse(m.to_bytes()).is_ok());
        }
    }

    #[test]
    fn request_roundtrip(r in request()) {
        let wire = r.to_bytes();
        let parsed = SipMessage::parse(wire.clone());
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, String::from_utf8_lossy(&wire));
        let m = parsed.unwrap();
        let SipMessage::Request(p) = &m else { panic!("not a request") };
        prop_assert_eq!(&p.method, &r.method);
        prop_assert_eq!(&p.uri, &r.uri);
        prop_assert_eq!(&p.body, &r.body);
        prop_assert_eq!(rows(&m), rows(&SipMessage::Request(r.clone())));
        prop_assert_eq!(m.to_bytes(), wire);
        // The typed views agree with what was written.
        prop_assert_eq!(p.headers.cseq().unwrap().method, r.method);
        prop_assert!(p.headers.top_via().unwrap().has_magic_cookie());
    }

    #[test]
    fn framing_recovers_messages(
        reqs in prop::collection::vec(request(), 1..5),
        keepalive in prop::collection::vec(prop::bool::ANY, 5),
        cuts in prop::collection::vec(1usize..200, 0..30),
    ) {
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            if keepalive[i] {
                stream.extend_from_slice(b"\r\n\r\n");
            }
            let w = r.to_bytes();
            stream.extend_from_slice(&w);
            expected.push(w);
        }
        // Feed the stream in chunks of the generated sizes.
        let mut buf: Vec<u8> = Vec::new();
        let mut got = Vec::new();
        let mut fed = 0;
        let mut chunk = cuts.iter().cycle();
        while fed < stream.len() || !buf.is_empty() {
            if fed < stream.len() {
                let n = (*chunk.next().unwrap_or(&usize::MAX)).min(stream.len() - fed);
                buf.extend_from_slice(&stream[fed..fed + n]);
                fed += n;
            }
            loop {
                match frame(&buf, 64 * 1024) {
                    Frame::Complete(n) => {
                        got.push(Bytes::copy_from_slice(&buf[..n]));
                        buf.drain(..n);
                    }
                    Frame::KeepAlive(n) => {
                        buf.drain(..n);
                    }
                    Frame::Incomplete => break,
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            if fed == stream.len() && !buf.is_empty() {
                prop_assert!(false, "left over: {:?}", String::from_utf8_lossy(&buf));
            }
        }
        prop_assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            prop_assert_eq!(g, e);
            prop_assert!(SipMessage::parse(g.clone()).is_ok());
        }
    }
}
