//! Identity when its database goes away and comes back.

use test_support::Engine;
use test_support::proxy::Proxy;

use crate::helpers::{PASSWORD, TestApp};

/// With PostgreSQL unreachable, sign-in and registration answer 503 with
/// `Retry-After` (not 500 after a long hang), and once it is back they work again
/// without a restart.
#[tokio::test]
async fn a_database_outage_answers_503_and_heals() {
    let link = Proxy::to_server_of(&test_support::postgres_admin_url()).await;
    let app = TestApp::spawn_with(Engine::Postgres, |config| {
        config.address_attempts_burst = 10_000;
        let direct = config.database_url.take().expect("a database");
        config.database_url = Some(
            link.url_through(direct.expose())
                .try_into()
                .expect("a database URL"),
        );
    })
    .await;
    app.register("ada@example.com").await;

    link.cut();
    for (path, email) in [
        ("/token", "ada@example.com"),
        ("/register", "grace@example.com"),
    ] {
        let response = app
            .post(
                path,
                serde_json::json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(response.status().as_u16(), 503, "{path}");
        assert!(response.headers().contains_key("retry-after"), "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }

    link.restore();
    let back = "sign-in working again once the database is back";
    test_support::eventually(back, std::time::Duration::from_secs(10), || async {
        let status = app
            .post(
                "/token",
                serde_json::json!({"email": "ada@example.com", "password": PASSWORD}),
            )
            .await
            .status()
            .as_u16();
        assert!(status == 200 || status == 503, "{status}");
        if status == 200 { Ok(()) } else { Err(status) }
    })
    .await;
}
