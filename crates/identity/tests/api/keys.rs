//! Signing key rotation: new tokens use the new key; old tokens keep working.

use test_support::Engine;

use crate::helpers::{PASSWORD, TestApp, access};

test_support::on_both_engines!(
    rotation_keeps_the_old_key_published_until_its_tokens_expire,
    only_admins_may_rotate,
    configuring_a_secret_seals_the_signing_keys_at_rest,
);

/// The seeds as stored in identity's database.
async fn stored_seeds(config: &identity::Config) -> Vec<String> {
    use sqlx::Row as _;
    let db = platform::db::Database::open("identity", config.database_url.as_ref(), 1)
        .await
        .expect("the database");
    sqlx::query("SELECT seed FROM signing_keys")
        .fetch_all(db.pool())
        .await
        .expect("readable")
        .iter()
        .map(|row| row.try_get::<String, _>("seed").expect("a seed"))
        .collect()
}

/// A shop that starts with `signing_key_secret` seals the keys it stored plain before,
/// keeps signing and verifying with them (tokens already issued stay valid), and its
/// keys no longer open without the secret.
async fn configuring_a_secret_seals_the_signing_keys_at_rest(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let token = app.customer("ada@example.com").await;
    let plain = stored_seeds(&app.config).await;
    assert!(
        plain.iter().all(|seed| !seed.starts_with("enc1:")),
        "{plain:?}"
    );

    let mut sealed_config = app.config.clone();
    sealed_config.listen = "127.0.0.1:0".parse().expect("an address");
    sealed_config.signing_key_secret = Some(
        "a secret kept apart from the backups"
            .to_owned()
            .try_into()
            .expect("a secret"),
    );
    let context = test_support::context(app.bus.clone(), app.auth.verifier());
    let service = identity::build(&sealed_config, &app.auth, &context)
        .await
        .expect("identity starts with the secret");
    let sealed_identity = test_support::serve(service, &context.shutdown).await;
    let sealed = stored_seeds(&app.config).await;
    assert_eq!(sealed.len(), plain.len());
    assert!(
        sealed.iter().all(|seed| seed.starts_with("enc1:")),
        "{sealed:?}"
    );
    for seed in &plain {
        assert!(!sealed.iter().any(|stored| stored.contains(seed.as_str())));
    }
    let me = app
        .client
        .get(format!("http://{sealed_identity}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("identity answers");
    assert_eq!(
        me.status().as_u16(),
        200,
        "a token signed before still verifies"
    );

    let without = identity::context(&app.config, &app.auth)
        .await
        .expect("a context");
    let error = identity::ops::jwks(&without)
        .await
        .expect_err("sealed keys");
    assert!(
        format!("{error:#}").contains("signing_key_secret"),
        "{error:#}"
    );
    context.shutdown.trigger();
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    let jwks = app.jwks().await;
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| key["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

async fn rotation_keeps_the_old_key_published_until_its_tokens_expire(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let before = jwks_kids(&app).await;
    assert_eq!(before.len(), 1, "a key is made at start");
    let old_token = app.customer("ada@example.com").await;

    let context = app.context().await;
    let new_key = identity::ops::rotate_signing_key(&context)
        .await
        .expect("rotated");
    let after = jwks_kids(&app).await;
    assert_eq!(after.len(), 2, "both keys are published");
    assert!(after.contains(&before[0]) && after.contains(&new_key.kid().to_owned()));

    assert_eq!(
        app.get_as("/me", &old_token).await.status().as_u16(),
        200,
        "old tokens still verify"
    );
    let new_token = access(&app.login("ada@example.com", PASSWORD).await);
    assert_eq!(app.get_as("/me", &new_token).await.status().as_u16(), 200);
    let header = new_token.split('.').next().expect("a header");
    assert!(
        String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .expect("b64")
        )
        .expect("UTF-8")
        .contains(new_key.kid()),
        "new tokens are signed with the new key"
    );

    // Once every token of the old key has expired, only the new key is published.
    let retired_long_ago = platform::clock::now_secs() + 3600;
    let published = context
        .store
        .published_keys(retired_long_ago)
        .await
        .expect("readable");
    let published: Vec<&str> = published.iter().map(|stored| stored.key.kid()).collect();
    assert_eq!(published, vec![new_key.kid()]);
}

async fn only_admins_may_rotate(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let customer = app.customer("ada@example.com").await;
    let refused = app
        .client
        .post(app.url("/keys/rotate"))
        .bearer_auth(&customer)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status().as_u16(), 403);
    let anonymous = app
        .client
        .post(app.url("/keys/rotate"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
}
