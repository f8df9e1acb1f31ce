//! Operator commands: they open a service's database directly, with the same
//! configuration the service runs with, and call its use cases.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::process::{Command, Stdio};

use anyhow::Context as _;
use contracts::identity::Role;
use identity::ops::Error;

use crate::Config;

/// Creates an account with `customer` and `roles`, reading its password from standard
/// input.
pub fn create_user(config: &Config, email: &str, mut roles: Vec<Role>) -> anyhow::Result<()> {
    config
        .clone()
        .ensure_shop_exists(&[crate::ServiceName::Identity])?;
    let password = read_password(email)?;
    roles.insert(0, Role::Customer);
    roles.sort();
    roles.dedup();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let identity = identity::context(&config.identity, &config.auth).await?;
            match identity::ops::create_user(&identity, email, &password, roles.clone()).await {
                Ok(user) => {
                    let roles: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
                    eprintln!(
                        "created {} ({}) with roles {}",
                        user.email,
                        user.id,
                        roles.join(", ")
                    );
                    Ok(())
                }
                Err(Error::Invalid(fields)) => {
                    let reasons: Vec<String> = fields
                        .iter()
                        .map(|invalid| format!("{} {}", invalid.field, invalid.message))
                        .collect();
                    anyhow::bail!("{}", reasons.join("; "))
                }
                Err(error) => Err(error.into()),
            }
        })
}

/// The password: typed at a terminal without echo (twice), or the first line of a pipe.
fn read_password(email: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = prompt(&format!("Password for {email}: "))?;
    let second = prompt("Again: ")?;
    anyhow::ensure!(first == second, "the passwords differ");
    Ok(first)
}

fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    set_echo(false);
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    set_echo(true);
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turns terminal echo on or off with `stty`, which every Unix terminal has.
fn set_echo(on: bool) {
    let _ = Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(Stdio::inherit())
        .status();
}
