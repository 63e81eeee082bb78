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
        format!("{:016x}", self.next())
    }

    /// RFC 3261 §8.1.1.7: branches start with the magic cookie.
    pub(crate) fn branch(&mut self) -> String {
        format!("z9hG4bK{:016x}{:08x}", self.next(), self.next() as u32)
    }

    pub(crate) fn call_id(&mut self, host: &str) -> String {
        format!("{:016x}{:016x}@{host}", self.next(), self.next())
    }
}
