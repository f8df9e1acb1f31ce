//! Starting services in one process.
//!
//! Each service gets its own listener, exactly as in distributed mode, and the services
//! call each other over real HTTP/gRPC on loopback. All listeners are bound before any
//! service is built, so a port conflict fails fast and names the service; when the
//! gateway runs beside other services it is pointed at the addresses they actually bound
//! (which matters with port 0).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use platform::bus::Bus;
use platform::bus::embedded::EmbeddedBus;
use platform::bus::jetstream::JetStreamBus;
use platform::service::{Context, Service};
use platform::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::{BusConfig, Config};
use crate::topology::ServiceName;

/// Services running in this process.
pub struct Shop {
    addresses: BTreeMap<ServiceName, SocketAddr>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Shop {
    /// Starts `services` (in topology order, whatever order they are given in) on the
    /// bus the configuration names, and returns once every one of them is serving.
    pub async fn start(
        config: &Config,
        services: &[ServiceName],
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        let bus = open_bus(&config.clone().resolved()).await?;
        Self::start_on(bus, config, services, shutdown).await
    }

    /// Starts `services` on `bus`, whatever the configuration says: for wrapping the
    /// bus, e.g. in a fault injector.
    pub async fn start_on(
        bus: Arc<dyn Bus>,
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
            config.locate(service, address);
        }

        let context = Context {
            bus,
            verifier: config.auth.verifier(),
            shutdown: shutdown.clone(),
        };
        let mut tasks = JoinSet::new();
        for (service, listener) in listeners {
            let built = build(service, &config, &context)
                .await
                .with_context(|| format!("starting {service}"))?;
            for worker in built.workers {
                tasks.spawn(async move {
                    worker.await;
                    Ok(())
                });
            }
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                platform::http::serve(listener, built.router, shutdown)
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

async fn build(
    service: ServiceName,
    config: &Config,
    context: &Context,
) -> anyhow::Result<Service> {
    Ok(match service {
        ServiceName::Gateway => {
            gateway::build(&config.gateway, context.verifier.clone(), &context.shutdown).await?
        }
        ServiceName::Identity => identity::build(&config.identity, &config.auth, context).await?,
        ServiceName::Catalog => catalog::build(&config.catalog, context).await?,
        ServiceName::Inventory => inventory::build(&config.inventory, context).await?,
        ServiceName::Payments => payments::build(&config.payments, context).await?,
        ServiceName::Cart => cart::build(&config.cart, context).await?,
        ServiceName::Orders => orders::build(&config.orders, context).await?,
        ServiceName::Notifications => notifications::build(&config.notifications, context).await?,
    })
}

/// The bus the configuration names, shared by every service of the process.
pub async fn open_bus(config: &Config) -> anyhow::Result<Arc<dyn Bus>> {
    match &config.bus {
        BusConfig::Embedded => {
            let path = config.data_dir.join("bus.db");
            let bus = EmbeddedBus::open(&path)
                .await
                .with_context(|| format!("opening the embedded bus at {}", path.display()))?;
            Ok(Arc::new(bus))
        }
        BusConfig::Jetstream { url, stream } => {
            let bus = JetStreamBus::connect(url, stream)
                .await
                .with_context(|| format!("connecting to JetStream at {url}"))?;
            Ok(Arc::new(bus))
        }
    }
}
