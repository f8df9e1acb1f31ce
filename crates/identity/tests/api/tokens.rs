//! Refresh rotation, theft detection, logout, and tokens any JWT library can verify.

use base64::Engine as _;
use jwt_simple::prelude::{
    Ed25519PublicKey, EdDSAPublicKeyLike, NoCustomClaims, VerificationOptions,
};
use serde_json::{Value, json};
use test_support::Engine;

use crate::helpers::{ISSUER, PASSWORD, TestApp, access, assert_problem, refresh};

test_support::on_both_engines!(
    refresh_tokens_rotate_on_every_use,
    reusing_a_rotated_refresh_token_revokes_the_family,
    logout_revokes_the_refresh_token,
    a_session_ends_at_its_maximum_age_however_often_it_is_refreshed,
    an_independent_jwt_library_verifies_tokens_with_the_jwks,
    the_discovery_document_points_at_the_keys,
);

async fn refresh_tokens_rotate_on_every_use(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register("ada@example.com").await;
    let first = app.login("ada@example.com", PASSWORD).await;
    let second = app
        .post("/refresh", json!({"refresh_token": refresh(&first)}))
        .await;
    assert_eq!(second.status().as_u16(), 200);
    let second: Value = second.json().await.expect("JSON");
    assert_ne!(refresh(&second), refresh(&first));
    assert_eq!(
        app.get_as("/me", &access(&second)).await.status().as_u16(),
        200
    );
    let third = app
        .post("/refresh", json!({"refresh_token": refresh(&second)}))
        .await;
    assert_eq!(third.status().as_u16(), 200);
}

/// A session has a maximum age from sign-in (here none at all): its refresh token is
/// refused then, though unexpired and unused, and the user signs in again.
async fn a_session_ends_at_its_maximum_age_however_often_it_is_refreshed(engine: Engine) {
    let app = TestApp::spawn_with(engine, |config| {
        config.address_attempts_burst = 10_000;
        config.session_max_age_secs = 0;
    })
    .await;
    app.register("ada@example.com").await;
    let tokens = app.login("ada@example.com", PASSWORD).await;
    let refused = app
        .post("/refresh", json!({"refresh_token": refresh(&tokens)}))
        .await;
    assert_problem(refused, 400, "invalid-grant").await;
    app.login("ada@example.com", PASSWORD).await;
}

async fn reusing_a_rotated_refresh_token_revokes_the_family(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register("ada@example.com").await;
    let stolen = app.login("ada@example.com", PASSWORD).await;
    // The owner refreshes; the thief later replays the old token.
    let owners: Value = app
        .post("/refresh", json!({"refresh_token": refresh(&stolen)}))
        .await
        .json()
        .await
        .expect("JSON");
    let replay = app
        .post("/refresh", json!({"refresh_token": refresh(&stolen)}))
        .await;
    assert_problem(replay, 400, "invalid-grant").await;
    // The whole family is gone, the owner's newer token included.
    let owner_again = app
        .post("/refresh", json!({"refresh_token": refresh(&owners)}))
        .await;
    assert_problem(owner_again, 400, "invalid-grant").await;
    // A separate sign-in is a separate family and still works.
    let other = app.login("ada@example.com", PASSWORD).await;
    let other = app
        .post("/refresh", json!({"refresh_token": refresh(&other)}))
        .await;
    assert_eq!(other.status().as_u16(), 200);
}

async fn logout_revokes_the_refresh_token(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    app.register("ada@example.com").await;
    let tokens = app.login("ada@example.com", PASSWORD).await;
    let logout = app
        .post("/logout", json!({"refresh_token": refresh(&tokens)}))
        .await;
    assert_eq!(logout.status().as_u16(), 204);
    let after = app
        .post("/refresh", json!({"refresh_token": refresh(&tokens)}))
        .await;
    assert_problem(after, 400, "invalid-grant").await;
    let unknown = app
        .post("/logout", json!({"refresh_token": "never-issued"}))
        .await;
    assert_eq!(
        unknown.status().as_u16(),
        204,
        "logout tells nothing about a token"
    );
}

async fn an_independent_jwt_library_verifies_tokens_with_the_jwks(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let account = app.register("ada@example.com").await;
    let token = access(&app.login("ada@example.com", PASSWORD).await);
    let jwks = app.jwks().await;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().expect("a header"))
            .expect("base64"),
    )
    .expect("JSON");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|jwk| jwk["kid"] == header["kid"])
        .expect("the token's key is published");
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().expect("x"))
        .expect("base64url");
    let key = Ed25519PublicKey::from_bytes(&x).expect("an Ed25519 key");
    let options = VerificationOptions {
        allowed_issuers: Some([ISSUER.to_owned()].into()),
        allowed_audiences: Some(["bazaar".to_owned()].into()),
        ..VerificationOptions::default()
    };
    let claims = key
        .verify_token::<NoCustomClaims>(&token, Some(options))
        .expect("jwt-simple accepts the token");
    assert_eq!(claims.subject.as_deref(), account["id"].as_str());
}

async fn the_discovery_document_points_at_the_keys(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let discovery: Value = app
        .client
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(discovery["issuer"], ISSUER);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
}
