//! Identity's public representations: the access token's claims, token responses, and
//! the account API's requests and answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The audience every Bazaar access token is issued for.
pub const AUDIENCE: &str = "bazaar";

/// The JOSE `typ` of an access token (RFC 9068), so no other JWT passes for one.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// What a user may do.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Shops: browses, buys, sees their own orders.
    Customer,
    /// Runs the shop: manages the catalog, decides held payments.
    Admin,
}

impl Role {
    /// The role's name in tokens and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Admin => "admin",
        }
    }

    /// Parses `customer` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "customer" => Some(Self::Customer),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// The claims of an access token (a JWT signed with EdDSA).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: identity's public URL.
    pub iss: String,
    /// Subject: the user's id.
    pub sub: String,
    /// Audience: [`AUDIENCE`].
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch.
    pub nbf: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Unique token id.
    pub jti: String,
    /// What the user may do.
    pub roles: Vec<Role>,
}

/// A successful token request (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer …`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; exchange it at `/refresh` for new tokens. Single use.
    pub refresh_token: String,
}

/// `POST /register` and `POST /token`: an email and a password.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The account's email address.
    #[schema(
        max_length = 254,
        pattern = r"^[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
    )]
    pub email: String,
    /// The password, sent only over TLS in production (at most 128 characters).
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// The answer to `POST /register`: the same whether the address was new or had an
/// account, so that it tells nobody but the address's owner which.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistrationAccepted {
    /// The address, normalised, that a message was sent to: a link that confirms the
    /// new account, or word that it has one already.
    pub email: String,
}

/// `POST /confirm`: the token from the link in the confirmation email, and the password
/// the account was registered with.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The confirmation token.
    #[schema(min_length = 1, max_length = 256)]
    pub token: String,
    /// The password given when registering.
    #[schema(min_length = 1, max_length = 128)]
    pub password: String,
}

/// `POST /refresh` and `POST /logout`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last token response.
    #[schema(min_length = 1, max_length = 256)]
    pub refresh_token: String,
}

/// `POST /me/password`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password in use now.
    #[schema(min_length = 1, max_length = 128)]
    pub current_password: String,
    /// The password to use from now on: 15 to 128 characters.
    #[schema(min_length = 15, max_length = 128)]
    pub new_password: String,
}

/// An account as its owner (or an admin) sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// Stable id (UUID), the `sub` of its tokens.
    pub id: String,
    /// Normalised email address.
    pub email: String,
    /// What the user may do.
    pub roles: Vec<Role>,
    /// When the account was created, RFC 3339.
    pub created_at: String,
}
