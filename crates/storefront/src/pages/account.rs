//! Signing in, registering and confirming the address, signing out, and the account
//! page (password, saved cards).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{Method, StatusCode};
use serde::Deserialize;

use super::{Chrome, FieldErrors, Flash, Section, errors, render_with};
use crate::Site;
use crate::api::{Account, ApiError, PaymentMethod, PaymentMethods, Service, segment};
use crate::session::{
    CookieJar, NEXT_COOKIE, REFRESH_COOKIE, Shopper, cookie, local_path, see_other,
};
use contracts::identity::{RegistrationAccepted, TokenResponse};

/// The sign-in or registration page.
#[derive(Template)]
#[template(path = "sign_in.html")]
pub struct SignInPage {
    chrome: Chrome,
    /// `sign-in` or `register`.
    mode: &'static str,
    next: String,
    email: String,
    errors: FieldErrors,
    /// The fewest characters a password may have, for the hint.
    min_password: usize,
}

/// Where to go afterwards.
#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    /// A path of the shop.
    #[serde(default)]
    pub next: Option<String>,
}

/// The sign-in and registration form.
#[derive(Default, Deserialize)]
pub struct Credentials {
    /// The email address.
    #[serde(default)]
    pub email: String,
    /// The password.
    #[serde(default)]
    pub password: String,
    /// Where to go afterwards.
    #[serde(default)]
    pub next: Option<String>,
}

/// Identity's default; the real rule is identity's, which names it when refusing.
const MIN_PASSWORD: usize = 15;

fn form_page(
    shopper: &Shopper,
    mode: &'static str,
    next: &str,
    email: &str,
    errors: FieldErrors,
    flash: Option<Flash>,
) -> Response {
    let title = if mode == "register" {
        "Create an account"
    } else {
        "Sign in"
    };
    let mut chrome = Chrome::new(shopper, title, Section::Account);
    if let Some(flash) = flash {
        chrome = chrome.with_flash(flash);
    }
    let status = if errors.is_empty() && chrome.flash.as_ref().is_none_or(|f| f.kind != "error") {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with(
        status,
        &SignInPage {
            chrome,
            mode,
            next: next.to_owned(),
            email: email.to_owned(),
            errors,
            min_password: MIN_PASSWORD,
        },
    )
}

/// `GET /sign-in`.
pub async fn sign_in_page(shopper: Shopper, Query(query): Query<NextQuery>) -> Response {
    let next = local_path(query.next.as_deref());
    if shopper.user.is_some() {
        return see_other(&next, CookieJar::default());
    }
    form_page(&shopper, "sign-in", &next, "", FieldErrors::default(), None)
}

/// `GET /register`.
pub async fn register_page(shopper: Shopper, Query(query): Query<NextQuery>) -> Response {
    let next = local_path(query.next.as_deref());
    form_page(
        &shopper,
        "register",
        &next,
        "",
        FieldErrors::default(),
        None,
    )
}

/// `POST /sign-in`.
pub async fn sign_in(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    axum::Form(form): axum::Form<Credentials>,
) -> Response {
    let next = local_path(form.next.as_deref());
    match site
        .api
        .sign_in(form.email.trim(), &form.password, shopper.client)
        .await
    {
        Ok(tokens) => finish(&site, &shopper, &tokens, &next, "signed-in").await,
        Err(error) => refused(&shopper, "sign-in", &next, &form.email, &error),
    }
}

/// `POST /register`: asks identity for the account, which writes to the address; the
/// page says to follow the link in that email. (Whether the address had an account is
/// told only in the email.)
pub async fn register(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    axum::Form(form): axum::Form<Credentials>,
) -> Response {
    let next = local_path(form.next.as_deref());
    let body = serde_json::json!({"email": form.email.trim(), "password": form.password});
    let accepted: Result<RegistrationAccepted, ApiError> = site
        .api
        .from_client(Method::POST, "/register", None, &body, shopper.client)
        .await;
    match accepted {
        Ok(accepted) => {
            let mut page = confirm_page(&shopper, Some(accepted.email), String::new(), None);
            let mut jar = CookieJar::default();
            jar.after_confirmation(&next, site.config.secure_cookies);
            jar.apply(&mut page);
            page
        }
        Err(error) => refused(&shopper, "register", &next, &form.email, &error),
    }
}

/// The page that says a confirmation email is on its way (`sent_to`), or that
/// confirms the address with the token from its link.
#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    chrome: Chrome,
    sent_to: Option<String>,
    token: String,
}

fn confirm_page(
    shopper: &Shopper,
    sent_to: Option<String>,
    token: String,
    refusal: Option<Flash>,
) -> Response {
    let title = if sent_to.is_some() {
        "Check your email"
    } else {
        "Confirm your account"
    };
    let mut chrome = Chrome::new(shopper, title, Section::Account);
    let status = match refusal {
        Some(flash) => {
            chrome = chrome.with_flash(flash);
            StatusCode::BAD_REQUEST
        }
        None => StatusCode::OK,
    };
    render_with(
        status,
        &ConfirmPage {
            chrome,
            sent_to,
            token,
        },
    )
}

/// The token in a confirmation link, and the password the account was registered with.
#[derive(Default, Deserialize)]
pub struct ConfirmForm {
    /// The token.
    #[serde(default)]
    pub token: String,
    /// The password (only in the form, never in the link).
    #[serde(default)]
    pub password: String,
}

/// `GET /confirm?token=…`, the link in the email: a button that confirms. Following
/// the link changes nothing by itself, since mail scanners follow links too.
pub async fn confirm_link(shopper: Shopper, Query(form): Query<ConfirmForm>) -> Response {
    confirm_page(&shopper, None, form.token, None)
}

/// `POST /confirm`: confirms the address and signs in; the cart comes along, and the
/// shopper goes on where they registered from (in the same browser).
pub async fn confirm(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    headers: http::HeaderMap,
    axum::Form(form): axum::Form<ConfirmForm>,
) -> Response {
    let body = serde_json::json!({"token": form.token.trim(), "password": form.password});
    let confirmed: Result<TokenResponse, ApiError> = site
        .api
        .from_client(Method::POST, "/confirm", None, &body, shopper.client)
        .await;
    let flash = match confirmed {
        Ok(tokens) => {
            let next = local_path(cookie(&headers, NEXT_COOKIE));
            let mut signed_in = finish(&site, &shopper, &tokens, &next, "registered").await;
            let mut jar = CookieJar::default();
            jar.clear(NEXT_COOKIE);
            jar.apply(&mut signed_in);
            return signed_in;
        }
        Err(ApiError::Refused { .. }) => Flash::error(
            "This password is not the one you registered with, or the link is used or \
             expired. Try again, register again for a new link, or sign in if your \
             account is confirmed already.",
        ),
        Err(ApiError::Throttled(wait)) => Flash::error(format!(
            "Too many attempts. Please wait {wait} seconds and try again."
        )),
        Err(ApiError::Unavailable(_) | ApiError::Unauthorized) => {
            Flash::error("Confirming is unavailable just now. Please try again in a moment.")
        }
    };
    confirm_page(&shopper, None, form.token, Some(flash))
}

async fn finish(
    site: &Site,
    shopper: &Shopper,
    tokens: &contracts::identity::TokenResponse,
    next: &str,
    flash: &str,
) -> Response {
    let mut jar = CookieJar::default();
    let left_behind = crate::session::start_session(site, shopper, tokens, &mut jar).await;
    let flash = if left_behind > 0 {
        "cart-partly-moved"
    } else {
        flash
    };
    jar.flash(flash, site.config.secure_cookies);
    see_other(next, jar)
}

/// The form again, saying why it was refused.
fn refused(
    shopper: &Shopper,
    mode: &'static str,
    next: &str,
    email: &str,
    error: &ApiError,
) -> Response {
    let flash = match error {
        ApiError::Refused { problem, .. } if problem.kind == "invalid-grant" => {
            Flash::error("The email or password is wrong.")
        }
        ApiError::Refused { problem, .. } if problem.kind == "unconfirmed" => Flash::error(
            "Your email address is not confirmed yet. Follow the link in the email we sent \
             you, or register again for a new link.",
        ),
        ApiError::Refused { problem, .. } if problem.errors.is_empty() => {
            Flash::error(problem.detail.clone())
        }
        ApiError::Refused { .. } => Flash::error("Please correct what is marked below."),
        ApiError::Throttled(wait) => Flash::error(format!(
            "Too many attempts. Please wait {wait} seconds and try again."
        )),
        ApiError::Unavailable(_) | ApiError::Unauthorized => {
            Flash::error("Signing in is unavailable just now. Please try again in a moment.")
        }
    };
    form_page(
        shopper,
        mode,
        next,
        email,
        FieldErrors::from_api(error),
        Some(flash),
    )
}

/// `POST /sign-out`: revokes the session's refresh token and forgets it.
pub async fn sign_out(State(site): State<Arc<Site>>, headers: http::HeaderMap) -> Response {
    if let Some(refresh) = cookie(&headers, REFRESH_COOKIE) {
        let body = serde_json::json!({"refresh_token": refresh});
        let revoked: Result<serde_json::Value, ApiError> = site
            .api
            .send(Service::Identity, Method::POST, "/logout", None, &body)
            .await;
        if let Err(error) = revoked {
            tracing::warn!(%error, "a refresh token could not be revoked at sign-out");
        }
    }
    let mut jar = CookieJar::default();
    jar.sign_out();
    jar.flash("signed-out", site.config.secure_cookies);
    see_other("/", jar)
}

/// The account page.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    chrome: Chrome,
    account: Account,
    methods: Vec<PaymentMethod>,
    errors: FieldErrors,
}

async fn account_page(
    site: &Site,
    shopper: &Shopper,
    errors: FieldErrors,
    flash: Option<Flash>,
) -> Response {
    let token = shopper.token();
    let (account, methods) = tokio::join!(
        site.api.get::<Account>(Service::Identity, "/me", token),
        site.api
            .get::<PaymentMethods>(Service::Payments, "/methods", token)
    );
    let (account, methods) = match (account, methods) {
        (Ok(account), Ok(methods)) => (account, methods.items),
        (Err(error), _) | (_, Err(error)) => return errors::failure(shopper, &error, "/account"),
    };
    let mut chrome = Chrome::new(shopper, "Your account", Section::Account);
    if let Some(flash) = flash {
        chrome = chrome.with_flash(flash);
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    render_with(
        status,
        &AccountPage {
            chrome,
            account,
            methods,
            errors,
        },
    )
}

/// `GET /account`.
pub async fn account(State(site): State<Arc<Site>>, shopper: Shopper) -> Response {
    if shopper.user.is_none() {
        return errors::sign_in_again("/account");
    }
    account_page(&site, &shopper, FieldErrors::default(), None).await
}

/// The change-password form.
#[derive(Default, Deserialize)]
pub struct PasswordForm {
    /// The password now.
    #[serde(default)]
    pub current_password: String,
    /// The new one.
    #[serde(default)]
    pub new_password: String,
}

/// `POST /account/password`: changes the password (which signs out every session)
/// and signs this browser in again with the new one.
pub async fn change_password(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    axum::Form(form): axum::Form<PasswordForm>,
) -> Response {
    let Some(token) = shopper.token() else {
        return errors::sign_in_again("/account");
    };
    let body = serde_json::json!({
        "current_password": form.current_password,
        "new_password": form.new_password,
    });
    let changed: Result<serde_json::Value, ApiError> = site
        .api
        .send(
            Service::Identity,
            Method::POST,
            "/me/password",
            Some(token),
            &body,
        )
        .await;
    match changed {
        Ok(_) => {}
        Err(error @ ApiError::Refused { .. }) => {
            return account_page(&site, &shopper, FieldErrors::from_api(&error), None).await;
        }
        Err(error) => return errors::failure(&shopper, &error, "/account"),
    }
    let me: Result<Account, ApiError> = site.api.get(Service::Identity, "/me", Some(token)).await;
    let mut jar = CookieJar::default();
    let renewed = match me {
        Ok(me) => site
            .api
            .sign_in(&me.email, &form.new_password, shopper.client)
            .await
            .ok(),
        Err(_) => None,
    };
    match renewed {
        Some(tokens) => {
            jar.session(&tokens, site.config.secure_cookies);
            jar.flash("password-changed", site.config.secure_cookies);
            see_other("/account", jar)
        }
        None => {
            jar.sign_out();
            jar.flash("password-changed", site.config.secure_cookies);
            see_other("/sign-in?next=%2Faccount", jar)
        }
    }
}

/// `POST /account/cards/{token}/delete`.
pub async fn delete_card(
    State(site): State<Arc<Site>>,
    shopper: Shopper,
    Path(card): Path<String>,
) -> Response {
    let deleted: Result<serde_json::Value, ApiError> = site
        .api
        .bodiless(
            Service::Payments,
            Method::DELETE,
            &format!("/methods/{}", segment(&card)),
            shopper.token(),
        )
        .await;
    match deleted {
        Ok(_) => see_other("/account", CookieJar::default()),
        Err(error) => errors::failure(&shopper, &error, "/account"),
    }
}
