//! Digest tests: RFC test vectors, the server flow, and client→server
//! round trips.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::*;
use crate::secret::{decode_hex, DigestSecret, Secret};

fn password(user: &str, pw: &str) -> DigestCredential {
    DigestCredential {
        username: user.into(),
        secret: DigestSecret::Password(Secret::new(pw.into())),
    }
}

// RFC 7616 §3.9.1: the same exchange with SHA-256 and with MD5.
const RFC7616_CHALLENGE_SHA256: &str = "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n    algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
const RFC7616_CHALLENGE_MD5: &str = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
const RFC7616_SHA256_RESPONSE: &str =
    "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1";
const RFC7616_MD5_RESPONSE: &str = "8ca523f5e9506fed4657c9700eebdbec";
const RFC7616_AUTHORIZATION_SHA256: &str = "Digest username=\"Mufasa\",\r\n    realm=\"http-auth@example.org\",\r\n    uri=\"/dir/index.html\",\r\n    algorithm=SHA-256,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    nc=00000001,\r\n    cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\",\r\n    qop=auth,\r\n    response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\",\r\n    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

// RFC 2617 §3.5.
const RFC2617_CHALLENGE: &str = "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
const RFC2617_AUTHORIZATION: &str = "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";

fn response_param(header: &str) -> String {
    DigestResponse::parse(header).unwrap().response
}

#[test]
fn rfc7616_sha256_vector() {
    let c = Challenge::parse(RFC7616_CHALLENGE_SHA256).unwrap();
    assert_eq!(c.algorithm, Algorithm::Sha256);
    assert_eq!(c.qop, Some(Qop::Auth));
    let h = answer_challenge(
        &c,
        "Mufasa",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        RFC7616_CNONCE,
        1,
    );
    assert_eq!(response_param(&h), RFC7616_SHA256_RESPONSE);
    // The RFC's own header, read back and checked as a server would.
    let auth = DigestResponse::parse(RFC7616_AUTHORIZATION_SHA256).unwrap();
    assert_eq!(auth, DigestResponse::parse(&h).unwrap());
    assert_eq!(
        check_response(&password("Mufasa", "Circle of Life"), &auth, "GET"),
        Ok(())
    );
    assert_eq!(
        check_response(&password("Mufasa", "Circle Of Life"), &auth, "GET"),
        Err(DigestError::WrongResponse)
    );
}

#[test]
fn rfc7616_md5_vector() {
    let c = Challenge::parse(RFC7616_CHALLENGE_MD5).unwrap();
    let h = answer_challenge(
        &c,
        "Mufasa",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        RFC7616_CNONCE,
        1,
    );
    assert_eq!(response_param(&h), RFC7616_MD5_RESPONSE);
    assert_eq!(
        check_response(
            &password("Mufasa", "Circle of Life"),
            &DigestResponse::parse(&h).unwrap(),
            "GET"
        ),
        Ok(())
    );
}

#[test]
fn rfc2617_vector() {
    let c = Challenge::parse(RFC2617_CHALLENGE).unwrap();
    assert_eq!(c.algorithm, Algorithm::Md5, "no algorithm means MD5");
    let h = answer_challenge(
        &c,
        "Mufasa",
        "Circle Of Life",
        "GET",
        "/dir/index.html",
        "0a4f113b",
        1,
    );
    assert_eq!(response_param(&h), "6629fae49393a05397450978507c4ef1");
    let auth = DigestResponse::parse(RFC2617_AUTHORIZATION).unwrap();
    assert_eq!(
        check_response(&password("Mufasa", "Circle Of Life"), &auth, "GET"),
        Ok(())
    );
}

#[test]
fn rfc2069_style_without_qop() {
    // Computed independently (Python hashlib): MD5(HA1:nonce:HA2).
    let c = Challenge::parse(
        "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
    )
    .unwrap();
    assert_eq!(c.qop, None);
    let h = answer_challenge(
        &c,
        "Mufasa",
        "Circle Of Life",
        "GET",
        "/dir/index.html",
        "ignored",
        1,
    );
    assert!(
        !h.contains("nc=") && !h.contains("cnonce") && !h.contains("qop"),
        "{h}"
    );
    assert_eq!(response_param(&h), "670fd8c2df070c60b045671b8b24ff02");
}

#[test]
fn stored_ha1_works_with_its_algorithm_only() {
    // HA1 of pbx1:trunkd.local:s3cret (Python hashlib).
    let md5 = DigestCredential {
        username: "pbx1".into(),
        secret: DigestSecret::Ha1Md5(decode_hex("9111435e4b3861c9ca34dfd858993497").unwrap()),
    };
    let sha = DigestCredential {
        username: "pbx1".into(),
        secret: DigestSecret::Ha1Sha256(
            decode_hex("7564841a720dbbdf3fc76c5ddc8db22ef9bf4d0788ef5a98ce4b1bf034540916").unwrap(),
        ),
    };
    for (alg, good, other) in [
        (Algorithm::Md5, &md5, &sha),
        (Algorithm::Md5Sess, &md5, &sha),
        (Algorithm::Sha256, &sha, &md5),
        (Algorithm::Sha256Sess, &sha, &md5),
    ] {
        let c = Challenge {
            realm: "trunkd.local".into(),
            nonce: "abc".into(),
            opaque: None,
            algorithm: alg,
            qop: Some(Qop::Auth),
            stale: false,
        };
        let auth = DigestResponse::parse(&answer_challenge(
            &c, "pbx1", "s3cret", "INVITE", "sip:x@y", "xyz", 2,
        ))
        .unwrap();
        assert_eq!(check_response(good, &auth, "INVITE"), Ok(()), "{alg}");
        assert!(
            matches!(
                check_response(other, &auth, "INVITE"),
                Err(DigestError::Unsupported(_))
            ),
            "{alg}"
        );
        assert_eq!(
            check_response(good, &auth, "BYE"),
            Err(DigestError::WrongResponse),
            "{alg}"
        );
    }
}

#[test]
fn sess_vectors() {
    // Python hashlib: A1 = H(user:realm:pw):nonce:cnonce.
    for (alg, expected) in [
        (
            Algorithm::Sha256Sess,
            "59be70b638723c40fe6e31ce378b5cc07dd5fb26ea22c0f21d51705a86037956",
        ),
        (Algorithm::Md5Sess, "bd6b12f101a954dea99f1ec22a31e48a"),
    ] {
        let c = Challenge {
            realm: "trunkd.local".into(),
            nonce: "abc".into(),
            opaque: None,
            algorithm: alg,
            qop: Some(Qop::Auth),
            stale: false,
        };
        let h = answer_challenge(
            &c,
            "pbx1",
            "s3cret",
            "INVITE",
            "sip:+12065550123@vc-east.trunkd.local",
            "xyz",
            2,
        );
        assert_eq!(response_param(&h), expected, "{alg}");
    }
}

#[test]
fn response_parsing_requires_and_rejects() {
    let ok = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:a@b\", response=\"00\"";
    let r = DigestResponse::parse(ok).unwrap();
    assert_eq!(
        (r.algorithm, r.qop, r.nc.as_deref()),
        (Algorithm::Md5, None, None)
    );
    let r = DigestResponse::parse(&format!(
        "{ok}, QOP=\"auth\", NC=0000000a, CNONCE=c, Algorithm=sha-256"
    ))
    .unwrap();
    assert_eq!(
        (r.algorithm, r.qop, r.nonce_count()),
        (Algorithm::Sha256, Some(Qop::Auth), Some(10))
    );
    let malformed = [
        "Digest realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\"".to_owned(),
        format!("{ok}, qop=auth"),
        format!("{ok}, qop=auth, nc=1, cnonce=\"\", nc=2"),
        format!("{ok}, qop=auth, nc=123456789, cnonce=c"),
        format!("{ok}, qop=auth, nc=xyz, cnonce=c"),
        format!("{ok}, algorithm=MD5-sess"),
        format!("{ok}, Digest username=\"v\""),
        String::new(),
    ];
    for bad in &malformed {
        assert!(
            matches!(DigestResponse::parse(bad), Err(DigestError::Malformed(_))),
            "{bad}"
        );
    }
    let unsupported = [
        format!("{ok}, qop=auth-int, nc=1, cnonce=c"),
        format!("{ok}, algorithm=SHA-512-256"),
        format!("{ok}, userhash=true"),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Digest username*=UTF-8''J%C3%A4s, realm=\"r\", nonce=\"n\", uri=\"u\", response=\"0\""
            .to_owned(),
    ];
    for bad in &unsupported {
        assert!(
            matches!(DigestResponse::parse(bad), Err(DigestError::Unsupported(_))),
            "{bad}"
        );
    }
}

#[test]
fn challenge_parsing_and_choice() {
    assert!(matches!(
        Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""),
        Err(DigestError::Unsupported(_))
    ));
    assert!(matches!(
        Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess"),
        Err(DigestError::Unsupported(_))
    ));
    assert!(matches!(
        Challenge::parse("Digest realm=\"r\""),
        Err(DigestError::Malformed(_))
    ));
    assert!(
        Challenge::parse("Digest realm=\"r\", nonce=\"n\", stale=TRUE")
            .unwrap()
            .stale
    );
    let md5 = "Digest realm=\"r\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
    let sha = "Digest realm=\"r\", nonce=\"n2\", algorithm=SHA-256, qop=\"auth\"";
    assert_eq!(Challenge::best([md5, sha]).unwrap().nonce, "n2");
    assert_eq!(Challenge::best([md5]).unwrap().nonce, "n1");
    assert_eq!(
        Challenge::best([&*format!("Basic realm=\"x\", {md5}, {sha}")])
            .unwrap()
            .nonce,
        "n2"
    );
    assert!(matches!(
        Challenge::best(["Basic realm=\"x\""]),
        Err(DigestError::Malformed(_))
    ));
    assert!(matches!(
        Challenge::best(["Digest realm=\"r\", nonce=\"n\", algorithm=FOO"]),
        Err(DigestError::Unsupported(_))
    ));
    // Display then parse gives the challenge back.
    let c = Challenge::parse(RFC7616_CHALLENGE_SHA256).unwrap();
    assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c);
}

/// The server side of one exchange, with its clock and state.
struct Server {
    issuer: NonceIssuer,
    counter: NonceCounter,
    credentials: Vec<DigestCredential>,
    now: SystemTime,
}

const REALM: &str = "trunkd.local";
const URI: &str = "sip:+12065550123@vc-east.trunkd.local";

impl Server {
    fn new() -> Self {
        Server {
            issuer: NonceIssuer::new([42; 32], Duration::from_secs(300)),
            counter: NonceCounter::new(100),
            credentials: vec![password("pbx0", "other"), password("pbx1", "s3cret")],
            now: UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        }
    }

    fn challenge(&self, i: usize) -> Challenge {
        let values = self.issuer.challenges(REALM, false, self.now, [9; 8]);
        Challenge::parse(&values[i]).unwrap()
    }

    fn verify(&mut self, header: &str) -> Result<String, DigestError> {
        let auth = DigestResponse::parse(header)?;
        verify(
            &self.issuer,
            &self.credentials,
            &auth,
            "INVITE",
            REALM,
            self.now,
            &mut self.counter,
        )
        .map(|c| c.username.clone())
    }
}

#[test]
fn server_flow_accepts_then_catches_replay_staleness_and_forgery() {
    let mut s = Server::new();
    let c = s.challenge(1);
    assert_eq!(c.algorithm, Algorithm::Sha256);
    let h1 = answer_challenge(&c, "pbx1", "s3cret", "INVITE", URI, "cn", 1);
    assert_eq!(s.verify(&h1).as_deref(), Ok("pbx1"));
    assert_eq!(s.verify(&h1), Err(DigestError::Replay));
    let h2 = answer_challenge(&c, "pbx1", "s3cret", "INVITE", URI, "cn", 2);
    assert_eq!(s.verify(&h2).as_deref(), Ok("pbx1"));
    assert_eq!(
        s.verify(&answer_challenge(
            &c, "pbx1", "wrong", "INVITE", URI, "cn", 3
        )),
        Err(DigestError::WrongResponse)
    );
    assert_eq!(
        s.verify(&answer_challenge(
            &c, "nobody", "s3cret", "INVITE", URI, "cn", 3
        )),
        Err(DigestError::UnknownUser)
    );

    // Five minutes and a second later, the right password gets Stale, a
    // wrong one still WrongResponse (stale=true would skip the prompt).
    s.now += Duration::from_secs(301);
    assert_eq!(
        s.verify(&answer_challenge(
            &c, "pbx1", "s3cret", "INVITE", URI, "cn", 4
        )),
        Err(DigestError::Stale)
    );
    assert_eq!(
        s.verify(&answer_challenge(
            &c, "pbx1", "wrong", "INVITE", URI, "cn", 4
        )),
        Err(DigestError::WrongResponse)
    );

    let mut forged = c.clone();
    forged.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093".into();
    assert_eq!(
        s.verify(&answer_challenge(
            &forged, "nobody", "x", "INVITE", URI, "cn", 1
        )),
        Err(DigestError::BadNonce)
    );
    let mut other_realm = s.challenge(1);
    other_realm.realm = "elsewhere".into();
    assert_eq!(
        s.verify(&answer_challenge(
            &other_realm,
            "pbx1",
            "s3cret",
            "INVITE",
            URI,
            "cn",
            1
        )),
        Err(DigestError::WrongRealm)
    );
}

#[test]
fn rfc2069_clients_verify_without_a_count() {
    let mut s = Server::new();
    let mut c = s.challenge(1);
    c.qop = None;
    let h = answer_challenge(&c, "pbx1", "s3cret", "INVITE", URI, "cn", 1);
    assert_eq!(s.verify(&h).as_deref(), Ok("pbx1"));
    assert_eq!(
        s.verify(&h).as_deref(),
        Ok("pbx1"),
        "no nc: reusable until the nonce expires"
    );
    assert!(s.counter.is_empty());
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![
        Just(Algorithm::Md5),
        Just(Algorithm::Md5Sess),
        Just(Algorithm::Sha256),
        Just(Algorithm::Sha256Sess)
    ]
}

proptest! {
    /// Whatever the user, password, method and algorithm, trunkd's client
    /// answer verifies on trunkd's server, and only with the right password.
    #[test]
    fn client_answers_verify_on_the_server(
        user in "[^\\p{C}]{1,20}",
        pw in "\\PC{0,30}",
        method in "[A-Z]{3,9}",
        cnonce in "[A-Za-z0-9+/=]{1,24}",
        nc in 1u32..u32::MAX,
        alg in algorithm(),
        qop in any::<bool>(),
    ) {
        let mut s = Server::new();
        s.credentials = vec![password(&user, &pw)];
        let mut c = s.challenge(0);
        c.algorithm = alg;
        if !qop && !alg.is_session() { c.qop = None; }
        let h = answer_challenge(&c, &user, &pw, &method, URI, &cnonce, nc);
        let auth = DigestResponse::parse(&h).unwrap();
        prop_assert_eq!(
            verify(&s.issuer, &s.credentials, &auth, &method, REALM, s.now, &mut s.counter).map(|c| c.username.clone()),
            Ok(user.clone())
        );
        let wrong = answer_challenge(&c, &user, &format!("{pw}x"), &method, URI, &cnonce, nc);
        let auth = DigestResponse::parse(&wrong).unwrap();
        prop_assert_eq!(
            verify(&s.issuer, &s.credentials, &auth, &method, REALM, s.now, &mut s.counter).err(),
            Some(DigestError::WrongResponse)
        );
    }

    #[test]
    fn response_header_round_trips(
        user in "\\PC{1,20}", realm in "\\PC{1,20}", nonce in "\\PC{1,20}", uri in "\\PC{1,30}",
        cnonce in "\\PC{1,20}", nc in 0u32.., alg in algorithm(),
    ) {
        let r = DigestResponse {
            username: user, realm, nonce, uri, response: "ab".into(), algorithm: alg,
            cnonce: Some(cnonce), qop: Some(Qop::Auth), nc: Some(format!("{nc:08x}")), opaque: Some("o\"p".into()),
        };
        prop_assert_eq!(DigestResponse::parse(&r.to_string()), Ok(r));
    }

    #[test]
    fn parsers_never_panic(s in "\\PC*") {
        let _ = DigestResponse::parse(&s);
        let _ = Challenge::parse(&s);
        let _ = Challenge::best([s.as_str()]);
    }
}

#[test]
fn an_rfc7616_client_picks_sha256_from_trunkds_md5_first_list() {
    let s = Server::new();
    let values = s.issuer.challenges(REALM, false, s.now, [9; 8]);
    assert!(
        values[0].contains("algorithm=MD5"),
        "MD5 first for clients that take the first"
    );
    let best = Challenge::best(values.iter().map(String::as_str)).unwrap();
    assert_eq!(best.algorithm, Algorithm::Sha256);
}
