//! Secret variables and everything made from them.
//!
//! A variable is secret when its name looks secret (PASS, SECRET, TOKEN, KEY,
//! CREDENTIAL) or when its value is a template that reads a secret variable;
//! so is every step value rendered from one (taint through templates, by the
//! names a template reads). Secret values are shown and stored as
//! [`MASK`]; the resume fingerprint keeps a keyed hash of them instead
//! ([`FingerprintKey`]), so a changed password still counts as a change.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

/// What ward shows and stores instead of a secret value.
pub const MASK: &str = "********";

/// True for names whose values must never be shown (variables and
/// environment entries).
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASS", "SECRET", "TOKEN", "KEY", "CREDENTIAL"]
        .iter()
        .any(|s| upper.contains(s))
}

/// A value's use of a secret: the variable the template reads and the
/// secret variable that one was made from (the same for a direct use).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretUse {
    /// The variable named in the template.
    pub var: String,
    /// The secret variable at the start of the chain.
    pub root: String,
}

impl SecretUse {
    /// `` `db_password` `` or `` `conn` (made from secret `db_password`) ``.
    pub fn describe(&self) -> String {
        if self.var == self.root {
            format!("secret variable `{}`", self.var)
        } else {
            format!(
                "variable `{}`, which is made from secret variable `{}`",
                self.var, self.root
            )
        }
    }
}

/// The secret variables of a playbook: name -> the secret it comes from.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    roots: BTreeMap<String, String>,
}

impl Secrets {
    /// Marks `var` secret because of `root` (itself for a secret name).
    pub fn insert(&mut self, var: &str, root: &str) {
        self.roots.insert(var.to_owned(), root.to_owned());
    }

    /// True if `var` is secret.
    pub fn contains(&self, var: &str) -> bool {
        self.roots.contains_key(var)
    }

    /// True if no variable is secret.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The first secret (in name order, so messages are stable) among the
    /// names a template reads.
    pub fn used_by(&self, names: &HashSet<String>) -> Option<SecretUse> {
        if self.roots.is_empty() {
            return None;
        }
        let mut found: Vec<&String> = names.iter().filter(|n| self.contains(n)).collect();
        found.sort();
        found.first().map(|var| SecretUse {
            var: (*var).clone(),
            root: self.roots[*var].clone(),
        })
    }
}

/// The shortest secret text masked in free text. Shorter values match
/// ordinary words: masking `a` would turn "undefined variable" into
/// "undefined v********ri********ble", garbling the message and showing the
/// secret by where the masks are. Values themselves are masked whole at
/// any length (by taint); this only concerns text that may quote one.
pub const MIN_REDACTED_LEN: usize = 4;

/// Replaces every occurrence of a secret's text with [`MASK`]: the last line
/// of defence for free text such as error messages, which may quote a value.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    // Longest first, so a secret that contains another is masked whole.
    texts: Vec<String>,
}

impl Redactor {
    /// Adds the text of a secret value (each string and number in it; a
    /// boolean hides nothing, and masking every `true` would garble messages).
    pub fn add_value(&mut self, value: &serde_json::Value) {
        use serde_json::Value as J;
        match value {
            J::String(s) => self.add(s),
            J::Number(n) => self.add(&n.to_string()),
            J::Bool(_) | J::Null => {}
            J::Array(items) => items.iter().for_each(|i| self.add_value(i)),
            J::Object(map) => map.values().for_each(|v| self.add_value(v)),
        }
    }

    /// Adds one secret text (ignored below [`MIN_REDACTED_LEN`] characters).
    pub fn add(&mut self, text: &str) {
        if text.chars().count() < MIN_REDACTED_LEN || self.texts.iter().any(|t| t == text) {
            return;
        }
        self.texts.push(text.to_owned());
        self.texts.sort_by_key(|t| std::cmp::Reverse(t.len()));
    }

    /// The secret texts, longest first (for masking bytes elsewhere:
    /// `process::Mask`).
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// `text` with every secret replaced by [`MASK`], in one pass from the
    /// left, the longest secret first at each place, so that a mask already
    /// written is never matched again (a secret `****` must not eat into
    /// the `********` of another).
    pub fn apply(&self, text: &str) -> String {
        if !self.texts.iter().any(|t| text.contains(t.as_str())) {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            match self.texts.iter().find(|t| rest.starts_with(t.as_str())) {
                Some(t) => {
                    out.push_str(MASK);
                    rest = &rest[t.len()..];
                }
                None => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }
}

/// The key of the resume fingerprint of secret values: 32 random bytes kept
/// beside the state database (mode 0600), never in it. Without the key, the
/// stored fingerprint says nothing about the value, even to a dictionary.
#[derive(Clone)]
pub struct FingerprintKey([u8; 32]);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

impl FingerprintKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> FingerprintKey {
        FingerprintKey(bytes)
    }

    /// HMAC-SHA256 (RFC 2104) of `parts`, each length-prefixed so that
    /// `("ab", "c")` and `("a", "bc")` differ; as hex.
    pub fn fingerprint<'a>(&self, parts: impl IntoIterator<Item = &'a str>) -> String {
        let mut message = Vec::new();
        for p in parts {
            message.extend_from_slice(&(p.len() as u64).to_be_bytes());
            message.extend_from_slice(p.as_bytes());
        }
        hex(&hmac_sha256(&self.0, &message))
    }
}

const BLOCK: usize = 64;

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| -> [u8; BLOCK] { block.map(|b| b ^ byte) };
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn fingerprints_depend_on_key_and_each_part() {
        let a = FingerprintKey::from_bytes([1; 32]);
        let b = FingerprintKey::from_bytes([2; 32]);
        assert_ne!(a.fingerprint(["ab", "c"]), a.fingerprint(["a", "bc"]));
        assert_ne!(a.fingerprint(["x"]), b.fingerprint(["x"]));
        assert_eq!(a.fingerprint(["x"]), a.fingerprint(["x"]));
    }

    #[test]
    fn redaction_masks_longest_first() {
        let mut r = Redactor::default();
        r.add("pass");
        r.add("host=db pass");
        r.add("");
        assert_eq!(
            r.apply("conn host=db pass; pass"),
            "conn ********; ********"
        );
    }

    #[test]
    fn redaction_skips_short_values_and_never_matches_a_mask() {
        let mut r = Redactor::default();
        r.add("a");
        r.add("abc");
        r.add("****");
        r.add("wxyz");
        assert_eq!(r.apply("undefined variable abc"), "undefined variable abc");
        assert_eq!(r.apply("x wxyz y"), "x ******** y");
    }
}
