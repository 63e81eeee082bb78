//! One leg's dialog state (RFC 3261 §12) and the messages built from it.

use std::sync::LazyLock;

use bytes::Bytes;
use trunkd_sip::{Header, Headers, KnownHeader, Method, Request, Response, StatusCode, Uri};

use crate::{via_name, LocalAddrs, Peer, TxTransport};

/// Headers that are end-to-end and may cross from one leg to the other.
/// Everything else (Via, Contact, Record-Route, Route, Call-ID, From, To,
/// CSeq, Max-Forwards, Authorization, User-Agent, Server …) is built per leg,
/// which is what hides each side's topology from the other.
pub const END_TO_END: &[&str] = &[
    "Content-Type",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    // Describes the body (RFC 3261 §20.24), which crosses.
    "MIME-Version",
    "Supported",
    "Require",
    "Unsupported",
    "Allow",
    "Accept",
    "Session-Expires",
    "Min-SE",
    "Privacy",
    "Geolocation",
    "Geolocation-Routing",
    "Geolocation-Error",
    "RSeq",
    "Retry-After",
    "Info-Package",
    "Recv-Info",
    "Event",
    "Reason",
    "P-Early-Media",
    "Warning",
    "Subject",
    "Priority",
    // STIR/SHAKEN (RFC 8224): the signature covers the calling and called
    // numbers and the date, none of which trunkd changes on a plain call.
    "Identity",
    "Date",
];

/// Copies the end-to-end headers and the body of one leg's message into a
/// message for the other leg.
///
/// One pass over the rows, in the message's order (so same-name rows keep
/// theirs), each row copied as it is: the lookup by name of every entry of
/// [`END_TO_END`] and the re-checking of every copied value were 4 % of a
/// call's signalling instructions (issue 15).
pub fn copy_end_to_end(from: &Headers, to: &mut Headers) {
    for h in from.iter().filter(|h| is_end_to_end(h)) {
        to.push_row(h.clone());
    }
}

/// Whether a row is one of [`END_TO_END`]: a known header by its
/// identity (so compact forms count), any other by name.
fn is_end_to_end(h: &Header) -> bool {
    /// The known headers among [`END_TO_END`], recognised once.
    static KNOWN: LazyLock<Vec<KnownHeader>> = LazyLock::new(|| {
        END_TO_END
            .iter()
            .filter_map(|n| KnownHeader::from_name(n.as_bytes()))
            .collect()
    });
    match h.name().known() {
        Some(k) => KNOWN.contains(&k),
        None => {
            let name = h.name().as_received();
            END_TO_END
                .iter()
                .any(|e| e.as_bytes().eq_ignore_ascii_case(name))
        }
    }
}

/// A leg's dialog state. For the A leg trunkd is the UAS, for the B leg
/// the UAC; either way `local_*` is trunkd's side.
#[derive(Clone, Debug)]
pub struct LegState {
    pub call_id: Bytes,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Our side's name-addr without tag (From of requests we send).
    pub local_uri: String,
    /// Their side's name-addr without tag (To of requests we send).
    pub remote_uri: String,
    /// Request-URI of in-dialog requests: the peer's Contact.
    pub remote_target: String,
    /// Route headers of in-dialog requests (RFC 3261 §12.1), in send order.
    pub route_set: Vec<Bytes>,
    /// The last CSeq number trunkd used on this leg.
    pub local_cseq: u32,
    /// Where in-dialog requests go. For the A leg this is where the INVITE
    /// came from (symmetric signalling: works behind NAT).
    pub dest: Peer,
}

impl LegState {
    /// A new in-dialog request with the next CSeq (not for ACK).
    pub fn request(
        &mut self,
        method: Method,
        local: &LocalAddrs,
        branch: &str,
        max_forwards: u8,
    ) -> Request {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        self.request_with_cseq(method, cseq, local, branch, max_forwards)
    }

    /// A request with an explicit CSeq number (ACK uses its INVITE's).
    pub fn request_with_cseq(
        &self,
        method: Method,
        cseq: u32,
        local: &LocalAddrs,
        branch: &str,
        max_forwards: u8,
    ) -> Request {
        let uri = Uri::parse(&Bytes::from(self.remote_target.clone())).unwrap_or_else(|_| {
            Uri::parse(&Bytes::from_static(b"sip:invalid")).unwrap_or_else(|_| unreachable_uri())
        });
        // The CSeq is written before the method moves into the request.
        // Values are built with push_str and itoa, not format!: core::fmt
        // cost about a thousand instructions per value.
        let mut numbers = itoa::Buffer::new();
        let mut cseq_value = String::with_capacity(24);
        cseq_value.push_str(numbers.format(cseq));
        cseq_value.push(' ');
        cseq_value.push_str(&String::from_utf8_lossy(method.as_bytes()));
        let mut r = Request::new(method, uri);
        let h = &mut r.headers;
        // The rows below, and room for what an INVITE adds (Contact,
        // P-Asserted-Identity, a few end-to-end rows): allocated once.
        h.reserve(7 + self.route_set.len() + 4);
        let proto = self.dest.transport;
        let mut via = String::with_capacity(80);
        via.push_str("SIP/2.0/");
        via.push_str(via_name(proto));
        via.push(' ');
        local.write_host_port(proto, &mut via);
        via.push_str(";branch=");
        via.push_str(branch);
        via.push_str(";rport");
        let _ = h.append("Via", via);
        let _ = h.append("Max-Forwards", numbers.format(max_forwards).to_owned());
        for route in &self.route_set {
            let _ = h.append("Route", route.clone());
        }
        let _ = h.append("From", with_tag(&self.local_uri, Some(&self.local_tag)));
        let _ = h.append("To", with_tag(&self.remote_uri, self.remote_tag.as_deref()));
        let _ = h.append("Call-ID", self.call_id.clone());
        let _ = h.append("CSeq", cseq_value);
        r
    }

    /// Learns the peer's tag, Contact and Record-Route from a response that
    /// creates or confirms the dialog (trunkd as UAC: route set reversed).
    pub fn learn_from_response(&mut self, resp: &Response) {
        if let Ok(Some(tag)) = resp.headers.to_tag() {
            self.remote_tag = Some(String::from_utf8_lossy(&tag).into_owned());
        }
        if let Some(target) = contact_uri(&resp.headers) {
            self.remote_target = target;
        }
        let mut rr: Vec<Bytes> = resp.headers.values("Record-Route");
        if !rr.is_empty() {
            rr.reverse();
            self.route_set = rr;
        }
    }
}

/// `uri;tag=tag`, or the URI alone.
fn with_tag(uri: &str, tag: Option<&str>) -> String {
    let Some(tag) = tag else {
        return uri.to_owned();
    };
    let mut v = String::with_capacity(uri.len() + 5 + tag.len());
    v.push_str(uri);
    v.push_str(";tag=");
    v.push_str(tag);
    v
}

/// The URI inside the first Contact, as received; `None` if there is no
/// Contact or the first is not a valid `name-addr / addr-spec`.
pub fn contact_uri(headers: &Headers) -> Option<String> {
    let row = headers.get_of(KnownHeader::Contact)?;
    let first = trunkd_sip::split_list(row).next()?;
    let uri = trunkd_sip::NameAddr::uri_text(&first, false).ok()?;
    Some(String::from_utf8_lossy(&uri).into_owned())
}

/// A From or To value without its tag, the rest as received: the dialog's
/// local or remote URI (RFC 3261 §12.1), which in-dialog requests carry
/// with the tags added.
pub(crate) fn strip_tag(v: &Bytes) -> String {
    let text = trunkd_sip::NameAddr::without_param(v, false, "tag");
    String::from_utf8_lossy(text.as_ref().unwrap_or(v)).into_owned()
}

fn unreachable_uri() -> Uri {
    // `sip:invalid` always parses; this only satisfies the type checker
    // without a panic path.
    Uri::Other {
        scheme: Bytes::from_static(b"sip"),
        raw: Bytes::from_static(b"sip:invalid"),
    }
}

/// A response on a leg where trunkd is the UAS, with trunkd's Contact for
/// dialog-forming responses.
pub fn uas_response(
    req: &Request,
    status: StatusCode,
    reason: &str,
    local_tag: &str,
    contact: Option<&str>,
) -> Response {
    let mut r = trunkd_sip::response_for(req, status, reason, Some(local_tag));
    if let Some(c) = contact {
        let _ = r.headers.append("Contact", c.to_owned());
    }
    r
}

/// The user part of a request's Request-URI (unescaped), if it has one.
pub fn request_uri_user(req: &Request) -> Option<String> {
    let sip = req.uri.as_sip()?;
    sip.user_unescaped()
        .map(|u| String::from_utf8_lossy(&u).into_owned())
}

/// The host of a request's Request-URI, as text.
pub fn request_uri_host(req: &Request) -> Option<String> {
    let sip = req.uri.as_sip()?;
    Some(match &sip.host {
        trunkd_sip::Host::Domain(d) => String::from_utf8_lossy(d).to_ascii_lowercase(),
        trunkd_sip::Host::Ipv4(a) => trunkd_sip::Ipv4Text::new(*a).as_str().to_owned(),
        trunkd_sip::Host::Ipv6(a) => a.to_string(),
    })
}

/// The user of the URI in a From/To/P-Asserted-Identity header value.
pub fn header_user(headers: &Headers, name: &str) -> Option<String> {
    let v = headers.values(name).into_iter().next()?;
    let na = trunkd_sip::NameAddr::parse(&v, false).ok()?;
    let user = na.uri.as_sip()?.user_unescaped()?;
    // A user part may carry parameters after ';' (RFC 4475 §3.1.1.9);
    // numbers never do.
    let user = String::from_utf8_lossy(&user).into_owned();
    Some(user.split(';').next().unwrap_or_default().to_owned())
}

/// `proto` from a Request-URI's `transport=` parameter, if any.
pub fn uri_proto(uri: &Uri) -> Option<TxTransport> {
    let t = uri.as_sip()?.params.value("transport")?;
    match t.to_ascii_lowercase().as_slice() {
        b"udp" => Some(TxTransport::Udp),
        b"tcp" => Some(TxTransport::Tcp),
        b"tls" => Some(TxTransport::Tls),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(names: &[&str]) -> Headers {
        let mut h = Headers::new();
        for n in names {
            h.append(n, "x").unwrap();
        }
        h
    }

    #[test]
    fn every_end_to_end_name_crosses_in_any_spelling() {
        for name in END_TO_END {
            for spelling in [
                name.to_string(),
                name.to_ascii_lowercase(),
                name.to_ascii_uppercase(),
            ] {
                let h = rows(&[&spelling]);
                assert!(h.iter().all(is_end_to_end), "{spelling}");
            }
        }
        // Compact forms are the same headers (RFC 3261 §7.3.3).
        let h = rows(&["c", "e", "k", "o", "s", "y"]);
        assert!(h.iter().all(is_end_to_end));
    }

    #[test]
    fn hop_by_hop_headers_stay_on_their_leg() {
        let h = rows(&[
            "Via",
            "v",
            "Contact",
            "m",
            "Record-Route",
            "Route",
            "Call-ID",
            "i",
            "From",
            "f",
            "To",
            "t",
            "CSeq",
            "Max-Forwards",
            "Authorization",
            "Proxy-Authorization",
            "WWW-Authenticate",
            "Proxy-Authenticate",
            "User-Agent",
            "Server",
            "Content-Length",
            "l",
            "P-Asserted-Identity",
            "Diversion",
            "History-Info",
            "Refer-To",
            "Replaces",
            "X-Custom",
        ]);
        for row in h.iter() {
            assert!(!is_end_to_end(row), "{:?}", row.name());
        }
    }

    #[test]
    fn rows_cross_in_message_order_as_they_are() {
        let mut from = Headers::new();
        for (n, v) in [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
            ("supported", "timer"),
            ("Content-Type", "application/sdp"),
            ("Supported", "100rel"),
            ("P-Early-Media", "supported"),
            ("Contact", "<sip:a@a>"),
        ] {
            from.append(n, v).unwrap();
        }
        let mut to = rows(&["CSeq"]);
        copy_end_to_end(&from, &mut to);
        let got: Vec<(String, String)> = to
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(h.name().as_wire()).into_owned(),
                    String::from_utf8_lossy(h.value()).into_owned(),
                )
            })
            .collect();
        let want = [
            ("CSeq", "x"),
            ("Supported", "timer"),
            ("Content-Type", "application/sdp"),
            ("Supported", "100rel"),
            ("P-Early-Media", "supported"),
        ];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_owned(), v.to_owned())).to_vec()
        );
    }
}
