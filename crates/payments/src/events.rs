//! The events payments consumes besides commands: identity's registrations, which give
//! the fraud rules each account's age. Plain inbox handlers: they only write.

use contracts::messaging::Envelope;
use contracts::messaging::Message as _;
use contracts::messaging::identity::UserRegisteredV1;
use futures_util::future::BoxFuture;
use platform::bus::SubscriptionSpec;
use platform::inbox::Handler;
use sqlx::AnyConnection;

use crate::store;

/// The subscription for identity's registrations.
pub fn registrations() -> SubscriptionSpec {
    SubscriptionSpec::new("payments.registrations", UserRegisteredV1::TYPE)
}

/// Remembers when each customer registered.
pub struct Registrations;

impl Handler for Registrations {
    fn handle<'a>(
        &'a self,
        connection: &'a mut AnyConnection,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            if envelope.kind != UserRegisteredV1::TYPE {
                return Ok(());
            }
            let registered: UserRegisteredV1 = envelope.decode()?;
            store::record_registration(
                connection,
                &registered.user_id.to_string(),
                registered.registered_at_ms,
            )
            .await
        })
    }
}
