//! Who is shopping: the session a browser carries in cookies, refreshed as it goes,
//! and the CSRF check every form passes.
//!
//! The session is the tokens identity issued, in `HttpOnly`, `SameSite=Lax` cookies
//! (`Secure` when configured), so no page script can read them: `bazaar-token` holds
//! the access token (the console at the gateway reads the same cookie, so an admin
//! signed in to the shop is signed in to the console) and `bazaar-refresh` the refresh
//! token. The access token is verified here like at any service; when it is about to
//! expire, the refresh token is exchanged for new ones before the page is made, at most
//! once per refresh token even when a browser sends several requests at once (a second
//! exchange of a used refresh token would revoke the whole session).
//!
//! Every `POST` carries a `csrf` form field equal to the `bazaar-csrf` cookie (a random
//! value set on the first visit, `SameSite=Strict`), and is refused if it does not or
//! if the browser says it comes from another site. The check is a layer in front of
//! every handler, so no form can forget it.
//!
//! A guest's cart lives in the `bazaar-cart` cookie: product ids and quantities, never
//! prices (the catalog prices it on every page). At sign-in or registration its lines
//! are added to the customer's cart and the cookie is cleared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use contracts::identity::{Role, TokenResponse};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use platform::auth::Verifier;
use sha2::Digest as _;

use crate::Site;
use crate::api::ApiError;

/// The access token cookie, shared with the console.
pub const TOKEN_COOKIE: &str = "bazaar-token";
/// The refresh token cookie.
pub const REFRESH_COOKIE: &str = "bazaar-refresh";
/// The CSRF cookie.
pub const CSRF_COOKIE: &str = "bazaar-csrf";
/// The guest cart cookie.
pub const CART_COOKIE: &str = "bazaar-cart";
/// The one-time message shown after a redirect.
pub const FLASH_COOKIE: &str = "bazaar-flash";
/// The number of items in the cart, for the header's badge.
pub const COUNT_COOKIE: &str = "bazaar-cart-count";
/// Where to go once the address registered from this browser is confirmed.
pub const NEXT_COOKIE: &str = "bazaar-next";

/// How long the session cookies live; the refresh token's own expiry still applies.
const SESSION_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// An access token closer than this to its expiry is refreshed before it is used.
const REFRESH_MARGIN_SECS: u64 = 60;
/// The most lines a guest cart holds.
pub const GUEST_CART_MAX_LINES: usize = 20;
/// The most units of one product in a guest cart.
pub const GUEST_CART_MAX_QUANTITY: i64 = 99;

/// A signed-in shopper, as verified from the access token.
#[derive(Clone, Debug)]
pub struct SignedIn {
    /// The access token, for calls made on their behalf.
    pub token: String,
    /// Their account id.
    pub id: String,
    /// What they may do.
    pub roles: Vec<Role>,
}

impl SignedIn {
    /// Whether they may use the back-office.
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }
}

/// Who is asking, put in each request's extensions by [`layer`].
#[derive(Clone, Debug, Default)]
pub struct Shopper {
    /// The signed-in account, if any.
    pub user: Option<SignedIn>,
    /// The CSRF token every form of the page must carry.
    pub csrf: String,
    /// A guest's cart (empty once signed in).
    pub guest_cart: GuestCart,
    /// Items in the cart as last seen, for the header.
    pub cart_count: u32,
    /// The message left by the previous request, if any.
    pub flash: Option<String>,
    /// The shopper's address (behind the gateway, from its `X-Forwarded-For`), passed
    /// on to identity, which throttles sign-in per client network.
    pub client: Option<std::net::IpAddr>,
}

impl Shopper {
    /// The access token, if signed in.
    pub fn token(&self) -> Option<&str> {
        self.user.as_ref().map(|user| user.token.as_str())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Shopper {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned().unwrap_or_default())
    }
}

/// A guest's cart: product ids and quantities, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestCart {
    /// `(product id, quantity)`.
    pub lines: Vec<(String, i64)>,
}

impl GuestCart {
    /// Reads the cookie's value; anything malformed is dropped, never trusted.
    pub fn parse(value: &str) -> Self {
        let lines = value
            .split('.')
            .filter_map(|line| {
                let (id, quantity) = line.split_once(':')?;
                let quantity: i64 = quantity.parse().ok()?;
                let plausible = (1..=64).contains(&id.len())
                    && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
                    && (1..=GUEST_CART_MAX_QUANTITY).contains(&quantity);
                plausible.then(|| (id.to_owned(), quantity))
            })
            .take(GUEST_CART_MAX_LINES)
            .collect();
        Self { lines }
    }

    /// The cookie's value.
    pub fn encode(&self) -> String {
        self.lines
            .iter()
            .map(|(id, quantity)| format!("{id}:{quantity}"))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Adds `quantity` of `product_id`, within the limits. False if the cart is full.
    pub fn add(&mut self, product_id: &str, quantity: i64) -> bool {
        if let Some(line) = self.lines.iter_mut().find(|(id, _)| id == product_id) {
            line.1 = (line.1 + quantity).clamp(1, GUEST_CART_MAX_QUANTITY);
            return true;
        }
        if self.lines.len() >= GUEST_CART_MAX_LINES {
            return false;
        }
        self.lines.push((
            product_id.to_owned(),
            quantity.clamp(1, GUEST_CART_MAX_QUANTITY),
        ));
        true
    }

    /// Sets the quantity of `product_id`; 0 removes it.
    pub fn set(&mut self, product_id: &str, quantity: i64) {
        if quantity <= 0 {
            self.lines.retain(|(id, _)| id != product_id);
        } else if let Some(line) = self.lines.iter_mut().find(|(id, _)| id == product_id) {
            line.1 = quantity.min(GUEST_CART_MAX_QUANTITY);
        }
    }

    /// Units in the cart.
    pub fn count(&self) -> u32 {
        u32::try_from(self.lines.iter().map(|(_, quantity)| quantity).sum::<i64>()).unwrap_or(0)
    }
}

/// Refresh exchanges in flight or just made, by the refresh token's hash: a browser's
/// requests that race with one expiring token share one exchange instead of presenting
/// the token twice (which identity takes for theft, revoking the session). Each exchange
/// runs as a task of its own, so a request that gives up cannot leave it half done; a
/// success is remembered for a minute, a failure not at all. The map is bounded.
#[derive(Default)]
pub struct Refreshes {
    recent: Mutex<HashMap<[u8; 32], (Instant, Exchange)>>,
}

/// What exchanging a refresh token came to.
#[derive(Clone, Debug)]
pub enum Refreshed {
    /// Fresh tokens.
    Tokens(TokenResponse),
    /// Identity refused the refresh token (expired, revoked, reused): signed out.
    Refused,
    /// Identity did not answer, or throttled: try again on a later request.
    Unavailable,
}

/// One refresh exchange, shared by every request that needs it.
type Exchange = futures_util::future::Shared<futures_util::future::BoxFuture<'static, Refreshed>>;

const REFRESH_MEMORY: Duration = Duration::from_secs(60);
const REFRESH_MEMORY_MAX: usize = 10_000;

impl Refreshes {
    /// The tokens `refresh_token` was (or is now) exchanged for, once.
    async fn exchange(
        &self,
        api: &crate::api::Api,
        refresh_token: &str,
        client: Option<std::net::IpAddr>,
    ) -> Refreshed {
        use futures_util::FutureExt as _;
        let key: [u8; 32] = sha2::Sha256::digest(refresh_token.as_bytes()).into();
        let exchange = {
            let mut recent = self
                .recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.retain(|_, (at, _)| at.elapsed() < REFRESH_MEMORY);
            if recent.len() >= REFRESH_MEMORY_MAX {
                recent.clear();
            }
            match recent.get(&key) {
                Some((_, exchange)) => exchange.clone(),
                None => {
                    let (api, token) = (api.clone(), refresh_token.to_owned());
                    let task = tokio::spawn(async move { api.refresh(&token, client).await });
                    let exchange = async move {
                        match task.await {
                            Ok(Ok(tokens)) => Refreshed::Tokens(tokens),
                            Ok(Err(ApiError::Refused { .. } | ApiError::Unauthorized)) => {
                                Refreshed::Refused
                            }
                            Ok(Err(_)) | Err(_) => Refreshed::Unavailable,
                        }
                    }
                    .boxed()
                    .shared();
                    recent.insert(key, (Instant::now(), exchange.clone()));
                    exchange
                }
            }
        };
        let outcome = exchange.await;
        if !matches!(outcome, Refreshed::Tokens(_)) {
            // Only successes are shared; a later request may try again.
            self.recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&key);
        }
        outcome
    }
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty())
}

/// `Set-Cookie` values to send with a response.
#[derive(Debug, Default)]
pub struct CookieJar {
    values: Vec<HeaderValue>,
}

impl CookieJar {
    /// Sets cookie `name` to `value` for `max_age`, `SameSite=Lax` (or `Strict`).
    pub fn set(&mut self, name: &str, value: &str, max_age: Duration, strict: bool, secure: bool) {
        let same_site = if strict { "Strict" } else { "Lax" };
        let secure = if secure { "; Secure" } else { "" };
        let cookie = format!(
            "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
            max_age.as_secs()
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            self.values.push(value);
        }
    }

    /// Removes cookie `name`.
    pub fn clear(&mut self, name: &str) {
        let cookie = format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            self.values.push(value);
        }
    }

    /// Stores a fresh session.
    pub fn session(&mut self, tokens: &TokenResponse, secure: bool) {
        self.set(
            TOKEN_COOKIE,
            &tokens.access_token,
            SESSION_MAX_AGE,
            false,
            secure,
        );
        self.set(
            REFRESH_COOKIE,
            &tokens.refresh_token,
            SESSION_MAX_AGE,
            false,
            secure,
        );
    }

    /// Forgets the session.
    pub fn sign_out(&mut self) {
        self.clear(TOKEN_COOKIE);
        self.clear(REFRESH_COOKIE);
        self.clear(COUNT_COOKIE);
    }

    /// Keeps a guest cart, or clears it when empty.
    pub fn guest_cart(&mut self, cart: &GuestCart, secure: bool) {
        if cart.lines.is_empty() {
            self.clear(CART_COOKIE);
        } else {
            self.set(CART_COOKIE, &cart.encode(), SESSION_MAX_AGE, false, secure);
        }
        self.cart_count(cart.count(), secure);
    }

    /// Remembers how many items the cart holds, for the header.
    pub fn cart_count(&mut self, count: u32, secure: bool) {
        self.set(
            COUNT_COOKIE,
            &count.to_string(),
            SESSION_MAX_AGE,
            false,
            secure,
        );
    }

    /// Remembers `next`, a local path, for when the address just registered is
    /// confirmed (from the emailed link, a day at most); a path a cookie cannot hold as
    /// it is goes unremembered, and the shopper lands on the home page.
    pub fn after_confirmation(&mut self, next: &str, secure: bool) {
        let plain = next
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/-_.~?=&%+".contains(&byte));
        if plain {
            let day = Duration::from_secs(24 * 3600);
            self.set(NEXT_COOKIE, next, day, false, secure);
        }
    }

    /// Leaves a message (a [`crate::pages::flash`] code) for the next page.
    pub fn flash(&mut self, code: &str, secure: bool) {
        self.set(FLASH_COOKIE, code, Duration::from_secs(60), false, secure);
    }

    /// Adds the cookies to `response`.
    pub fn apply(self, response: &mut Response) {
        for value in self.values {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }

    /// Adds the cookies to `response`, except those it sets itself: a handler's
    /// decision (signing out, a new session) wins over what the request started with
    /// (a session refreshed on the way in).
    fn apply_unless_set(self, response: &mut Response) {
        let name = |value: &HeaderValue| {
            value
                .to_str()
                .ok()
                .and_then(|cookie| cookie.split_once('='))
                .map(|(name, _)| name.trim().to_owned())
        };
        let set: Vec<String> = response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(name)
            .collect();
        for value in self.values {
            if name(&value).is_none_or(|cookie| !set.contains(&cookie)) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }
}

/// Builds the [`Shopper`] of each request (verifying or refreshing the session, and
/// handing out a CSRF token on the first visit), refuses a `POST` whose CSRF token is
/// missing or wrong, and sends whatever cookies changed.
pub async fn layer(State(site): State<Arc<Site>>, request: Request, next: Next) -> Response {
    let secure = site.config.secure_cookies;
    let mut jar = CookieJar::default();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;

    let csrf = match cookie(headers, CSRF_COOKIE) {
        Some(token) if is_plausible_csrf(token) => token.to_owned(),
        _ => {
            let token = random_token();
            // Lax, not Strict: a Strict cookie is not sent on arrival from another
            // site, so each such visit would mint a new token and break the forms of
            // the shopper's other tabs. The check is the token itself.
            jar.set(CSRF_COOKIE, &token, SESSION_MAX_AGE, false, secure);
            token
        }
    };

    let body = if parts.method == Method::POST {
        match checked_form(headers, body, &csrf).await {
            Ok(body) => body,
            Err(refusal) => return crate::pages::errors::csrf_refused(refusal),
        }
    } else {
        body
    };

    let client = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|peer| {
            platform::net::vouched_client_address(
                peer.0,
                headers,
                &site.config.trusted_proxies,
                site.config.forwarding_secret.as_ref(),
            )
        });
    let user = signed_in(&site, headers, client, &mut jar).await;
    let guest_cart = cookie(headers, CART_COOKIE)
        .map(GuestCart::parse)
        .unwrap_or_default();
    let cart_count = match &user {
        Some(_) => cookie(headers, COUNT_COOKIE)
            .and_then(|count| count.parse().ok())
            .unwrap_or(0),
        None => guest_cart.count(),
    };
    let flash = cookie(headers, FLASH_COOKIE).map(str::to_owned);
    if flash.is_some() {
        jar.clear(FLASH_COOKIE);
    }
    let shopper = Shopper {
        user,
        csrf,
        guest_cart,
        cart_count,
        flash,
        client,
    };
    let mut request = Request::from_parts(parts, body);
    request.extensions_mut().insert(shopper);
    let mut response = next.run(request).await;
    jar.apply_unless_set(&mut response);
    response
}

/// The signed-in user of the request's cookies, refreshing the session first when its
/// access token is (about to be) expired. A session whose refresh identity refuses is
/// signed out; one identity could not refresh just now stays, and this request is
/// served as a guest.
async fn signed_in(
    site: &Site,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
    jar: &mut CookieJar,
) -> Option<SignedIn> {
    let secure = site.config.secure_cookies;
    let token = cookie(headers, TOKEN_COOKIE);
    let refresh = cookie(headers, REFRESH_COOKIE);
    if let Some(token) = token
        && let Some(user) = verify(&site.verifier, token, REFRESH_MARGIN_SECS).await
    {
        return Some(user);
    }
    let Some(refresh) = refresh else {
        if token.is_some() {
            jar.sign_out();
        }
        return None;
    };
    match site.refreshes.exchange(&site.api, refresh, client).await {
        Refreshed::Tokens(tokens) => {
            let user = verify(&site.verifier, &tokens.access_token, 0).await;
            if user.is_some() {
                jar.session(&tokens, secure);
            } else {
                jar.sign_out();
            }
            user
        }
        Refreshed::Refused => {
            jar.sign_out();
            None
        }
        Refreshed::Unavailable => None,
    }
}

/// The user of `token` if it verifies and is valid for `margin` more seconds.
async fn verify(verifier: &Verifier, token: &str, margin: u64) -> Option<SignedIn> {
    let claims = verifier.verify(token).await.ok()?;
    let now = platform::clock::now_secs().max(0).unsigned_abs();
    (claims.exp > now.saturating_add(margin)).then(|| SignedIn {
        token: token.to_owned(),
        id: claims.sub,
        roles: claims.roles,
    })
}

/// Why a form was refused before any handler saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// The browser said the form came from another site.
    CrossSite,
    /// The form carried no CSRF token, or another one.
    Token,
    /// The form was not an HTML form, or too large to be one.
    NotAForm,
}

/// The largest form a page posts.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The body of a `POST`, read, checked for the CSRF token and put back.
async fn checked_form(headers: &HeaderMap, body: Body, csrf: &str) -> Result<Body, CsrfRefusal> {
    // Another site, or a sibling subdomain (which could plant a CSRF cookie of its own).
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| matches!(site.as_bytes(), b"cross-site" | b"same-site"))
    {
        return Err(CsrfRefusal::CrossSite);
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(CsrfRefusal::NotAForm);
    }
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| CsrfRefusal::NotAForm)?;
    #[derive(serde::Deserialize)]
    struct Field {
        csrf: Option<String>,
    }
    let field: Field = serde_urlencoded::from_bytes(&bytes).map_err(|_| CsrfRefusal::NotAForm)?;
    let matches = field
        .csrf
        .is_some_and(|sent| constant_time_eq(sent.as_bytes(), csrf.as_bytes()));
    if !matches {
        return Err(CsrfRefusal::Token);
    }
    Ok(Body::from(bytes))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_plausible_csrf(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 256 random bits, base64url: a CSRF token or an idempotency key.
pub fn random_token() -> String {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes).expect("the system has randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs the shopper in with `tokens`: stores the session, moves a guest cart into the
/// customer's cart, and remembers the cart's size. The guest cart is cleared either
/// way; the answer is how many of its lines could not be moved (a product gone, more
/// than is left, the cart service down), for the page to say so.
pub async fn start_session(
    site: &Site,
    shopper: &Shopper,
    tokens: &TokenResponse,
    jar: &mut CookieJar,
) -> usize {
    let secure = site.config.secure_cookies;
    jar.session(tokens, secure);
    let token = tokens.access_token.as_str();
    let mut left_behind = 0;
    for (product_id, quantity) in &shopper.guest_cart.lines {
        let body = serde_json::json!({"product_id": product_id, "quantity": quantity});
        let added: Result<crate::api::CartView, ApiError> = site
            .api
            .send(
                crate::api::Service::Cart,
                Method::POST,
                "/items",
                Some(token),
                &body,
            )
            .await;
        if let Err(error) = added {
            tracing::info!(%error, "a guest cart line was not moved at sign-in");
            left_behind += 1;
        }
    }
    jar.clear(CART_COOKIE);
    let cart: crate::api::CartView = site
        .api
        .get(crate::api::Service::Cart, "/", Some(token))
        .await
        .unwrap_or_default();
    let count = cart.lines.iter().map(|line| line.quantity).sum::<i64>();
    jar.cart_count(u32::try_from(count).unwrap_or(0), secure);
    left_behind
}

/// A redirect (303, so the browser follows with `GET`) to `location`.
pub fn see_other(location: &str, jar: CookieJar) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/")),
        )],
    )
        .into_response();
    jar.apply(&mut response);
    response
}

/// `next` if it is a path of this site (`/…`, not `//host`), else `/`: where to go
/// after signing in, without becoming an open redirect.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && next.len() <= 512
                && !next.chars().any(char::is_control) =>
        {
            next.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_cart_survives_its_cookie_and_refuses_junk() {
        let mut cart = GuestCart::default();
        assert!(cart.add("0195f3b2-7c1e-7d00-8000-00000000a11c", 2));
        assert!(cart.add("0195f3b2-7c1e-7d00-8000-00000000a11c", 1));
        assert!(cart.add("0195f3b2-7c1e-7d00-8000-0000000000b0", 200));
        assert_eq!(GuestCart::parse(&cart.encode()), cart);
        assert_eq!(cart.count(), 3 + 99);
        cart.set("0195f3b2-7c1e-7d00-8000-00000000a11c", 0);
        assert_eq!(cart.lines.len(), 1);
        let junk = GuestCart::parse("x:1.<script>:2.0195f3b2:0.0195f3b2:-4.abc:999.abc:5");
        assert_eq!(junk.lines, vec![("abc".to_owned(), 5)]);
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/checkout")), "/checkout");
        assert_eq!(local_path(Some("/orders?cursor=x")), "/orders?cursor=x");
        for hostile in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "javascript:x",
        ] {
            assert_eq!(local_path(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("bazaar-token-x=1; bazaar-token=abc; other=2"),
        );
        assert_eq!(cookie(&headers, TOKEN_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
