//! The parser against the corpus of real recording clients' offers
//! (tests/siprec/, sources in its README) and against broken documents.

use super::*;

/// A corpus offer's metadata XML and SDP (its body, split by hand so these
/// tests do not depend on the multipart parser).
fn offer(name: &str) -> (String, String) {
    let path = format!(
        "{}/../../tests/siprec/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("<?xml").unwrap();
    let end = text.rfind("recording>").unwrap() + "recording>".len();
    let sdp_start = text.find("v=0").unwrap();
    let sdp_end = sdp_start + text[sdp_start..].find("\n--").unwrap();
    (
        text[start..end].to_owned(),
        text[sdp_start..sdp_end].to_owned(),
    )
}

fn parsed(name: &str) -> (Metadata, Vec<Option<String>>) {
    let (xml, sdp) = offer(name);
    let meta = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
    meta.check_complete().unwrap();
    let labels = sdp_labels(sdp.as_bytes());
    meta.check_labels(&labels).unwrap();
    (meta, labels)
}

fn labels(meta: &Metadata) -> Vec<&str> {
    meta.streams.iter().map(|s| s.label.as_str()).collect()
}

/// (label, AoR of the participant sending it) per stream.
fn senders(meta: &Metadata) -> Vec<(&str, Option<&str>)> {
    meta.streams
        .iter()
        .map(|s| {
            (
                s.label.as_str(),
                meta.sender_of(&s.id).and_then(|p| p.aor.as_deref()),
            )
        })
        .collect()
}

#[test]
fn cisco_cube_rfc_namespace_with_participantstreamassoc() {
    let (meta, sdp) = parsed("cisco-cube");
    assert_eq!(meta.dialect, Dialect::Rfc);
    assert_eq!(meta.data_mode.as_deref(), Some("complete"));
    assert_eq!(sdp, [Some("1".into()), Some("2".into())]);
    assert_eq!(meta.sessions.len(), 1);
    assert_eq!(
        meta.sessions[0].sip_session_ids,
        ["e9fffff2020a598b86962867715db0cf;remote=cd0f7093d62c5f0697098fd69a4aa57b"]
    );
    assert_eq!(
        senders(&meta),
        [
            ("1", Some("sip:7301@127.0.0.1")),
            ("2", Some("sip:7300@127.0.0.1"))
        ]
    );
    assert_eq!(meta.participants[0].name, None);
    assert_eq!(meta.participants[1].name.as_deref(), Some("7300"));
    assert_eq!(meta.numbers(), (Some("7301"), Some("7300")));
}

#[test]
fn oracle_acme_draft_namespace_with_send_inside_participant() {
    let (meta, _) = parsed("oracle-acme");
    assert_eq!(meta.dialect, Dialect::Draft);
    assert_eq!(labels(&meta), ["16777227", "16777228"]);
    assert_eq!(
        senders(&meta),
        [
            ("16777227", Some("sip:9000@127.0.0.1")),
            ("16777228", Some("sip:1002@127.0.0.1"))
        ]
    );
    assert_eq!(
        meta.streams[0].session.as_deref(),
        Some("AavRXwIIQj1Q39eJulTipQ==")
    );
    // The apkt:callingParty extension is not a participant's name.
    assert_eq!(meta.participants[0].name.as_deref(), Some("9000"));
}

#[test]
fn avaya_through_oracle_skips_session_extension_data() {
    let (meta, _) = parsed("avaya-oracle");
    assert_eq!(meta.dialect, Dialect::Draft);
    assert_eq!(meta.sessions[0].id, "0rBXFi0CTBB0j8HyGBBrlg==");
    assert_eq!(labels(&meta), ["201835599", "201835600"]);
    assert_eq!(meta.numbers(), (Some("31624895902"), Some("33187164021")));
}

#[test]
fn sonus_prefixed_namespace_and_foreign_call_data() {
    let (meta, _) = parsed("sonus-ribbon");
    assert_eq!(meta.dialect, Dialect::Draft);
    assert_eq!(
        meta.groups,
        [Group {
            id: "MTQ3YzA3YzAtNjdkNy0xMA==".into()
        }]
    );
    assert_eq!(
        meta.sessions[0].group_ref.as_deref(),
        Some("MTQ3YzA3YzAtNjdkNy0xMA==")
    );
    // A bare AoR without a scheme; a blank name is no name.
    assert_eq!(meta.numbers(), (Some("2249888500"), Some("2249888012")));
    assert_eq!(meta.participants[1].name, None);
    assert_eq!(
        senders(&meta),
        [
            ("1", Some("2249888012@127.0.0.1")),
            ("2", Some("2249888500@127.0.0.1"))
        ]
    );
}

#[test]
fn avaya_sbce_camel_case_data_mode_and_send_only_associations() {
    let (meta, _) = parsed("avaya-sbce");
    assert_eq!(meta.data_mode.as_deref(), Some("complete"));
    assert_eq!(labels(&meta), ["10", "20"]);
    assert_eq!(
        senders(&meta),
        [
            ("10", Some("sip:9878942259@127.0.0.1")),
            ("20", Some("sip:ASBCE@asbce.com"))
        ]
    );
    assert!(meta.participants.iter().all(|p| p.recv.is_empty()));
}

#[test]
fn intrado_one_stream_multiline_tags() {
    let (meta, sdp) = parsed("intrado-viper");
    assert_eq!(sdp, [Some("1".into())]);
    assert_eq!(meta.participants.len(), 1);
    assert_eq!(
        meta.participants[0].send,
        ["ZDY2YTc1YTMtYTAzZi00ZDQwLTkzNmYtYTFm"]
    );
    assert_eq!(meta.participants[0].recv, meta.participants[0].send);
    assert_eq!(meta.numbers(), (Some("4058327108"), None));
}

#[test]
fn no_namespace_with_aor_elements() {
    let (meta, _) = parsed("broadworks-order");
    assert_eq!(meta.dialect, Dialect::NoNamespace);
    assert_eq!(
        meta.participants[0].aor.as_deref(),
        Some("sip:+15550100@127.0.0.1;user=phone")
    );
    assert_eq!(meta.participants[0].name.as_deref(), Some("DemoCorp Demo"));
    assert_eq!(meta.numbers(), (Some("+15550100"), Some("+15550199")));
    assert_eq!(senders(&meta)[0].0, "1");
}

const GOOD: &str = r#"<recording xmlns="urn:ietf:params:xml:ns:recording:1"><participant participant_id="p"><nameID aor="sip:a@h"/></participant><stream stream_id="s"><label>1</label></stream></recording>"#;

#[test]
fn broken_documents_say_what_is_wrong() {
    assert!(parse(GOOD.as_bytes()).is_ok());
    let cases: &[(&str, MetadataError)] = &[
        (
            "v=0\r\n",
            MetadataError::NotXml("unknown token at 1:1".into()),
        ),
        (
            "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><participant",
            MetadataError::NotXml("the root node was opened but never closed".into()),
        ),
        ("<rec/>", MetadataError::WrongRoot("rec".into())),
        (
            "<recording xmlns='urn:example'/>",
            MetadataError::UnknownNamespace("urn:example".into()),
        ),
        (
            "<!DOCTYPE r [<!ENTITY a 'x'>]><recording/>",
            MetadataError::Dtd,
        ),
        (
            "<recording><participant><aor>sip:a@h</aor></participant></recording>",
            MetadataError::MissingId {
                element: "participant",
            },
        ),
        (
            "<recording><stream id='s1'><mode>separate</mode></stream></recording>",
            MetadataError::StreamWithoutLabel {
                stream: "s1".into(),
            },
        ),
    ];
    for (xml, want) in cases {
        let got = parse(xml.as_bytes());
        assert_eq!(got.as_ref().err(), Some(want), "{xml}");
    }
    assert_eq!(
        parse(b"<recording><stream id='s'><label>1</label></stream></recording>")
            .unwrap()
            .check_complete(),
        Err(MetadataError::NoParticipant)
    );
    assert_eq!(
        parse(b"<recording><participant id='p'/></recording>")
            .unwrap()
            .check_complete(),
        Err(MetadataError::NoStream)
    );
    assert_eq!(parse(&[0x3c, 0xff, 0x3e]), Err(MetadataError::NotUtf8));
}

#[test]
fn a_label_on_no_m_line_is_named() {
    let meta = parse(GOOD.as_bytes()).unwrap();
    let sdp = sdp_labels(b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=label:2\r\nm=audio 3 RTP/AVP 0\r\n");
    assert_eq!(sdp, [Some("2".into()), None]);
    assert_eq!(
        meta.check_labels(&sdp),
        Err(MetadataError::LabelNotInSdp { label: "1".into() })
    );
    assert_eq!(
        MetadataError::LabelNotInSdp { label: "1".into() }.to_string(),
        "metadata stream label \"1\" is on no SDP m-line"
    );
}

#[test]
fn size_and_node_caps() {
    let big = vec![b' '; MAX_METADATA_BYTES + 1];
    assert_eq!(
        parse(&big),
        Err(MetadataError::TooLarge {
            size: MAX_METADATA_BYTES + 1,
            max: MAX_METADATA_BYTES
        })
    );
    let many = format!(
        "<recording>{}</recording>",
        "<x/>".repeat(MAX_NODES as usize)
    );
    assert!(many.len() < MAX_METADATA_BYTES);
    assert_eq!(
        parse(many.as_bytes()),
        Err(MetadataError::TooManyNodes { max: MAX_NODES })
    );
}

#[test]
fn vendor_elements_in_our_names_but_other_namespaces_are_ignored() {
    let xml = r#"<recording xmlns="urn:ietf:params:xml:ns:recording:1" xmlns:v="urn:vendor">
      <participant participant_id="p"><nameID aor="sip:a@h"/></participant>
      <v:participant participant_id="ghost"/>
      <v:stream><v:label>9</v:label></v:stream>
      <stream stream_id="s"><label>1</label><v:label>7</v:label></stream></recording>"#;
    let meta = parse(xml.as_bytes()).unwrap();
    assert_eq!(meta.participants.len(), 1);
    assert_eq!(labels(&meta), ["1"]);
}

#[test]
fn metadata_types() {
    assert!(is_metadata_type("application", "rs-metadata+xml"));
    assert!(is_metadata_type("Application", "RS-Metadata"));
    assert!(!is_metadata_type("application", "sdp"));
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    /// The corpus documents, for mutation.
    fn corpus() -> Vec<Vec<u8>> {
        [
            "cisco-cube",
            "oracle-acme",
            "avaya-oracle",
            "sonus-ribbon",
            "avaya-sbce",
            "intrado-viper",
            "broadworks-order",
        ]
        .iter()
        .map(|n| super::offer(n).0.into_bytes())
        .collect()
    }

    proptest! {
        /// Any bytes: a model or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse(&bytes);
        }

        /// Real documents cut short or with a byte changed: a model or an
        /// error, never a panic; a model's labels are checked without one.
        #[test]
        fn mutated_corpus_documents_never_panic(
            doc in 0usize..7,
            cut in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut d = corpus()[doc].clone();
            let i = at.index(d.len());
            d[i] = byte;
            d.truncate(cut.index(d.len() + 1).max(1));
            if let Ok(m) = parse(&d) {
                let _ = m.check_complete();
                let _ = m.check_labels(&[Some("1".into())]);
                let _ = m.numbers();
            }
        }
    }
}
