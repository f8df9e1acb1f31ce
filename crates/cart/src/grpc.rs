//! The cart's internal gRPC API: a customer's priced cart, for the checkout, asked
//! for on the customer's behalf (their token travels with the call).

use contracts::proto::cart::v1::cart_server::{Cart, CartServer};
use contracts::proto::cart::v1::{GetCartRequest, PricedCart, PricedLine};
use tonic::{Request, Response, Status};

use crate::Carts;
use crate::domain::CustomerId;
use crate::pricing::PricingError;

/// The tonic service, ready to mount.
pub fn service(carts: Carts) -> CartServer<CartGrpc> {
    CartServer::new(CartGrpc { carts })
}

/// Implements `bazaar.cart.v1.Cart` over the store and the pricing clients.
#[derive(Clone)]
pub struct CartGrpc {
    carts: Carts,
}

#[tonic::async_trait]
impl Cart for CartGrpc {
    async fn get_cart(
        &self,
        request: Request<GetCartRequest>,
    ) -> Result<Response<PricedCart>, Status> {
        platform::grpc::authorize_for(&request, &request.get_ref().customer_id).await?;
        let customer_id = request.into_inner().customer_id;
        let customer = CustomerId::parse(&customer_id).ok_or_else(|| {
            Status::invalid_argument(format!("customer_id: {customer_id:?} is not a customer id"))
        })?;
        let (revision, cart) = self
            .carts
            .priced_at_revision(&customer)
            .await
            .map_err(|error| match error {
                PricingError::CatalogUnavailable(_) => {
                    Status::unavailable("the catalog is unavailable; the cart cannot be priced")
                }
                PricingError::Other(error) => {
                    tracing::error!(error = format!("{error:#}"), "GetCart failed");
                    Status::internal("the cart failed to read or price the cart")
                }
            })?;
        let mut lines = Vec::with_capacity(cart.lines.len());
        for line in cart.lines {
            // The message has no way to say "unknown", and a checkout needs inventory
            // anyway, so a cart whose availability is unknown is not answered.
            let available = line.available.ok_or_else(|| {
                Status::unavailable("inventory is unavailable; availability is unknown")
            })?;
            lines.push(PricedLine {
                product_id: line.product_id.to_string(),
                name: line.name,
                quantity: line.quantity,
                unit_price: Some(line.unit_price.into()),
                line_total: Some(line.line_total.into()),
                available,
            });
        }
        Ok(Response::new(PricedCart {
            customer_id: cart.customer_id.to_string(),
            lines,
            total: cart.total.map(Into::into),
            unavailable_product_ids: cart.unavailable.iter().map(ToString::to_string).collect(),
            revision,
        }))
    }
}
