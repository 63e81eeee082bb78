//! Character classes of the RFC 3261 §25.1 ABNF, as one lookup table.
//!
//! Every byte-level decision of the parser goes through these predicates so
//! that the grammar lives in one place and is checked once per byte.

const TOKEN: u8 = 1;
const UNRESERVED: u8 = 2;
const USER: u8 = 4;
const PASSWORD: u8 = 8;
const PARAM: u8 = 16;
const HEADER: u8 = 32;
const WORD: u8 = 64;
const URIC: u8 = 128;

const fn build() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let alnum = b.is_ascii_alphanumeric();
        // mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
        let mark = matches!(
            b,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let mut f = 0;
        // token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            f |= TOKEN;
        }
        if alnum || mark {
            f |= UNRESERVED;
        }
        // user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
        if alnum || mark || matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            f |= USER;
        }
        // password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
        if alnum || mark || matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            f |= PASSWORD;
        }
        // param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$"
        if alnum || mark || matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            f |= PARAM;
        }
        // hnv-unreserved = "[" / "]" / "/" / "?" / ":" / "+" / "$"
        if alnum || mark || matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            f |= HEADER;
        }
        // word (Call-ID) = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" /
        //   "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}")
        if alnum
            || matches!(
                b,
                b'-' | b'.'
                    | b'!'
                    | b'%'
                    | b'*'
                    | b'_'
                    | b'+'
                    | b'`'
                    | b'\''
                    | b'~'
                    | b'('
                    | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            f |= WORD;
        }
        // uric = reserved / unreserved / escaped (RFC 2396), plus "[" "]" (RFC 3986 IP literals)
        if alnum
            || mark
            || matches!(
                b,
                b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b',' | b'[' | b']'
            )
        {
            f |= URIC;
        }
        t[i] = f;
        i += 1;
    }
    t
}

static TABLE: [u8; 256] = build();

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    TABLE[b as usize] & TOKEN != 0
}

#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `token` (RFC 3261 §25.1): non-empty and only token characters.
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Call-ID `word`: non-empty run of word characters.
pub(crate) fn is_word_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| TABLE[b as usize] & WORD != 0)
}

/// Which escaped character class to check with [`is_escaped_class`].
#[derive(Clone, Copy)]
pub(crate) enum Class {
    User,
    Password,
    Param,
    Header,
    Uric,
}

impl Class {
    fn flag(self) -> u8 {
        match self {
            Class::User => USER,
            Class::Password => PASSWORD,
            Class::Param => PARAM,
            Class::Header => HEADER,
            Class::Uric => URIC,
        }
    }
}

/// True when every byte is in `class` or part of an `escaped` (`"%" HEXDIG HEXDIG`)
/// triplet. Empty input is accepted; callers enforce `1*` themselves.
pub(crate) fn is_escaped_class(s: &[u8], class: Class) -> bool {
    let flag = class.flag();
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else if TABLE[b as usize] & flag != 0 {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Strips leading and trailing SP / HTAB.
pub(crate) fn trim_ws(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ws(b)).map_or(start, |p| p + 1);
    &s[start..end]
}

/// Index of the first non-SP/HTAB byte at or after `i`.
pub(crate) fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i
}

/// Parses `1*DIGIT` into a u64, rejecting empty input, non-digits and overflow.
pub(crate) fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Given `s[start] == '"'`, returns the index one past the closing quote of a
/// `quoted-string`, honouring `quoted-pair` escapes (RFC 3261 §25.1).
pub(crate) fn quoted_end(s: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                let next = *s.get(i + 1)?;
                if next == b'\r' || next == b'\n' || next > 0x7f {
                    return None;
                }
                i += 2;
            }
            b'"' => return Some(i + 1),
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_chars() {
        assert!(is_token_str(b"!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token_str(b"IN VITE"));
        assert!(!is_token_str(b""));
        assert!(!is_token_str(b"a,b"));
    }

    #[test]
    fn escapes() {
        assert!(is_escaped_class(b"null-%00-null", Class::User));
        assert!(!is_escaped_class(b"%Z5", Class::User));
        assert!(!is_escaped_class(b"a%4", Class::User));
        assert!(is_escaped_class(b"user;par=u%40example.net", Class::User));
        assert!(!is_escaped_class(b"a b", Class::User));
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits(b"0068"), Some(68));
        assert_eq!(parse_digits(b"-1"), None);
        assert_eq!(parse_digits(b""), None);
        assert_eq!(parse_digits(b"36893488147419103232"), None);
    }

    #[test]
    fn quoted() {
        assert_eq!(quoted_end(br#""a\"b" x"#, 0), Some(6));
        assert_eq!(quoted_end(br#""unterminated"#, 0), None);
        assert_eq!(quoted_end(b"\"J Rosenberg \\\\\\\"\"", 0), Some(18));
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_ws(b"  a b \t"), b"a b");
        assert_eq!(trim_ws(b"   "), b"");
    }
}
