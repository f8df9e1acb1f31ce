//! What orders asks other services when an order is placed: the priced cart (cart,
//! over gRPC) and whether the payment method exists (payments, over gRPC).

use std::time::Duration;

use contracts::messaging::orders::OrderLine;
use contracts::proto::cart::v1::GetCartRequest;
use contracts::proto::cart::v1::cart_client::CartClient;
use contracts::proto::payments::v1::GetPaymentMethodRequest;
use contracts::proto::payments::v1::payments_client::PaymentsClient;
use contracts::{Money, ProductId};
use platform::grpc::TracedChannel;

use crate::ops::Basket;

/// Why a lookup gave no answer to act on.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The other service did not answer (in time); the client may retry.
    #[error("{0} is unavailable: {1}")]
    Unavailable(&'static str, String),
    /// The answer made no sense (a bug on one side).
    #[error("{0} answered something unreadable: {1}")]
    Malformed(&'static str, String),
}

/// Clients for the services an order is placed from.
#[derive(Clone)]
pub struct Lookups {
    cart: CartClient<TracedChannel>,
    payments: PaymentsClient<TracedChannel>,
}

impl Lookups {
    /// Clients for the cart at `cart_url` and payments at `payments_url`.
    pub fn new(cart_url: &str, payments_url: &str, deadline: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            cart: CartClient::new(platform::grpc::channel(cart_url, deadline)?),
            payments: PaymentsClient::new(platform::grpc::channel(payments_url, deadline)?),
        })
    }

    /// The customer's cart priced now; empty lines if the cart is empty. Asked with
    /// `bearer`, the customer's own access token.
    pub async fn basket(&self, customer_id: &str, bearer: &str) -> Result<Basket, LookupError> {
        let request = GetCartRequest {
            customer_id: customer_id.to_owned(),
        };
        let request = platform::grpc::on_behalf_of(request, bearer)
            .map_err(|status| LookupError::Unavailable("cart", status.message().to_owned()))?;
        let cart = self
            .cart
            .clone()
            .get_cart(request)
            .await
            .map_err(|status| LookupError::Unavailable("cart", status.message().to_owned()))?
            .into_inner();
        let malformed =
            |error: &dyn std::fmt::Display| LookupError::Malformed("cart", error.to_string());
        let mut lines = Vec::with_capacity(cart.lines.len());
        for line in cart.lines {
            let price = line
                .unit_price
                .ok_or_else(|| malformed(&"a line without a price"))?;
            lines.push(OrderLine {
                product_id: ProductId::parse(&line.product_id)
                    .map_err(|error| malformed(&error))?,
                name: line.name,
                quantity: line.quantity,
                unit_price: Money::try_from(price).map_err(|error| malformed(&error))?,
            });
        }
        let total = match cart.total {
            Some(total) => Money::try_from(total).map_err(|error| malformed(&error))?,
            None if lines.is_empty() => Money {
                amount_minor: 0,
                currency: contracts::Currency::EUR,
            },
            None => return Err(malformed(&"a cart with lines but no total")),
        };
        Ok(Basket {
            lines,
            total,
            cart_revision: Some(cart.revision),
        })
    }

    /// Whether `token` is one of the customer's payment methods. Asked with `bearer`,
    /// the customer's own access token.
    pub async fn has_payment_method(
        &self,
        customer_id: &str,
        token: &str,
        bearer: &str,
    ) -> Result<bool, LookupError> {
        let request = GetPaymentMethodRequest {
            customer_id: customer_id.to_owned(),
            token: token.to_owned(),
        };
        let request = platform::grpc::on_behalf_of(request, bearer)
            .map_err(|status| LookupError::Unavailable("payments", status.message().to_owned()))?;
        let answer = self
            .payments
            .clone()
            .get_payment_method(request)
            .await
            .map_err(|status| LookupError::Unavailable("payments", status.message().to_owned()))?;
        Ok(answer.into_inner().found)
    }
}
