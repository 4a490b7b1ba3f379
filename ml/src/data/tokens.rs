//! Text as tokens: one token per position, a byte `0..=255`, [`PAD`] after the end of a
//! shorter text, or [`MASK`] where masked-token modeling hid a byte. The readers make
//! these samples; the text encoder embeds them.

/// Distinct byte values.
pub const BYTES: usize = 256;
/// The padding token (after the end of a text).
pub const PAD: usize = 256;
/// The token that replaces a masked byte.
pub const MASK: usize = 257;
/// Tokens the embedding knows: the bytes, [`PAD`] and [`MASK`].
pub const VOCAB: usize = 258;

/// Token samples of `texts`: each text's bytes, cut at `length` or padded with [`PAD`].
pub fn tokenize<'a>(texts: impl IntoIterator<Item = &'a [u8]>, length: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for t in texts {
        let kept = t.len().min(length);
        out.extend(t[..kept].iter().map(|&b| f32::from(b)));
        out.extend(std::iter::repeat_n(PAD as f32, length - kept));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_cuts_and_pads() {
        let t = tokenize([b"abc".as_slice(), b"0123456789".as_slice()], 5);
        assert_eq!(
            t,
            [97.0, 98.0, 99.0, 256.0, 256.0, 48.0, 49.0, 50.0, 51.0, 52.0]
        );
    }
}
