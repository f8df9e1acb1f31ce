//! Two gateway processes in front of one catalog share one rate limit through Redis:
//! a client spreading its requests over both gets the allowance once, not twice.

mod common;

use common::Replica;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateway_processes_share_one_allowance() {
    let folder = tempfile::tempdir().expect("a folder");
    let config = folder.path().join("bazaar.toml");
    let logs = folder.path().join("logs");
    std::fs::create_dir_all(&logs).expect("a folder");
    let redis = test_support::redis::RedisServer::new();

    let data = |name: &str| {
        (
            "BAZAAR__DATA_DIR",
            folder.path().join(name).to_string_lossy().into_owned(),
        )
    };
    let mut catalog = Replica::new("catalog", "catalog", &config, &logs, &[data("catalog")]);
    let mut gateways: Vec<Replica> = ["gateway-1", "gateway-2"]
        .iter()
        .map(|label| Replica::new(label, "gateway", &config, &logs, &[data(label)]))
        .collect();
    std::fs::write(
        &config,
        format!(
            "[log]\nfilter = \"warn\"\n\
             [gateway.upstreams]\ncatalog = {:?}\n\
             [gateway.rate_limit]\nanonymous_per_minute = 40\n\
             [gateway.rate_limit.store]\nkind = \"redis\"\nurl = {:?}\nkey_prefix = {:?}\n",
            catalog.url(),
            redis.url(),
            test_support::redis::unique_prefix()
        ),
    )
    .expect("a config file");
    let client = reqwest::Client::new();
    catalog.spawn();
    catalog.ready(&client).await;
    for gateway in &mut gateways {
        gateway.spawn();
        gateway.ready(&client).await;
    }

    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for n in 0..100 {
        let gateway = &gateways[n % 2];
        let status = client
            .get(format!("{}/api/catalog/products?limit=1", gateway.url()))
            .send()
            .await
            .expect("answers")
            .status()
            .as_u16();
        *answered.entry(status).or_default() += 1;
    }
    assert_eq!(
        answered,
        [(200, 40), (429, 60)].into(),
        "one allowance of 40 across both gateways"
    );
}
