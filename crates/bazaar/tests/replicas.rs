//! The distributed shop as its operators run it: every service its own `bazaar serve`
//! process on PostgreSQL, NATS JetStream and Redis, with two replicas each of the
//! gateway, orders and payments. Shoppers check out through both gateways while one
//! replica of each of those is killed (SIGKILL) and started again. Afterwards every
//! order a shopper was told about exists exactly once and reached an end, no shopper
//! has an order they did not place, and `bazaar verify` reports clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Buyer, Replica, call, mug, sign_up, until_ended, verify_until_clean};
use serde_json::{Value, json};

const BUYERS: usize = 6;
/// Checkouts each shopper makes at least; they go on until every kill is done.
const CHECKOUTS_EACH: usize = 3;
/// Replicas killed (and restarted) while shoppers shop: each of the six twice.
const KILLS: usize = 12;

/// The shop's processes, by label.
struct Shop {
    replicas: BTreeMap<String, Replica>,
}

impl Shop {
    fn get(&mut self, label: &str) -> &mut Replica {
        self.replicas
            .get_mut(label)
            .expect("a replica with that label")
    }

    async fn start(&mut self, labels: &[&str], client: &reqwest::Client) {
        for label in labels {
            self.get(label).spawn();
        }
        for label in labels {
            self.get(label).ready(client).await;
        }
    }
}

/// Both gateways, used in turn; a shopper whose gateway died goes to the other, as a
/// load balancer in front of them would send it.
struct Front {
    gateways: Vec<String>,
    next: AtomicUsize,
}

impl Front {
    fn pick(&self) -> &str {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        &self.gateways[n % self.gateways.len()]
    }

    /// Sends what `build` makes (given a gateway) until an answer comes that `done`
    /// accepts; each attempt goes through the next gateway.
    async fn until(
        &self,
        what: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
        done: impl Fn(u16, &Value) -> bool,
    ) -> (u16, Value) {
        test_support::eventually(what, Duration::from_secs(15), || async {
            match call(build(self.pick())).await {
                Some((status, body)) if done(status, &body) => Ok((status, body)),
                Some((status, body)) => Err(format!("{status} {body}")),
                None => Err("no answer".to_owned()),
            }
        })
        .await
    }
}

/// Makes the cart hold exactly one mug. Adding is not idempotent (a retried add whose
/// answer was lost would add two), so the cart is read first and corrected until right.
async fn one_mug_in_cart(front: &Front, client: &reqwest::Client, buyer: &Buyer, mug: &str) {
    for _ in 0..300 {
        let gateway = front.pick();
        let cart = call(
            client
                .get(format!("http://{gateway}/api/cart"))
                .bearer_auth(&buyer.token),
        )
        .await;
        let quantity = match &cart {
            Some((200, cart)) => cart["lines"]
                .as_array()
                .and_then(|lines| lines.iter().find(|line| line["product_id"] == mug))
                .and_then(|line| line["quantity"].as_u64())
                .unwrap_or(0),
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let fix = match quantity {
            1 => return,
            0 => client
                .post(format!("http://{gateway}/api/cart/items"))
                .json(&json!({"product_id": mug, "quantity": 1})),
            _ => client
                .put(format!("http://{gateway}/api/cart/items/{mug}"))
                .json(&json!({"quantity": 1})),
        };
        call(fix.bearer_auth(&buyer.token)).await;
    }
    panic!("the cart never held exactly one mug");
}

/// One shopper's checkouts, one after another: set the cart to one mug, place the
/// order under a key of its own (retried with the same key until accepted), wait for
/// its end, and once it is confirmed wait for the cart to be emptied.
async fn shop_for(
    front: &Front,
    client: &reqwest::Client,
    buyer: &Buyer,
    n: usize,
    mug: &str,
    chaos_done: &AtomicBool,
) -> Vec<(String, String)> {
    let mut placed = Vec::new();
    let mut round = 0;
    while round < CHECKOUTS_EACH || !chaos_done.load(Ordering::SeqCst) {
        round += 1;
        one_mug_in_cart(front, client, buyer, mug).await;
        let key = format!("buyer-{n}-checkout-{round}");
        let (_, order) = front
            .until(
                "placing an order",
                |gateway| {
                    client
                        .post(format!("http://{gateway}/api/orders"))
                        .bearer_auth(&buyer.token)
                        .header("idempotency-key", &key)
                        .json(&json!({"payment_method": buyer.card}))
                },
                |status, _| status == 202,
            )
            .await;
        let id = order["id"].as_str().expect("an order id").to_owned();
        let ended = until_ended(client, front.pick(), buyer, &id).await;
        if ended["status"] == "confirmed" {
            front
                .until(
                    "the cart emptied after the confirmation",
                    |gateway| {
                        client
                            .get(format!("http://{gateway}/api/cart"))
                            .bearer_auth(&buyer.token)
                    },
                    |status, cart| {
                        status == 200 && cart["lines"].as_array().is_some_and(Vec::is_empty)
                    },
                )
                .await;
        }
        placed.push((key, id));
    }
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_under_load_lose_and_double_no_order() {
    let folder = tempfile::tempdir().expect("a folder");
    let config = folder.path().join("bazaar.toml");
    let nats = test_support::nats::NatsServer::start();
    let redis = test_support::redis::RedisServer::new();

    let logs = folder.path().join("logs");
    std::fs::create_dir_all(&logs).expect("a folder");
    let mut shop = Shop {
        replicas: BTreeMap::new(),
    };
    let mut add = |label: &str, service: &'static str, env: &[(&str, String)]| {
        let replica = Replica::new(label, service, &config, &logs, env);
        let address = replica.url();
        shop.replicas.insert(label.to_owned(), replica);
        address
    };
    let identity = add("identity", "identity", &[]);
    let catalog = add("catalog", "catalog", &[]);
    let inventory = add("inventory", "inventory", &[]);
    let payments_1 = add("payments-1", "payments", &[]);
    let payments_2 = add("payments-2", "payments", &[]);
    let cart = add("cart", "cart", &[]);
    // Each orders replica asks its own payments replica for card details.
    let orders_1 = add(
        "orders-1",
        "orders",
        &[("BAZAAR__ORDERS__PAYMENTS_URL", payments_1.clone())],
    );
    let orders_2 = add(
        "orders-2",
        "orders",
        &[("BAZAAR__ORDERS__PAYMENTS_URL", payments_2.clone())],
    );
    let notifications = add("notifications", "notifications", &[]);
    add("gateway-1", "gateway", &[]);
    add("gateway-2", "gateway", &[]);
    // Every process reads the same file; only the listen address (and orders' payments
    // replica) differs, set through the environment.
    let mut databases = Vec::new();
    let mut toml = format!(
        "data_dir = {:?}\n[log]\nfilter = \"warn\"\n[auth]\njwks_url = \"{identity}/.well-known/jwks.json\"\n",
        folder.path().join("data")
    );
    toml.push_str(&format!(
        "[bus]\nkind = \"jetstream\"\nurl = {:?}\nstream = \"REPLICAS\"\n",
        nats.url()
    ));
    for service in [
        "identity",
        "catalog",
        "inventory",
        "payments",
        "cart",
        "orders",
        "notifications",
    ] {
        let database = test_support::TestDatabase::new(test_support::Engine::Postgres).await;
        toml.push_str(&format!(
            "[{service}]\ndatabase_url = {:?}\n",
            database.url().expose()
        ));
        match service {
            "inventory" => toml.push_str("initial_stock = 1000\n"),
            "cart" => toml.push_str(&format!(
                "catalog_url = {catalog:?}\ninventory_url = {inventory:?}\n"
            )),
            "orders" => toml.push_str(&format!("cart_url = {cart:?}\n")),
            _ => {}
        }
        databases.push(database);
    }
    toml.push_str(&format!(
        "[cart.store]\nkind = \"redis\"\nurl = {:?}\nkey_prefix = {:?}\n",
        redis.url(),
        test_support::redis::unique_prefix()
    ));
    toml.push_str("[orders.deadlines]\nstep_ms = 1000\n");
    toml.push_str("[payments.fraud]\nvelocity_hold_after = 1000\n");
    toml.push_str(&format!(
        "[gateway.health]\ninterval_ms = 250\n\
         [gateway.rate_limit]\nanonymous_per_minute = 100000\ncustomer_per_minute = 100000\n\
         [gateway.rate_limit.store]\nkind = \"redis\"\nurl = {:?}\nkey_prefix = {:?}\n\
         [gateway.upstreams]\nidentity = {identity:?}\ncatalog = {catalog:?}\ninventory = {inventory:?}\n\
         cart = {cart:?}\nnotifications = {notifications:?}\n\
         payments = \"{payments_1}, {payments_2}\"\norders = \"{orders_1}, {orders_2}\"\n",
        redis.url(),
        test_support::redis::unique_prefix()
    ));
    std::fs::write(&config, toml).expect("a config file");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("a client");
    shop.start(&["identity", "catalog", "inventory"], &client)
        .await;
    // Two replicas of a service migrate the same database at once.
    shop.start(&["payments-1", "payments-2"], &client).await;
    shop.start(&["cart"], &client).await;
    shop.start(&["orders-1", "orders-2", "notifications"], &client)
        .await;
    shop.start(&["gateway-1", "gateway-2"], &client).await;

    let front = Front {
        gateways: ["gateway-1", "gateway-2"]
            .iter()
            .map(|label| shop.get(label).address.to_string())
            .collect(),
        next: AtomicUsize::new(0),
    };
    let mug = mug(&client, front.pick()).await;
    let mut buyers = Vec::new();
    for n in 0..BUYERS {
        buyers.push(sign_up(&client, front.pick(), &folder.path().join("data"), n).await);
    }

    // Shoppers check out while one replica of each kind dies and comes back, in turn.
    let chaos_done = AtomicBool::new(false);
    let checkouts = futures_util::future::join_all(
        buyers
            .iter()
            .enumerate()
            .map(|(n, buyer)| shop_for(&front, &client, buyer, n, &mug, &chaos_done)),
    );
    let chaos = async {
        let mut kills = 0;
        for label in [
            "orders-1",
            "payments-2",
            "gateway-1",
            "orders-2",
            "payments-1",
            "gateway-2",
        ]
        .iter()
        .cycle()
        .take(KILLS)
        {
            tokio::time::sleep(Duration::from_millis(400)).await;
            let replica = shop.get(label);
            replica.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
            replica.spawn();
            replica.ready(&client).await;
        }
        chaos_done.store(true, Ordering::SeqCst);
        kills
    };
    let (placed, kills) = tokio::join!(checkouts, chaos);
    assert_eq!(kills, KILLS);

    // No order was lost or doubled: one order per key, and each shopper's order list
    // holds exactly the orders they were told about.
    let gateway = front.pick().to_owned();
    for (n, (buyer, placed)) in buyers.iter().zip(&placed).enumerate() {
        let ids: BTreeSet<&String> = placed.iter().map(|(_, id)| id).collect();
        assert_eq!(
            ids.len(),
            placed.len(),
            "buyer {n}: one order per key: {placed:?}"
        );
        assert!(placed.len() >= CHECKOUTS_EACH);
        let (_, listed) = front
            .until(
                "listing orders",
                |gateway| {
                    client
                        .get(format!("http://{gateway}/api/orders?limit=100"))
                        .bearer_auth(&buyer.token)
                },
                |status, _| status == 200,
            )
            .await;
        let listed: BTreeSet<String> = listed["items"]
            .as_array()
            .expect("a page of orders")
            .iter()
            .map(|order| order["id"].as_str().expect("an id").to_owned())
            .collect();
        assert_eq!(
            listed,
            ids.iter().map(|id| (*id).clone()).collect::<BTreeSet<_>>(),
            "buyer {n}'s orders are exactly those placed"
        );
        for (_, id) in placed {
            let ended = until_ended(&client, &gateway, buyer, id).await;
            assert_ne!(
                ended["status"], "rejected",
                "a paying card was refused: {ended:#}"
            );
        }
    }
    verify_until_clean(&config, "after replicas were killed under load").await;
    drop(shop);
    drop(databases);
}
