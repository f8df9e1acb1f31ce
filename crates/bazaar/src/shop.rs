//! Starting services in one process.
//!
//! Each service gets its own listener, exactly as in distributed mode, and the services
//! call each other over real HTTP/gRPC on loopback. All listeners are bound before any
//! service is built, so a port conflict fails fast and names the service; when the
//! gateway runs beside other services it is pointed at the addresses they actually bound
//! (which matters with port 0). They stop from the edge inwards: the gateway drains
//! first, then the storefront, then the services they call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use platform::bus::Bus;
use platform::bus::embedded::EmbeddedBus;
use platform::bus::faulty::FaultyBus;
use platform::bus::jetstream::JetStreamBus;
use platform::flags::Flags;
use platform::service::{Context, Service};
use platform::shutdown::Shutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::config::{BusConfig, Config};
use crate::topology::ServiceName;

/// How many stopping tiers there are: the gateway, the storefront, the rest.
const TIERS: usize = 3;

/// When `service` stops: the gateway first, then the storefront, then the services
/// they call.
fn tier_of(service: ServiceName) -> usize {
    match service {
        ServiceName::Gateway => 0,
        ServiceName::Storefront => 1,
        _ => 2,
    }
}

/// The services of one tier: the signal that stops them, and a token each of their
/// servers holds until it has drained.
struct Tier {
    shutdown: Shutdown,
    serving: tokio::sync::mpsc::Sender<()>,
    drained: tokio::sync::mpsc::Receiver<()>,
}

impl Tier {
    fn new() -> Self {
        let (serving, drained) = tokio::sync::mpsc::channel(1);
        Self {
            shutdown: Shutdown::new(),
            serving,
            drained,
        }
    }
}

/// Once `shutdown` fires, stops each tier in turn, waiting for its servers to drain
/// before stopping the next.
async fn stop_from_the_edge_inwards(shutdown: Shutdown, tiers: Vec<Tier>) -> anyhow::Result<()> {
    shutdown.wait().await;
    for tier in tiers {
        let Tier {
            shutdown,
            serving,
            mut drained,
        } = tier;
        drop(serving);
        shutdown.trigger();
        // Every server of the tier holds a sender; none is left once all have drained.
        // A connection that never finishes must not keep the inner tiers (and their
        // outbox relays) running: past the budget, the next tier stops anyway.
        let drained = async { while drained.recv().await.is_some() {} };
        if tokio::time::timeout(DRAIN_BUDGET, drained).await.is_err() {
            tracing::warn!(
                budget_secs = DRAIN_BUDGET.as_secs(),
                "a tier did not drain in time; stopping the next one anyway"
            );
        }
    }
    Ok(())
}

/// How long one tier may take to drain before the next is stopped regardless: a third
/// of Kubernetes' default grace period, so all three fit in it.
const DRAIN_BUDGET: std::time::Duration = std::time::Duration::from_secs(9);

/// Services running in this process.
pub struct Shop {
    addresses: BTreeMap<ServiceName, SocketAddr>,
    tasks: JoinSet<anyhow::Result<()>>,
    shutdown: Shutdown,
    flags: Flags,
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
        // Boxed: starting every service is a large future to keep on a caller's stack.
        Box::pin(Self::start_on(bus, config, services, shutdown)).await
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
        let flags = crate::flags::open(&config)?;
        let bus: Arc<dyn Bus> = Arc::new(FaultyBus::new(bus, flags.clone()));
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

        // Stopping goes from the edge inwards: the gateway stops taking requests and
        // drains, then the storefront, then the services behind them, so a request
        // that was accepted finds every service it needs still serving.
        let tiers: Vec<Tier> = (0..TIERS).map(|_| Tier::new()).collect();
        let verifier = config.auth.verifier();
        let mut tasks = JoinSet::new();
        {
            let (flags, shutdown) = (flags.clone(), shutdown.clone());
            tasks.spawn(async move {
                flags.watch(shutdown).await;
                Ok(())
            });
        }
        for (service, listener) in listeners {
            let tier = &tiers[tier_of(service)];
            let context = Context {
                bus: Arc::clone(&bus),
                verifier: verifier.clone(),
                flags: flags.clone(),
                shutdown: tier.shutdown.clone(),
            };
            let built = build(service, &config, &context)
                .await
                .with_context(|| format!("starting {service}"))?;
            for worker in built.workers {
                tasks.spawn(async move {
                    worker.await;
                    Ok(())
                });
            }
            let (stop, serving) = (tier.shutdown.clone(), tier.serving.clone());
            tasks.spawn(async move {
                let served = platform::http::serve(listener, built.router, stop)
                    .await
                    .with_context(|| format!("{service} stopped serving"));
                drop(serving);
                served
            });
        }
        tasks.spawn(stop_from_the_edge_inwards(shutdown.clone(), tiers));
        Ok(Self {
            addresses,
            tasks,
            shutdown,
            flags,
        })
    }

    /// The feature flags every service of this shop reads; [`Flags::reload`] reads their
    /// file now rather than at the watcher's next look.
    pub fn flags(&self) -> &Flags {
        &self.flags
    }

    /// The address `service` is listening on, if it runs here.
    pub fn address(&self, service: ServiceName) -> Option<SocketAddr> {
        self.addresses.get(&service).copied()
    }

    /// Waits until every service has stopped (after shutdown, once in-flight requests
    /// drained), returning the first failure.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        // A task that fails stops the shop, in order, rather than aborting the others
        // mid-drain: wait for all, then report the first failure.
        let mut first_failure = None;
        while let Some(outcome) = self.tasks.join_next().await {
            let outcome = outcome
                .context("a service task panicked")
                .and_then(|outcome| outcome);
            if let Err(error) = outcome {
                self.shutdown.trigger();
                first_failure.get_or_insert(error);
            }
        }
        first_failure.map_or(Ok(()), Err)
    }
}

async fn build(
    service: ServiceName,
    config: &Config,
    context: &Context,
) -> anyhow::Result<Service> {
    Ok(match service {
        ServiceName::Gateway => {
            gateway::build(
                &config.gateway,
                context.verifier.clone(),
                context.flags.clone(),
                crate::chaos::offered(),
                &context.shutdown,
            )
            .await?
        }
        ServiceName::Identity => identity::build(&config.identity, &config.auth, context).await?,
        ServiceName::Catalog => catalog::build(&config.catalog, context).await?,
        ServiceName::Inventory => inventory::build(&config.inventory, context).await?,
        ServiceName::Payments => payments::build(&config.payments, context).await?,
        ServiceName::Cart => cart::build(&config.cart, context).await?,
        ServiceName::Orders => orders::build(&config.orders, context).await?,
        ServiceName::Notifications => notifications::build(&config.notifications, context).await?,
        ServiceName::Storefront => storefront::build(&config.storefront, context).await?,
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
            let bus = JetStreamBus::connect(url.expose(), stream)
                .await
                .with_context(|| format!("connecting to JetStream at {}", url.redacted()))?;
            Ok(Arc::new(bus))
        }
    }
}
