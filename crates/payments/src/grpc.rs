//! Payments' internal gRPC API: whether a payment method may be used, for orders to
//! refuse an order with a wrong token at once; asked on the customer's behalf (their
//! access token travels with the call).

use contracts::proto::payments::v1::payments_server::{Payments as PaymentsApi, PaymentsServer};
use contracts::proto::payments::v1::{GetPaymentMethodRequest, GetPaymentMethodResponse};
use tonic::{Request, Response, Status};

use crate::ops::{self, Payments};

/// The tonic service, ready to mount.
pub fn service(payments: Payments) -> PaymentsServer<PaymentsGrpc> {
    PaymentsServer::new(PaymentsGrpc { payments })
}

/// Implements `bazaar.payments.v1.Payments` over the use cases.
#[derive(Clone)]
pub struct PaymentsGrpc {
    payments: Payments,
}

#[tonic::async_trait]
impl PaymentsApi for PaymentsGrpc {
    async fn get_payment_method(
        &self,
        request: Request<GetPaymentMethodRequest>,
    ) -> Result<Response<GetPaymentMethodResponse>, Status> {
        if request.get_ref().customer_id.is_empty() {
            return Err(Status::invalid_argument("customer_id: required"));
        }
        platform::grpc::authorize_for(&request, &request.get_ref().customer_id).await?;
        let request = request.into_inner();
        // Anything that is not a live token of this customer's is simply not found.
        let method = ops::method(&self.payments, &request.customer_id, &request.token)
            .await
            .map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "GetPaymentMethod failed");
                Status::internal("payments failed to read payment methods")
            })?;
        Ok(Response::new(match method {
            Some(method) => GetPaymentMethodResponse {
                found: true,
                brand: method.brand,
                last4: method.last4,
            },
            None => GetPaymentMethodResponse::default(),
        }))
    }
}
