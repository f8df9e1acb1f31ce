//! Compiles the .proto files with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/bazaar/common/v1/money.proto",
        "proto/bazaar/catalog/v1/catalog.proto",
        "proto/bazaar/inventory/v1/inventory.proto",
        "proto/bazaar/cart/v1/cart.proto",
        "proto/bazaar/payments/v1/payments.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
