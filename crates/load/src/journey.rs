//! The journeys a shopper walks, and the shop's public HTTP API they use.
//!
//! | journey | needs an account | requests |
//! |---|---|---|
//! | `browse` | no | the API's product listing, and the storefront's home page |
//! | `product` | no | one product from the API, and its storefront page |
//! | `search` | no | the API's listing searched for a word of a product's name |
//! | `cart` | yes | a product added to the cart, the cart read, the line removed |
//! | `checkout` | yes | a product added, the order placed with a test card (one in ten declined), the order polled every 50 ms until it ends (or is held for an admin's review) |
//! | `sign-in` | yes | a password sign-in |
//!
//! A customer is used by one journey at a time, so a checkout buys what its own journey
//! added, and whatever an earlier journey of the same customer that failed midway left
//! in the cart; a journey waiting for a free customer does not count that wait
//! as the shop's. A customer who orders often is held for review by the shop's fraud
//! rules: give the run as many customers as it has shoppers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A test card the shop's card simulator approves.
pub const APPROVED_CARD: &str = "4242424242424242";
/// A test card the shop's card simulator declines.
pub const DECLINED_CARD: &str = "4000000000000002";

/// How long a checkout is followed before it counts as unfinished.
const CHECKOUT_PATIENCE: Duration = Duration::from_secs(30);

/// A signed-up customer's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The account's email address.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// A kind of journey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Journey {
    /// The listing and the home page.
    Browse,
    /// One product, in the API and its page.
    Product,
    /// A search.
    Search,
    /// A cart change and back.
    Cart,
    /// An order, followed to its end.
    Checkout,
    /// A sign-in.
    SignIn,
}

impl Journey {
    /// Every journey, in the order reports list them.
    pub const ALL: [Self; 6] = [
        Self::Browse,
        Self::Product,
        Self::Search,
        Self::Cart,
        Self::Checkout,
        Self::SignIn,
    ];

    /// Its name in a mix, a report and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browse => "browse",
            Self::Product => "product",
            Self::Search => "search",
            Self::Cart => "cart",
            Self::Checkout => "checkout",
            Self::SignIn => "sign-in",
        }
    }

    /// The journey named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|journey| journey.as_str() == name)
    }

    /// Whether it needs a customer's account.
    pub fn needs_account(self) -> bool {
        matches!(self, Self::Cart | Self::Checkout | Self::SignIn)
    }

    /// Walks it once against `shop`.
    pub async fn walk(self, shop: &Shop) -> Outcome {
        let walked = match self {
            Self::Browse => browse(shop).await,
            Self::Product => product(shop).await,
            Self::Search => search(shop).await,
            Self::Cart => cart(shop).await,
            Self::Checkout => checkout(shop).await,
            Self::SignIn => sign_in_again(shop).await,
        };
        match walked {
            Ok(ended) => Outcome::Done(ended),
            Err(failure) => Outcome::Failed(failure),
        }
    }
}

/// How one walk went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every request answered as it should.
    Done(Walk),
    /// A request failed: what, e.g. `503 adding to the cart` or `transport: placing
    /// the order`.
    Failed(String),
}

/// A walk that ended well.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// For a checkout, how the order ended: `confirmed`, `cancelled`, `rejected`, or
    /// `payment_held` (held for an admin's review, where the shopper's wait ends).
    pub end: Option<&'static str>,
    /// How long it waited for a customer no other journey was using: the load
    /// generator's own wait, left out of the journey's latency.
    pub waited: Duration,
}

/// The journeys' weights, e.g. `browse=40,product=25,search=15,cart=10,checkout=10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: BTreeMap<Journey, u32>,
}

impl Default for Mix {
    /// Mostly looking, some buying, as in a shop's day.
    fn default() -> Self {
        Self::parse("browse=35,product=25,search=15,cart=10,checkout=10,sign-in=5")
            .expect("the default mix parses")
    }
}

impl Mix {
    /// Parses `name=weight` pairs separated by commas.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut weights = BTreeMap::new();
        for pair in text
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (name, weight) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not journey=weight"))?;
            let journey = Journey::parse(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Journey::ALL
                    .iter()
                    .map(|journey| journey.as_str())
                    .collect();
                format!(
                    "{name:?} is not a journey; the journeys are {}",
                    known.join(", ")
                )
            })?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("the weight of {name} must be a whole number"))?;
            if weight > 0 {
                weights.insert(journey, weight);
            }
        }
        if weights.is_empty() {
            return Err("the mix needs a journey with a weight above 0".to_owned());
        }
        Ok(Self { weights })
    }

    /// The mix without the journeys that need an account.
    #[must_use]
    pub fn without_customers(&self) -> Self {
        Self {
            weights: self
                .weights
                .iter()
                .filter(|(journey, _)| !journey.needs_account())
                .map(|(journey, weight)| (*journey, *weight))
                .collect(),
        }
    }

    /// Whether no journey is left.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Whether the mix has journeys that need an account.
    pub fn needs_accounts(&self) -> bool {
        self.weights.keys().any(|journey| journey.needs_account())
    }

    /// A journey, at random by weight.
    pub fn pick(&self) -> Journey {
        let total: u32 = self.weights.values().sum();
        let mut ticket = fastrand::u32(0..total.max(1));
        for (journey, weight) in &self.weights {
            if ticket < *weight {
                return *journey;
            }
            ticket -= weight;
        }
        Journey::Browse
    }
}

/// A product as the journeys need it.
#[derive(Clone, Debug)]
struct Product {
    id: String,
    slug: String,
    word: String,
}

/// A customer, signed in, with a card of each kind.
#[derive(Clone, Debug)]
struct Customer {
    account: Account,
    token: String,
    signed_in: Instant,
    approved: String,
    declined: String,
}

/// The shop under load: its URL, what the journeys pick from, and the customers who
/// are not on a journey now.
pub struct Shop {
    client: reqwest::Client,
    url: String,
    products: Vec<Product>,
    idle: Mutex<Vec<Customer>>,
    customers: tokio::sync::Semaphore,
    has_customers: bool,
}

/// A signed-in token is renewed when older than this, well inside its lifetime.
const RENEW_AFTER: Duration = Duration::from_secs(300);

impl Shop {
    /// Reads the catalog and signs each account in, saving its test cards.
    pub async fn prepare(url: &str, accounts: &[Account]) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        let url = url.trim_end_matches('/').to_owned();
        let listing: Value = client
            .get(format!("{url}/api/catalog/products?limit=100"))
            .send()
            .await
            .with_context(|| format!("reading the catalog of {url}"))?
            .error_for_status()
            .with_context(|| format!("reading the catalog of {url}"))?
            .json()
            .await?;
        let products: Vec<Product> = listing["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let word = item["name"]
                    .as_str()?
                    .split_whitespace()
                    .find(|word| word.len() >= 4 && word.chars().all(char::is_alphabetic))
                    .unwrap_or("mug")
                    .to_lowercase();
                Some(Product {
                    id: item["id"].as_str()?.to_owned(),
                    slug: item["slug"].as_str()?.to_owned(),
                    word,
                })
            })
            .collect();
        anyhow::ensure!(
            !products.is_empty(),
            "the catalog of {url} lists no product"
        );
        let mut shop = Self {
            client,
            url,
            products,
            idle: Mutex::new(Vec::new()),
            customers: tokio::sync::Semaphore::new(0),
            has_customers: !accounts.is_empty(),
        };
        for account in accounts {
            let customer = shop.sign_up_cards(account).await?;
            shop.idle
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(customer);
            shop.customers.add_permits(1);
        }
        Ok(shop)
    }

    /// Whether there are accounts to walk customers' journeys with.
    pub fn has_customers(&self) -> bool {
        self.has_customers
    }

    async fn sign_up_cards(&self, account: &Account) -> anyhow::Result<Customer> {
        let token = self
            .sign_in(account)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("signing {} in", account.email))?;
        let mut cards = Vec::new();
        for number in [APPROVED_CARD, DECLINED_CARD] {
            let card = json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"});
            let saved = self
                .call(
                    Method::POST,
                    "/api/payments/methods",
                    Some(&token),
                    Some(card),
                    "saving a card",
                )
                .await
                .map_err(anyhow::Error::msg)?;
            cards.push(
                saved["token"]
                    .as_str()
                    .context("a saved card has a token")?
                    .to_owned(),
            );
        }
        Ok(Customer {
            account: account.clone(),
            token,
            signed_in: Instant::now(),
            approved: cards[0].clone(),
            declined: cards[1].clone(),
        })
    }

    async fn sign_in(&self, account: &Account) -> Result<String, String> {
        let body = json!({"email": account.email, "password": account.password});
        let tokens = self
            .call(
                Method::POST,
                "/api/identity/token",
                None,
                Some(body),
                "signing in",
            )
            .await?;
        tokens["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "signing in: no access token in the answer".to_owned())
    }

    /// A request to `path`, as `token` when given, with `body` as JSON when given.
    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request
    }

    /// One request; its JSON body (or null) if it succeeded, else what failed.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        what: &str,
    ) -> Result<Value, String> {
        send(self.request(method, path, token, body), what).await
    }

    /// A page or document that must answer 200.
    async fn page(&self, path: &str, what: &str) -> Result<(), String> {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .map_err(|_| format!("transport: {what}"))?;
        match response.status() {
            StatusCode::OK => {
                // Read whole, as a browser would.
                response
                    .bytes()
                    .await
                    .map_err(|_| format!("transport: {what}"))?;
                Ok(())
            }
            status => Err(format!("{} {what}", status.as_u16())),
        }
    }

    fn any_product(&self) -> &Product {
        &self.products[fastrand::usize(..self.products.len())]
    }

    /// A customer no other journey is using, signed in again when its token is old,
    /// and how long it took to find one free.
    async fn customer(&self) -> Result<(Borrowed<'_>, Duration), String> {
        let asked = Instant::now();
        let permit = self
            .customers
            .acquire()
            .await
            .map_err(|_| "no customer".to_owned())?;
        let customer = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .ok_or_else(|| "no customer".to_owned())?;
        let waited = asked.elapsed();
        let mut borrowed = Borrowed {
            shop: self,
            customer: Some(customer),
            _permit: permit,
        };
        if borrowed.get().signed_in.elapsed() > RENEW_AFTER {
            borrowed.renew().await?;
        }
        Ok((borrowed, waited))
    }
}

/// Sends `request`; its JSON body (or null) if it succeeded, else what failed: the
/// status and `what`, or `transport: what`.
async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    let response = request
        .send()
        .await
        .map_err(|_| format!("transport: {what}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|_| format!("transport: {what}"))?;
    if !status.is_success() {
        return Err(format!("{} {what}", status.as_u16()));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A customer taken for one journey, given back when dropped.
struct Borrowed<'a> {
    shop: &'a Shop,
    customer: Option<Customer>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Borrowed<'_> {
    fn get(&self) -> &Customer {
        self.customer.as_ref().expect("held until dropped")
    }

    async fn renew(&mut self) -> Result<(), String> {
        let account = self.get().account.clone();
        let token = self.shop.sign_in(&account).await?;
        let customer = self.customer.as_mut().expect("held until dropped");
        customer.token = token;
        customer.signed_in = Instant::now();
        Ok(())
    }
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if let Some(customer) = self.customer.take() {
            self.shop
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(customer);
        }
    }
}

async fn browse(shop: &Shop) -> Result<Walk, String> {
    shop.call(
        Method::GET,
        "/api/catalog/products?limit=20",
        None,
        None,
        "listing products",
    )
    .await?;
    shop.page("/", "the home page").await?;
    Ok(Walk::default())
}

async fn product(shop: &Shop) -> Result<Walk, String> {
    let product = shop.any_product();
    let path = format!("/api/catalog/products/{}", product.id);
    shop.call(Method::GET, &path, None, None, "reading a product")
        .await?;
    shop.page(&format!("/products/{}", product.slug), "a product page")
        .await?;
    Ok(Walk::default())
}

async fn search(shop: &Shop) -> Result<Walk, String> {
    let word = &shop.any_product().word;
    let path = format!("/api/catalog/products?q={word}");
    shop.call(Method::GET, &path, None, None, "searching")
        .await?;
    Ok(Walk::default())
}

/// One unit of `product` into the cart of `token`'s customer.
async fn add_to_cart(shop: &Shop, token: Option<&str>, product: &Product) -> Result<(), String> {
    let line = json!({"product_id": product.id, "quantity": 1});
    let path = "/api/cart/items";
    shop.call(Method::POST, path, token, Some(line), "adding to the cart")
        .await?;
    Ok(())
}

async fn cart(shop: &Shop) -> Result<Walk, String> {
    let (customer, waited) = shop.customer().await?;
    let token = Some(customer.get().token.as_str());
    let product = shop.any_product();
    add_to_cart(shop, token, product).await?;
    shop.call(Method::GET, "/api/cart", token, None, "reading the cart")
        .await?;
    let path = format!("/api/cart/items/{}", product.id);
    shop.call(Method::DELETE, &path, token, None, "removing from the cart")
        .await?;
    Ok(Walk { end: None, waited })
}

async fn checkout(shop: &Shop) -> Result<Walk, String> {
    let (customer, waited) = shop.customer().await?;
    let token = Some(customer.get().token.as_str());
    let card = if fastrand::u8(0..10) == 0 {
        &customer.get().declined
    } else {
        &customer.get().approved
    };
    add_to_cart(shop, token, shop.any_product()).await?;
    let order = json!({"payment_method": card});
    let place = shop
        .request(Method::POST, "/api/orders", token, Some(order))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string());
    let placed = send(place, "placing the order").await?;
    let id = placed["id"]
        .as_str()
        .ok_or_else(|| "placing the order: no id in the answer".to_owned())?;
    let path = format!("/api/orders/{id}");
    let patience = Instant::now() + CHECKOUT_PATIENCE;
    while Instant::now() < patience {
        let order = shop
            .call(Method::GET, &path, token, None, "following the order")
            .await?;
        if let Some(end) = ["confirmed", "cancelled", "rejected", "payment_held"]
            .into_iter()
            .find(|end| order["status"] == *end)
        {
            return Ok(Walk {
                end: Some(end),
                waited,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("the order did not end within 30 s".to_owned())
}

async fn sign_in_again(shop: &Shop) -> Result<Walk, String> {
    let (mut customer, waited) = shop.customer().await?;
    customer.renew().await?;
    Ok(Walk { end: None, waited })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_parsed_and_picked_by_weight() {
        let mix = Mix::parse("browse=3, checkout=1, search=0").expect("a mix");
        assert!(mix.needs_accounts());
        let mut browsed = 0;
        for _ in 0..4000 {
            match mix.pick() {
                Journey::Browse => browsed += 1,
                Journey::Checkout => {}
                other => panic!("{other:?} has no weight"),
            }
        }
        assert!((2700..3300).contains(&browsed), "{browsed} of 4000");
        let anonymous = mix.without_customers();
        assert!(!anonymous.needs_accounts());
        assert_eq!(anonymous.pick(), Journey::Browse);
    }

    #[test]
    fn a_wrong_mix_says_what_is_wrong() {
        assert!(
            Mix::parse("stroll=1")
                .unwrap_err()
                .contains("browse, product")
        );
        assert!(Mix::parse("browse").unwrap_err().contains("journey=weight"));
        assert!(
            Mix::parse("browse=many")
                .unwrap_err()
                .contains("whole number")
        );
        assert!(Mix::parse("browse=0").is_err());
        assert!(Mix::default().needs_accounts());
    }
}
