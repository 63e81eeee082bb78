//! SIPREC recording metadata (RFC 7865 data model, RFC 7866 transport):
//! the `application/rs-metadata+xml` (or the drafts' `application/rs-metadata`)
//! part of a recording client's INVITE, parsed into a typed [`Metadata`].
//!
//! Pure: bytes in, a model or a [`MetadataError`] with a precise reason
//! out. Real recording clients (SRCs) do not all speak the RFC: they
//! differ in the namespace (`urn:ietf:params:xml:ns:recording:1` of the
//! RFC, `urn:ietf:params:xml:ns:recording` of the drafts, or none), in the
//! id attributes (`participant_id`/`session_id`/`stream_id` of the RFC,
//! `id` and `session` of the drafts), in where a participant's streams are
//! named (`participantstreamassoc` of the RFC, `send`/`recv` inside the
//! `participant` of the drafts), in `datamode` vs `dataMode`, and in
//! `nameID aor="…"` vs `<aor>`. All of these are read. Vendor extension
//! elements (Cisco `ExtensionData`, Oracle/Acme `apkt:*`, Sonus
//! `callData`, …) live in their own namespaces or under `extensiondata`
//! and are skipped: only elements in the root's namespace are read.
//!
//! Bounded: at most [`MAX_METADATA_BYTES`] of input and [`MAX_NODES`]
//! XML nodes, no DTD (so no entity expansion), parsed by `roxmltree`
//! (read-only; see docs/decisions.md).

use std::fmt;

/// The largest metadata part read. RFC 7865 documents of real two-party
/// calls are 1–4 KiB; a conference with many participants stays far
/// below this.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The most XML nodes (elements, text, attributes' owners, comments) a
/// document may have: a cap on memory independent of its byte size.
pub const MAX_NODES: u32 = 4096;

/// The namespace of RFC 7865 §9.
pub const NS_RFC: &str = "urn:ietf:params:xml:ns:recording:1";
/// The namespace of draft-ietf-siprec-metadata (before `:1`), which Oracle
/// (Acme Packet) and Sonus SBCs still send.
pub const NS_DRAFT: &str = "urn:ietf:params:xml:ns:recording";

/// Whether a body part's media type is recording metadata (RFC 7866 §9:
/// `application/rs-metadata+xml`; `application/rs-metadata` of the drafts,
/// which some recorders still send). Case-insensitive.
pub fn is_metadata_type(kind: &str, subtype: &str) -> bool {
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("rs-metadata+xml")
            || subtype.eq_ignore_ascii_case("rs-metadata"))
}

/// Which spelling of the metadata a document uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `urn:ietf:params:xml:ns:recording:1` (RFC 7865).
    Rfc,
    /// `urn:ietf:params:xml:ns:recording` (the drafts).
    Draft,
    /// No namespace at all.
    NoNamespace,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Rfc => "rfc7865",
            Dialect::Draft => "draft",
            Dialect::NoNamespace => "no-namespace",
        })
    }
}

/// A recording session's metadata (RFC 7865 §6): who talks on which
/// stream of which communication session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub dialect: Dialect,
    /// `complete` or `partial` (RFC 7865 §6.1); `None` when absent.
    pub data_mode: Option<String>,
    pub groups: Vec<Group>,
    pub sessions: Vec<Session>,
    pub participants: Vec<Participant>,
    pub streams: Vec<Stream>,
}

/// A group of communication sessions (RFC 7865 §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
}

/// A communication session being recorded (RFC 7865 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// `sipSessionID` values (RFC 7989 Session-IDs of the recorded call).
    pub sip_session_ids: Vec<String>,
    /// The `group-ref` the session belongs to.
    pub group_ref: Option<String>,
}

/// A participant of the recorded call (RFC 7865 §6.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: String,
    /// The address of record, as sent (`sip:alice@example.com`, or a
    /// bare `2249888500@host` from some SBCs).
    pub aor: Option<String>,
    /// The display name, trimmed; `None` when absent or blank.
    pub name: Option<String>,
    /// Ids of the streams the participant sends (its voice).
    pub send: Vec<String>,
    /// Ids of the streams the participant receives.
    pub recv: Vec<String>,
}

impl Participant {
    /// The user part of the AoR (`alice` of `sip:alice@example.com`,
    /// `2249888500` of `2249888500@host`), when it has one.
    pub fn user(&self) -> Option<&str> {
        let aor = self.aor.as_deref()?.trim();
        let rest = ["sips:", "sip:", "tel:"]
            .iter()
            .find_map(|s| {
                aor.get(..s.len())
                    .filter(|p| p.eq_ignore_ascii_case(s))
                    .map(|_| &aor[s.len()..])
            })
            .unwrap_or(aor);
        let user = rest.split(['@', ';', '?']).next()?;
        (!user.is_empty()).then_some(user)
    }
}

/// A media stream of the recording session (RFC 7865 §6.6), tied to an
/// SDP m-line by its `a=label` (RFC 4574).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub id: String,
    pub label: String,
    /// The communication session it belongs to.
    pub session: Option<String>,
}

/// Why a metadata part is not usable; each names what is wrong so the
/// SRC's operator can fix it from the `Warning` of the refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata is {size} bytes, more than {max}")]
    TooLarge { size: usize, max: usize },
    #[error("metadata is not UTF-8")]
    NotUtf8,
    #[error("metadata has more than {max} XML nodes")]
    TooManyNodes { max: u32 },
    #[error("metadata has a DTD (not accepted)")]
    Dtd,
    #[error("metadata is not XML: {0}")]
    NotXml(String),
    #[error("metadata root is <{0}>, not <recording>")]
    WrongRoot(String),
    #[error("metadata namespace {0:?} is not urn:ietf:params:xml:ns:recording[:1]")]
    UnknownNamespace(String),
    #[error("metadata <{element}> has no id")]
    MissingId { element: &'static str },
    #[error("metadata stream {stream:?} has no label")]
    StreamWithoutLabel { stream: String },
    #[error("metadata has no participant")]
    NoParticipant,
    #[error("metadata has no stream")]
    NoStream,
    #[error("metadata stream label {label:?} is on no SDP m-line")]
    LabelNotInSdp { label: String },
    #[error("multipart body has no SDP part")]
    NoSdp,
}

/// Parses a metadata part (bounded, see the crate doc).
pub fn parse(bytes: &[u8]) -> Result<Metadata, MetadataError> {
    if bytes.len() > MAX_METADATA_BYTES {
        return Err(MetadataError::TooLarge {
            size: bytes.len(),
            max: MAX_METADATA_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)?;
    // A UTF-8 byte order mark is not XML's business.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => MetadataError::TooManyNodes { max: MAX_NODES },
        roxmltree::Error::DtdDetected => MetadataError::Dtd,
        e => MetadataError::NotXml(e.to_string()),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "recording" {
        return Err(MetadataError::WrongRoot(root.tag_name().name().to_owned()));
    }
    let ns = root.tag_name().namespace();
    let dialect = match ns {
        Some(NS_RFC) => Dialect::Rfc,
        Some(NS_DRAFT) => Dialect::Draft,
        None => Dialect::NoNamespace,
        Some(other) => return Err(MetadataError::UnknownNamespace(other.to_owned())),
    };
    let ours = |n: &roxmltree::Node<'_, '_>| n.is_element() && n.tag_name().namespace() == ns;
    let mut meta = Metadata {
        dialect,
        data_mode: None,
        groups: Vec::new(),
        sessions: Vec::new(),
        participants: Vec::new(),
        streams: Vec::new(),
    };
    // `participantstreamassoc`s may come before the participant they name.
    let mut assocs: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for el in root.children().filter(ours) {
        match el.tag_name().name() {
            name if name.eq_ignore_ascii_case("datamode") => {
                meta.data_mode = text_of(&el);
            }
            "group" => meta.groups.push(Group {
                id: id_of(&el, "group_id", "group")?,
            }),
            "session" => meta.sessions.push(Session {
                id: id_of(&el, "session_id", "session")?,
                sip_session_ids: children(&el, ns, "sipSessionID")
                    .filter_map(|c| text_of(&c))
                    .collect(),
                group_ref: children(&el, ns, "group-ref")
                    .find_map(|c| text_of(&c))
                    .or_else(|| attr(&el, "group_ref")),
            }),
            "participant" => {
                let name_id = children(&el, ns, "nameID").next();
                let aor = name_id
                    .as_ref()
                    .and_then(|n| attr(n, "aor"))
                    .or_else(|| children(&el, ns, "aor").find_map(|c| text_of(&c)));
                let name = name_id
                    .as_ref()
                    .and_then(|n| children(n, ns, "name").find_map(|c| text_of(&c)))
                    .or_else(|| children(&el, ns, "name").find_map(|c| text_of(&c)));
                meta.participants.push(Participant {
                    id: id_of(&el, "participant_id", "participant")?,
                    aor,
                    name,
                    send: children(&el, ns, "send")
                        .filter_map(|c| text_of(&c))
                        .collect(),
                    recv: children(&el, ns, "recv")
                        .filter_map(|c| text_of(&c))
                        .collect(),
                });
            }
            "participantstreamassoc" => {
                let id = attr(&el, "participant_id")
                    .or_else(|| attr(&el, "participant"))
                    .or_else(|| attr(&el, "id"))
                    .ok_or(MetadataError::MissingId {
                        element: "participantstreamassoc",
                    })?;
                assocs.push((
                    id,
                    children(&el, ns, "send")
                        .filter_map(|c| text_of(&c))
                        .collect(),
                    children(&el, ns, "recv")
                        .filter_map(|c| text_of(&c))
                        .collect(),
                ));
            }
            "stream" => {
                let id = id_of(&el, "stream_id", "stream")?;
                let label = children(&el, ns, "label")
                    .find_map(|c| text_of(&c))
                    .ok_or_else(|| MetadataError::StreamWithoutLabel { stream: id.clone() })?;
                let session = attr(&el, "session_id").or_else(|| attr(&el, "session"));
                meta.streams.push(Stream { id, label, session });
            }
            // sessionrecordingassoc, participantsessionassoc, extensiondata
            // and anything newer: not needed to record.
            _ => {}
        }
    }
    for (id, send, recv) in assocs {
        match meta.participants.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                p.send.extend(send);
                p.recv.extend(recv);
            }
            // A partial update may associate a participant the SRC sent
            // in an earlier document: keep it, without a name.
            None => meta.participants.push(Participant {
                id,
                aor: None,
                name: None,
                send,
                recv,
            }),
        }
    }
    Ok(meta)
}

impl Metadata {
    /// What a recording session's first offer must have (RFC 7866 §6.1.1:
    /// the SRC describes the recorded call): a participant and a stream.
    pub fn check_complete(&self) -> Result<(), MetadataError> {
        if self.participants.is_empty() {
            return Err(MetadataError::NoParticipant);
        }
        if self.streams.is_empty() {
            return Err(MetadataError::NoStream);
        }
        Ok(())
    }

    /// Every stream's label must name an m-line of the SDP it came with
    /// (RFC 7866 §7.1.1); `sdp_labels` holds each m-line's `a=label`. An
    /// m-line without a stream is allowed (a recorder may describe it in
    /// a later update).
    pub fn check_labels(&self, sdp_labels: &[Option<String>]) -> Result<(), MetadataError> {
        for s in &self.streams {
            if !sdp_labels.iter().flatten().any(|l| *l == s.label) {
                return Err(MetadataError::LabelNotInSdp {
                    label: s.label.clone(),
                });
            }
        }
        Ok(())
    }

    /// The stream an m-line label belongs to.
    pub fn stream_by_label(&self, label: &str) -> Option<&Stream> {
        self.streams.iter().find(|s| s.label == label)
    }

    /// The participant whose voice a stream carries (who sends it).
    pub fn sender_of(&self, stream_id: &str) -> Option<&Participant> {
        self.participants
            .iter()
            .find(|p| p.send.iter().any(|s| s == stream_id))
    }

    /// The participants in document order that have an AoR user: with
    /// two, the first is taken as the caller and the second as the
    /// callee (what SRCs send first is the calling side in every corpus
    /// offer; RFC 7865 has no caller flag).
    pub fn numbers(&self) -> (Option<&str>, Option<&str>) {
        let mut users = self.participants.iter().filter_map(Participant::user);
        (users.next(), users.next())
    }
}

/// Each m-line's `a=label` value (RFC 4574) of an SDP, in order; `None`
/// for an m-line without one. Lines end in CRLF or LF.
pub fn sdp_labels(sdp: &[u8]) -> Vec<Option<String>> {
    let mut labels: Vec<Option<String>> = Vec::new();
    for line in sdp.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(b"m=") {
            labels.push(None);
        } else if let (Some(rest), Some(last)) = (line.strip_prefix(b"a=label:"), labels.last_mut())
        {
            if last.is_none() {
                *last = Some(String::from_utf8_lossy(rest).trim().to_owned());
            }
        }
    }
    labels
}

fn attr(el: &roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    el.attribute(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The RFC's `<element>_id` attribute, or the drafts' `id`.
fn id_of(
    el: &roxmltree::Node<'_, '_>,
    rfc: &str,
    element: &'static str,
) -> Result<String, MetadataError> {
    attr(el, rfc)
        .or_else(|| attr(el, "id"))
        .ok_or(MetadataError::MissingId { element })
}

/// The trimmed text of an element; `None` when blank.
fn text_of(el: &roxmltree::Node<'_, '_>) -> Option<String> {
    let t: String = el
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn children<'a, 'i>(
    el: &roxmltree::Node<'a, 'i>,
    ns: Option<&'a str>,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + use<'a, 'i> {
    el.children()
        .filter(move |c| c.is_element() && c.tag_name().namespace() == ns)
        .filter(move |c| c.tag_name().name() == name)
}

#[cfg(test)]
mod tests;
