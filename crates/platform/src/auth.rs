//! Verifying access tokens, in every service and at the gateway.
//!
//! Tokens are EdDSA-signed JWTs issued by identity. A [`Verifier`] checks them against
//! identity's published keys (its JWKS), which it caches; a token signed with a key it
//! has not seen makes it fetch the JWKS again, at most once per `refresh_interval`, so a
//! flood of made-up key ids cannot hammer identity. Only `EdDSA` is accepted, with the
//! `at+jwt` type, the configured issuer and audience, and a small clock-skew leeway.
//!
//! Handlers take an [`AuthUser`] (any signed-in user) or an [`Admin`]; the verifier is
//! found in the request's extensions, put there by the service's router.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use contracts::identity::{ACCESS_TOKEN_TYPE, AUDIENCE, AccessClaims, Role};
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::problem::Problem;

/// How soon a failed JWKS fetch may be retried.
const FAILED_FETCH_RETRY: Duration = Duration::from_secs(1);

/// The longest token accepted, in bytes; a real one is well under 1 KiB.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Where a verifier gets identity's public keys.
pub trait KeySource: Send + Sync + 'static {
    /// The current JWKS.
    fn fetch(&self) -> BoxFuture<'_, anyhow::Result<JwkSet>>;
}

/// Fetches the JWKS over HTTP, e.g. from `http://identity:8102/.well-known/jwks.json`.
pub struct RemoteJwks {
    url: String,
    client: reqwest::Client,
}

impl RemoteJwks {
    /// A source reading `url`, with a short timeout so a slow identity cannot stall
    /// every request that needs a key.
    pub fn new(url: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .pool_idle_timeout(crate::http::CLIENT_IDLE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            url: url.into(),
            client,
        }
    }
}

impl KeySource for RemoteJwks {
    fn fetch(&self) -> BoxFuture<'_, anyhow::Result<JwkSet>> {
        Box::pin(async move {
            let response = self
                .client
                .get(&self.url)
                .send()
                .await?
                .error_for_status()?;
            Ok(response.json::<JwkSet>().await?)
        })
    }
}

/// A fixed JWKS: for tests, and for a service that holds its keys itself.
pub struct StaticJwks(pub JwkSet);

impl KeySource for StaticJwks {
    fn fetch(&self) -> BoxFuture<'_, anyhow::Result<JwkSet>> {
        let set = self.0.clone();
        Box::pin(async move { Ok(set) })
    }
}

/// How services find and check access tokens: one `[auth]` section for the whole shop.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The `iss` of every access token: identity's public URL.
    pub issuer: String,
    /// Where services fetch identity's public keys (an internal URL). Unset means
    /// identity's JWKS at its listen address.
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on expiry and not-before, in seconds.
    pub leeway_secs: u64,
    /// The least time between two JWKS fetches caused by unknown key ids, in seconds.
    pub jwks_refresh_secs: u64,
    /// What the shop's own proxies (the gateway, the storefront) present, in
    /// [`crate::net::FORWARDED_BY`], so that the services behind them believe the client
    /// address they forward; see [`crate::net::vouched_client_address`]. `bazaar up`
    /// makes one for its process when none is set; a distributed shop sets it in every
    /// process (compose and Kubernetes take it from their secrets).
    pub forwarding_secret: Option<crate::config::Secret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "http://127.0.0.1:8080/api/identity".to_owned(),
            jwks_url: None,
            leeway_secs: 30,
            jwks_refresh_secs: 10,
            forwarding_secret: None,
        }
    }
}

impl AuthConfig {
    /// The settings a verifier needs.
    pub fn settings(&self) -> VerifierSettings {
        VerifierSettings {
            issuer: self.issuer.clone(),
            leeway: Duration::from_secs(self.leeway_secs),
            refresh_interval: Duration::from_secs(self.jwks_refresh_secs),
        }
    }

    /// A verifier fetching keys from `jwks_url`.
    pub fn verifier(&self) -> Verifier {
        let url = self.jwks_url.clone().unwrap_or_default();
        Verifier::new(self.settings(), RemoteJwks::new(url))
    }
}

/// An Ed25519 signing key with its key id: what identity signs access tokens with.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    seed: [u8; 32],
    encoding: jsonwebtoken::EncodingKey,
}

/// The DER prefix of a PKCS#8 v1 Ed25519 private key; the 32-byte seed follows it.
/// (v1, not v2: `Jwk::from_encoding_key` rejects the v2 form.)
const PKCS8_V1_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

impl SigningKey {
    /// A new random key called `kid`.
    pub fn generate(kid: impl Into<String>) -> anyhow::Result<Self> {
        let mut seed = [0_u8; 32];
        getrandom::fill(&mut seed).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        Ok(Self::from_seed(kid, seed))
    }

    /// The key with this seed (as stored) and id.
    pub fn from_seed(kid: impl Into<String>, seed: [u8; 32]) -> Self {
        let mut der = PKCS8_V1_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        Self {
            kid: kid.into(),
            seed,
            encoding: jsonwebtoken::EncodingKey::from_ed_der(&der),
        }
    }

    /// The key id, sent as the token header's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private seed, for storage. Never log it.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public half as a JWK, for the JWKS.
    pub fn public_jwk(&self) -> anyhow::Result<jsonwebtoken::jwk::Jwk> {
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&self.encoding, Algorithm::EdDSA)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(jwk)
    }

    /// Signs `claims` as an access token.
    pub fn sign(&self, claims: &AccessClaims) -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        header.kid = Some(self.kid.clone());
        self.sign_with_header(&header, claims)
    }

    /// Signs any claims under any header: for tests that forge what identity never would.
    pub fn sign_with_header<T: serde::Serialize>(
        &self,
        header: &jsonwebtoken::Header,
        claims: &T,
    ) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(header, claims, &self.encoding)?)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What a verifier checks besides the signature.
#[derive(Clone, Debug)]
pub struct VerifierSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// The least time between two JWKS fetches caused by unknown key ids.
    pub refresh_interval: Duration,
}

/// Checks access tokens; cheap to clone and shared by every request.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    settings: VerifierSettings,
    /// Tokens verified lately, with their claims and until when they are trusted.
    verdicts: std::sync::Mutex<HashMap<String, (AccessClaims, Instant)>>,
    source: Box<dyn KeySource>,
    keys: RwLock<KeyCache>,
    /// Held while fetching, so concurrent misses cause one fetch; records when the
    /// last fetch happened and whether it succeeded.
    fetch: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

/// The keys last fetched, and when.
#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// How long fetched keys are trusted before the JWKS is read again, so a key identity
/// stopped publishing (after a rotation, or a compromise) stops verifying everywhere.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(300);

/// How long a verified token is remembered at most, and never past its expiry.
/// Verifying an EdDSA signature costs far more than the rest of a small request, and a
/// client sends the same token with every request until it expires; so the gateway and
/// each service verify it once in this while. A key identity stops publishing still
/// stops working everywhere within this plus [`KEYS_MAX_AGE`].
pub const VERDICT_TTL: Duration = Duration::from_secs(30);

/// Tokens remembered at most; past that, the memory is cleared and refilled.
const VERDICTS: usize = 10_000;

/// Why a token was refused. The message is safe to show the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// A token was sent but fails verification.
    #[error("{0}")]
    Invalid(&'static str),
    /// The token is valid but the user lacks the role.
    #[error("requires the {0} role")]
    Forbidden(&'static str),
}

impl Verifier {
    /// A verifier over `source` with `settings`.
    pub fn new(settings: VerifierSettings, source: impl KeySource) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                verdicts: std::sync::Mutex::new(HashMap::new()),
                source: Box::new(source),
                keys: RwLock::new(KeyCache::default()),
                fetch: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The token's claims, if it is one identity issued, unexpired, for Bazaar. A token
    /// verified within [`VERDICT_TTL`] and still unexpired is not verified again.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid("the token is too large"));
        }
        let now = Instant::now();
        let unexpired = |claims: &AccessClaims| {
            u64::try_from(crate::clock::now_secs()).is_ok_and(|secs| secs < claims.exp)
        };
        if let Some((claims, until)) = self.verdicts().get(token)
            && now < *until
            && unexpired(claims)
        {
            return Ok(claims.clone());
        }
        let claims = self.check(token).await?;
        let mut verdicts = self.verdicts();
        if verdicts.len() >= VERDICTS {
            verdicts.clear();
        }
        verdicts.insert(token.to_owned(), (claims.clone(), now + VERDICT_TTL));
        Ok(claims)
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, HashMap<String, (AccessClaims, Instant)>> {
        // A poisoned lock only means a panic elsewhere; the map is still whole.
        self.inner
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Verifies the token's signature and claims.
    async fn check(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("the token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid("the token's algorithm is not accepted"));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(AuthError::Invalid("the token is not an access token"));
        }
        let kid = header
            .kid
            .filter(|kid| is_plausible_kid(kid))
            .ok_or(AuthError::Invalid("the token names no valid key"))?;
        let key = self
            .key(&kid)
            .await
            .ok_or(AuthError::Invalid("the token's key is unknown"))?;
        let settings = &self.inner.settings;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway.as_secs();
        jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                AuthError::Invalid(match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidIssuer => "the token has the wrong issuer",
                    ErrorKind::InvalidAudience => "the token has the wrong audience",
                    ErrorKind::InvalidSignature => "the token's signature is invalid",
                    _ => "the token is invalid",
                })
            })
    }

    /// The key called `kid`, fetching the JWKS again if it is unknown and the last
    /// fetch is old enough.
    async fn key(&self, kid: &str) -> Option<DecodingKey> {
        let (key, stale) = self.cached(kid);
        if let Some(key) = key.as_ref().filter(|_| !stale) {
            return Some(key.clone());
        }
        let mut last_fetch = self.inner.fetch.lock().await;
        // Another request may have fetched while this one waited for the lock.
        let (key, stale) = self.cached(kid);
        if let Some(key) = key.as_ref().filter(|_| !stale) {
            return Some(key.clone());
        }
        // A miss may refetch once per interval (so made-up kids cannot hammer identity);
        // a stale hit once per retry period. After a failed fetch (identity not up yet,
        // say) retry sooner, so a restart does not lock everyone out for an interval.
        let interval = if key.is_some() {
            FAILED_FETCH_RETRY
        } else {
            self.inner.settings.refresh_interval
        };
        if let Some((at, succeeded)) = *last_fetch {
            let wait = if succeeded {
                interval
            } else {
                interval.min(FAILED_FETCH_RETRY)
            };
            if at.elapsed() < wait {
                return key;
            }
        }
        let fetched = self.inner.source.fetch().await;
        *last_fetch = Some((Instant::now(), fetched.is_ok()));
        match fetched {
            Ok(set) => {
                let keys: HashMap<String, DecodingKey> = set
                    .keys
                    .iter()
                    .filter_map(|jwk| {
                        let kid = jwk.common.key_id.clone()?;
                        DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
                    })
                    .collect();
                tracing::debug!(keys = keys.len(), "fetched the JWKS");
                // Replace, not merge: a key identity stopped publishing stops verifying.
                *self
                    .inner
                    .keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = KeyCache {
                    keys,
                    fetched_at: Some(Instant::now()),
                };
            }
            // Keep verifying with the keys held: a stale key beats refusing everyone
            // while identity is briefly unreachable.
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not fetch the JWKS"),
        }
        self.cached(kid).0
    }

    /// The cached key called `kid`, and whether the cache is older than
    /// [`KEYS_MAX_AGE`] (or was never filled).
    fn cached(&self, kid: &str) -> (Option<DecodingKey>, bool) {
        let cache = self
            .inner
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stale = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() > KEYS_MAX_AGE);
        (cache.keys.get(kid).cloned(), stale)
    }
}

/// Key ids are short and plain; anything else (paths, quotes, SQL) is refused before
/// it is looked up anywhere.
fn is_plausible_kid(kid: &str) -> bool {
    (1..=64).contains(&kid.len())
        && kid
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Invalid("the Authorization header is not text"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Invalid("the Authorization header is not Bearer"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Invalid("the Authorization header is not Bearer"));
    }
    Ok(token.trim())
}

impl From<AuthError> for Problem {
    /// 401 with `WWW-Authenticate` (RFC 6750) for a missing or bad token, 403 for a
    /// missing role.
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Missing => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this resource needs a bearer token",
            )
            .with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="bazaar""#),
            ),
            AuthError::Invalid(reason) => {
                let challenge = format!(
                    r#"Bearer realm="bazaar", error="invalid_token", error_description="{reason}""#
                );
                Problem::new(StatusCode::UNAUTHORIZED, "invalid-token", reason).with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_str(&challenge).unwrap_or_else(|_| {
                        HeaderValue::from_static(r#"Bearer error="invalid_token""#)
                    }),
                )
            }
            AuthError::Forbidden(_) => Problem::forbidden(error.to_string()),
        }
    }
}

/// A signed-in user, verified from the request's bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The user's id (the token's `sub`).
    pub id: String,
    /// What the user may do.
    pub roles: Vec<Role>,
}

impl AuthUser {
    /// Whether the user has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the user is an admin.
    pub fn is_admin(&self) -> bool {
        self.has(Role::Admin)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(verifier) = parts.extensions.get::<Verifier>().cloned() else {
            return Err(
                anyhow::anyhow!("no Verifier in the request extensions; add the layer").into(),
            );
        };
        let token = bearer_token(&parts.headers)?;
        let claims = verifier.verify(token).await?;
        Ok(Self {
            id: claims.sub,
            roles: claims.roles,
        })
    }
}

/// A signed-in user with the admin role; anyone else is refused with 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin(pub AuthUser);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.is_admin() {
            Ok(Self(user))
        } else {
            Err(AuthError::Forbidden(Role::Admin.as_str()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(issuer: &str, ttl: i64) -> AccessClaims {
        let now = jsonwebtoken::get_current_timestamp();
        AccessClaims {
            iss: issuer.to_owned(),
            sub: "user-1".to_owned(),
            aud: AUDIENCE.to_owned(),
            exp: now.saturating_add_signed(ttl),
            nbf: now,
            iat: now,
            jti: "t-1".to_owned(),
            roles: vec![Role::Customer],
        }
    }

    fn verifier(key: &SigningKey) -> Verifier {
        let set = JwkSet {
            keys: vec![key.public_jwk().expect("a JWK")],
        };
        let settings = VerifierSettings {
            issuer: "https://shop.test/identity".to_owned(),
            leeway: Duration::from_secs(5),
            refresh_interval: Duration::ZERO,
        };
        Verifier::new(settings, StaticJwks(set))
    }

    #[tokio::test]
    async fn a_signed_token_verifies_and_its_claims_come_back() {
        let key = SigningKey::generate("k1").expect("a key");
        let token = key
            .sign(&claims("https://shop.test/identity", 60))
            .expect("signed");
        let verified = verifier(&key).verify(&token).await.expect("valid");
        assert_eq!(verified.sub, "user-1");
        assert_eq!(verified.roles, vec![Role::Customer]);
    }

    #[tokio::test]
    async fn expired_and_foreign_tokens_are_refused() {
        let key = SigningKey::generate("k1").expect("a key");
        let verifier = verifier(&key);
        let expired = key
            .sign(&claims("https://shop.test/identity", -60))
            .expect("signed");
        assert_eq!(
            verifier.verify(&expired).await,
            Err(AuthError::Invalid("the token has expired"))
        );
        let foreign = key.sign(&claims("https://evil.test", 60)).expect("signed");
        assert_eq!(
            verifier.verify(&foreign).await,
            Err(AuthError::Invalid("the token has the wrong issuer"))
        );
        let other_key = SigningKey::generate("k1").expect("a key");
        let forged = other_key
            .sign(&claims("https://shop.test/identity", 60))
            .expect("signed");
        assert_eq!(
            verifier.verify(&forged).await,
            Err(AuthError::Invalid("the token's signature is invalid"))
        );
    }

    /// A source that counts its fetches.
    struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>, JwkSet);

    impl KeySource for Counting {
        fn fetch(&self) -> BoxFuture<'_, anyhow::Result<JwkSet>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let set = self.1.clone();
            Box::pin(async move { Ok(set) })
        }
    }

    #[tokio::test]
    async fn a_flood_of_unknown_key_ids_fetches_the_jwks_once_per_interval() {
        let key = SigningKey::generate("k1").expect("a key");
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let set = JwkSet {
            keys: vec![key.public_jwk().expect("a JWK")],
        };
        let settings = VerifierSettings {
            issuer: "https://shop.test/identity".to_owned(),
            leeway: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(3600),
        };
        let verifier = Verifier::new(settings, Counting(fetches.clone(), set));
        let good = key
            .sign(&claims("https://shop.test/identity", 60))
            .expect("signed");
        assert!(verifier.verify(&good).await.is_ok());
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);

        let attempts = (0..50).map(|n| {
            let forged = SigningKey::from_seed(format!("random-{n}"), *key.seed());
            let token = forged
                .sign(&claims("https://shop.test/identity", 60))
                .expect("signed");
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        });
        for attempt in futures_util::future::join_all(attempts).await {
            assert_eq!(
                attempt.expect("ran"),
                Err(AuthError::Invalid("the token's key is unknown"))
            );
        }
        assert_eq!(
            fetches.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "unknown kids within the interval must not refetch"
        );
        assert!(
            verifier.verify(&good).await.is_ok(),
            "known keys keep working"
        );
    }

    #[test]
    fn a_stored_seed_rebuilds_the_same_key() {
        let key = SigningKey::generate("k1").expect("a key");
        let again = SigningKey::from_seed("k1", *key.seed());
        assert_eq!(
            serde_json::to_value(key.public_jwk().expect("jwk")).expect("json"),
            serde_json::to_value(again.public_jwk().expect("jwk")).expect("json")
        );
    }

    #[test]
    fn key_ids_with_paths_or_quotes_are_refused() {
        assert!(is_plausible_kid("2026-11-22_a1B2"));
        for bad in [
            "",
            "../../etc/passwd",
            "' OR 1=1 --",
            "a b",
            &"k".repeat(65),
        ] {
            assert!(!is_plausible_kid(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_bearer_authorization_is_read() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer_token(&headers), Err(AuthError::Missing));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YTpi"),
        );
        assert!(matches!(bearer_token(&headers), Err(AuthError::Invalid(_))));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers), Ok("abc.def.ghi"));
    }

    #[test]
    fn refusals_carry_an_rfc_6750_challenge() {
        let problem = Problem::from(AuthError::Invalid("the token has expired"));
        assert_eq!(problem.status, 401);
        let headers = problem.headers.as_deref().expect("headers");
        let challenge = headers[header::WWW_AUTHENTICATE].to_str().expect("text");
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        assert_eq!(Problem::from(AuthError::Forbidden("admin")).status, 403);
    }
}
