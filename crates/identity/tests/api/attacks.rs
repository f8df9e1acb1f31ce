//! The JWT attack corpus, at identity itself.

use test_support::Engine;
use test_support::security::{assert_corpus_refused, attack_corpus};

use crate::helpers::{ISSUER, TestApp};

test_support::on_both_engines!(every_forged_token_is_refused);

async fn every_forged_token_is_refused(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let valid = app.customer("ada@example.com").await;
    let trusted = app
        .context()
        .await
        .store
        .active_key()
        .await
        .expect("readable")
        .expect("a signing key")
        .key;
    let corpus = attack_corpus(&trusted, ISSUER, &valid);
    assert!(corpus.len() >= 12);
    assert_corpus_refused(|| app.client.get(app.url("/me")), &valid, &corpus).await;
}
