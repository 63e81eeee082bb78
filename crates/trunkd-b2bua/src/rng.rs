//! Identifiers a call makes (tags, branches, Call-IDs) from a per-call seed
//! the shell draws from the OS. SplitMix64: fast, and unpredictable enough
//! for identifiers that must be unique, not secret.

pub(crate) struct Ids(u64);

impl Ids {
    pub(crate) fn new(seed: u64) -> Ids {
        Ids(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn tag(&mut self) -> String {
        let mut t = String::with_capacity(16);
        push_hex(&mut t, self.next(), 16);
        t
    }

    /// RFC 3261 §8.1.1.7: branches start with the magic cookie.
    pub(crate) fn branch(&mut self) -> String {
        let mut b = String::with_capacity(31);
        b.push_str("z9hG4bK");
        push_hex(&mut b, self.next(), 16);
        push_hex(&mut b, self.next(), 8);
        b
    }

    pub(crate) fn call_id(&mut self, host: &str) -> String {
        let mut c = String::with_capacity(33 + host.len());
        push_hex(&mut c, self.next(), 16);
        push_hex(&mut c, self.next(), 16);
        c.push('@');
        c.push_str(host);
        c
    }
}

/// Appends the low `digits` hex digits of `v`, lower case, zero-padded:
/// what `{:016x}` writes, without `core::fmt` (about a thousand
/// instructions a `format!`, several per request built).
pub fn push_hex(out: &mut String, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        let d = (v >> (4 * i)) & 0xf;
        out.push(char::from(b"0123456789abcdef"[d as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identifiers are the text `format!` wrote before, value for
    /// value (the same seed gives the same tags as it always did).
    #[test]
    fn identifiers_are_what_format_wrote() {
        for seed in [0, 1, 0xdead_beef, u64::MAX, 0x0123_4567_89ab_cdef] {
            let (mut ours, mut theirs) = (Ids::new(seed), Ids::new(seed));
            assert_eq!(ours.tag(), format!("{:016x}", theirs.next()));
            let (a, b) = (theirs.next(), theirs.next());
            assert_eq!(ours.branch(), format!("z9hG4bK{a:016x}{:08x}", b as u32));
            let (a, b) = (theirs.next(), theirs.next());
            assert_eq!(
                ours.call_id("h.example"),
                format!("{a:016x}{b:016x}@h.example")
            );
        }
    }
}
