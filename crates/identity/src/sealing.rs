//! Signing keys sealed at rest.
//!
//! With `signing_key_secret` configured, a signing key's private seed is stored
//! encrypted (ChaCha20-Poly1305, a fresh random nonce per key, the key id as associated
//! data, so a sealed seed cannot be moved to another key's row) under a key derived
//! from the secret with SHA-256. Someone who reads identity's database (a backup, a
//! replica, a leaked dump) then cannot sign tokens without the secret as well. Stored
//! form: `enc1:` and the base64 of nonce and ciphertext.
//!
//! Without the secret, seeds are stored as plain base64 (the embedded demo shop).
//! Seeds stored plain before a secret was configured still open, and
//! [`crate::store::Store::seal_plain_keys`] seals them at start; a sealed seed without
//! the secret, or with another one, refuses to open with an error naming the setting.

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::Digest as _;

const SEALED: &str = "enc1:";

/// Seals and opens signing key seeds; cheap to clone.
#[derive(Clone)]
pub struct KeySeal {
    key: Option<std::sync::Arc<LessSafeKey>>,
}

impl std::fmt::Debug for KeySeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.key.is_some() {
            "KeySeal(sealed)"
        } else {
            "KeySeal(plain)"
        })
    }
}

impl KeySeal {
    /// Seals with a key derived from `secret`, or stores seeds plain without one.
    pub fn new(secret: Option<&platform::config::Secret>) -> Self {
        let key = secret.map(|secret| {
            let bytes: [u8; 32] = sha2::Sha256::digest(secret.expose().as_bytes()).into();
            let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes).expect("a 32-byte key");
            std::sync::Arc::new(LessSafeKey::new(key))
        });
        Self { key }
    }

    /// Whether seeds are sealed.
    pub fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// Whether `stored` is a sealed seed.
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED)
    }

    /// The stored form of key `kid`'s `seed`.
    pub fn seal(&self, kid: &str, seed: &[u8; 32]) -> anyhow::Result<String> {
        let Some(key) = &self.key else {
            return Ok(STANDARD.encode(seed));
        };
        let mut nonce = [0_u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        let mut sealed = seed.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut sealed,
        )
        .map_err(|_| anyhow::anyhow!("sealing signing key {kid}"))?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(format!("{SEALED}{}", STANDARD.encode(stored)))
    }

    /// Key `kid`'s seed from its stored form.
    pub fn open(&self, kid: &str, stored: &str) -> anyhow::Result<[u8; 32]> {
        let Some(sealed) = stored.strip_prefix(SEALED) else {
            return STANDARD
                .decode(stored)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .with_context(|| format!("stored key {kid} has a malformed seed"));
        };
        let key = self.key.as_ref().with_context(|| {
            format!(
                "signing key {kid} is sealed: set identity.signing_key_secret to the secret \
                 it was sealed with"
            )
        })?;
        let bytes = STANDARD
            .decode(sealed)
            .with_context(|| format!("stored key {kid} has a malformed seal"))?;
        anyhow::ensure!(
            bytes.len() > NONCE_LEN,
            "stored key {kid} has a malformed seal"
        );
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| anyhow::anyhow!("stored key {kid} has a malformed seal"))?;
        let mut opened = ciphertext.to_vec();
        let seed = key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut opened)
            .map_err(|_| {
                anyhow::anyhow!(
                    "signing key {kid} does not open with identity.signing_key_secret: it \
                     was sealed with another secret"
                )
            })?;
        seed.try_into()
            .map_err(|_| anyhow::anyhow!("stored key {kid} has a malformed seal"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> platform::config::Secret {
        text.to_owned().try_into().expect("a secret")
    }

    #[test]
    fn a_sealed_seed_opens_with_its_secret_and_kid_only() {
        let seed = [7_u8; 32];
        let seal = KeySeal::new(Some(&secret("a long enough secret value")));
        let stored = seal.seal("kid-1", &seed).expect("sealed");
        assert!(KeySeal::is_sealed(&stored));
        assert!(!stored.contains(&STANDARD.encode(seed)));
        assert_eq!(seal.open("kid-1", &stored).expect("opens"), seed);
        assert!(seal.open("kid-2", &stored).is_err(), "moved to another key");
        let other = KeySeal::new(Some(&secret("another long secret value")));
        let error = other.open("kid-1", &stored).expect_err("wrong secret");
        assert!(error.to_string().contains("signing_key_secret"), "{error}");
        let none = KeySeal::new(None);
        let error = none.open("kid-1", &stored).expect_err("no secret");
        assert!(error.to_string().contains("signing_key_secret"), "{error}");
    }

    #[test]
    fn plain_seeds_still_open_and_every_seal_is_new() {
        let seed = [9_u8; 32];
        let plain = KeySeal::new(None).seal("kid", &seed).expect("stored");
        assert_eq!(plain, STANDARD.encode(seed));
        let seal = KeySeal::new(Some(&secret("a long enough secret value")));
        assert_eq!(seal.open("kid", &plain).expect("opens"), seed);
        assert_ne!(
            seal.seal("kid", &seed).expect("sealed"),
            seal.seal("kid", &seed).expect("sealed"),
            "a fresh nonce each time"
        );
    }
}
