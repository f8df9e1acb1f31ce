//! The catalog's internal gRPC API: what the cart and orders call for prices.

use std::collections::BTreeSet;

use contracts::proto::catalog::v1::catalog_server::{Catalog, CatalogServer};
use contracts::proto::catalog::v1::{GetProductsRequest, GetProductsResponse, Product};
use tonic::{Request, Response, Status};

use crate::domain::ProductId;
use crate::store::Store;

/// The most ids one `GetProducts` call may ask for.
pub const MAX_IDS: usize = 100;

/// The tonic service, ready to mount.
pub fn service(store: Store) -> CatalogServer<CatalogGrpc> {
    CatalogServer::new(CatalogGrpc { store })
}

/// Implements `bazaar.catalog.v1.Catalog` over the store.
#[derive(Clone, Debug)]
pub struct CatalogGrpc {
    store: Store,
}

#[tonic::async_trait]
impl Catalog for CatalogGrpc {
    async fn get_products(
        &self,
        request: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        let requested = request.into_inner().ids;
        if requested.len() > MAX_IDS {
            return Err(Status::invalid_argument(format!(
                "ids: at most {MAX_IDS} per call, got {}",
                requested.len()
            )));
        }
        let ids = requested
            .iter()
            .enumerate()
            .map(|(index, text)| {
                ProductId::parse(text).ok().ok_or_else(|| {
                    Status::invalid_argument(format!("ids[{index}]: {text:?} is not a UUID"))
                })
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let ids: Vec<ProductId> = ids.into_iter().collect();
        let found = self.store.products_by_ids(&ids).await.map_err(|error| {
            tracing::error!(error = format!("{error:#}"), "GetProducts failed");
            Status::internal("the catalog failed to read products")
        })?;
        let missing_ids = ids
            .iter()
            .filter(|id| !found.iter().any(|product| product.id == **id))
            .map(ToString::to_string)
            .collect();
        let products = found
            .into_iter()
            .map(|product| Product {
                id: product.id.to_string(),
                slug: product.slug.as_str().to_owned(),
                name: product.name,
                price: Some(product.price.into()),
                category_slug: product.category.as_str().to_owned(),
                image: product.image,
            })
            .collect();
        Ok(Response::new(GetProductsResponse {
            products,
            missing_ids,
        }))
    }
}
