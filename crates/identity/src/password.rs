//! Password hashing with Argon2id.
//!
//! Hashing is deliberately slow, so it runs on the blocking pool, never on the async
//! workers that serve other requests.

use anyhow::Context as _;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's minimum for Argon2id: 19 MiB of memory, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of a random password nobody knows, with the same parameters as real ones:
/// verifying against it costs what verifying a real password costs, which is all it is
/// for (an unknown email must take as long as a wrong password). A constant, so start-up
/// does not spend a hash on it.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$M7tdGnQtES2Zlv75MzyGNw$WzLGEBzTYLKiP+Sf1iEvfqTtKhRvIjUSlZFct7AUesQ";

/// The PHC string of `password` with a fresh random salt.
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("hashing a password: {error}"))
    })
    .await
    .context("the hashing task failed")?
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub async fn verify(password: String, hash: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        argon2()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .context("the verification task failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash("correct horse battery staple".to_owned())
            .await
            .expect("hashed");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            verify("correct horse battery staple".to_owned(), hash.clone())
                .await
                .expect("ran")
        );
        assert!(
            !verify("correct horse battery stapler".to_owned(), hash)
                .await
                .expect("ran")
        );
        assert!(
            !verify("x".to_owned(), "not a hash".to_owned())
                .await
                .expect("ran")
        );
    }
}
