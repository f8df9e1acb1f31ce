//! Who is asking: the verified access token, if any, and the rate limit that applies.
//!
//! Verifying an EdDSA signature costs far more than forwarding a small request; the
//! verifier remembers recent verdicts ([`platform::auth::VERDICT_TTL`]), so the gateway's
//! cost per request stays close to pass-through.

use std::sync::Arc;

use contracts::identity::{AccessClaims, Role};
use platform::auth::{AuthError, Verifier};

use crate::config::RateLimitConfig;
use crate::config::under;
use crate::ratelimit::Quota;
use serde::{Deserialize, Serialize};

/// Verifies tokens.
pub struct Tokens {
    verifier: Verifier,
}

impl Tokens {
    /// Tokens checked by `verifier`.
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }

    /// The token's claims if it is valid now.
    pub async fn verify(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        Ok(Arc::new(self.verifier.verify(token).await?))
    }
}

/// Whose allowance a request draws on, and how large it is.
pub struct Client {
    /// The limiter's key: the user, or the client address for anonymous requests.
    pub key: String,
    /// The tier, for metrics: `anonymous`, `customer` or `admin`.
    pub tier: &'static str,
    /// The allowance.
    pub quota: Quota,
}

impl Client {
    /// A signed-in user draws on their own allowance, whatever address they come from;
    /// anyone else on their address's.
    pub fn of(
        claims: Option<&AccessClaims>,
        address: std::net::IpAddr,
        limits: &RateLimitConfig,
    ) -> Self {
        match claims {
            Some(claims) if claims.roles.contains(&Role::Admin) => Self {
                key: format!("user:{}", claims.sub),
                tier: "admin",
                quota: Quota::per_minute(limits.admin_per_minute),
            },
            Some(claims) => Self {
                key: format!("user:{}", claims.sub),
                tier: "customer",
                quota: Quota::per_minute(limits.customer_per_minute),
            },
            None => Self {
                key: format!("address:{address}"),
                tier: "anonymous",
                quota: Quota::per_minute(limits.anonymous_per_minute),
            },
        }
    }
}

/// A path prefix (and, optionally, methods) that needs a signed-in user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectRule {
    /// The path prefix, matched at segment boundaries: `/api/identity/me` matches
    /// `/api/identity/me/password` but not `/api/identity/meadow`.
    pub prefix: String,
    /// The methods it applies to; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The role required, if any.
    #[serde(default)]
    pub role: Option<Role>,
    /// Path prefixes under `prefix` that stay public, e.g. a service's
    /// `/openapi.json` and `/health` under a fully protected prefix.
    #[serde(default)]
    pub except: Vec<String>,
}

impl ProtectRule {
    fn new(prefix: &str, methods: &[&str], role: Option<Role>) -> Self {
        Self {
            prefix: prefix.to_owned(),
            methods: methods.iter().map(|method| (*method).to_owned()).collect(),
            role,
            except: Vec::new(),
        }
    }

    /// The rule for a whole service's API under `prefix`, leaving its OpenAPI document
    /// and health public.
    fn whole_service(prefix: &str) -> Self {
        let public = ["/openapi.json", "/health"];
        Self {
            except: public
                .iter()
                .map(|path| format!("{prefix}{path}"))
                .collect(),
            ..Self::new(prefix, &[], None)
        }
    }

    /// Whether the rule applies to `method` on `path`.
    pub fn matches(&self, method: &http::Method, path: &str) -> bool {
        under(path, &self.prefix)
            && !self.except.iter().any(|public| under(path, public))
            && (self.methods.is_empty()
                || self
                    .methods
                    .iter()
                    .any(|allowed| allowed.eq_ignore_ascii_case(method.as_str())))
    }
}

/// What the shop protects at the edge by default; each service checks again.
pub(crate) fn default_protected() -> Vec<ProtectRule> {
    let writes = ["POST", "PUT", "PATCH", "DELETE"];
    vec![
        ProtectRule::new("/api/identity/me", &[], None),
        ProtectRule::new("/api/identity/users", &[], None),
        ProtectRule::new("/api/identity/keys", &[], Some(Role::Admin)),
        ProtectRule::new("/api/catalog", &writes, Some(Role::Admin)),
        ProtectRule::new("/api/inventory/stock", &writes, Some(Role::Admin)),
        ProtectRule::whole_service("/api/cart"),
        ProtectRule::whole_service("/api/orders"),
        ProtectRule::new("/api/payments/methods", &[], None),
        ProtectRule::new("/api/payments/orders", &[], None),
        ProtectRule::new("/api/payments/ledger", &[], Some(Role::Admin)),
        ProtectRule::whole_service("/api/notifications"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_at_segment_boundaries_and_by_method() {
        let rule = ProtectRule::new("/api/identity/me", &[], None);
        assert!(rule.matches(&http::Method::GET, "/api/identity/me"));
        assert!(rule.matches(&http::Method::POST, "/api/identity/me/password"));
        assert!(!rule.matches(&http::Method::GET, "/api/identity/meadow"));
        let writes = ProtectRule::new("/api/catalog/", &["POST", "delete"], Some(Role::Admin));
        assert!(writes.matches(&http::Method::DELETE, "/api/catalog/products/x"));
        assert!(!writes.matches(&http::Method::GET, "/api/catalog/products"));
        let orders = ProtectRule::whole_service("/api/orders");
        assert!(orders.matches(&http::Method::POST, "/api/orders"));
        assert!(orders.matches(&http::Method::GET, "/api/orders/0190"));
        assert!(!orders.matches(&http::Method::GET, "/api/orders/openapi.json"));
        assert!(!orders.matches(&http::Method::GET, "/api/orders/health/ready"));
    }
}
