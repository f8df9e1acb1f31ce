//! What the tests that run `bazaar` as processes share: shoppers, checkouts that may
//! hit a dying process, and the operator's audit.

#![allow(dead_code, reason = "each test binary uses its own subset")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// Every shopper's password.
pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// The statuses an order ends in.
pub(crate) const ENDS: [&str; 3] = ["confirmed", "rejected", "cancelled"];

/// A signed-up shopper with a saved card.
pub(crate) struct Buyer {
    /// The access token.
    pub(crate) token: String,
    /// The saved card's token.
    pub(crate) card: String,
}

/// A request that may fail because a process was just killed: the status and body, or
/// nothing if no answer came.
pub(crate) async fn call(request: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let response = request.send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Signs up buyer `n` through the gateway at `gateway` (confirming the address with the
/// link mailed into the shop's data folder `data_dir`) and saves a card that pays.
pub(crate) async fn sign_up(
    client: &reqwest::Client,
    gateway: &str,
    data_dir: &Path,
    n: usize,
) -> Buyer {
    let email = format!("buyer{n}@example.com");
    let url = |path: &str| format!("http://{gateway}{path}");
    let tokens = test_support::mail::sign_up(
        client,
        &format!("http://{gateway}"),
        &data_dir.join("mailbox"),
        &email,
        PASSWORD,
    )
    .await;
    let token = tokens["access_token"].as_str().expect("a token").to_owned();
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"});
    let card: Value = client
        .post(url("/api/payments/methods"))
        .bearer_auth(&token)
        .json(&card)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    Buyer {
        token,
        card: card["token"].as_str().expect("a card").to_owned(),
    }
}

/// The id of the enamel camp mug, the product every test buys.
pub(crate) async fn mug(client: &reqwest::Client, gateway: &str) -> String {
    let mug: Value = client
        .get(format!(
            "http://{gateway}/api/catalog/products/enamel-camp-mug"
        ))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    mug["id"].as_str().expect("an id").to_owned()
}

/// Starts every service in this process on port 0, in embedded mode with its data
/// under `folder`: the shop, the signal that stops it, and the gateway's address.
pub(crate) async fn shop_in_process(
    folder: &Path,
) -> (bazaar::shop::Shop, platform::shutdown::Shutdown, String) {
    let shutdown = platform::shutdown::Shutdown::new();
    let shop = bazaar::shop::Shop::start(
        &bazaar::Config::ephemeral(folder.to_owned()),
        &bazaar::ServiceName::ALL,
        shutdown.clone(),
    )
    .await
    .expect("the shop starts");
    let gateway = shop
        .address(bazaar::ServiceName::Gateway)
        .expect("a gateway")
        .to_string();
    (shop, shutdown, gateway)
}

/// Buys one mug for `buyer` through the gateway, sending `headers` with the order, and
/// waits until the order reaches an end; its last state.
pub(crate) async fn checkout(
    client: &reqwest::Client,
    gateway: &str,
    buyer: &Buyer,
    headers: &[(&str, &str)],
) -> Value {
    let mug = mug(client, gateway).await;
    let added = client
        .post(format!("http://{gateway}/api/cart/items"))
        .bearer_auth(&buyer.token)
        .json(&json!({"product_id": mug, "quantity": 1}))
        .send()
        .await
        .expect("answers");
    assert!(added.status().is_success(), "{}", added.status());
    let mut order = client
        .post(format!("http://{gateway}/api/orders"))
        .bearer_auth(&buyer.token)
        .json(&json!({"payment_method": buyer.card}));
    for (name, value) in headers {
        order = order.header(*name, *value);
    }
    let placed: Value = order
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    let id = placed["id"].as_str().expect("an order id");
    until_ended(client, gateway, buyer, id).await
}

/// Polls order `id` until it reaches an end (for up to 30 s); its last state.
pub(crate) async fn until_ended(
    client: &reqwest::Client,
    gateway: &str,
    buyer: &Buyer,
    id: &str,
) -> Value {
    let path = format!("http://{gateway}/api/orders/{id}");
    let ended = format!("order {id} ending");
    test_support::eventually(&ended, Duration::from_secs(30), || async {
        match call(client.get(&path).bearer_auth(&buyer.token)).await {
            Some((200, order)) if ENDS.iter().any(|end| order["status"] == *end) => Ok(order),
            Some((_, answer)) => Err(format!("{answer:#}")),
            None => Err("no answer".to_owned()),
        }
    })
    .await
}

/// Runs `bazaar verify` over `config` until it reports clean. Work the shop still has
/// in flight (a confirmation email whose outbox claim a killed process held, say) may
/// take a claim's lease to settle, so a dirty report is retried for up to 40 s; an
/// audit that cannot run at all fails at once.
pub(crate) async fn verify_until_clean(config: &Path, context: &str) {
    let mut report = String::new();
    for _ in 0..400 {
        let verify = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args([
                "--config",
                config.to_str().expect("UTF-8"),
                "verify",
                "--email-grace-secs",
                "0",
            ])
            .output()
            .expect("bazaar verify runs");
        report = String::from_utf8_lossy(&verify.stdout).into_owned();
        if verify.status.success() {
            return;
        }
        assert_eq!(
            verify.status.code(),
            Some(1),
            "{report}{}",
            String::from_utf8_lossy(&verify.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the audit never came back clean ({context}):\n{report}");
}

/// One `bazaar serve <service>` process, restartable on the same address.
pub(crate) struct Replica {
    label: String,
    service: &'static str,
    pub(crate) address: SocketAddr,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    pub(crate) fn new(
        label: &str,
        service: &'static str,
        config: &Path,
        logs: &Path,
        env: &[(&str, String)],
    ) -> Self {
        let address = free_address();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect();
        env.push((
            format!("BAZAAR__{}__LISTEN", service.to_uppercase()),
            address.to_string(),
        ));
        Self {
            label: label.to_owned(),
            service,
            address,
            config: config.to_owned(),
            env,
            log: logs.join(format!("{label}.log")),
            child: None,
        }
    }

    pub(crate) fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_bazaar"))
            .args([
                "--config",
                self.config.to_str().expect("UTF-8"),
                "serve",
                self.service,
            ])
            .envs(
                self.env
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str())),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bazaar starts");
        self.child = Some(child);
    }

    /// Waits until the process answers ready, failing loudly if it exits or takes more
    /// than a minute.
    pub(crate) async fn ready(&mut self, client: &reqwest::Client) {
        let url = format!("http://{}/health/ready", self.address);
        for _ in 0..600 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("{} exited with {status}:\n{}", self.label, self.log_tail());
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} never became ready:\n{}", self.label, self.log_tail());
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("killed");
            child.wait().expect("reaped");
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("bound")
}

/// The workspace's `target/` folder.
pub(crate) fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The npm packages the browser tests use: Playwright's driver for Debian's Chromium,
/// and axe-core for accessibility audits.
const BROWSER_PACKAGES: [(&str, &str); 2] = [("playwright-core", "1"), ("axe-core", "4")];

/// The folder holding `node_modules` with [`BROWSER_PACKAGES`], installed under
/// `target/browser` on first use (together: npm removes packages a later `--no-save`
/// install does not name).
pub(crate) fn playwright() -> PathBuf {
    let folder = target_dir().join("browser");
    let modules = folder.join("node_modules");
    if BROWSER_PACKAGES
        .iter()
        .any(|(package, _)| !modules.join(package).is_dir())
    {
        std::fs::create_dir_all(&folder).expect("a folder under target");
        let installed = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&folder)
            .args(
                BROWSER_PACKAGES
                    .iter()
                    .map(|(package, version)| format!("{package}@{version}")),
            )
            .status()
            .expect("npm runs (install Node.js and npm)");
        assert!(
            installed.success(),
            "npm could not install {BROWSER_PACKAGES:?}"
        );
    }
    modules
}

/// Debian's Chromium.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The path of Debian's Chromium, which must be installed.
pub(crate) fn chromium() -> &'static str {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "no Chromium at {CHROMIUM}: apt-get install chromium (cargo xtask ci does)"
    );
    CHROMIUM
}

/// Makes `root@example.com` (password [`PASSWORD`]) an admin of the shop whose data is
/// in `folder`, through identity's own use case, as `bazaar admin create-user` does.
pub(crate) async fn create_admin(folder: &Path) {
    let resolved = bazaar::Config::ephemeral(folder.to_owned()).resolved();
    let identity = identity::context(&resolved.identity, &resolved.auth)
        .await
        .expect("identity's database");
    identity::ops::create_user(
        &identity,
        "root@example.com",
        PASSWORD,
        vec![
            contracts::identity::Role::Customer,
            contracts::identity::Role::Admin,
        ],
    )
    .await
    .expect("an admin");
}

/// Runs `tests/browser/<script>` with `args` in Node, driving Debian's Chromium with
/// Playwright, beside the shop this runtime keeps serving: the last line of JSON it
/// printed (its report), or everything it printed if it failed.
pub(crate) async fn browse(script: &str, args: Vec<String>) -> Result<Value, String> {
    let modules = playwright();
    let chromium = chromium();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(&script)
            .args(&args)
            .env("NODE_PATH", &modules)
            .env("CHROMIUM", chromium)
            .output()
            .expect("node runs (install Node.js)")
    })
    .await
    .expect("the browser run finished");
    let printed = || {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    if !output.status.success() {
        return Err(printed());
    }
    output
        .stdout
        .split(|byte| *byte == b'\n')
        .rfind(|line| line.starts_with(b"{"))
        .and_then(|line| serde_json::from_slice(line).ok())
        .ok_or_else(printed)
}
