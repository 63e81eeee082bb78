//! Redaction of a SIP message before it reaches a SIP message log
//! (SPEC §5.3): a log is read by more people than the configuration, so
//! it must carry no credential and no media key.
//!
//! Three things are removed, in this order:
//!
//! * the value of every `Authorization` and `Proxy-Authorization` header
//!   (names matched without regard to case; there is no compact form),
//!   after its scheme: `Digest username="pbx1", …` becomes
//!   `Digest <redacted>`, and its folded continuation lines go with it;
//! * the key material of every SDES attribute (`a=crypto:<tag> <suite>
//!   inline:<key>[|lifetime][|mki]`, RFC 4568 §9.1) in any line of the
//!   message, so a multipart body is covered too: each `inline:` key
//!   becomes `inline:<redacted>`, lifetime and MKI kept;
//! * every configured secret (digest passwords), as a plain substring
//!   anywhere in the message.
//!
//! Pure: text in, text out.

/// What replaces a redacted value.
pub const REDACTED: &str = "<redacted>";

/// `message` with credentials, SDES keys and each of `secrets` removed.
pub fn redact(message: &str, secrets: &[&str]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_headers = true;
    // Inside a redacted header: its continuation lines are dropped.
    let mut in_auth = false;
    for line in message.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        let ending = &line[content.len()..];
        if in_headers {
            if content.is_empty() {
                in_headers = false;
                in_auth = false;
                out.push_str(line);
                continue;
            }
            if content.starts_with([' ', '\t']) {
                if in_auth {
                    continue;
                }
            } else {
                in_auth = false;
                if let Some(redacted) = redact_auth_header(content) {
                    in_auth = true;
                    out.push_str(&redacted);
                    out.push_str(ending);
                    continue;
                }
            }
        }
        if let Some(redacted) = redact_crypto_line(content) {
            out.push_str(&redacted);
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret) {
            out = out.replace(secret, REDACTED);
        }
    }
    out
}

/// An `Authorization`/`Proxy-Authorization` header line with its
/// credentials replaced, or `None` for any other line.
fn redact_auth_header(line: &str) -> Option<String> {
    let colon = line.find(':')?;
    let name = line[..colon].trim_end();
    if !(name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization"))
    {
        return None;
    }
    let value = line[colon + 1..].trim_start();
    let scheme = value
        .split(|c: char| c.is_ascii_whitespace())
        .next()
        .unwrap_or("");
    // A value without credentials after its scheme (`Digest` alone) or no
    // value at all keeps nothing to hide, but is redacted the same way.
    if scheme.is_empty() || scheme.contains(['=', ',', '"']) {
        return Some(format!("{}: {REDACTED}", &line[..colon]));
    }
    Some(format!("{}: {scheme} {REDACTED}", &line[..colon]))
}

/// An SDP `a=crypto` line with each `inline:` key replaced, or `None` when
/// the line is not one (or has nothing to replace).
fn redact_crypto_line(line: &str) -> Option<String> {
    let trimmed = line.trim_start();
    if !trimmed
        .get(..9)
        .is_some_and(|p| p.eq_ignore_ascii_case("a=crypto:"))
    {
        return None;
    }
    let lower = line.to_ascii_lowercase();
    let mut out = String::with_capacity(line.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("inline:") {
        let key_start = pos + found + "inline:".len();
        out.push_str(&line[pos..key_start]);
        let key_len = line[key_start..]
            .find(|c: char| c == '|' || c == ';' || c.is_ascii_whitespace())
            .unwrap_or(line.len() - key_start);
        out.push_str(REDACTED);
        pos = key_start + key_len;
    }
    out.push_str(&line[pos..]);
    Some(out)
}

/// The Call-ID of a whole SIP message on the wire (full or compact name,
/// any case), without parsing it: the engine reads it from its own
/// transmits to find their call.
pub fn call_id_of(message: &[u8]) -> Option<&[u8]> {
    for line in message.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
            return Some(line[colon + 1..].trim_ascii());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:+15005550100@gw SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
Proxy-Authorization: Digest username=\"pbx1\", realm=\"trunkd\", nonce=\"n1\", uri=\"sip:+15005550100@gw\", response=\"0123456789abcdef\"\r\n\
Call-ID: abc@pbx\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n";

    #[test]
    fn proxy_authorization_keeps_its_name_and_scheme_only() {
        let out = redact(INVITE, &[]);
        assert!(out.contains("\r\nProxy-Authorization: Digest <redacted>\r\nCall-ID: abc@pbx\r\n"));
        assert!(!out.contains("response="));
        assert!(!out.contains("pbx1"));
    }

    #[test]
    fn every_sdes_key_is_replaced_and_lifetime_and_mki_kept() {
        let out = redact(INVITE, &[]);
        assert!(out.contains(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>|2^20|1:4\r\n\
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:<redacted>\r\n"
        ));
        assert!(!out.contains("WVNfX19"));
        assert!(!out.contains("NzB4d1B"));
    }

    #[test]
    fn everything_else_is_untouched() {
        let plain = "SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(redact(plain, &[]), plain);
        let out = redact(INVITE, &[]);
        assert!(out.starts_with("INVITE sip:+15005550100@gw SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"));
        assert!(out.contains("\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn header_names_match_without_regard_to_case_and_spacing() {
        for name in [
            "authorization",
            "AUTHORIZATION",
            "Proxy-authorization",
            "proxy-AUTHORIZATION",
        ] {
            let msg = format!(
                "BYE sip:a SIP/2.0\r\n{name} :  Digest username=\"u\", response=\"r\"\r\n\r\n"
            );
            let out = redact(&msg, &[]);
            assert_eq!(
                out,
                format!("BYE sip:a SIP/2.0\r\n{name} : Digest <redacted>\r\n\r\n")
            );
        }
    }

    #[test]
    fn other_schemes_and_bare_values_are_redacted() {
        let msg = "BYE sip:a SIP/2.0\nAuthorization: Bearer abc.def\n\n";
        assert_eq!(
            redact(msg, &[]),
            "BYE sip:a SIP/2.0\nAuthorization: Bearer <redacted>\n\n"
        );
        let msg = "BYE sip:a SIP/2.0\r\nAuthorization: username=\"u\"\r\n\r\n";
        assert_eq!(
            redact(msg, &[]),
            "BYE sip:a SIP/2.0\r\nAuthorization: <redacted>\r\n\r\n"
        );
    }

    #[test]
    fn folded_continuation_lines_of_a_credential_are_dropped() {
        let msg = "BYE sip:a SIP/2.0\r\nAuthorization: Digest username=\"u\",\r\n  response=\"r\"\r\nCSeq: 2 BYE\r\n\r\n";
        assert_eq!(
            redact(msg, &[]),
            "BYE sip:a SIP/2.0\r\nAuthorization: Digest <redacted>\r\nCSeq: 2 BYE\r\n\r\n"
        );
    }

    #[test]
    fn authorization_text_in_a_body_is_not_a_header() {
        let msg = "MESSAGE sip:a SIP/2.0\r\n\r\nAuthorization: Digest x\r\n";
        assert_eq!(redact(msg, &[]), msg);
    }

    #[test]
    fn crypto_lines_in_a_multipart_body_and_any_case_are_redacted() {
        let msg = "INVITE sip:a SIP/2.0\r\nContent-Type: multipart/mixed;boundary=b\r\n\r\n--b\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nA=CRYPTO:1 AES_256_CM_HMAC_SHA1_80 INLINE:key1|2^31;inline:key2|2^31\r\n--b--\r\n";
        let out = redact(msg, &[]);
        assert!(out.contains(
            "A=CRYPTO:1 AES_256_CM_HMAC_SHA1_80 INLINE:<redacted>|2^31;inline:<redacted>|2^31\r\n"
        ));
        assert!(!out.contains("key1") && !out.contains("key2"));
    }

    #[test]
    fn a_crypto_line_with_a_session_parameter_keeps_it() {
        let msg = "v=0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:k3y UNENCRYPTED_SRTCP\n";
        assert_eq!(
            redact(msg, &[]),
            "v=0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<redacted> UNENCRYPTED_SRTCP\n"
        );
    }

    #[test]
    fn configured_secrets_are_removed_anywhere() {
        let msg = "INVITE sip:a SIP/2.0\r\nX-Note: hunter2 and s3cret\r\n\r\nhunter2\r\n";
        assert_eq!(
            redact(msg, &["hunter2", "", "s3cret"]),
            "INVITE sip:a SIP/2.0\r\nX-Note: <redacted> and <redacted>\r\n\r\n<redacted>\r\n"
        );
    }

    #[test]
    fn call_id_is_found_in_full_and_compact_form() {
        assert_eq!(
            call_id_of(b"BYE sip:a SIP/2.0\r\nVia: x\r\nCall-ID: abc@h\r\n\r\n"),
            Some(&b"abc@h"[..])
        );
        assert_eq!(
            call_id_of(b"SIP/2.0 200 OK\r\ni : abc\r\n\r\n"),
            Some(&b"abc"[..])
        );
        assert_eq!(
            call_id_of(b"BYE sip:a SIP/2.0\r\nVia: x\r\n\r\nCall-ID: body\r\n"),
            None
        );
        assert_eq!(call_id_of(b"garbage"), None);
    }
}
