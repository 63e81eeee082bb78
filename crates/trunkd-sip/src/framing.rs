//! Message boundaries on stream transports (TCP, TLS; RFC 3261 §18.3).
//!
//! On a stream, Content-Length is the only framing: it MUST be present, and
//! a missing or invalid one makes the rest of the stream meaningless, so
//! [`Frame::Invalid`] means "close the connection". CRLF keep-alives of
//! RFC 5626 §4.4.1 (a CRLFCRLF ping, a CRLF pong) are reported separately.
//! [`frame`] only looks for the end of the header section and the
//! Content-Length header; the frame is then parsed with
//! [`SipMessage::parse`](crate::SipMessage::parse).

use crate::chars::{is_ws, trim_ws};
use crate::header::ContentLength;

/// What the start of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message of this many bytes (header section and body).
    Complete(usize),
    /// Not enough bytes yet.
    Incomplete,
    /// A keep-alive of this many bytes: 4 for a CRLFCRLF ping (answer with
    /// a CRLF pong), 2 for a CRLF pong or a stray CRLF (RFC 3261 §7.5).
    KeepAlive(usize),
    /// The message would exceed `max_message_bytes`.
    TooLarge,
    /// Missing, repeated or invalid Content-Length: the stream cannot be
    /// resynchronised.
    Invalid,
}

/// Finds the first message in `buf`.
///
/// The scan is linear in `buf` and bounded by `max_message_bytes`; a caller
/// should call again only when new bytes have arrived (a peer trickling one
/// byte per segment otherwise costs a rescan per byte).
///
/// A lone CRLF at the end of the buffer is reported as a pong rather than
/// waiting for a possible second CRLF, so that a pong is never delayed;
/// a CRLFCRLF ping split across two reads is therefore seen as two pongs.
pub fn frame(buf: &[u8], max_message_bytes: usize) -> Frame {
    if buf.starts_with(b"\r\n\r\n") {
        return Frame::KeepAlive(4);
    }
    if buf.starts_with(b"\r\n") {
        return if buf.len() == 3 && buf[2] == b'\r' {
            Frame::Incomplete
        } else {
            Frame::KeepAlive(2)
        };
    }
    if buf == b"\r" {
        return Frame::Incomplete;
    }
    let mut content_length: Option<usize> = None;
    let mut header_name_cl = false;
    let mut pos = 0;
    let mut first = true;
    loop {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n').map(|p| p + pos) else {
            return if buf.len() > max_message_bytes {
                Frame::TooLarge
            } else {
                Frame::Incomplete
            };
        };
        let end = if nl > pos && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let line = &buf[pos..end];
        let next = nl + 1;
        if next > max_message_bytes {
            return Frame::TooLarge;
        }
        if line.is_empty() {
            let Some(cl) = content_length else {
                return Frame::Invalid;
            };
            let total = match next.checked_add(cl) {
                Some(t) if t <= max_message_bytes => t,
                _ => return Frame::TooLarge,
            };
            return if buf.len() >= total {
                Frame::Complete(total)
            } else {
                Frame::Incomplete
            };
        }
        if first {
            first = false;
        } else if is_ws(line[0]) {
            // A folded Content-Length value is not worth supporting on the
            // framing path; refuse it rather than guess.
            if header_name_cl {
                return Frame::Invalid;
            }
        } else if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = trim_ws(&line[..colon]);
            header_name_cl =
                name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l");
            if header_name_cl {
                if content_length.is_some() {
                    return Frame::Invalid;
                }
                match ContentLength::parse(&line[colon + 1..]) {
                    Ok(cl) => content_length = Some(cl.0),
                    Err(_) => return Frame::Invalid,
                }
            }
        } else {
            header_name_cl = false;
        }
        pos = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 3\r\n\r\nabc";

    #[test]
    fn complete_and_incomplete() {
        assert_eq!(frame(MSG, 4096), Frame::Complete(MSG.len()));
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame(&two, 4096), Frame::Complete(MSG.len()));
        for cut in 0..MSG.len() {
            let f = frame(&MSG[..cut], 4096);
            assert!(
                matches!(f, Frame::Incomplete | Frame::KeepAlive(_)),
                "{cut}: {f:?}"
            );
        }
    }

    #[test]
    fn keepalives() {
        assert_eq!(frame(b"\r\n\r\n", 100), Frame::KeepAlive(4));
        assert_eq!(frame(b"\r\n", 100), Frame::KeepAlive(2));
        assert_eq!(frame(b"\r\n\r", 100), Frame::Incomplete);
        assert_eq!(frame(b"\r", 100), Frame::Incomplete);
        assert_eq!(frame(b"\r\nOPTIONS", 100), Frame::KeepAlive(2));
        assert_eq!(frame(b"", 100), Frame::Incomplete);
    }

    #[test]
    fn invalid_and_too_large() {
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", 4096),
            Frame::Invalid
        );
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n", 4096),
            Frame::Invalid
        );
        assert_eq!(
            frame(
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx",
                4096
            ),
            Frame::Invalid
        );
        assert_eq!(
            frame(b"OPTIONS sip:a@b SIP/2.0\r\nl:\r\n 1\r\n\r\nx", 4096),
            Frame::Invalid
        );
        assert_eq!(frame(MSG, 20), Frame::TooLarge);
        assert_eq!(frame(MSG, MSG.len() - 1), Frame::TooLarge);
        assert_eq!(frame(&[b'x'; 50], 20), Frame::TooLarge);
        assert_eq!(
            frame(
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999999999999\r\n\r\n",
                4096
            ),
            Frame::Invalid
        );
        assert_eq!(
            frame(
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 18446744073709551615\r\n\r\n",
                4096
            ),
            Frame::TooLarge
        );
    }
}
