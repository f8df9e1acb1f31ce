//! The internal gRPC API: batch lookups with validation.

use contracts::proto::catalog::v1::GetProductsRequest;
use contracts::proto::catalog::v1::catalog_client::CatalogClient;
use test_support::Engine;
use tonic::Code;

use crate::helpers::TestApp;

test_support::on_both_engines!(
    products_are_looked_up_in_one_call_and_unknown_ids_reported,
    invalid_ids_and_oversized_batches_are_rejected,
);

async fn client(app: &TestApp) -> CatalogClient<tonic::transport::Channel> {
    CatalogClient::connect(format!("http://{}", app.address))
        .await
        .expect("a gRPC connection")
}

async fn products_are_looked_up_in_one_call_and_unknown_ids_reported(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mug = app.get_json("/products/enamel-camp-mug", 200).await;
    let mug_id = mug["id"].as_str().expect("an id").to_owned();
    let unknown = "0190a5a0-0000-7000-8000-000000000000".to_owned();
    let mut request = tonic::Request::new(GetProductsRequest {
        ids: vec![mug_id.clone(), unknown.clone(), mug_id.clone()],
    });
    request.set_timeout(std::time::Duration::from_secs(2));
    let response = client(&app)
        .await
        .get_products(request)
        .await
        .expect("ok")
        .into_inner();
    assert_eq!(response.products.len(), 1);
    let product = &response.products[0];
    assert_eq!(product.id, mug_id);
    assert_eq!(product.slug, "enamel-camp-mug");
    let price = product.price.clone().expect("a price");
    assert_eq!(
        price.amount_minor,
        mug["price"]["amount_minor"].as_i64().expect("cents")
    );
    assert_eq!(price.currency, "EUR");
    assert_eq!(response.missing_ids, vec![unknown]);
}

async fn invalid_ids_and_oversized_batches_are_rejected(engine: Engine) {
    let app = TestApp::spawn(engine).await;
    let mut client = client(&app).await;
    let status = client
        .get_products(GetProductsRequest {
            ids: vec!["not-a-uuid".to_owned()],
        })
        .await
        .expect_err("rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ids[0]"), "{}", status.message());
    let too_many = (0..101).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let status = client
        .get_products(GetProductsRequest { ids: too_many })
        .await
        .expect_err("rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
}
