//! Secrets masked in what a step prints, before it reaches the log or the
//! terminal: a step that prints its own password (`set -x`, a program
//! that echoes its connection string) must not put it in a file that
//! `ward log`, `ward status` and reports read.
//!
//! The texts come from the plan (every secret value, and each step's
//! secret environment values); this layer knows only bytes. Output arrives
//! in chunks that can split a secret, so [`MaskStream`] holds back the
//! end of a chunk while it could still be the start of one.

use std::sync::Arc;

/// What a masked secret becomes (as the template layer's mask).
const MASK: &[u8] = b"********";

/// The secret texts to mask, longest first (a secret that contains
/// another is masked whole).
#[derive(Debug, Default)]
pub struct Mask {
    texts: Vec<Vec<u8>>,
}

impl Mask {
    /// A mask of `texts`; `None` when there is nothing to mask (the common
    /// case: output is then copied as it comes).
    pub fn of(texts: impl IntoIterator<Item = String>) -> Option<Arc<Mask>> {
        let mut texts: Vec<Vec<u8>> = texts
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(String::into_bytes)
            .collect();
        texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
        texts.dedup();
        (!texts.is_empty()).then(|| Arc::new(Mask { texts }))
    }

    /// `bytes` with every secret replaced, in one pass from the left.
    pub fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let (mut out, rest) = self.scan(bytes, false);
        out.extend_from_slice(rest);
        out
    }

    /// Masks `bytes` from the left; with `hold`, stops at the first place
    /// where what is left could still grow into a secret and returns that
    /// part unmasked.
    fn scan<'b>(&self, bytes: &'b [u8], hold: bool) -> (Vec<u8>, &'b [u8]) {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            if let Some(t) = self.texts.iter().find(|t| rest.starts_with(t)) {
                out.extend_from_slice(MASK);
                i += t.len();
                continue;
            }
            if hold && self.texts.iter().any(|t| t.starts_with(rest)) {
                return (out, rest);
            }
            out.push(bytes[i]);
            i += 1;
        }
        (out, &[])
    }
}

/// A [`Mask`] over output that comes in chunks.
#[derive(Debug)]
pub struct MaskStream {
    mask: Arc<Mask>,
    held: Vec<u8>,
}

impl MaskStream {
    /// A stream masked by `mask`.
    pub fn new(mask: Arc<Mask>) -> MaskStream {
        MaskStream {
            mask,
            held: Vec::new(),
        }
    }

    /// The masked bytes that can be written now; the end of `chunk` that
    /// may be the start of a secret waits for the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(chunk);
        let (out, rest) = self.mask.scan(&self.held, true);
        self.held = rest.to_vec();
        out
    }

    /// What is held back, at the end of the output.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.held);
        self.mask.apply(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_whole_and_the_rest_kept_byte_for_byte() {
        let mask = Mask::of(["s3cr3t".to_owned(), "s3cr3t-long".to_owned()]).expect("mask");
        assert_eq!(
            mask.apply(b"a s3cr3t-long b s3cr3t \xff"),
            b"a ******** b ******** \xff".to_vec()
        );
        assert!(Mask::of([String::new()]).is_none());
    }

    #[test]
    fn a_secret_split_across_chunks_is_masked_at_every_split() {
        let mask = Mask::of(["hunter22".to_owned()]).expect("mask");
        let text = b"pw=hunter22; again hunter2 hunter22\n";
        for split in 0..text.len() {
            for second in split..text.len() {
                let mut s = MaskStream::new(mask.clone());
                let mut out = s.push(&text[..split]);
                out.extend(s.push(&text[split..second]));
                out.extend(s.push(&text[second..]));
                out.extend(s.finish());
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    "pw=********; again hunter2 ********\n",
                    "split at {split}, {second}"
                );
            }
        }
    }

    #[test]
    fn only_a_possible_start_of_a_secret_is_held_back() {
        let mask = Mask::of(["abcdef".to_owned()]).expect("mask");
        let mut s = MaskStream::new(mask);
        assert_eq!(s.push(b"line one\nxyz ab"), b"line one\nxyz ".to_vec());
        assert_eq!(s.push(b"x\n"), b"abx\n".to_vec());
        assert_eq!(s.finish(), Vec::<u8>::new());
    }
}
