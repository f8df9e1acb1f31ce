//! Inventory's internal gRPC API: availability for the cart.

use contracts::ProductId;
use contracts::proto::inventory::v1::inventory_server::{Inventory, InventoryServer};
use contracts::proto::inventory::v1::{
    Availability, GetAvailabilityRequest, GetAvailabilityResponse,
};
use platform::db::Database;
use tonic::{Request, Response, Status};

use crate::store;

/// The most products one `GetAvailability` call may ask about.
pub const MAX_IDS: usize = 100;

/// The tonic service, ready to mount.
pub fn service(db: Database) -> InventoryServer<InventoryGrpc> {
    InventoryServer::new(InventoryGrpc { db })
}

/// Implements `bazaar.inventory.v1.Inventory` over the store.
#[derive(Clone, Debug)]
pub struct InventoryGrpc {
    db: Database,
}

#[tonic::async_trait]
impl Inventory for InventoryGrpc {
    async fn get_availability(
        &self,
        request: Request<GetAvailabilityRequest>,
    ) -> Result<Response<GetAvailabilityResponse>, Status> {
        let ids = request.into_inner().product_ids;
        if ids.len() > MAX_IDS {
            return Err(Status::invalid_argument(format!(
                "product_ids: at most {MAX_IDS} per call, got {}",
                ids.len()
            )));
        }
        let mut items = Vec::with_capacity(ids.len());
        let mut connection = self
            .db
            .pool()
            .acquire()
            .await
            .map_err(|error| internal(&error.into()))?;
        for (index, id) in ids.into_iter().enumerate() {
            let Ok(product_id) = ProductId::parse(&id) else {
                return Err(Status::invalid_argument(format!(
                    "product_ids[{index}]: {id:?} is not a UUID"
                )));
            };
            let levels = store::levels_of(&mut connection, product_id)
                .await
                .map_err(|error| internal(&error))?;
            items.push(Availability {
                available: levels
                    .as_ref()
                    .filter(|levels| !levels.discontinued)
                    .map_or(0, store::Levels::available),
                tracked: levels.is_some(),
                product_id: product_id.to_string(),
            });
        }
        Ok(Response::new(GetAvailabilityResponse { items }))
    }
}

fn internal(error: &anyhow::Error) -> Status {
    tracing::error!(error = format!("{error:#}"), "GetAvailability failed");
    Status::internal("inventory failed to read stock")
}
