//! The storefront's session at its boundary, the gateway, without a browser: cookies
//! as a browser keeps them.

use std::collections::BTreeMap;

use bazaar::Config;
use reqwest::redirect::Policy;

use crate::{PASSWORD, RunningShop};

/// The cookies a browser would hold, kept from each answer's `Set-Cookie`.
#[derive(Default)]
struct Browser {
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn keep(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().expect("text");
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, content) = pair.split_once('=').expect("a cookie");
            if content.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, client: &reqwest::Client, url: &str) -> (u16, String) {
        let response = client
            .get(url)
            .header("cookie", self.header())
            .send()
            .await
            .expect("the gateway answers");
        self.keep(&response);
        let status = response.status().as_u16();
        (status, response.text().await.expect("a body"))
    }

    async fn post(&mut self, client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> u16 {
        let csrf = self.cookies.get("bazaar-csrf").cloned().unwrap_or_default();
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf", &csrf));
        let body = fields
            .iter()
            .map(|(name, value)| format!("{name}={}", value.replace(' ', "+").replace('@', "%40")))
            .collect::<Vec<_>>()
            .join("&");
        let response = client
            .post(url)
            .header("cookie", self.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("the gateway answers");
        self.keep(&response);
        response.status().as_u16()
    }
}

/// With access tokens so short-lived that every request refreshes the session on its
/// way in, signing out still signs the browser out: the handler's cleared cookies are
/// not overwritten by the refreshed ones, and the refreshed session is revoked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_signs_out_even_when_the_session_was_just_refreshed() {
    let data = tempfile::tempdir().expect("a folder");
    let mut config = Config::ephemeral(data.path().to_owned());
    config.identity.access_token_ttl_secs = 1;
    let shop = RunningShop::start_with(config).await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client");
    let mut browser = Browser::default();
    let (status, _) = browser.get(&client, &shop.url("/register")).await;
    assert_eq!(status, 200);
    let registered = browser
        .post(
            &client,
            &shop.url("/register"),
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(registered, 200, "the page says to follow the emailed link");
    let link = test_support::mail::confirmation_link(&shop.mailbox(), "ada@example.com").await;
    assert!(
        link.starts_with(&shop.url("/confirm?token=")),
        "the link leads to this shop: {link}"
    );
    let (status, page) = browser.get(&client, &link).await;
    assert_eq!(status, 200);
    assert!(page.contains("Confirm my account"), "{page}");
    let token = test_support::mail::token_of(&link);
    let confirmed = browser
        .post(
            &client,
            &shop.url("/confirm"),
            &[("token", token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(confirmed, 303);
    let (status, account) = browser.get(&client, &shop.url("/account")).await;
    assert_eq!(status, 200, "signed in after confirming");
    assert!(account.contains("ada@example.com"));

    assert_eq!(
        browser.post(&client, &shop.url("/sign-out"), &[]).await,
        303
    );
    assert!(
        !browser.cookies.contains_key("bazaar-token")
            && !browser.cookies.contains_key("bazaar-refresh"),
        "the browser still holds a session: {:?}",
        browser.cookies.keys()
    );
    let (status, _) = browser.get(&client, &shop.url("/account")).await;
    assert_eq!(status, 303, "the account page is for signed-in shoppers");
}

/// An order's page links an admin to the trace the order was placed in; a customer
/// sees no such link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_follows_an_order_to_its_trace() {
    use crate::checkout::{APPROVED, Mode, Scenario};

    let scenario = Scenario::start(Mode::Embedded).await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (customer, card) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let id = scenario.checks_out(&customer, "to-be-traced", &card).await;
    let (_, order) = scenario
        .send(&customer, "GET", &format!("/api/orders/{id}"), None)
        .await;
    let trace = order["trace_id"].as_str().expect("a trace id").to_owned();
    let admin = scenario.admin().await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client");
    let page = |token: String| {
        let mut browser = Browser::default();
        browser.cookies.insert("bazaar-token".to_owned(), token);
        let url = scenario.shop.url(&format!("/orders/{id}"));
        let client = client.clone();
        async move { browser.get(&client, &url).await }
    };
    let (status, seen) = page(admin).await;
    assert_eq!(status, 200, "{seen}");
    assert!(
        seen.contains(&format!("href=\"/console/traces/{trace}\"")),
        "{seen}"
    );
    let (status, seen) = page(customer).await;
    assert_eq!(status, 200, "{seen}");
    assert!(!seen.contains("/console/traces/"), "{seen}");
}

/// With its release flag on for them, a customer with a saved card checks out on the
/// express page in one click, and can still ask for every way to pay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_express_checkout_is_released_by_its_flag() {
    use crate::checkout::{APPROVED, Mode, Scenario};
    use storefront::pages::checkout::EXPRESS_CHECKOUT;

    let everyone = serde_json::json!({"fractional": [["on", 100], ["off", 0]]});
    let scenario = Scenario::configured(Mode::Embedded, |config| {
        crate::faults::write_flags(&config.data_dir, &[(EXPRESS_CHECKOUT, everyone)]);
    })
    .await;
    let (mug, _) = scenario.product("enamel-camp-mug").await;
    let (customer, _) = scenario.shopper("ada@example.com", APPROVED, &mug, 1).await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client");
    let mut browser = Browser::default();
    browser
        .cookies
        .insert("bazaar-token".to_owned(), customer.clone());
    let (status, express) = browser.get(&client, &scenario.shop.url("/checkout")).await;
    assert_eq!(status, 200, "{express}");
    assert!(express.contains("Pay now"), "{express}");
    assert!(
        express.contains("href=\"/checkout?pay=another\""),
        "{express}"
    );
    assert!(!express.contains("Card number"), "one click: {express}");
    let (status, every_way) = browser
        .get(&client, &scenario.shop.url("/checkout?pay=another"))
        .await;
    assert_eq!(status, 200);
    assert!(every_way.contains("Card number"), "{every_way}");

    let field = |name: &str| {
        let at = express
            .find(&format!("name=\"{name}\" value=\""))
            .unwrap_or_else(|| panic!("no {name} in {express}"));
        let value = &express[at + name.len() + 15..];
        value[..value.find('"').expect("a closing quote")].to_owned()
    };
    let (key, method) = (field("key"), field("payment_method"));
    let placed = browser
        .post(
            &client,
            &scenario.shop.url("/checkout"),
            &[("key", &key), ("payment_method", &method)],
        )
        .await;
    assert_eq!(placed, 303, "the order is placed and the page follows it");
    let (_, orders) = scenario.send(&customer, "GET", "/api/orders", None).await;
    let id = orders["items"][0]["id"].as_str().expect("an order");
    let order = scenario
        .wait_for(&customer, id, &["confirmed", "cancelled"])
        .await;
    assert_eq!(order["status"], "confirmed", "{order:#}");
}
