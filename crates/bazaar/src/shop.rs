//! Starting services in one process.
//!
//! Each service gets its own listener, exactly as in distributed mode, and the services
//! call each other over real HTTP/gRPC on loopback. All listeners are bound before any
//! service is built, so a port conflict fails fast and names the service; when the
//! gateway runs beside other services it is pointed at the addresses they actually bound
//! (which matters with port 0).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use gateway::UpstreamUrl;
use platform::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::topology::ServiceName;

/// Services running in this process.
pub struct Shop {
    addresses: BTreeMap<ServiceName, SocketAddr>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Shop {
    /// Starts `services` (in topology order, whatever order they are given in) and
    /// returns once every one of them is serving.
    pub async fn start(
        config: &Config,
        services: &[ServiceName],
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let mut config = config.clone().resolved();
        let selected: Vec<ServiceName> = ServiceName::ALL
            .into_iter()
            .filter(|service| services.contains(service))
            .collect();

        let mut listeners = Vec::new();
        let mut addresses = BTreeMap::new();
        for &service in &selected {
            let wanted = config.listen(service);
            let listener = TcpListener::bind(wanted)
                .await
                .with_context(|| format!("{service} cannot listen on {wanted}"))?;
            let bound = listener.local_addr()?;
            addresses.insert(service, bound);
            listeners.push((service, listener));
        }
        for (&service, &address) in &addresses {
            if service.is_routed() {
                config
                    .gateway
                    .upstreams
                    .insert(service.as_str().to_owned(), UpstreamUrl::from_addr(address));
            }
            if service == ServiceName::Identity {
                config.auth.jwks_url = Some(format!("http://{address}/.well-known/jwks.json"));
            }
        }

        let mut tasks = JoinSet::new();
        for (service, listener) in listeners {
            let app = build(service, &config)
                .await
                .with_context(|| format!("starting {service}"))?;
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                platform::http::serve(listener, app, shutdown)
                    .await
                    .with_context(|| format!("{service} stopped serving"))
            });
        }
        Ok(Self { addresses, tasks })
    }

    /// The address `service` is listening on, if it runs here.
    pub fn address(&self, service: ServiceName) -> Option<SocketAddr> {
        self.addresses.get(&service).copied()
    }

    /// Waits until every service has stopped (after shutdown, once in-flight requests
    /// drained), returning the first failure.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        while let Some(outcome) = self.tasks.join_next().await {
            outcome.context("a service task panicked")??;
        }
        Ok(())
    }
}

async fn build(service: ServiceName, config: &Config) -> anyhow::Result<Router> {
    Ok(match service {
        ServiceName::Gateway => gateway::build(&config.gateway, config.auth.verifier()),
        ServiceName::Identity => identity::build(&config.identity, &config.auth).await?,
        ServiceName::Catalog => catalog::build(&config.catalog, config.auth.verifier()).await?,
    })
}
