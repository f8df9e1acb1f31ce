//! Identity's REST API: thin handlers over [`crate::ops`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use contracts::identity::{
    ChangePassword, Confirmation, Credentials, RefreshRequest, RegistrationAccepted, TokenResponse,
    User,
};
use platform::auth::{Admin, AuthUser};
use platform::http::{BearerAuth, EdgeResponses, Json};
use platform::problem::{FieldError, Problem};
use utoipa::OpenApi;

use crate::ops::{self, Error, Identity};
use crate::store::UserRecord;

/// The OpenAPI 3.1 document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Bazaar identity",
        version = "1",
        description = "Accounts and tokens. Access tokens are EdDSA-signed JWTs; verify them with the JWKS."
    ),
    servers((url = "/api/identity", description = "through the gateway")),
    paths(register, confirm, token, refresh, logout, me, change_password, get_user, rotate_keys, jwks, openid_configuration),
    components(schemas(Credentials, RegistrationAccepted, Confirmation, RefreshRequest, ChangePassword, TokenResponse, User, Problem, FieldError)),
    modifiers(&BearerAuth, &EdgeResponses),
    tags((name = "identity", description = "Accounts and tokens"))
)]
pub struct ApiDoc;

/// The REST routes.
pub fn router(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/register", post(register))
        .route("/confirm", post(confirm))
        .route("/token", post(token))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/me/password", post(change_password))
        .route("/users/{id}", get(get_user))
        .route("/keys/rotate", post(rotate_keys))
        .route("/.well-known/jwks.json", get(jwks))
        .route(
            "/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .layer(axum::middleware::from_fn(not_stored))
        .with_state(identity)
}

/// Accounts and tokens are personal: no cache keeps an answer (RFC 6749 asks it of
/// token answers, and `/me` must not outlive a sign-out in a shared cache), except the
/// public documents under `/.well-known` and the API description.
async fn not_stored(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let public = {
        let path = request.uri().path();
        path.starts_with("/.well-known/") || path == "/openapi.json"
    };
    let mut response = next.run(request).await;
    if !public {
        response
            .headers_mut()
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}

type Ctx = State<Arc<Identity>>;
type Peer = ConnectInfo<SocketAddr>;

/// Registers a customer account. The answer is the same whether the address had an
/// account or not; an email to the address says which, with a link that confirms a new
/// account (`POST /confirm`). An account signs in once confirmed.
#[utoipa::path(post, path = "/register", tag = "identity", request_body = Credentials,
    responses(
        (status = 202, description = "An email is on its way to the address", body = RegistrationAccepted),
        (status = 400, description = "Invalid email or password, named in the problem", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn register(
    State(identity): Ctx,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<impl IntoResponse, Problem> {
    let address = client_ip(&identity, peer, &headers);
    let email = ops::register(&identity, &body.email, &body.password, address)
        .await
        .map_err(problem)?;
    let accepted = RegistrationAccepted {
        email: email.as_str().to_owned(),
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Confirms a new account's address with the token from the emailed link and the
/// password it was registered with, and signs in.
#[utoipa::path(post, path = "/confirm", tag = "identity", request_body = Confirmation,
    responses(
        (status = 200, description = "Confirmed and signed in", body = TokenResponse),
        (status = 400, description = "The token is invalid, used or expired, or the password is not the one registered", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address", body = Problem, content_type = "application/problem+json"),
    ))]
async fn confirm(
    State(identity): Ctx,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<Confirmation>,
) -> Result<impl IntoResponse, Problem> {
    let address = client_ip(&identity, peer, &headers);
    let token = bounded_token("token", CONFIRMATION_TOKEN, &body.token)?;
    bounded_password(&identity, &body.password)?;
    let tokens = ops::confirm(&identity, token, &body.password, address)
        .await
        .map_err(problem)?;
    Ok(no_store(Json(tokens)))
}

/// Signs in: email and password for an access token and a refresh token.
#[utoipa::path(post, path = "/token", tag = "identity", request_body = Credentials,
    responses(
        (status = 200, description = "Tokens", body = TokenResponse),
        (status = 400, description = "Wrong email or password (the same answer for both)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The password is right, but the address is not confirmed yet", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts for this account or address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn token(
    State(identity): Ctx,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<Credentials>,
) -> Result<impl IntoResponse, Problem> {
    let address = client_ip(&identity, peer, &headers);
    bounded_password(&identity, &body.password)?;
    let tokens = ops::login(&identity, &body.email, &body.password, address)
        .await
        .map_err(problem)?;
    Ok(no_store(Json(tokens)))
}

/// Exchanges a refresh token for new tokens; the old refresh token stops working.
#[utoipa::path(post, path = "/refresh", tag = "identity", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 400, description = "The refresh token is invalid, expired or revoked", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refresh(
    State(identity): Ctx,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    Json(body): Json<RefreshRequest>,
) -> Result<impl IntoResponse, Problem> {
    let address = client_ip(&identity, peer, &headers);
    let tokens = ops::refresh(
        &identity,
        bounded_token("refresh_token", REFRESH_TOKEN, &body.refresh_token)?,
        address,
    )
    .await
    .map_err(problem)?;
    Ok(no_store(Json(tokens)))
}

/// Signs out: the refresh token, and every token issued from the same sign-in, stop working.
#[utoipa::path(post, path = "/logout", tag = "identity", request_body = RefreshRequest,
    responses((status = 204, description = "Signed out")))]
async fn logout(
    State(identity): Ctx,
    Json(body): Json<RefreshRequest>,
) -> Result<StatusCode, Problem> {
    ops::logout(
        &identity,
        bounded_token("refresh_token", REFRESH_TOKEN, &body.refresh_token)?,
    )
    .await
    .map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user's account.
#[utoipa::path(get, path = "/me", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(State(identity): Ctx, user: AuthUser) -> Result<Json<User>, Problem> {
    let record = ops::user(&identity, &user, &user.id)
        .await
        .map_err(problem)?;
    Ok(Json(user_view(record)))
}

/// Changes the signed-in user's password and signs out their other sessions.
#[utoipa::path(post, path = "/me/password", tag = "identity", security(("bearer" = [])), request_body = ChangePassword,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Wrong current password, or a new one that breaks the policy", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Password hashing is at capacity; retry after Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(identity): Ctx,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    user: AuthUser,
    Json(body): Json<ChangePassword>,
) -> Result<StatusCode, Problem> {
    let address = client_ip(&identity, peer, &headers);
    ops::change_password(
        &identity,
        &user.id,
        &body.current_password,
        &body.new_password,
        address,
    )
    .await
    .map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One account: the caller's own, or any for an admin. Others' are 404.
#[utoipa::path(get, path = "/users/{id}", tag = "identity", security(("bearer" = [])),
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 404, description = "No such account, or not yours", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_user(
    State(identity): Ctx,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<User>, Problem> {
    let record = ops::user(&identity, &user, &id).await.map_err(problem)?;
    Ok(Json(user_view(record)))
}

/// Replaces the signing key now (after a suspected compromise); admins only. Tokens
/// signed with the old key stay valid until they expire.
#[utoipa::path(post, path = "/keys/rotate", tag = "identity", security(("bearer" = [])),
    responses(
        (status = 200, description = "The new key's id"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_keys(
    State(identity): Ctx,
    _admin: Admin,
) -> Result<Json<serde_json::Value>, Problem> {
    let key = ops::rotate_signing_key(&identity).await?;
    Ok(Json(serde_json::json!({ "kid": key.kid() })))
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "The JSON Web Key Set")))]
async fn jwks(State(identity): Ctx) -> Result<impl IntoResponse, Problem> {
    let set = ops::jwks(&identity).await?;
    Ok((
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        )],
        Json(set),
    ))
}

/// OpenID Connect discovery: where the keys and endpoints are.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "identity",
    responses((status = 200, description = "The discovery document")))]
async fn openid_configuration(State(identity): Ctx) -> Json<serde_json::Value> {
    let issuer = identity.issuer.trim_end_matches('/');
    Json(serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "userinfo_endpoint": format!("{issuer}/me"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "roles"],
    }))
}

fn client_ip(identity: &Identity, peer: SocketAddr, headers: &HeaderMap) -> std::net::IpAddr {
    platform::net::vouched_client_address(
        peer,
        headers,
        &identity.config.trusted_proxies,
        identity.config.forwarding_secret.as_ref(),
    )
}

/// A password longer than any the policy allows is refused before it is hashed.
fn bounded_password(identity: &Identity, password: &str) -> Result<(), Problem> {
    let max = identity.config.password_max_chars;
    if password.chars().count() > max {
        return Err(Problem::invalid_field(
            "password",
            format!("must be at most {max} characters"),
        ));
    }
    Ok(())
}

/// What a malformed refresh token is told.
const REFRESH_TOKEN: &str = "must be a refresh token from /token or /refresh";
/// What a malformed confirmation token is told.
const CONFIRMATION_TOKEN: &str = "must be the token from the confirmation link";

/// Tokens are 43 characters; anything far longer is refused before hashing, `field`
/// named and told `expected`.
fn bounded_token<'a>(
    field: &'static str,
    expected: &'static str,
    token: &'a str,
) -> Result<&'a str, Problem> {
    if token.is_empty() || token.len() > 256 {
        return Err(Problem::invalid_field(field, expected));
    }
    Ok(token)
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store(body: Json<TokenResponse>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        body,
    )
}

fn problem(error: Error) -> Problem {
    match error {
        Error::Invalid(fields) => Problem::validation(fields),
        Error::EmailTaken => Problem::conflict(error.to_string()),
        Error::Unconfirmed => Problem::new(StatusCode::FORBIDDEN, "unconfirmed", error.to_string()),
        Error::InvalidGrant(reason) => {
            Problem::new(StatusCode::BAD_REQUEST, "invalid-grant", reason)
        }
        Error::Throttled(wait) => Problem::too_many_requests(
            "too many attempts; wait before trying again",
            wait.as_secs().saturating_add(1),
        ),
        Error::NotFound => Problem::not_found("no such account"),
        Error::Busy(busy) => Problem::unavailable(busy.to_string(), 1),
        Error::Internal(error) => error.into(),
    }
}

fn user_view(user: UserRecord) -> User {
    let created_at = chrono::DateTime::from_timestamp(user.created_at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    User {
        id: user.id.to_string(),
        email: user.email,
        roles: user.roles,
        created_at,
    }
}
