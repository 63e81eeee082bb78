//! The `Authorization`/`Proxy-Authorization` and `WWW-Authenticate`/
//! `Proxy-Authenticate` header grammar (RFC 3261 §25.1 `challenge` and
//! `credentials`, RFC 7235 §2.1 `auth-param`), read leniently: parameter
//! names in any case, spaces around `=` and `,`, empty list elements,
//! quoted or bare values, `\"` and `\\` escapes in quoted strings.
//!
//! Several challenges joined in one header value (`Digest …, Digest …`) are
//! split apart, as RFC 7235 §4.1 allows.

use super::DigestError;

/// One `auth-param`: the name lowercased, the value unquoted and unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Param {
    pub name: String,
    pub value: String,
}

/// One challenge or credentials: its scheme (as written) and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthItem {
    pub scheme: String,
    pub params: Vec<Param>,
}

impl AuthItem {
    pub(crate) fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// The value of the parameter `name` (lowercase), if present.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// As [`AuthItem::get`], but absent is an error naming the parameter.
    pub(crate) fn require(&self, name: &str) -> Result<&str, DigestError> {
        self.get(name)
            .ok_or_else(|| DigestError::Malformed(format!("no {name} parameter")))
    }
}

/// `tchar` of RFC 7230 §3.2.6 (the token characters of RFC 3261 §25.1 are
/// the same set less `^`, `|`, and the backtick, plus nothing else).
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn skip_ws(&mut self) {
        self.skip_while(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    }

    /// A quoted string after its opening quote (RFC 3261 §25.1
    /// `quoted-pair`: a backslash makes the next character literal).
    fn quoted(&mut self) -> Result<String, DigestError> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(DigestError::Malformed("unterminated quoted string".into())),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some(c) => out.push(c),
                    None => {
                        return Err(DigestError::Malformed("unterminated quoted string".into()))
                    }
                },
                Some(c) => out.push(c),
            }
        }
    }
}

/// Splits a header value into challenges/credentials with their parameters.
///
/// # Errors
/// `Malformed` on an unterminated quoted string, a parameter before any
/// scheme, a missing value or a character that cannot start a token.
pub(crate) fn parse(value: &str) -> Result<Vec<AuthItem>, DigestError> {
    let mut c = Cursor { s: value, pos: 0 };
    let mut items: Vec<AuthItem> = Vec::new();
    loop {
        c.skip_while(|ch| ch == ',' || ch.is_ascii_whitespace());
        let Some(first) = c.peek() else { break };
        if !is_tchar(first) {
            return Err(DigestError::Malformed(format!("unexpected {first:?}")));
        }
        let token = c.skip_while(is_tchar);
        c.skip_ws();
        if c.peek() != Some('=') {
            items.push(AuthItem {
                scheme: token.to_owned(),
                params: Vec::new(),
            });
            continue;
        }
        c.bump();
        c.skip_ws();
        let value = if c.peek() == Some('"') {
            c.bump();
            c.quoted()?
        } else {
            let v = c.skip_while(|ch| ch != ',' && !ch.is_ascii_whitespace() && ch != '"');
            if v.is_empty() {
                return Err(DigestError::Malformed(format!("no value for {token}")));
            }
            v.to_owned()
        };
        let item = items.last_mut().ok_or_else(|| {
            DigestError::Malformed(format!("parameter {token} before the scheme"))
        })?;
        let name = token.to_ascii_lowercase();
        if item.params.iter().any(|p| p.name == name) {
            return Err(DigestError::Malformed(format!(
                "duplicate {name} parameter"
            )));
        }
        item.params.push(Param { name, value });
    }
    Ok(items)
}

/// Writes `s` as a quoted string, escaping `"` and `\` (RFC 3261 §25.1).
pub(crate) fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(name: &str, value: &str) -> Param {
        Param {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn tolerates_spacing_case_and_escapes() {
        let items =
            parse("  digest  USERNAME = \"a\\\"b\\\\c\" ,, Realm=x,nc =00000001 ,qop= \"auth\"  ")
                .unwrap();
        assert_eq!(items.len(), 1);
        assert!(items[0].is_digest());
        assert_eq!(
            items[0].params,
            vec![
                p("username", "a\"b\\c"),
                p("realm", "x"),
                p("nc", "00000001"),
                p("qop", "auth")
            ]
        );
    }

    #[test]
    fn splits_joined_challenges() {
        let items = parse("Digest realm=\"a\", nonce=\"1\", Basic realm=\"b\", Digest realm=\"c\"")
            .unwrap();
        let schemes: Vec<_> = items.iter().map(|i| i.scheme.as_str()).collect();
        assert_eq!(schemes, ["Digest", "Basic", "Digest"]);
        assert_eq!(items[2].get("realm"), Some("c"));
    }

    #[test]
    fn rejects_what_cannot_be_read() {
        for bad in [
            "Digest realm=\"x",
            "realm=x",
            "Digest realm=",
            "Digest realm=x, realm=y",
            "Digest =x",
            "Digest \"x\"",
        ] {
            assert!(
                matches!(parse(bad), Err(DigestError::Malformed(_))),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn quoted_values_round_trip(v in "\\PC*") {
            let mut h = String::from("Digest x=");
            push_quoted(&mut h, &v);
            let items = parse(&h).unwrap();
            prop_assert_eq!(items[0].get("x"), Some(v.as_str()));
        }
    }
}
