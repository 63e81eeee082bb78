//! Multipart bodies as real UAs send them: an NG911 INVITE (SDP plus
//! PIDF-LO, RFC 6442), a SIPREC INVITE (SDP plus recording metadata,
//! RFC 7866), and the RFC 2046 corners (quoting, padding, LF-only lines,
//! preamble and epilogue, nesting).

use proptest::prelude::*;

use super::*;

const NG911_SDP: &str = "v=0\r\n\
o=caller 2890844526 2890844526 IN IP4 10.0.0.7\r\n\
s=-\r\n\
c=IN IP4 10.0.0.7\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const PIDF: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\"\r\n\
    xmlns:gp=\"urn:ietf:params:xml:ns:pidf:geopriv10\"\r\n\
    xmlns:gml=\"http://www.opengis.net/gml\"\r\n\
    entity=\"pres:alice@atlanta.example.com\">\r\n\
  <tuple id=\"target123-1\">\r\n\
    <status><gp:geopriv><gp:location-info>\r\n\
      <gml:Point srsName=\"urn:ogc:def:crs:EPSG::4326\">\r\n\
        <gml:pos>32.86726 -97.16054</gml:pos>\r\n\
      </gml:Point>\r\n\
    </gp:location-info></gp:geopriv></status>\r\n\
  </tuple>\r\n\
</presence>\r\n";

fn ng911_body() -> String {
    format!(
        "--boundary1\r\n\
Content-Type: application/sdp\r\n\
\r\n\
{NG911_SDP}\
\r\n--boundary1\r\n\
Content-Type: application/pidf+xml\r\n\
Content-ID: <target123@atlanta.example.com>\r\n\
Content-Disposition: render;handling=optional\r\n\
\r\n\
{PIDF}\
\r\n--boundary1--\r\n"
    )
}

const ANCHORED_SDP: &str = "v=0\r\n\
o=trunkd 1 1 IN IP4 192.0.2.1\r\n\
s=-\r\n\
c=IN IP4 192.0.2.1\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

fn ct(v: &str) -> ContentType {
    ContentType::parse(&b(v)).unwrap()
}

#[test]
fn an_ng911_body_has_the_sdp_first_and_the_pidf_lo_by_content_id() {
    let body = b(&ng911_body());
    let m = Multipart::parse(&ct("multipart/mixed;boundary=boundary1"), &body).unwrap();
    assert_eq!(&m.subtype()[..], b"mixed");
    assert_eq!(m.boundary(), b"boundary1");
    assert_eq!(m.parts().len(), 2);
    assert_eq!(m.preamble(), Bytes::new());
    assert_eq!(m.epilogue(), Bytes::new());

    let sdp = &m.parts()[0];
    assert!(sdp.is_type("application", "sdp"));
    assert_eq!(&sdp.body()[..], NG911_SDP.as_bytes());

    let pidf = &m.parts()[1];
    assert_eq!(&pidf.body()[..], PIDF.as_bytes());
    assert_eq!(
        pidf.content_id().map(|v| &v[..]),
        Some(&b"<target123@atlanta.example.com>"[..])
    );
    assert!(pidf
        .content_type()
        .unwrap()
        .unwrap()
        .is("application", "pidf+xml"));
    let d = pidf.disposition().unwrap().unwrap();
    assert!(d.is("RENDER"));
    assert_eq!(d.handling(), Handling::Optional);
    assert_eq!(
        &body[pidf.body_range()],
        PIDF.as_bytes(),
        "the range points into the original"
    );

    assert_eq!(
        m.find_session().unwrap(),
        Some(SessionPart {
            part: 0,
            nested: None,
            sdp: b(NG911_SDP)
        })
    );
}

#[test]
fn replacing_the_ng911_sdp_keeps_every_other_byte() {
    let body = b(&ng911_body());
    let ct = &b"multipart/mixed;boundary=boundary1"[..];
    let out = replace_session_sdp(Some(ct), &body, &b(ANCHORED_SDP)).unwrap();
    let expected = ng911_body().replace(NG911_SDP, ANCHORED_SDP);
    assert_eq!(String::from_utf8_lossy(&out), expected);

    let again = Multipart::parse_with(ct, &out).unwrap();
    assert_eq!(
        &again.parts()[1].body()[..],
        PIDF.as_bytes(),
        "PIDF byte for byte"
    );
    assert_eq!(again.parts()[1].headers(), {
        let m = Multipart::parse_with(ct, &body).unwrap();
        m.parts()[1].headers().to_vec()
    });
    assert_eq!(session_sdp(Some(ct), &out), Some(b(ANCHORED_SDP)));
}

#[test]
fn a_siprec_body_with_a_quoted_boundary_and_metadata_disposition() {
    let metadata = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
<recording xmlns='urn:ietf:params:xml:ns:recording:1'>\r\n\
  <datamode>complete</datamode>\r\n\
  <session session_id=\"hVpd7YQgRW2nD22h7q60JQ==\">\r\n\
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2</sipSessionID>\r\n\
  </session>\r\n\
</recording>\r\n";
    let sdp = "v=0\r\no=SRC 2890844526 2890844526 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 12240 RTP/AVP 0\r\na=label:1\r\nm=audio 12242 RTP/AVP 0\r\na=label:2\r\n";
    let text = format!(
        "--uniqueBoundary\r\n\
Content-Type: application/sdp\r\n\
Content-Disposition: session;handling=required\r\n\
\r\n\
{sdp}\r\n\
--uniqueBoundary\r\n\
Content-Type: application/rs-metadata+xml\r\n\
Content-Disposition: recording-session\r\n\
\r\n\
{metadata}\r\n\
--uniqueBoundary--\r\n"
    );
    let body = b(&text);
    let ct = &b"multipart/mixed;Boundary=\"uniqueBoundary\""[..];
    let m = Multipart::parse_with(ct, &body).unwrap();
    assert_eq!(m.boundary(), b"uniqueBoundary");
    let d = m.parts()[0].disposition().unwrap().unwrap();
    assert!(d.is("session"));
    assert_eq!(d.handling(), Handling::Required);
    assert_eq!(session_sdp(Some(ct), &body), Some(b(sdp)));

    let out = replace_session_sdp(Some(ct), &body, &b("v=0\r\n")).unwrap();
    assert_eq!(String::from_utf8_lossy(&out), text.replace(sdp, "v=0\r\n"));
    let again = Multipart::parse_with(ct, &out).unwrap();
    assert_eq!(&again.parts()[1].body()[..], metadata.as_bytes());
}

#[test]
fn quoted_and_unquoted_boundaries_read_the_same() {
    let body = b("--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n\r\n--b1--\r\n");
    for ct in [
        "multipart/mixed;boundary=b1",
        "multipart/mixed; boundary=\"b1\"",
        "Multipart/Mixed ; BOUNDARY = b1",
        "multipart/mixed;charset=utf-8;boundary=\"b1\";x=y",
    ] {
        assert_eq!(
            session_sdp(Some(ct.as_bytes()), &body),
            Some(b("v=0\r\n")),
            "{ct}"
        );
    }
}

#[test]
fn a_quoted_boundary_may_hold_characters_a_token_cannot() {
    let body = b("--a b:c\r\nContent-Type: application/sdp\r\n\r\nv=0\n\r\n--a b:c--");
    let ct = &b"multipart/mixed;boundary=\"a b:c\""[..];
    assert_eq!(session_sdp(Some(ct), &body), Some(b("v=0\n")));
}

#[test]
fn bare_lf_lines_as_some_uas_send_them() {
    let text = "--XyZ\nContent-Type: application/sdp\n\nv=0\nc=IN IP4 10.0.0.1\n\n--XyZ\nContent-Type: application/pidf+xml\n\n<presence/>\n\n--XyZ--\n";
    let body = b(text);
    let ct = &b"multipart/mixed;boundary=XyZ"[..];
    let m = Multipart::parse_with(ct, &body).unwrap();
    assert_eq!(&m.parts()[0].body()[..], b"v=0\nc=IN IP4 10.0.0.1\n");
    assert_eq!(&m.parts()[1].body()[..], b"<presence/>\n");
    let out = replace_session_sdp(Some(ct), &body, &b("v=0\nc=IN IP4 192.0.2.1\n")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        text.replace("10.0.0.1", "192.0.2.1"),
        "LF lines stay LF"
    );
}

#[test]
fn preamble_epilogue_and_transport_padding_are_kept() {
    let text = "This is a multi-part message in MIME format.\r\n\
\r\n\
--bb \t\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\n\
\r\n\
--bb  \r\n\
Content-Type: text/plain\r\n\
\r\n\
hello\r\n\
--bb--  \r\n\
trailing epilogue\r\n";
    let body = b(text);
    let ct = &b"multipart/mixed;boundary=bb"[..];
    let m = Multipart::parse_with(ct, &body).unwrap();
    assert_eq!(
        &m.preamble()[..],
        b"This is a multi-part message in MIME format.\r\n"
    );
    assert_eq!(&m.epilogue()[..], b"trailing epilogue\r\n");
    assert_eq!(m.parts().len(), 2);
    assert_eq!(&m.parts()[0].body()[..], b"v=0\r\n");
    assert_eq!(&m.parts()[1].body()[..], b"hello");
    let out = replace_session_sdp(Some(ct), &body, &b("v=1\r\n")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        text.replacen("v=0", "v=1", 1)
    );
}

#[test]
fn a_boundary_prefix_inside_a_line_or_followed_by_text_is_content() {
    // `--bbX` is not a delimiter of `bb`, nor is `--bb` inside a line.
    let text =
        "--bb\r\nContent-Type: application/sdp\r\n\r\nv=0\r\na=x --bb\r\n--bbX\r\n\r\n--bb--";
    let ct = &b"multipart/mixed;boundary=bb"[..];
    let body = b(text);
    assert_eq!(
        session_sdp(Some(ct), &body),
        Some(b("v=0\r\na=x --bb\r\n--bbX\r\n"))
    );
}

#[test]
fn an_sdp_inside_multipart_alternative_inside_mixed() {
    let inner = "--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
no media\r\n\
--inner\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\nc=IN IP4 10.9.9.9\r\n\
\r\n--inner--\r\n";
    let text = format!(
        "--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
{inner}\
\r\n--outer\r\n\
Content-Type: application/pidf+xml\r\n\
Content-ID: <loc@example.com>\r\n\
\r\n\
{PIDF}\
\r\n--outer--\r\n"
    );
    let body = b(&text);
    let ct = &b"multipart/mixed;boundary=outer"[..];
    let m = Multipart::parse_with(ct, &body).unwrap();
    let at = m.find_session().unwrap().unwrap();
    assert_eq!((at.part, at.nested), (0, Some(1)));
    assert_eq!(&at.sdp[..], b"v=0\r\nc=IN IP4 10.9.9.9\r\n");
    let out = m
        .replace_session(&at, b"v=0\r\nc=IN IP4 192.0.2.1\r\n")
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        text.replace("10.9.9.9", "192.0.2.1")
    );
}

#[test]
fn only_session_or_absent_dispositions_count_and_a_missing_type_is_text() {
    let text = "--b\r\n\
Content-Type: application/sdp\r\n\
Content-Disposition: early-session\r\n\
\r\n\
v=0 early\r\n\
--b\r\n\
\r\n\
v=0 untyped\r\n\
--b\r\n\
c: Application/SDP\r\n\
Content-Disposition: Session\r\n\
\r\n\
v=0 session\r\n\
--b--";
    let ct = &b"multipart/mixed;boundary=b"[..];
    let body = b(text);
    let m = Multipart::parse_with(ct, &body).unwrap();
    assert_eq!(m.parts()[1].headers(), &[]);
    assert_eq!(m.parts()[1].content_type(), Ok(None));
    assert_eq!(
        m.find_session().unwrap().map(|s| (s.part, s.sdp)),
        Some((2, b("v=0 session")))
    );
}

#[test]
fn folded_part_headers_are_unfolded() {
    let text = "--b\r\nContent-Type: application/sdp;\r\n  charset=utf-8\r\n\r\nv=0\r\n--b--\r\n";
    let ct = &b"multipart/mixed;boundary=b"[..];
    let m = Multipart::parse_with(ct, &b(text)).unwrap();
    assert_eq!(
        m.parts()[0].header("content-type").map(|v| &v[..]),
        Some(&b"application/sdp; charset=utf-8"[..])
    );
    assert_eq!(&m.find_session().unwrap().unwrap().sdp[..], b"v=0");
}

#[test]
fn a_part_with_headers_only_has_an_empty_body() {
    let text = "--b\r\nContent-Type: text/plain\r\n--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--b--";
    let m = Multipart::parse_with(b"multipart/mixed;boundary=b", &b(text)).unwrap();
    assert_eq!(m.parts().len(), 2);
    assert_eq!(m.parts()[0].body(), &Bytes::new());
    assert_eq!(m.parts()[0].headers().len(), 1);
}

#[test]
fn other_multipart_subtypes_parse_too() {
    for sub in ["related", "alternative", "signed"] {
        let ct = format!("multipart/{sub};boundary=z");
        let body = b("--z\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--z--\r\n");
        let m = Multipart::parse_with(ct.as_bytes(), &body).unwrap();
        assert_eq!(&m.subtype()[..], sub.as_bytes());
        assert_eq!(session_sdp(Some(ct.as_bytes()), &body), Some(b("v=0")));
    }
}

#[test]
fn the_convenience_functions_on_plain_sdp_and_other_bodies() {
    let sdp = b("v=0\r\n");
    let app_sdp = Some(&b"application/sdp"[..]);
    assert_eq!(session_sdp(app_sdp, &sdp), Some(sdp.clone()));
    assert_eq!(
        session_sdp(Some(b"Application/SDP; x=y"), &sdp),
        Some(sdp.clone())
    );
    assert_eq!(session_sdp(app_sdp, &Bytes::new()), None, "empty body");
    assert_eq!(session_sdp(None, &sdp), None);
    assert_eq!(session_sdp(Some(b"text/plain"), &sdp), None);
    assert_eq!(session_sdp(Some(b"application/sdpx"), &sdp), None);
    assert_eq!(
        replace_session_sdp(app_sdp, &sdp, &b("v=1\r\n")),
        Ok(b("v=1\r\n"))
    );
    assert_eq!(
        replace_session_sdp(Some(b"text/plain"), &sdp, &b("v=1\r\n")),
        Err(MultipartError::NoSession)
    );
    // A multipart body without an SDP part: nothing to find or replace.
    let pidf_only = b("--b\r\nContent-Type: application/pidf+xml\r\n\r\n<presence/>\r\n--b--\r\n");
    let ct = Some(&b"multipart/mixed;boundary=b"[..]);
    assert_eq!(find_session_sdp(ct, &pidf_only), Ok(None));
    assert_eq!(
        replace_session_sdp(ct, &pidf_only, &sdp),
        Err(MultipartError::NoSession)
    );
}

#[test]
fn malformed_bodies_are_typed_errors() {
    let sdp_part = "--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n";
    let cases: &[(&str, &str, MultipartError)] = &[
        ("multipart/mixed", "--b--", MultipartError::NoBoundary),
        ("multipart/mixed;boundary=\"\"", "--b--", MultipartError::InvalidBoundary),
        ("multipart/mixed;boundary=b", "no delimiters here\r\n", MultipartError::NoDelimiter),
        ("multipart/mixed;boundary=b", sdp_part, MultipartError::NoCloseDelimiter),
        ("multipart/mixed;boundary=b", "--b\r\n--b--", MultipartError::NoCloseDelimiter),
        (
            "multipart/mixed;boundary=b",
            "--b\r\nthis is not a header\r\n\r\nbody\r\n--b--",
            MultipartError::MalformedPartHeader { part: 0 },
        ),
        (
            "multipart/mixed;boundary=b",
            "--b\r\n\r\nok\r\n--b\r\n folded first\r\n\r\nx\r\n--b--",
            MultipartError::MalformedPartHeader { part: 1 },
        ),
        (
            "multipart/mixed;boundary=b",
            "--b\r\nBad Name: x\r\n\r\nx\r\n--b--",
            MultipartError::MalformedPartHeader { part: 0 },
        ),
        (
            "multipart/mixed;boundary=b",
            "--b\r\nContent-Type: application/sdp\r\nContent-Transfer-Encoding: base64\r\n\r\ndj0w\r\n--b--",
            MultipartError::UnsupportedTransferEncoding { part: 0 },
        ),
        (
            "multipart/mixed;boundary=b",
            "--b\r\nContent-Type: multipart/alternative\r\n\r\nx\r\n--b--",
            MultipartError::Nested {
                part: 0,
                source: Box::new(MultipartError::NoBoundary),
            },
        ),
    ];
    for (ct, body, want) in cases {
        assert_eq!(
            find_session_sdp(Some(ct.as_bytes()), &b(body)),
            Err(want.clone()),
            "{ct} {body:?}"
        );
        assert_eq!(session_sdp(Some(ct.as_bytes()), &b(body)), None);
    }
    assert_eq!(
        Multipart::parse_with(b"application/sdp", &b("v=0")),
        Err(MultipartError::NotMultipart)
    );
    assert!(matches!(
        Multipart::parse_with(b"multipart", &b("v=0")),
        Err(MultipartError::InvalidContentType(_))
    ));
}

#[test]
fn a_new_sdp_holding_the_boundary_is_refused_not_emitted() {
    let body = b(&ng911_body());
    let ct = Some(&b"multipart/mixed;boundary=boundary1"[..]);
    for evil in [
        "v=0\r\n--boundary1\r\nContent-Type: text/plain\r\n\r\nx",
        "v=0\r\n--boundary1--\r\n",
        "--boundary1\r\n",
        "v=0\n--boundary1 \n",
    ] {
        assert_eq!(
            replace_session_sdp(ct, &body, &b(evil)),
            Err(MultipartError::BoundaryInContent),
            "{evil:?}"
        );
    }
    // The boundary inside a line, or as the prefix of a longer word, is
    // content and may be sent.
    let fine = "v=0\r\na=tool:--boundary1\r\n--boundary1x\r\n";
    let out = replace_session_sdp(ct, &body, &b(fine)).unwrap();
    assert_eq!(session_sdp(ct, &out), Some(b(fine)));
}

#[test]
fn a_nested_replacement_is_checked_against_both_boundaries() {
    let text = "--o\r\nContent-Type: multipart/alternative;boundary=i\r\n\r\n\
--i\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n--i--\r\n--o--\r\n";
    let ct = Some(&b"multipart/mixed;boundary=o"[..]);
    let body = b(text);
    assert_eq!(session_sdp(ct, &body), Some(b("v=0")));
    for evil in ["v=0\r\n--o\r\n", "v=0\r\n--i--"] {
        assert_eq!(
            replace_session_sdp(ct, &body, &b(evil)),
            Err(MultipartError::BoundaryInContent),
            "{evil:?}"
        );
    }
}

#[test]
fn replacing_with_the_same_sdp_returns_the_same_bytes() {
    let body = b(&ng911_body());
    let ct = Some(&b"multipart/mixed;boundary=boundary1"[..]);
    let out = replace_session_sdp(ct, &body, &b(NG911_SDP)).unwrap();
    assert_eq!(out, body);
}

/// Body text with no `=` or `_`, which the generated boundaries contain:
/// it can never hold a delimiter line.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 :./<>\"-]{0,30}".prop_map(|s| s),
            Just(String::from("--")),
            Just(String::new()),
        ],
        0..6,
    )
    .prop_map(|lines| lines.join("\r\n"))
}

fn part_headers() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            Just("Content-Type: application/sdp".to_owned()),
            Just("Content-Type: application/pidf+xml".to_owned()),
            Just("c: text/plain".to_owned()),
            Just("Content-ID: <x@example.com>".to_owned()),
            Just("Content-Disposition: session;handling=optional".to_owned()),
            Just("Content-Disposition: render".to_owned()),
            Just("X-Other: y".to_owned()),
        ],
        0..3,
    )
}

proptest! {
    #[test]
    fn parse_then_rebuild_with_the_same_sdp_is_the_identity(
        boundary in "[a-z0-9]{1,8}=_[a-z0-9]{0,8}",
        preamble in text(),
        epilogue in text(),
        parts in proptest::collection::vec((part_headers(), text()), 1..5),
        lf_only in any::<bool>(),
        padding in "[ \t]{0,2}",
        new_sdp in text(),
    ) {
        let mut s = String::new();
        if !preamble.is_empty() {
            s.push_str(&preamble);
            s.push_str("\r\n");
        }
        for (headers, body) in &parts {
            s.push_str(&format!("--{boundary}{padding}\r\n"));
            for h in headers {
                s.push_str(h);
                s.push_str("\r\n");
            }
            s.push_str("\r\n");
            s.push_str(body);
            s.push_str("\r\n");
        }
        s.push_str(&format!("--{boundary}--{padding}\r\n{epilogue}"));
        if lf_only {
            s = s.replace("\r\n", "\n");
        }
        let body = Bytes::from(s.clone());
        let ct = format!("multipart/mixed; boundary=\"{boundary}\"");
        let m = Multipart::parse_with(ct.as_bytes(), &body).unwrap();
        prop_assert_eq!(m.parts().len(), parts.len());
        for (i, (p, (_, want))) in m.parts().iter().zip(&parts).enumerate() {
            let want = if lf_only { want.replace("\r\n", "\n") } else { want.clone() };
            prop_assert_eq!(String::from_utf8_lossy(p.body()), want.clone(), "part {}", i);
            prop_assert_eq!(m.replace_part_body(i, p.body()).unwrap(), body.clone());
        }
        if let Some(at) = m.find_session().unwrap() {
            prop_assert_eq!(m.replace_session(&at, &at.sdp).unwrap(), body.clone());
            let new_sdp = Bytes::from(new_sdp);
            let out = m.replace_session(&at, &new_sdp).unwrap();
            let r = m.parts()[at.part].body_range();
            prop_assert_eq!(&out[..r.start], &body[..r.start]);
            prop_assert_eq!(&out[r.start..r.start + new_sdp.len()], &new_sdp[..]);
            prop_assert_eq!(&out[r.start + new_sdp.len()..], &body[r.end..]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        boundary in prop_oneof![Just("b".to_owned()), "[ -~]{0,6}"],
        body in proptest::collection::vec(
            prop_oneof![
                any::<u8>(),
                Just(b'\n'),
                Just(b'\r'),
                Just(b'-'),
                Just(b'b'),
                Just(b':'),
            ],
            0..200,
        ),
        sub in prop_oneof![Just("mixed"), Just("alternative")],
        new_sdp in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let body = Bytes::from(body);
        let ct = format!("multipart/{sub};boundary=\"{}\"", boundary.replace(['"', '\\'], ""));
        let new_sdp = Bytes::from(new_sdp);
        let _ = session_sdp(Some(ct.as_bytes()), &body);
        let _ = replace_session_sdp(Some(ct.as_bytes()), &body, &new_sdp);
        if let Ok(m) = Multipart::parse_with(ct.as_bytes(), &body) {
            for (i, p) in m.parts().iter().enumerate() {
                let _ = (p.content_type(), p.disposition(), p.content_id());
                prop_assert_eq!(m.replace_part_body(i, p.body()).unwrap(), body.clone());
            }
            let _ = (m.preamble(), m.epilogue());
        }
    }
}

proptest! {
    /// Damaged real bodies (bytes overwritten, cut short): an error or a
    /// parse whose rebuild is the identity, never a panic.
    #[test]
    fn damaged_real_bodies_never_panic(
        edits in proptest::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![
                Just(b'\n'), Just(b'\r'), Just(b'-'), Just(b' '), Just(b':'), any::<u8>()
            ]),
            0..8,
        ),
        cut in any::<prop::sample::Index>(),
        new_sdp in "[ -~\r\n]{0,40}",
    ) {
        let mut v = ng911_body().into_bytes();
        for (at, byte) in edits {
            let i = at.index(v.len());
            v[i] = byte;
        }
        v.truncate(cut.index(v.len() + 1));
        let body = Bytes::from(v);
        let ct = Some(&b"multipart/mixed;boundary=boundary1"[..]);
        let _ = replace_session_sdp(ct, &body, &Bytes::from(new_sdp));
        if let Ok(Some(sdp)) = find_session_sdp(ct, &body) {
            prop_assert_eq!(replace_session_sdp(ct, &body, &sdp), Ok(body.clone()));
        }
    }
}

#[test]
fn a_content_length_in_the_replaced_part_follows_the_new_body() {
    let text = "--b\r\n\
Content-Type: application/sdp\r\n\
Content-Length:  5\r\n\
\r\n\
v=0\r\n\
\r\n--b\r\n\
Content-Type: text/plain\r\n\
Content-Length: 2\r\n\
\r\n\
hi\r\n--b--\r\n";
    let ct = Some(&b"multipart/mixed;boundary=b"[..]);
    let out = replace_session_sdp(ct, &b(text), &b("v=0\r\nc=IN IP4 192.0.2.1\r\n")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        text.replace("Length:  5", "Length:  25")
            .replace("v=0\r\n\r\n", "v=0\r\nc=IN IP4 192.0.2.1\r\n\r\n"),
        "the SDP part's own length only"
    );
    let out = replace_session_sdp(ct, &b(text), &b("v=1")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out),
        text.replace("Length:  5", "Length:  3")
            .replace("v=0\r\n\r\n", "v=1\r\n")
    );
    // Same SDP: same bytes, whatever the header said.
    let wrong = text.replace("Length:  5", "Length:  99");
    assert_eq!(
        replace_session_sdp(ct, &b(&wrong), &b("v=0\r\n")).unwrap(),
        b(&wrong)
    );
}
