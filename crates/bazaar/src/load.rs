//! `bazaar load`: the load generator ([`load`]) pointed at this configuration's shop,
//! with customers to walk the journeys that need an account.
//!
//! Customers come from a file of `email password` lines (`--accounts`), or are made in
//! identity's database as `bazaar admin create-user` makes an account (`--customers N`:
//! `shopper-<n>@load.bazaar.test`, confirmed, with one password; an account made by an
//! earlier run is used again). The second needs the shop's own configuration, so it
//! runs where the shop's databases are.

use std::path::Path;

use anyhow::Context as _;
use contracts::identity::Role;
use load::{Account, Settings};

use crate::Config;

/// The password of the customers `--customers` makes.
pub const CUSTOMER_PASSWORD: &str = "a load generator's own passphrase";

/// The customers' accounts: read from `file`, or `count` made in identity's database.
pub fn accounts(
    config: &Config,
    file: Option<&Path>,
    count: usize,
) -> anyhow::Result<Vec<Account>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the accounts file {}", file.display()))?;
        return text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (email, password) = line
                    .split_once(char::is_whitespace)
                    .with_context(|| format!("{line:?} is not `email password`"))?;
                Ok(Account {
                    email: email.to_owned(),
                    password: password.trim().to_owned(),
                })
            })
            .collect();
    }
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut config = config.clone().resolved();
    config.ensure_shop_exists(&[crate::ServiceName::Identity])?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let identity = identity::context(&config.identity, &config.auth).await?;
            let mut accounts = Vec::with_capacity(count);
            for n in 1..=count {
                let email = format!("shopper-{n}@load.bazaar.test");
                match identity::ops::create_user(
                    &identity,
                    &email,
                    CUSTOMER_PASSWORD,
                    vec![Role::Customer],
                )
                .await
                {
                    Ok(_) | Err(identity::ops::Error::EmailTaken) => {}
                    Err(error) => {
                        return Err(anyhow::Error::new(error).context(format!("making {email}")));
                    }
                }
                accounts.push(Account {
                    email,
                    password: CUSTOMER_PASSWORD.to_owned(),
                });
            }
            Ok(accounts)
        })
}

/// The shop's public URL by this configuration: its gateway's address, a wildcard one
/// read as this machine.
pub fn default_url(config: &Config) -> String {
    let mut address = config.gateway.listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{address}")
}

/// Runs `settings`, prints the table, writes the JSON to `json` when given; fails if
/// the run could not start.
pub fn run(settings: Settings, json: Option<&Path>) -> anyhow::Result<String> {
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(load::run(settings))?;
    if let Some(json) = json {
        std::fs::write(json, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
    }
    Ok(report.to_string())
}
