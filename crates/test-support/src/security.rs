//! Security checks every service reuses: the JWT attack corpus and the object-level
//! authorization check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::identity::{ACCESS_TOKEN_TYPE, AUDIENCE, AccessClaims, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::SigningKey;
use serde_json::{Value, json};

/// Tokens that must all be refused with 401, each named by the attack it attempts.
///
/// `trusted` is a key the service under test trusts (so expiry, issuer and audience are
/// what fail, not the signature), `issuer` the issuer it expects, and `valid` a token it
/// accepts, to tamper with.
pub fn attack_corpus(
    trusted: &SigningKey,
    issuer: &str,
    valid: &str,
) -> Vec<(&'static str, String)> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |iss: &str, aud: &str, nbf: u64, exp: u64| AccessClaims {
        iss: iss.to_owned(),
        sub: "attacker".to_owned(),
        aud: aud.to_owned(),
        exp,
        nbf,
        iat: nbf,
        jti: "attack".to_owned(),
        roles: vec![Role::Customer, Role::Admin],
    };
    let good = claims(issuer, AUDIENCE, now, now + 600);
    let sign = |key: &SigningKey, claims: &AccessClaims| key.sign(claims).expect("signed");
    let same_key_as = |kid: &str| SigningKey::from_seed(kid, *trusted.seed());

    let parts: Vec<&str> = valid.split('.').collect();
    let (header, payload) = (parts[0], parts[1]);
    let mut tampered: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("JSON");
    tampered["roles"] = json!(["customer", "admin"]);
    tampered["sub"] = json!("someone-else");
    let tampered_payload = URL_SAFE_NO_PAD.encode(tampered.to_string());

    let none_header = URL_SAFE_NO_PAD
        .encode(json!({"alg": "none", "typ": ACCESS_TOKEN_TYPE, "kid": trusted.kid()}).to_string());
    let public_x = trusted.public_jwk().expect("a JWK");
    let public_bytes = match &public_x.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::OctetKeyPair(okp) => {
            URL_SAFE_NO_PAD.decode(&okp.x).expect("x")
        }
        _ => panic!("an Ed25519 JWK"),
    };
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
    hs_header.kid = Some(trusted.kid().to_owned());
    let key_confusion =
        jsonwebtoken::encode(&hs_header, &good, &EncodingKey::from_secret(&public_bytes))
            .expect("signed");
    let mut oversized = serde_json::to_value(&good).expect("JSON");
    // Far past the verifiers' bound, yet inside the gateway's bound on headers, so that
    // it is the token check that refuses it.
    oversized["padding"] = json!("x".repeat(16 * 1024));
    let mut ed_header = Header::new(Algorithm::EdDSA);
    ed_header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
    ed_header.kid = Some(trusted.kid().to_owned());
    let oversized = trusted
        .sign_with_header(&ed_header, &oversized)
        .expect("signed");
    let mut wrong_type = Header::new(Algorithm::EdDSA);
    wrong_type.kid = Some(trusted.kid().to_owned());
    let wrong_type = trusted
        .sign_with_header(&wrong_type, &good)
        .expect("signed");

    vec![
        ("alg none", format!("{none_header}.{payload}.")),
        (
            "HS256 signed with the public key (key confusion)",
            key_confusion,
        ),
        (
            "expired",
            sign(trusted, &claims(issuer, AUDIENCE, now - 7200, now - 3600)),
        ),
        (
            "not yet valid",
            sign(trusted, &claims(issuer, AUDIENCE, now + 3600, now + 7200)),
        ),
        (
            "wrong issuer",
            sign(
                trusted,
                &claims("https://evil.example/identity", AUDIENCE, now, now + 600),
            ),
        ),
        (
            "wrong audience",
            sign(trusted, &claims(issuer, "another-shop", now, now + 600)),
        ),
        ("unknown kid", sign(&same_key_as("no-such-key"), &good)),
        (
            "kid with a path",
            sign(&same_key_as("../../../../etc/passwd"), &good),
        ),
        ("kid with SQL", sign(&same_key_as("x' OR '1'='1"), &good)),
        (
            "tampered payload, original signature",
            format!("{header}.{tampered_payload}.{}", parts[2]),
        ),
        ("stripped signature", format!("{header}.{payload}.")),
        ("oversized", oversized),
        ("not an access token (typ JWT)", wrong_type),
        (
            "signed by a different Ed25519 key under the same kid",
            sign(&SigningKey::generate(trusted.kid()).expect("a key"), &good),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ]
}

/// Asserts `valid` is accepted and every token of `corpus` refused with 401, an RFC 6750
/// challenge and a problem body, by the request `request` builds (called once per token).
pub async fn assert_corpus_refused(
    request: impl Fn() -> reqwest::RequestBuilder,
    valid: &str,
    corpus: &[(&str, String)],
) {
    let accepted = request().bearer_auth(valid).send().await.expect("answers");
    let target = accepted.url().clone();
    assert!(
        accepted.status().is_success(),
        "the valid token was refused at {target}: {}",
        accepted.status()
    );
    for (attack, token) in corpus {
        let response = request().bearer_auth(token).send().await.expect("answers");
        assert_eq!(
            response.status().as_u16(),
            401,
            "{attack} was not refused at {target}"
        );
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{attack}: no challenge at {target}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{attack}"
        );
    }
}

/// Object-level authorization: `url` is the owner's resource; the owner reads it, and
/// anyone else gets 404 (not 403, not the data), so ids cannot even be probed.
pub async fn assert_hidden_from_others(
    client: &reqwest::Client,
    url: &str,
    owner: &str,
    other: &str,
) {
    let own = client
        .get(url)
        .bearer_auth(owner)
        .send()
        .await
        .expect("answers");
    assert_eq!(own.status().as_u16(), 200, "the owner cannot read {url}");
    let owned_body = own.text().await.expect("a body");
    let foreign = client
        .get(url)
        .bearer_auth(other)
        .send()
        .await
        .expect("answers");
    assert_eq!(
        foreign.status().as_u16(),
        404,
        "another user can see that {url} exists"
    );
    let foreign_body = foreign.text().await.expect("a body");
    assert!(
        !foreign_body.contains(&owned_body),
        "{url} leaked the owner's data"
    );
}
