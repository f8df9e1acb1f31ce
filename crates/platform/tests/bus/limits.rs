//! What JetStream keeps: the streams the bus creates are bounded by age and size.

use platform::bus::jetstream::{JetStreamBus, STREAM_MAX_AGE, STREAM_MAX_BYTES};
use test_support::nats::NatsServer;

#[tokio::test]
async fn the_streams_the_bus_creates_are_bounded_by_age_and_size() {
    let server = NatsServer::start();
    let _bus = JetStreamBus::connect(&server.url(), "LIMITS")
        .await
        .expect("connects");
    let client = async_nats::connect(server.url()).await.expect("connects");
    let jetstream = async_nats::jetstream::new(client);
    let mut names = Vec::new();
    let mut streams = jetstream.stream_names();
    while let Some(name) = futures_util::StreamExt::next(&mut streams).await {
        names.push(name.expect("a stream name"));
    }
    assert!(!names.is_empty(), "the bus created no stream");
    for name in names {
        let mut stream = jetstream.get_stream(&name).await.expect("the stream");
        let config = stream.info().await.expect("its state").config.clone();
        assert_eq!(config.max_age, STREAM_MAX_AGE, "{name}");
        assert_eq!(config.max_bytes, STREAM_MAX_BYTES, "{name}");
    }
}
