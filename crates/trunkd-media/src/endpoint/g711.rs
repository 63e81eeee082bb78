//! ITU-T G.711 companding: 16-bit linear samples to and from μ-law (PCMU,
//! RTP payload type 0) and A-law (PCMA, payload type 8) bytes.
//!
//! Computed rather than table-driven: the segment search is a leading-zero
//! count, cheaper than a cache miss on a 64 KiB table. Decoded values are the
//! midpoints of the quantisation intervals, scaled to 16 bits (μ-law is a
//! 14-bit code and A-law a 13-bit one, left-aligned), as in the G.711
//! reference tables and every common implementation, so a decoded byte
//! encodes back to itself.

/// Which G.711 law a stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum G711 {
    /// μ-law, RTP/AVP static payload type 0 ("PCMU").
    Pcmu,
    /// A-law, RTP/AVP static payload type 8 ("PCMA").
    Pcma,
}

impl G711 {
    /// The static RTP payload type (RFC 3551 §6).
    pub const fn static_payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    /// The law of static payload type 0 or 8.
    pub const fn from_static_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(G711::Pcmu),
            8 => Some(G711::Pcma),
            _ => None,
        }
    }

    /// The byte that decodes to silence (0): 0xFF for μ-law, 0xD5 for A-law
    /// (which decodes to +8, A-law having no zero level).
    pub const fn silence(self) -> u8 {
        match self {
            G711::Pcmu => 0xff,
            G711::Pcma => 0xd5,
        }
    }

    /// Encodes one sample.
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            G711::Pcmu => ulaw_encode(sample),
            G711::Pcma => alaw_encode(sample),
        }
    }

    /// Decodes one byte.
    pub fn decode(self, byte: u8) -> i16 {
        match self {
            G711::Pcmu => ulaw_decode(byte),
            G711::Pcma => alaw_decode(byte),
        }
    }

    /// Appends the encoding of `samples` to `out`.
    pub fn encode_into(self, samples: &[i16], out: &mut Vec<u8>) {
        out.extend(samples.iter().map(|&s| self.encode(s)));
    }

    /// Appends the decoding of `bytes` to `out`.
    pub fn decode_into(self, bytes: &[u8], out: &mut Vec<i16>) {
        out.extend(bytes.iter().map(|&b| self.decode(b)));
    }
}

/// μ-law bias added before the segment search (33 in 14-bit units, ×4).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude μ-law represents before clipping (8158 × 4, less the
/// bias so that magnitude + bias stays within 15 bits).
const ULAW_CLIP: i32 = 32635;

/// Encodes a 16-bit linear sample as μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let x = i32::from(sample);
    let (sign, magnitude) = if x < 0 { (0x80u8, -x) } else { (0, x) };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // biased is in 0x84..=0x7fff: its top set bit is bit 7..=14.
    let exponent = (31 - biased.leading_zeros()) as i32 - 7;
    let mantissa = ((biased >> (exponent + 3)) & 0x0f) as u8;
    !(sign | ((exponent as u8) << 4) | mantissa)
}

/// Decodes a μ-law byte to a 16-bit linear sample. 0xFF and 0x7F both
/// decode to 0 (μ-law has a positive and a negative zero).
pub fn ulaw_decode(byte: u8) -> i16 {
    let b = !byte;
    let exponent = (b >> 4) & 0x07;
    let mantissa = i32::from(b & 0x0f);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // magnitude <= 32124: fits an i16.
    if b & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes a 16-bit linear sample as A-law (even bits inverted, 0x55).
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13 bits; negative values are coded by their one's
    // complement magnitude, so -1 and 0 share the first interval.
    let x = i32::from(sample) >> 3;
    let (mask, magnitude) = if x >= 0 {
        (0xd5u8, x)
    } else {
        (0x55u8, -x - 1)
    };
    // magnitude is in 0..=4095. Segment 0 and 1 have the same step (2 in
    // 13-bit units); segment s >= 1 covers [16 << s .. 32 << s) >> 1.
    let code = if magnitude < 32 {
        (magnitude >> 1) as u8
    } else {
        let segment = (31 - magnitude.leading_zeros()) as i32 - 4; // 1..=7
        ((segment as u8) << 4) | ((magnitude >> segment) & 0x0f) as u8
    };
    code ^ mask
}

/// Decodes an A-law byte to a 16-bit linear sample (0xD5 decodes to 8).
pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let segment = (a >> 4) & 0x07;
    let mantissa = i32::from(a & 0x0f);
    let magnitude = match segment {
        0 => (mantissa << 4) + 8,
        s => ((mantissa << 4) + 0x108) << (s - 1),
    };
    // magnitude <= 32256: fits an i16.
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xfe), 8);
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(-1), 0x7f);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
        assert_eq!(G711::Pcmu.decode(G711::Pcmu.silence()), 0);
        assert_eq!(G711::Pcma.decode(G711::Pcma.silence()), 8);
    }

    #[test]
    fn every_byte_encodes_back_to_itself() {
        for b in 0..=255u8 {
            // μ-law's negative zero (0x7F) decodes to 0, which encodes as
            // the positive zero.
            let expected = if b == 0x7f { 0xff } else { b };
            assert_eq!(ulaw_encode(ulaw_decode(b)), expected, "μ-law {b:#04x}");
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#04x}");
        }
    }

    /// Quantisation step of the interval that code `b` stands for.
    fn ulaw_step(b: u8) -> i32 {
        8 << ((!b >> 4) & 7)
    }
    fn alaw_step(b: u8) -> i32 {
        16 << ((((b ^ 0x55) >> 4) & 7).max(1) - 1)
    }

    #[test]
    fn every_sample_decodes_within_half_a_step() {
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            let u = ulaw_encode(x);
            let err = (i32::from(ulaw_decode(u)) - xi).abs();
            // Beyond the largest level the error is the clipping distance.
            let clip = (xi.abs() - 32124).max(0);
            assert!(err <= ulaw_step(u) / 2 + clip, "μ-law {x}: {err}");
            let a = alaw_encode(x);
            let err = (i32::from(alaw_decode(a)) - xi).abs();
            let clip = (xi.abs() - 32256).max(0);
            assert!(err <= alaw_step(a) / 2 + clip, "A-law {x}: {err}");
        }
    }

    #[test]
    fn encoding_is_monotonic() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(x));
            let a = alaw_decode(alaw_encode(x));
            assert!(u >= last_u && a >= last_a, "{x}");
            last_u = u;
            last_a = a;
        }
    }
}
