//! Typed views of the headers a gateway reads, parsed on demand.
//!
//! Nothing here runs when a message is parsed unless validation needs it:
//! [`Headers`] keeps raw values, and these accessors parse them each time
//! they are called, returning [`HeaderError`] that names the header.

mod contact;
mod content_type;
mod name_addr;
mod scalar;
mod via;

pub use contact::Contact;
pub use content_type::ContentType;
pub use name_addr::{DisplayName, NameAddr};
pub use scalar::{CSeq, CallId, ContentLength, MaxForwards};
pub use via::{Transport, Via, ViaIds, MAGIC_COOKIE};

use bytes::Bytes;

use crate::error::{HeaderError, SyntaxError};
use crate::headers::{Header, Headers, KnownHeader};

/// From and To carry at most one `tag`, with a value (§25.1: `tag-param =
/// "tag" EQUAL token`). A bare `;tag` or a second tag would leave "the"
/// tag to whichever reader looked first: the first row says no tag, a
/// response appends one, and the dialog is keyed on a tag the peer never
/// sees first (found by fuzzing the transaction layer).
fn one_tag(na: NameAddr) -> Result<NameAddr, SyntaxError> {
    let tags = na
        .params
        .iter()
        .filter(|p| p.name.eq_ignore_ascii_case(b"tag"));
    let (count, bare) = tags.fold((0, false), |(n, bare), p| {
        (n + 1, bare || p.value.is_none())
    });
    tag_rule(count, bare).map(|()| na)
}

/// Checks a From or To value as [`NameAddr::parse`] and [`one_tag`] would,
/// with the same errors, building nothing (validation).
fn check_one_tag(v: &Bytes) -> Result<(), SyntaxError> {
    let (mut count, mut bare) = (0, false);
    NameAddr::check(v, false, |name, value| {
        if name.eq_ignore_ascii_case(b"tag") {
            count += 1;
            bare |= value.is_none();
        }
    })?;
    tag_rule(count, bare)
}

/// [`one_tag`]'s rule, from the number of `tag` parameters and whether one
/// of them has no value.
fn tag_rule(count: usize, bare: bool) -> Result<(), SyntaxError> {
    match count {
        0 => Ok(()),
        1 if bare => Err(SyntaxError("tag without a value")),
        1 => Ok(()),
        _ => Err(SyntaxError("more than one tag")),
    }
}

fn invalid(name: &'static str) -> impl Fn(SyntaxError) -> HeaderError {
    move |e| HeaderError::Invalid { name, detail: e.0 }
}

impl Headers {
    /// The single row of a single-valued header, if present.
    fn single(&self, k: KnownHeader) -> Result<Option<&Bytes>, HeaderError> {
        let mut rows = self.rows_of(k);
        let first = rows.next().map(Header::value);
        if rows.next().is_some() {
            return Err(HeaderError::Multiple(k.canonical()));
        }
        Ok(first)
    }

    fn required(&self, k: KnownHeader) -> Result<&Bytes, HeaderError> {
        self.single(k)?.ok_or(HeaderError::Missing(k.canonical()))
    }

    /// Every Via value, top first, rows split at commas (§20.42).
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        self.rows_of(KnownHeader::Via)
            .flat_map(|h| crate::headers::split_list(h.value()))
            .map(|v| Via::parse(&v).map_err(invalid("Via")))
            .collect()
    }

    /// Checks every Via as [`Headers::vias`] would (same errors), keeping
    /// none: for validation. `None` without a Via, else whether the top
    /// one has a branch.
    pub(crate) fn check_vias(&self) -> Result<Option<bool>, HeaderError> {
        let mut top_has_branch = None;
        for v in self
            .rows_of(KnownHeader::Via)
            .flat_map(|h| crate::headers::split_list(h.value()))
        {
            let mut branch = false;
            Via::check(&v, |name, value| {
                branch |= value.is_some() && name.eq_ignore_ascii_case(b"branch");
            })
            .map_err(invalid("Via"))?;
            top_has_branch.get_or_insert(branch);
        }
        Ok(top_has_branch)
    }

    /// Checks the topmost Via as [`Headers::top_via`] would (same
    /// errors), keeping nothing: for validation.
    pub(crate) fn check_top_via(&self) -> Result<(), HeaderError> {
        Via::check(&self.top_via_value()?, |_, _| ()).map_err(invalid("Via"))
    }

    /// The topmost Via (§18.2.2 sends responses there).
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        Via::parse(&self.top_via_value()?).map_err(invalid("Via"))
    }

    /// The topmost Via's transport, sent-by, branch and rport, read as
    /// [`Headers::top_via`] reads it (same errors) without building its
    /// parameter list: what is asked of every message.
    pub fn top_via_ids(&self) -> Result<ViaIds, HeaderError> {
        ViaIds::parse(&self.top_via_value()?).map_err(invalid("Via"))
    }

    /// The topmost Via's value: the first element of the first Via row.
    fn top_via_value(&self) -> Result<Bytes, HeaderError> {
        let first = self
            .get_of(KnownHeader::Via)
            .ok_or(HeaderError::Missing("Via"))?;
        Ok(crate::headers::split_list(first).next().unwrap_or_default())
    }

    /// The top Via's branch, if it has one, from its parameters alone
    /// ([`Via::header_param`]): for messages the parser has validated, as
    /// [`Headers::from_tag`]. A response's transaction is found by it.
    pub fn top_via_branch(&self) -> Result<Option<Bytes>, HeaderError> {
        Via::header_param(&self.top_via_value()?, "branch").map_err(invalid("Via"))
    }

    /// From (§20.20).
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.required(KnownHeader::From)?, false)
            .and_then(one_tag)
            .map_err(invalid("From"))
    }

    /// To (§20.39).
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.required(KnownHeader::To)?, false)
            .and_then(one_tag)
            .map_err(invalid("To"))
    }

    /// Checks From as [`Headers::from`] would (same errors), keeping
    /// nothing: for validation.
    pub(crate) fn check_from(&self) -> Result<(), HeaderError> {
        check_one_tag(self.required(KnownHeader::From)?).map_err(invalid("From"))
    }

    /// Checks To as [`Headers::to`] would (same errors), keeping nothing.
    pub(crate) fn check_to(&self) -> Result<(), HeaderError> {
        check_one_tag(self.required(KnownHeader::To)?).map_err(invalid("To"))
    }

    /// From's tag (§19.3), if it has one. The URI is not parsed, so this
    /// is for messages the parser has validated (see
    /// [`NameAddr::header_param`]).
    pub fn from_tag(&self) -> Result<Option<Bytes>, HeaderError> {
        let v = self.required(KnownHeader::From)?;
        NameAddr::header_param(v, false, "tag").map_err(invalid("From"))
    }

    /// To's tag (§19.3), if it has one; as [`Headers::from_tag`].
    pub fn to_tag(&self) -> Result<Option<Bytes>, HeaderError> {
        let v = self.required(KnownHeader::To)?;
        NameAddr::header_param(v, false, "tag").map_err(invalid("To"))
    }

    /// Call-ID (§20.8).
    pub fn call_id(&self) -> Result<CallId, HeaderError> {
        CallId::parse(self.required(KnownHeader::CallId)?).map_err(invalid("Call-ID"))
    }

    /// CSeq (§20.16).
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.required(KnownHeader::CSeq)?).map_err(invalid("CSeq"))
    }

    /// Max-Forwards, if present (§20.22).
    pub fn max_forwards(&self) -> Result<Option<MaxForwards>, HeaderError> {
        self.single(KnownHeader::MaxForwards)?
            .map(|v| MaxForwards::parse(v).map_err(invalid("Max-Forwards")))
            .transpose()
    }

    /// Content-Length, if present (§20.14).
    pub fn content_length(&self) -> Result<Option<ContentLength>, HeaderError> {
        self.single(KnownHeader::ContentLength)?
            .map(|v| ContentLength::parse(v).map_err(invalid("Content-Length")))
            .transpose()
    }

    /// Contact, if present (§20.10).
    pub fn contact(&self) -> Result<Option<Contact>, HeaderError> {
        let values = self.values_of(KnownHeader::Contact);
        if values.is_empty() {
            return Ok(None);
        }
        Contact::parse(&values)
            .map(Some)
            .map_err(invalid("Contact"))
    }

    /// Checks Contact as [`Headers::contact`] would (same errors), keeping
    /// nothing: for validation.
    pub(crate) fn check_contact(&self) -> Result<(), HeaderError> {
        let values = self.values_of(KnownHeader::Contact);
        Contact::check(&values).map_err(invalid("Contact"))
    }

    /// Route, top first (§20.34).
    pub fn route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        contact::parse_route(&self.values_of(KnownHeader::Route)).map_err(invalid("Route"))
    }

    /// Record-Route, top first (§20.30).
    pub fn record_route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        contact::parse_route(&self.values_of(KnownHeader::RecordRoute))
            .map_err(invalid("Record-Route"))
    }

    /// Content-Type, if present (§20.15).
    pub fn content_type(&self) -> Result<Option<ContentType>, HeaderError> {
        self.single(KnownHeader::ContentType)?
            .map(|v| ContentType::parse(v).map_err(invalid("Content-Type")))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors() {
        let mut h = Headers::new();
        h.append(
            "v",
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com",
        )
        .unwrap();
        h.append("f", "<sip:a@example.com>;tag=1").unwrap();
        h.append("t", "sip:b@example.com").unwrap();
        h.append("i", "abc@host").unwrap();
        h.append("CSeq", "1 INVITE").unwrap();
        h.append("m", "*").unwrap();
        h.append("Record-Route", "<sip:p1;lr>, <sip:p2;lr>")
            .unwrap();
        h.append("c", "application/sdp").unwrap();
        assert_eq!(h.vias().unwrap().len(), 2);
        assert_eq!(
            h.top_via().unwrap().branch().map(|b| &b[..]),
            Some(&b"z9hG4bK1"[..])
        );
        assert_eq!(h.from().unwrap().tag().map(|t| &t[..]), Some(&b"1"[..]));
        assert_eq!(h.from_tag(), Ok(Some(Bytes::from_static(b"1"))));
        assert_eq!(h.to_tag(), Ok(None));
        assert!(h.to().unwrap().tag().is_none());
        assert_eq!(
            h.call_id().unwrap().as_bytes(),
            &Bytes::from_static(b"abc@host")
        );
        assert_eq!(h.cseq().unwrap().seq, 1);
        assert_eq!(h.max_forwards(), Ok(None));
        assert_eq!(h.contact(), Ok(Some(Contact::Wildcard)));
        assert_eq!(h.record_route().unwrap().len(), 2);
        assert!(h.route().unwrap().is_empty());
        assert!(h.content_type().unwrap().unwrap().is("application", "sdp"));
        h.append("CSeq", "2 INVITE").unwrap();
        assert_eq!(h.cseq(), Err(HeaderError::Multiple("CSeq")));
        h.append("Max-Forwards", "256").unwrap();
        assert!(matches!(
            h.max_forwards(),
            Err(HeaderError::Invalid {
                name: "Max-Forwards",
                ..
            })
        ));
        for bad in ["<sip:b@example.com>;tag", "<sip:b@example.com>;tag=1;TAG=2"] {
            let mut h = Headers::new();
            h.append("To", bad).unwrap();
            h.append("From", bad).unwrap();
            assert!(
                matches!(h.to(), Err(HeaderError::Invalid { name: "To", .. })),
                "{bad}"
            );
            assert!(
                matches!(h.from(), Err(HeaderError::Invalid { name: "From", .. })),
                "{bad}"
            );
        }
        let empty = Headers::new();
        assert_eq!(empty.call_id(), Err(HeaderError::Missing("Call-ID")));
        assert_eq!(empty.top_via(), Err(HeaderError::Missing("Via")));
    }

    /// The branch read from the parameters alone is the one the whole
    /// parse finds, for every shape of top Via a validated message can have.
    #[test]
    fn top_via_branch_is_the_parsed_vias_branch() {
        for via in [
            "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com;branch=z9hG4bK2",
            "SIP/2.0/UDP 192.0.2.1:5060;rport;BRANCH=z9hG4bK-x;received=192.0.2.9",
            "SIP / 2.0 / UDP [2001:db8::1]:5070 ; branch = z9hG4bK.y ; ttl=3",
            "SIP/2.0/TLS host.example.com",
            "SIP/2.0/UDP host.example.com:5060;maddr=224.0.0.1;branch=z9hG4bKa;branch=z9hG4bKb",
        ] {
            let mut h = Headers::new();
            h.append("Via", via).unwrap();
            h.append("Via", "SIP/2.0/UDP c.example.com;branch=z9hG4bK3")
                .unwrap();
            let parsed = h.top_via().unwrap().branch().cloned();
            assert_eq!(h.top_via_branch(), Ok(parsed), "{via}");
        }
        let mut bad = Headers::new();
        bad.append("Via", "SIP/2.0/UDP a;branch=z;=x").unwrap();
        assert!(matches!(
            bad.top_via_branch(),
            Err(HeaderError::Invalid { name: "Via", .. })
        ));
        assert_eq!(
            Headers::new().top_via_branch(),
            Err(HeaderError::Missing("Via"))
        );
    }

    fn via_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let one = (
            prop_oneof![
                Just("SIP/2.0/UDP"),
                Just("SIP / 2.0 / TCP"),
                Just("SIP/2.0"),
                Just("SIP/2.0/UDP"),
                Just("x/y/z")
            ],
            prop_oneof![Just(" "), Just(""), Just("  ")],
            prop_oneof![
                Just("host.example.com"),
                Just("192.0.2.1"),
                Just("[2001:db8::1]"),
                Just("-bad"),
                Just(""),
                Just("[::1")
            ],
            prop_oneof![
                Just(""),
                Just(":5060"),
                Just(" : 5070"),
                Just(":70000"),
                Just(":")
            ],
            proptest::collection::vec(
                prop_oneof![
                    Just(";branch=z9hG4bK1"),
                    Just(";branch"),
                    Just(";branch=\"q\""),
                    Just(";rport"),
                    Just(";rport=5060"),
                    Just(";rport=x"),
                    Just(";received=192.0.2.9"),
                    Just(";received=nope"),
                    Just(";ttl=300"),
                    Just(";ttl=3"),
                    Just(";maddr=224.0.0.1"),
                    Just(";maddr=-x"),
                    Just(";=y"),
                    Just(" ; x = 1"),
                    Just(";a b"),
                    Just(";BRANCH=z9hG4bK2"),
                ],
                0..4,
            ),
        )
            .prop_map(|(p, ws, h, port, params)| format!("{p}{ws}{h}{port}{}", params.concat()));
        proptest::collection::vec(one, 1..3).prop_map(|v| v.join(", "))
    }

    fn name_addr_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let uri = (
            prop_oneof![
                Just("sip:"),
                Just("sips:"),
                Just("tel:"),
                Just("SIP:"),
                Just("x"),
                Just("")
            ],
            prop_oneof![
                Just(""),
                Just("alice@"),
                Just("a:pw@"),
                Just("%41b@"),
                Just("%4@"),
                Just("@"),
                Just("a b@")
            ],
            prop_oneof![
                Just("example.com"),
                Just("192.0.2.1"),
                Just("[2001:db8::1]"),
                Just("-bad-"),
                Just("1.2.3.999"),
                Just(""),
                Just("[::1")
            ],
            prop_oneof![Just(""), Just(":5060"), Just(":99999"), Just(":x")],
            prop_oneof![
                Just(""),
                Just(";transport=udp"),
                Just(";lr"),
                Just(";=x"),
                Just(";a="),
                Just(";%zz"),
                Just(";a=b;c")
            ],
            prop_oneof![Just(""), Just("?h=v"), Just("?h"), Just("?a=b&c=d")],
        )
            .prop_map(|(a, b, c, d, e, f)| format!("{a}{b}{c}{d}{e}{f}"));
        let params = proptest::collection::vec(
            prop_oneof![
                Just(";tag=1"),
                Just(";tag"),
                Just(";TAG=2"),
                Just(";x=\"q\""),
                Just(";x=\"q"),
                Just(";=y"),
                Just(" ; expires = 3"),
                Just(";a b"),
                Just(";lr"),
            ],
            0..3,
        )
        .prop_map(|v| v.concat());
        (
            prop_oneof![
                Just(""),
                Just("\"Bob\" "),
                Just("Bob "),
                Just("\"B\\\"o\" "),
                Just("\"open ")
            ],
            any::<bool>(),
            uri,
            params,
        )
            .prop_map(|(dn, angle, uri, params)| {
                if angle {
                    format!("{dn}<{uri}>{params}")
                } else {
                    format!("{uri}{params}")
                }
            })
    }

    proptest::proptest! {
        /// Validation's From/To check accepts and rejects exactly what a
        /// whole parse with its one-tag rule does, with the same error.
        #[test]
        fn checking_vias_or_reading_their_ids_is_parsing_them(rows in proptest::collection::vec(via_like(), 0..3)) {
            let mut h = Headers::new();
            for r in &rows {
                let _ = h.append("Via", r.clone());
            }
            let parsed = h.vias().map(|v| v.first().map(|top| top.branch().is_some()));
            proptest::prop_assert_eq!(h.check_vias(), parsed, "{:?}", rows);
            proptest::prop_assert_eq!(h.check_top_via(), h.top_via().map(drop), "{:?}", rows);
            proptest::prop_assert_eq!(h.top_via_ids(), h.top_via().map(|v| v.ids()), "{:?}", rows);
        }

        #[test]
        fn checking_contact_is_parsing_it_and_dropping_it(
            rows in proptest::collection::vec(
                proptest::prop_oneof![name_addr_like(), proptest::strategy::Just("*".to_owned())],
                0..3,
            ),
        ) {
            let mut h = Headers::new();
            for r in &rows {
                let _ = h.append("Contact", r.clone());
            }
            proptest::prop_assert_eq!(h.check_contact(), h.contact().map(drop), "{:?}", rows);
        }

        #[test]
        fn checking_a_name_addr_is_parsing_it_and_dropping_it(v in name_addr_like()) {
            let v = Bytes::from(v);
            let parsed = NameAddr::parse(&v, false).and_then(one_tag).map(drop);
            proptest::prop_assert_eq!(check_one_tag(&v), parsed, "{:?}", v);
        }

        /// `without_param` accepts what `parse` accepts, with the same
        /// error; its text parses to what `parse` built less the tags, and
        /// is the value as received when there was no tag.
        #[test]
        fn a_name_addr_without_its_tag_is_the_parse_less_the_tag(v in name_addr_like()) {
            let v = Bytes::from(v);
            match (NameAddr::parse(&v, false), NameAddr::without_param(&v, false, "tag")) {
                (Ok(mut na), Ok(text)) => {
                    let had_tag = na.params.contains("tag");
                    na.params.remove("tag");
                    proptest::prop_assert_eq!(NameAddr::parse(&text, false), Ok(na), "{:?}", v);
                    if !had_tag {
                        proptest::prop_assert_eq!(&text, &v);
                    }
                }
                (parsed, text) => {
                    proptest::prop_assert_eq!(text.map(drop), parsed.map(drop), "{:?}", v);
                }
            }
        }

        /// `uri_text` accepts what `parse` accepts, with the same error,
        /// and its text parses to the URI `parse` built.
        #[test]
        fn a_name_addrs_uri_text_is_the_uri_it_parses_to(v in name_addr_like()) {
            let v = Bytes::from(v);
            match (NameAddr::parse(&v, false), NameAddr::uri_text(&v, false)) {
                (Ok(na), Ok(text)) => {
                    proptest::prop_assert_eq!(crate::Uri::parse(&text), Ok(na.uri), "{:?}", v);
                }
                (parsed, text) => {
                    proptest::prop_assert_eq!(text.map(drop), parsed.map(drop), "{:?}", v);
                }
            }
        }
    }
}
