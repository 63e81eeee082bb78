//! One test per SPEC §2.1 rule, a test of their order, and properties.

use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::digest::{answer_challenge, Challenge};
use crate::fixtures::*;
use crate::resources::{Assignment, Emergency};
use crate::secret::decode_hex;
use crate::CpsLimit;

const DOMAIN: &str = "trunkd.local";
const EAST_NET: &str = "198.51.100.7";

struct World {
    resources: Resources,
    issuer: NonceIssuer,
    emergency_numbers: Vec<String>,
    state: AdmissionState,
    now: Now,
    /// Whether [`World::admit_with_maybe`] answers challenges.
    authenticate: bool,
    nc: u32,
    /// Feeds each admission a different nonce salt, as an RNG would.
    salt: u64,
}

fn east() -> VoiceConnector {
    let mut v = vc("vc-east");
    v.termination.cidr_allowed_list = vec!["198.51.100.0/24".parse().unwrap()];
    v.termination.credentials = vec![password("pbx1", "s3cret")];
    v.termination.cps_limit = CpsLimit::new(2).unwrap();
    v.termination.calling_regions = vec!["US".parse().unwrap(), "CA".parse().unwrap()];
    v.emergency = Some(Emergency {
        calling_country: "US".parse().unwrap(),
        emergency_phone_number: e164("+12065550199"),
        test_phone_number: Some(e164("+12065550198")),
        callback_phone_number: None,
    });
    v
}

impl World {
    fn new() -> Self {
        Self::with(vec![east(), vc("vc-west")])
    }

    fn with(vcs: Vec<VoiceConnector>) -> Self {
        let resources = resources(
            vcs,
            vec![group("grp-main", &["vc-east", "vc-west"])],
            vec![],
            vec![
                number("+12065550100", Assignment::VoiceConnector(vc_id("vc-east"))),
                number(
                    "+12065550200",
                    Assignment::VoiceConnectorGroup(crate::GroupId::new("grp-main").unwrap()),
                ),
                number("+12065550300", Assignment::VoiceConnector(vc_id("vc-west"))),
                deleted(number(
                    "+12065550400",
                    Assignment::VoiceConnector(vc_id("vc-east")),
                )),
                number("+12065550500", Assignment::Unassigned),
            ],
            vec![],
        );
        World {
            resources,
            issuer: NonceIssuer::new([1; 32], Duration::from_secs(300)),
            emergency_numbers: vec!["112".into()],
            state: AdmissionState::default(),
            now: Now {
                instant: std::time::Instant::now(),
                wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            },
            authenticate: true,
            nc: 0,
            salt: 0,
        }
    }

    fn admit(&mut self, req: &TerminationRequest<'_>) -> Result<Admitted, Rejection> {
        let policy = TerminationPolicy {
            outbound_host_domain: DOMAIN,
            emergency_numbers: &self.emergency_numbers,
            nonce_issuer: &self.issuer,
        };
        self.salt += 1;
        admit_termination(
            &self.resources,
            &policy,
            &mut self.state,
            req,
            self.now,
            self.salt.to_be_bytes(),
        )
    }

    /// Sends `req`, answers the 407 with `user`/`pw`, and sends it again.
    fn admit_with(
        &mut self,
        req: &TerminationRequest<'_>,
        user: &str,
        pw: &str,
        nc: u32,
    ) -> Result<Admitted, Rejection> {
        let header = self.answer(req, user, pw, nc);
        self.admit(&TerminationRequest {
            proxy_authorization: Some(&header),
            ..*req
        })
    }

    fn answer(&mut self, req: &TerminationRequest<'_>, user: &str, pw: &str, nc: u32) -> String {
        let first = self.admit(&TerminationRequest {
            proxy_authorization: None,
            ..*req
        });
        let Err(Rejection::Challenge {
            proxy_authenticate, ..
        }) = first
        else {
            panic!("expected a challenge, got {first:?}");
        };
        let c = Challenge::best(proxy_authenticate.iter().map(String::as_str)).unwrap();
        answer_challenge(
            &c,
            user,
            pw,
            "INVITE",
            "sip:+12065550123@trunkd.local",
            "cn",
            nc,
        )
    }
}

/// A request that passes every rule for vc-east once authenticated.
fn good() -> TerminationRequest<'static> {
    TerminationRequest {
        method: "INVITE",
        request_uri_user: "+12065550123",
        request_uri_host: "vc-east.trunkd.local",
        source: EAST_NET.parse().unwrap(),
        over_tls: false,
        client_certificate_verified: false,
        offers_srtp: false,
        from_user: Some("+12065550100"),
        pai_user: None,
        proxy_authorization: None,
    }
}

fn west(user: &'static str, from: &'static str) -> TerminationRequest<'static> {
    TerminationRequest {
        request_uri_user: user,
        request_uri_host: "vc-west.trunkd.local",
        source: "203.0.113.9".parse().unwrap(),
        from_user: Some(from),
        ..good()
    }
}

#[test]
fn admits_an_authenticated_call() {
    let mut w = World::new();
    let a = w.admit_with(&good(), "pbx1", "s3cret", 1).unwrap();
    assert_eq!(
        a,
        Admitted {
            vc_id: vc_id("vc-east"),
            identified_by: IdentifiedBy::Host,
            destination: Destination::Number(e164("+12065550123")),
            caller_id: CallerId::Number(e164("+12065550100")),
            caller_id_overridden: false,
            auth_user: Some("pbx1".into()),
            is_emergency: false,
        }
    );
    assert_eq!(a.destination.request_uri_user(), "+12065550123");
}

#[test]
fn rule_1_vc_by_host_in_any_case() {
    let mut w = World::new();
    for host in ["VC-West.Trunkd.Local", "vc-west.trunkd.local."] {
        let a = w
            .admit(&TerminationRequest {
                request_uri_host: host,
                ..west("+12065550123", "+12065550300")
            })
            .unwrap();
        assert_eq!(
            (a.vc_id.as_str(), a.identified_by),
            ("vc-west", IdentifiedBy::Host)
        );
        w.now.instant += Duration::from_secs(1);
    }
}

#[test]
fn rule_1_unknown_host_in_our_domain_is_refused_not_reidentified() {
    let mut w = World::new();
    for host in [
        "vc-north.trunkd.local",
        "a.b.trunkd.local",
        "VC_X.trunkd.local",
    ] {
        // The source is vc-east's network: still refused.
        let r = w.admit(&TerminationRequest {
            request_uri_host: host,
            ..good()
        });
        assert_eq!(r, Err(Rejection::UnknownVoiceConnector), "{host}");
    }
}

#[test]
fn rule_1_vc_by_most_specific_cidr_then_file_order() {
    let mut a = vc("vc-a");
    a.termination.cidr_allowed_list = vec!["10.0.0.0/8".parse().unwrap()];
    let mut b = vc("vc-b");
    b.termination.cidr_allowed_list = vec![
        "192.0.2.0/24".parse().unwrap(),
        "10.1.0.0/16".parse().unwrap(),
    ];
    let mut c = vc("vc-c");
    c.termination.cidr_allowed_list = vec!["10.1.0.0/16".parse().unwrap()];
    let mut w = World::with(vec![a, b, c]);
    w.resources = resources(
        w.resources.voice_connectors().to_vec(),
        vec![],
        vec![],
        vec![
            number("+12065550100", Assignment::VoiceConnector(vc_id("vc-a"))),
            number("+12065550101", Assignment::VoiceConnector(vc_id("vc-b"))),
        ],
        vec![],
    );
    let req = |src: &'static str, from: &'static str| TerminationRequest {
        request_uri_host: "198.51.100.1",
        source: src.parse().unwrap(),
        from_user: Some(from),
        ..good()
    };
    let got = |w: &mut World, r| w.admit(&r).map(|a| (a.vc_id.to_string(), a.identified_by));
    assert_eq!(
        got(&mut w, req("10.9.9.9", "+12065550100")),
        Ok(("vc-a".into(), IdentifiedBy::SourceAddress))
    );
    // /16 beats /8; vc-b and vc-c tie on /16: file order.
    assert_eq!(
        got(&mut w, req("10.1.2.3", "+12065550101")),
        Ok(("vc-b".into(), IdentifiedBy::SourceAddress))
    );
    // Host names outside our domain do not identify.
    assert_eq!(
        w.admit(&TerminationRequest {
            request_uri_host: "trunkd.local",
            ..req("172.16.0.1", "+12065550100")
        }),
        Err(Rejection::UnknownVoiceConnector)
    );
}

#[test]
fn rule_1_vc_by_digest_username() {
    let mut w = World::new();
    let req = TerminationRequest {
        request_uri_host: "10.0.0.1",
        source: "203.0.113.50".parse().unwrap(),
        ..good()
    };
    // Unknown by host and address: challenge so the PBX can say who it is.
    let first = w.admit(&req).unwrap_err();
    assert_eq!(
        (first.status(), first.metric_reason()),
        (407, "auth_challenge")
    );
    // Found by username, then refused by vc-east's CIDR list (rule 3).
    assert_eq!(
        w.admit_with(&req, "pbx1", "s3cret", 1),
        Err(Rejection::SourceNotAllowed)
    );

    let mut open = east();
    open.termination.cidr_allowed_list.clear();
    let mut w = World::with(vec![open, vc("vc-west")]);
    let a = w.admit_with(&req, "pbx1", "s3cret", 1).unwrap();
    assert_eq!(
        (a.vc_id.as_str(), a.identified_by, a.auth_user.as_deref()),
        ("vc-east", IdentifiedBy::Credentials, Some("pbx1"))
    );
}

#[test]
fn rule_1_unknown_user_and_wrong_password_look_the_same() {
    let mut open = east();
    open.termination.cidr_allowed_list.clear();
    let mut w = World::with(vec![open, vc("vc-west")]);
    let req = TerminationRequest {
        request_uri_host: "10.0.0.1",
        source: "203.0.113.50".parse().unwrap(),
        ..good()
    };
    let unknown = w.admit_with(&req, "mallory", "s3cret", 1).unwrap_err();
    let wrong = w.admit_with(&req, "pbx1", "guess", 1).unwrap_err();
    assert_eq!(unknown, Rejection::UnknownVoiceConnector);
    assert_eq!(wrong, Rejection::AuthFailed);
    assert_eq!(unknown.to_string(), wrong.to_string());
    assert_eq!(unknown.to_string(), "403 Forbidden");
    // A forged nonce gets a challenge whatever the username.
    let forged = "Digest username=\"mallory\", realm=\"trunkd.local\", nonce=\"00\", uri=\"sip:x\", response=\"00\"";
    let r = w
        .admit(&TerminationRequest {
            proxy_authorization: Some(forged),
            ..req
        })
        .unwrap_err();
    assert!(
        matches!(
            r,
            Rejection::Challenge {
                stale: false,
                cause: Some(DigestError::BadNonce),
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn rule_1_nothing_to_identify_by() {
    let mut w = World::with(vec![vc("vc-west")]);
    let req = TerminationRequest {
        request_uri_host: "10.0.0.1",
        ..good()
    };
    assert_eq!(w.admit(&req), Err(Rejection::UnknownVoiceConnector));
}

#[test]
fn rule_2_termination_disabled() {
    let mut v = east();
    v.termination.disabled = true;
    let mut w = World::with(vec![v]);
    assert_eq!(w.admit(&good()), Err(Rejection::TerminationDisabled));
}

#[test]
fn rule_3_source_outside_the_allowed_list() {
    let mut w = World::new();
    let r = w.admit(&TerminationRequest {
        source: "203.0.113.1".parse().unwrap(),
        ..good()
    });
    assert_eq!(r, Err(Rejection::SourceNotAllowed));
    // An empty list allows any source.
    let r = w.admit(&TerminationRequest {
        source: "2001:db8::1".parse().unwrap(),
        ..west("+12065550123", "+12065550300")
    });
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn rule_4_challenge_then_verify() {
    let mut w = World::new();
    let Err(Rejection::Challenge {
        stale: false,
        proxy_authenticate,
        cause: None,
    }) = w.admit(&good())
    else {
        panic!("expected a challenge");
    };
    assert_eq!(proxy_authenticate.len(), 2);
    assert!(
        proxy_authenticate[0].contains("algorithm=MD5")
            && proxy_authenticate[0].contains("realm=\"trunkd.local\"")
    );
    assert!(proxy_authenticate[1].contains("algorithm=SHA-256"));

    assert_eq!(
        w.admit_with(&good(), "pbx1", "wrong", 1),
        Err(Rejection::AuthFailed)
    );
    assert_eq!(
        w.admit_with(&good(), "nobody", "s3cret", 1),
        Err(Rejection::AuthFailed)
    );

    let c = Challenge::best(proxy_authenticate.iter().map(String::as_str)).unwrap();
    let answer = |nc| {
        answer_challenge(
            &c,
            "pbx1",
            "s3cret",
            "INVITE",
            "sip:+12065550123@trunkd.local",
            "cn",
            nc,
        )
    };
    let header = answer(1);
    let with = TerminationRequest {
        proxy_authorization: Some(&header),
        ..good()
    };
    assert!(w.admit(&with).is_ok());
    // The same nc again: a replay gets a stale challenge, never a call.
    let r = w.admit(&with).unwrap_err();
    assert!(
        matches!(
            r,
            Rejection::Challenge {
                stale: true,
                cause: Some(DigestError::Replay),
                ..
            }
        ),
        "{r:?}"
    );
    assert!(r.proxy_authenticate()[0].contains("stale=true"));
    // The nonce expires.
    w.now.wall += Duration::from_secs(301);
    let header = answer(2);
    let r = w
        .admit(&TerminationRequest {
            proxy_authorization: Some(&header),
            ..good()
        })
        .unwrap_err();
    assert!(
        matches!(r, Rejection::Challenge { stale: true, .. }),
        "{r:?}"
    );
    // Unreadable credentials: a fresh challenge saying why.
    let r = w
        .admit(&TerminationRequest {
            proxy_authorization: Some("Digest realm="),
            ..good()
        })
        .unwrap_err();
    assert!(
        matches!(
            r,
            Rejection::Challenge {
                stale: false,
                cause: Some(DigestError::Malformed(_)),
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn rule_4_stored_ha1_is_challenged_with_its_algorithm_only() {
    let mut v = east();
    // MD5(pbx1:trunkd.local:s3cret), computed with Python hashlib.
    v.termination.credentials = vec![DigestCredential {
        username: "pbx1".into(),
        secret: DigestSecret::Ha1Md5(decode_hex("9111435e4b3861c9ca34dfd858993497").unwrap()),
    }];
    let mut w = World::with(vec![v]);
    let r = w.admit(&good()).unwrap_err();
    assert_eq!(r.proxy_authenticate().len(), 1);
    assert!(r.proxy_authenticate()[0].contains("algorithm=MD5"));
    assert!(w.admit_with(&good(), "pbx1", "s3cret", 1).is_ok());
}

#[test]
fn rule_5_encryption_needs_tls_and_srtp() {
    let mut v = vc("vc-west");
    v.require_encryption = true;
    let mut w = World::with(vec![v]);
    let base = west("+12065550123", "+12065550300");
    for (tls, srtp, ok) in [
        (false, false, false),
        (true, false, false),
        (false, true, false),
        (true, true, true),
    ] {
        let r = w.admit(&TerminationRequest {
            over_tls: tls,
            offers_srtp: srtp,
            ..base
        });
        if ok {
            assert!(r.is_ok(), "{r:?}");
        } else {
            assert_eq!(
                r,
                Err(Rejection::EncryptionRequired),
                "tls={tls} srtp={srtp}"
            );
        }
        w.now.instant += Duration::from_secs(1);
    }
    // Never an emergency call: 911 over plain UDP without SRTP goes out.
    let r = w.admit(&TerminationRequest {
        request_uri_user: "911",
        over_tls: false,
        offers_srtp: false,
        ..base
    });
    assert!(r.is_ok_and(|a| a.is_emergency));
}

#[test]
fn rule_5_client_certificate_needs_tls_and_a_verified_certificate() {
    let mut v = vc("vc-west");
    v.termination.require_client_certificate = true;
    let mut w = World::with(vec![v]);
    let base = west("+12065550123", "+12065550300");
    for (tls, verified, ok) in [
        (false, false, false),
        (true, false, false),
        // A verified certificate is a property of a TLS connection; the
        // flag alone (a shell bug) must not admit a plain call.
        (false, true, false),
        (true, true, true),
    ] {
        let r = w.admit(&TerminationRequest {
            over_tls: tls,
            client_certificate_verified: verified,
            ..base
        });
        if ok {
            assert!(r.is_ok(), "{r:?}");
        } else {
            let r = r.expect_err("refused");
            assert_eq!(
                r,
                Rejection::ClientCertificateRequired,
                "tls={tls} cert={verified}"
            );
            assert_eq!(
                (r.status(), r.reason_phrase()),
                (403, "Client Certificate Required")
            );
            assert_eq!(r.metric_reason(), "client_certificate");
        }
        w.now.instant += Duration::from_secs(1);
    }
}

#[test]
fn encryption_is_checked_before_the_client_certificate() {
    let mut v = vc("vc-west");
    v.require_encryption = true;
    v.termination.require_client_certificate = true;
    let mut w = World::with(vec![v]);
    let base = west("+12065550123", "+12065550300");
    let r = w.admit(&TerminationRequest {
        over_tls: true,
        ..base
    });
    assert_eq!(r, Err(Rejection::EncryptionRequired));
    let r = w.admit(&TerminationRequest {
        over_tls: true,
        offers_srtp: true,
        ..base
    });
    assert_eq!(r, Err(Rejection::ClientCertificateRequired));
}

#[test]
fn rule_6_emergency_calls_bypass_cps_and_calling_plan() {
    let mut w = World::new();
    // Spend vc-east's two tokens.
    w.admit_with(&good(), "pbx1", "s3cret", 1).unwrap();
    w.admit_with(&good(), "pbx1", "s3cret", 1).unwrap();
    assert!(matches!(
        w.admit_with(&good(), "pbx1", "s3cret", 1),
        Err(Rejection::Cps(_))
    ));
    let cases = [
        ("911", Some("+12065550199"), false),
        ("933", Some("+12065550198"), true),
        ("112", Some("+12065550199"), false),
    ];
    for (dialled, routing, test) in cases {
        let a = w
            .admit_with(
                &TerminationRequest {
                    request_uri_user: dialled,
                    ..good()
                },
                "pbx1",
                "s3cret",
                1,
            )
            .unwrap();
        assert!(a.is_emergency);
        assert_eq!(
            a.destination,
            Destination::Emergency {
                dialled: dialled.into(),
                routing_number: routing.map(e164),
                test
            }
        );
        assert_eq!(a.destination.request_uri_user(), routing.unwrap_or(dialled));
        assert_eq!(a.caller_id, e164("+12065550100"), "original caller ID kept");
    }
}

#[test]
fn rule_6_emergency_without_settings_sends_the_code() {
    let mut v = east();
    v.emergency.as_mut().unwrap().test_phone_number = None;
    let mut w = World::with(vec![v, vc("vc-west")]);
    let a = w
        .admit_with(
            &TerminationRequest {
                request_uri_user: "933",
                ..good()
            },
            "pbx1",
            "s3cret",
            1,
        )
        .unwrap();
    assert_eq!(
        a.destination.request_uri_user(),
        "933",
        "a test call never reaches the real routing number"
    );
    let a = w.admit(&west("911", "+12065550300")).unwrap();
    assert_eq!(
        a.destination,
        Destination::Emergency {
            dialled: "911".into(),
            routing_number: None,
            test: false
        }
    );
}

#[test]
fn rule_7_cps_limit_with_retry_after() {
    let mut w = World::new();
    let base = west("+12065550123", "+12065550300");
    assert!(w.admit(&base).is_ok());
    let r = w.admit(&base).unwrap_err();
    assert_eq!(
        (r.status(), r.retry_after(), r.metric_reason()),
        (503, Some(1), "cps")
    );
    w.now.instant += Duration::from_secs(1);
    assert!(w.admit(&base).is_ok());
}

#[test]
fn rule_8_destination_must_be_e164() {
    let mut w = World::new();
    for user in [
        "alice",
        "0044207946000",
        "+1-206-555-0123",
        "",
        "2065550123x",
    ] {
        let r = w.admit(&west(user, "+12065550300"));
        assert_eq!(
            r,
            Err(Rejection::NotE164 {
                destination: user.into()
            }),
            "{user:?}"
        );
        w.now.instant += Duration::from_secs(1);
    }
    // Without '+' is accepted as E.164 digits (no national-format guessing).
    let a = w.admit(&west("12065550123", "+12065550300")).unwrap();
    assert_eq!(a.destination, Destination::Number(e164("+12065550123")));
}

#[test]
fn rule_8_calling_plan() {
    let mut w = World::new();
    let uk = TerminationRequest {
        request_uri_user: "+442079460000",
        ..good()
    };
    let r = w.admit_with(&uk, "pbx1", "s3cret", 1).unwrap_err();
    assert_eq!(
        r.to_string(),
        "403 Destination country GB not in calling plan"
    );
    w.now.instant += Duration::from_secs(1);
    let intl = TerminationRequest {
        request_uri_user: "+80012345678",
        ..good()
    };
    assert_eq!(
        w.admit_with(&intl, "pbx1", "s3cret", 1),
        Err(Rejection::calling_plan(None))
    );
    w.now.instant += Duration::from_secs(1);
    let ca = TerminationRequest {
        request_uri_user: "+14165550100",
        ..good()
    };
    assert!(w.admit_with(&ca, "pbx1", "s3cret", 1).is_ok());
    // vc-west has no calling plan: any destination, even one of no country.
    assert!(w.admit(&west("+80012345678", "+12065550300")).is_ok());
}

#[test]
fn rule_9_caller_id() {
    let mut w = World::new();
    let mut check = |from: Option<&'static str>, pai: Option<&'static str>| {
        w.now.instant += Duration::from_secs(1);
        w.admit(&TerminationRequest {
            from_user: from,
            pai_user: pai,
            ..west("+12065550123", "")
        })
        .map(|a| a.caller_id.number().unwrap())
    };
    let refused = |p: Option<&str>| {
        Err(Rejection::CallerId {
            presented: p.map(str::to_owned),
        })
    };
    assert_eq!(
        check(Some("+12065550300"), None),
        Ok(e164("+12065550300")),
        "assigned to the VC"
    );
    assert_eq!(
        check(Some("12065550300"), None),
        Ok(e164("+12065550300")),
        "without +"
    );
    assert_eq!(
        check(Some("+12065550200"), None),
        Ok(e164("+12065550200")),
        "assigned to its group"
    );
    assert_eq!(
        check(Some("+12065550100"), None),
        refused(Some("+12065550100")),
        "another VC's number"
    );
    assert_eq!(
        check(Some("+12065550500"), None),
        refused(Some("+12065550500")),
        "unassigned"
    );
    assert_eq!(
        check(Some("+12065559999"), None),
        refused(Some("+12065559999")),
        "not in the inventory"
    );
    assert_eq!(check(Some("anonymous"), None), refused(Some("anonymous")));
    assert_eq!(check(None, None), refused(None));
    assert_eq!(
        check(Some("+12065550100"), Some("+12065550300")),
        Ok(e164("+12065550300")),
        "PAI wins"
    );
    assert_eq!(
        check(Some("+12065550300"), Some("+12065550100")),
        refused(Some("+12065550100")),
        "PAI wins"
    );
    let mut v = east();
    v.termination.default_phone_number = Some(e164("+12065550100"));
    v.termination.credentials.clear();
    let mut w = World::with(vec![v]);
    let a = w
        .admit(&TerminationRequest {
            from_user: Some("anonymous"),
            ..good()
        })
        .unwrap();
    assert_eq!(
        (a.caller_id, a.caller_id_overridden),
        (CallerId::Number(e164("+12065550100")), true)
    );
}

#[test]
fn rule_9_deleted_numbers_cannot_present() {
    let mut w = World::new();
    let r = w.admit_with(
        &TerminationRequest {
            from_user: Some("+12065550400"),
            ..good()
        },
        "pbx1",
        "s3cret",
        1,
    );
    assert_eq!(
        r,
        Err(Rejection::CallerId {
            presented: Some("+12065550400".into())
        })
    );
}

/// A request that breaks every rule gets the first rule's answer; fixing
/// each in turn reveals the next, in SPEC §2.1 order.
#[test]
fn rules_apply_in_spec_order() {
    let mut v = east();
    v.termination.disabled = true;
    v.require_encryption = true;
    v.termination.cps_limit = CpsLimit::new(1).unwrap();
    let mut req = TerminationRequest {
        request_uri_host: "vc-nope.trunkd.local",
        source: "203.0.113.1".parse().unwrap(),
        request_uri_user: "+442079460000",
        from_user: Some("+12065550300"),
        ..good()
    };
    let mut w = World::with(vec![v.clone()]);
    let mut seen = Vec::new();
    let mut step = |w: &mut World, req: &TerminationRequest<'_>| {
        let r = w.admit_with_maybe(req);
        seen.push(
            r.as_ref()
                .err()
                .map_or("admitted", Rejection::metric_reason),
        );
    };
    step(&mut w, &req);
    req.request_uri_host = "vc-east.trunkd.local";
    step(&mut w, &req);
    v.termination.disabled = false;
    w.resources = World::with(vec![v.clone()]).resources;
    step(&mut w, &req);
    req.source = EAST_NET.parse().unwrap();
    w.authenticate = false;
    step(&mut w, &req);
    w.authenticate = true;
    step(&mut w, &req);
    req.over_tls = true;
    req.offers_srtp = true;
    step(&mut w, &req); // spends the only token, then fails the calling plan
    step(&mut w, &req);
    w.now.instant += Duration::from_secs(1);
    req.request_uri_user = "+12065550123";
    step(&mut w, &req);
    w.now.instant += Duration::from_secs(1);
    req.from_user = Some("+12065550100");
    step(&mut w, &req);
    assert_eq!(
        seen,
        [
            "unknown_voice_connector",
            "termination_disabled",
            "cidr",
            "auth_challenge",
            "encryption_required",
            "calling_plan",
            "cps",
            "caller_id",
            "admitted"
        ]
    );
}

impl World {
    /// Answers challenges when `authenticate` is set, as a PBX would.
    fn admit_with_maybe(&mut self, req: &TerminationRequest<'_>) -> Result<Admitted, Rejection> {
        let first = self.admit(req);
        match first {
            Err(Rejection::Challenge { .. }) if self.authenticate => {
                self.nc += 1;
                let nc = self.nc;
                self.admit_with(req, "pbx1", "s3cret", nc)
            }
            other => other,
        }
    }
}

fn world_flags() -> impl Strategy<Value = (bool, bool, bool, u8, bool)> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0u8..4,
        any::<bool>(),
    )
}

proptest! {
    /// Whatever the request, admission never panics, answers with a known
    /// status, and everything it admits satisfies every rule.
    #[test]
    fn admitted_calls_satisfy_every_rule(
        (disabled, encrypt, restrict, host_kind, tls) in world_flags(),
        src in prop_oneof![Just("198.51.100.7"), Just("203.0.113.1"), Just("2001:db8::1")],
        user in "\\+12065550123|\\+442079460000|911|933|x|\\PC{0,12}",
        from in "\\+12065550100|\\+12065550300|\\+12065550200|\\PC{0,12}",
        auth in prop_oneof![Just(None), Just(Some("pbx1")), Just(Some("mallory"))],
        steps in 0u64..2000,
    ) {
        let mut v = east();
        v.termination.disabled = disabled;
        v.require_encryption = encrypt;
        if !restrict { v.termination.calling_regions.clear(); }
        let mut w = World::with(vec![v, vc("vc-west")]);
        w.now.instant += Duration::from_millis(steps);
        let host = ["vc-east.trunkd.local", "vc-west.trunkd.local", "vc-zzz.trunkd.local", "10.0.0.1"][host_kind as usize];
        let req = TerminationRequest {
            request_uri_user: &user, request_uri_host: host, source: src.parse().unwrap(),
            over_tls: tls, offers_srtp: tls, from_user: Some(&from), ..good()
        };
        let r = match auth {
            Some(u) => {
                let first = w.admit(&req);
                if matches!(first, Err(Rejection::Challenge { .. })) { w.admit_with(&req, u, "s3cret", 1) } else { first }
            }
            None => w.admit(&req),
        };
        match r {
            Ok(a) => {
                let vc = w.resources.voice_connector(a.vc_id.as_str()).unwrap();
                prop_assert!(!vc.termination.disabled);
                let src: IpAddr = src.parse().unwrap();
                prop_assert!(vc.termination.cidr_allowed_list.is_empty() || vc.termination.cidr_allowed_list.iter().any(|n| n.contains(&src)));
                prop_assert_eq!(vc.termination.credentials.is_empty(), a.auth_user.is_none());
                prop_assert!(!vc.require_encryption || tls || a.is_emergency);
                if let Destination::Number(n) = a.destination {
                    let c = country::country_of(n);
                    prop_assert!(vc.termination.calling_regions.is_empty() || c.is_some_and(|c| vc.termination.calling_regions.contains(&c)));
                } else {
                    prop_assert!(a.is_emergency);
                }
                // A routine call presents one of its VC's numbers; an
                // emergency call whatever the caller had (never refused).
                match a.caller_id.number().and_then(|n| w.resources.number(n)) {
                    Some(num) => prop_assert!(num.is_routable() || a.is_emergency),
                    None => prop_assert!(a.is_emergency),
                }
            }
            Err(r) => {
                prop_assert!([403, 404, 407, 488, 503].contains(&r.status()));
                prop_assert_eq!(r.status() == 407, !r.proxy_authenticate().is_empty());
            }
        }
    }
}

#[test]
fn rule_9_an_emergency_call_is_never_blocked_by_its_caller_id() {
    let mut w = World::new();
    // +12065559999 is in nobody's inventory: a normal call is refused ...
    let stranger = TerminationRequest {
        from_user: Some("+12065559999"),
        pai_user: None,
        ..good()
    };
    assert!(matches!(
        w.admit_with(&stranger, "pbx1", "s3cret", 1),
        Err(Rejection::CallerId { .. })
    ));
    // ... but 911 goes through with the number the caller presented.
    let a = w
        .admit_with(
            &TerminationRequest {
                request_uri_user: "911",
                ..stranger
            },
            "pbx1",
            "s3cret",
            2,
        )
        .unwrap();
    assert!(a.is_emergency);
    assert_eq!(a.caller_id, e164("+12065559999"));
}

/// An extension calling 911 is never given a number it does not have
/// (`1001` must not become `+1001`): the VC's callback number when there is
/// one, else the user part untouched.
#[test]
fn rule_9_an_emergency_call_from_an_extension_keeps_a_caller_id_nobody_invented() {
    let from_extension = |user: &'static str| TerminationRequest {
        request_uri_user: "911",
        from_user: Some(user),
        pai_user: None,
        ..good()
    };
    let mut w = World::new();
    let a = w
        .admit_with(&from_extension("1001"), "pbx1", "s3cret", 1)
        .unwrap();
    assert!(a.is_emergency);
    assert_eq!(a.caller_id, CallerId::Presented("1001".into()));
    assert_eq!(a.caller_id.to_string(), "1001");

    let mut v = east();
    v.emergency.as_mut().unwrap().callback_phone_number = Some(e164("+12065550177"));
    let mut w = World::with(vec![v, vc("vc-west")]);
    let a = w
        .admit_with(&from_extension("1001"), "pbx1", "s3cret", 1)
        .unwrap();
    assert_eq!(a.caller_id, CallerId::Number(e164("+12065550177")));
    // A valid number outside the inventory is still what the caller sent.
    let a = w
        .admit_with(&from_extension("+12065559999"), "pbx1", "s3cret", 2)
        .unwrap();
    assert_eq!(a.caller_id, CallerId::Number(e164("+12065559999")));
}

// ----- recording sessions (SPEC §2.6) ---------------------------------------

impl World {
    fn record(&mut self, req: &TerminationRequest<'_>) -> Result<AdmittedRecording, Rejection> {
        let policy = TerminationPolicy {
            outbound_host_domain: DOMAIN,
            emergency_numbers: &self.emergency_numbers,
            nonce_issuer: &self.issuer,
        };
        self.salt += 1;
        admit_recording(
            &self.resources,
            &policy,
            &mut self.state,
            req,
            self.now,
            self.salt.to_be_bytes(),
        )
    }

    /// [`World::record`] after answering the 407 with `user`/`pw`.
    fn record_with(
        &mut self,
        req: &TerminationRequest<'_>,
        user: &str,
        pw: &str,
        nc: u32,
    ) -> Result<AdmittedRecording, Rejection> {
        let first = self.record(req);
        let Err(Rejection::Challenge {
            proxy_authenticate, ..
        }) = first
        else {
            panic!("expected a challenge, got {first:?}");
        };
        let c = Challenge::best(proxy_authenticate.iter().map(String::as_str)).unwrap();
        let header = answer_challenge(
            &c,
            user,
            pw,
            "INVITE",
            "sip:+12065550123@trunkd.local",
            "cn",
            nc,
        );
        self.record(&TerminationRequest {
            proxy_authorization: Some(&header),
            ..*req
        })
    }
}

#[test]
fn recording_any_request_uri_user_no_caller_id_no_calling_plan() {
    let mut w = World::new();
    // vc-east: US/CA calling plan, caller ID must be its own number. None
    // of it applies to a recording session.
    for (user, from) in [
        ("", None),
        ("recorder", Some("srs")),
        ("+442071838750", Some("+19995550000")),
        ("911", None),
    ] {
        let req = TerminationRequest {
            request_uri_user: user,
            from_user: from,
            ..good()
        };
        let a = w.record_with(&req, "pbx1", "s3cret", 1).unwrap();
        assert_eq!(
            a,
            AdmittedRecording {
                vc_id: vc_id("vc-east"),
                identified_by: IdentifiedBy::Host,
                auth_user: Some("pbx1".into()),
            },
            "{user:?}"
        );
    }
}

#[test]
fn recording_spends_no_cps_token() {
    let mut w = World::new();
    // vc-west: no credentials, CPS 1. Ten sessions in the same instant.
    let base = west("anything", "srs");
    for _ in 0..10 {
        assert!(w.record(&base).is_ok());
    }
    // …and the routine call still has its token.
    assert!(w.admit(&west("+12065550123", "+12065550300")).is_ok());
}

#[test]
fn recording_keeps_identification_source_and_authentication() {
    let mut w = World::new();
    // Unknown VC by host.
    let r = w.record(&TerminationRequest {
        request_uri_host: "vc-north.trunkd.local",
        ..good()
    });
    assert_eq!(r, Err(Rejection::UnknownVoiceConnector));
    // Outside the CIDRs.
    let r = w.record(&TerminationRequest {
        source: "203.0.113.1".parse().unwrap(),
        ..good()
    });
    assert_eq!(r, Err(Rejection::SourceNotAllowed));
    // No credentials: challenged; wrong ones: 403.
    assert!(matches!(
        w.record(&good()),
        Err(Rejection::Challenge { .. })
    ));
    assert_eq!(
        w.record_with(&good(), "pbx1", "wrong", 1),
        Err(Rejection::AuthFailed)
    );
    // Termination disabled.
    let mut v = east();
    v.termination.disabled = true;
    let mut w = World::with(vec![v]);
    assert_eq!(w.record(&good()), Err(Rejection::TerminationDisabled));
}

#[test]
fn recording_keeps_encryption_and_the_client_certificate() {
    let mut v = vc("vc-west");
    v.require_encryption = true;
    let mut w = World::with(vec![v]);
    let base = west("911", "srs");
    // No emergency exemption: a recording is no emergency call.
    assert_eq!(w.record(&base), Err(Rejection::EncryptionRequired));
    let secure = TerminationRequest {
        over_tls: true,
        offers_srtp: true,
        ..base
    };
    assert!(w.record(&secure).is_ok());
    let mut v = vc("vc-west");
    v.termination.require_client_certificate = true;
    let mut w = World::with(vec![v]);
    assert_eq!(
        w.record(&TerminationRequest {
            over_tls: true,
            ..base
        }),
        Err(Rejection::ClientCertificateRequired)
    );
    assert!(w
        .record(&TerminationRequest {
            over_tls: true,
            client_certificate_verified: true,
            ..base
        })
        .is_ok());
}
