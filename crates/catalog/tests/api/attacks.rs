//! The JWT attack corpus, at the catalog itself: no trust in the gateway.

use serde_json::json;
use test_support::Engine;
use test_support::security::{assert_corpus_refused, attack_corpus};

use crate::helpers::TestApp;

test_support::on_both_engines!(every_forged_token_is_refused_on_admin_writes);

async fn every_forged_token_is_refused_on_admin_writes(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let valid = app.issuer.admin();
    let corpus = attack_corpus(app.issuer.key(), test_support::TestIssuer::ISSUER, &valid);
    let url = app.url("/categories");
    let body =
        json!({"slug": "forged", "name": "Forged", "description": "Made by an attack test."});
    assert_corpus_refused(|| app.client.post(&url).json(&body), &valid, &corpus).await;
    // Only the valid token's request took effect.
    let categories = app.get_json("/categories", 200).await;
    let forged = categories["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|category| category["slug"] == "forged")
        .count();
    assert_eq!(forged, 1);
}
