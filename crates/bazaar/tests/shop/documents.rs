//! The seven API documents say what their services do: Schemathesis (from PyPI, in
//! `target/schemathesis`) generates requests from each document, valid and invalid,
//! sends them through the gateway as an admin, and checks every answer against the
//! document, with every check on. `schemathesis.toml` at the repository's root holds
//! the few requests no schema can tell apart from valid ones, each with its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::RunningShop;
use bazaar::Config;

/// The version the findings were brought to zero with.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// Examples per operation and phase, and the seed: the same requests every run.
const EXAMPLES: &str = "20";
const SEED: &str = "7";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `st`, installed in a virtual environment under `target/schemathesis` on first use.
fn schemathesis() -> PathBuf {
    let venv = repository().join("target/schemathesis");
    let st = venv.join("bin/st");
    if !st.exists() {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs (install python3 and python3-venv)");
        assert!(created.success(), "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", SCHEMATHESIS])
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip could not install {SCHEMATHESIS}");
    }
    st
}

/// Runs Schemathesis on `service`'s document through the gateway at `gateway`, from
/// `folder` (where it keeps its cache); its output if it found anything.
fn check(st: &Path, folder: &Path, gateway: &str, service: &str, token: &str) -> Option<String> {
    let base = format!("{gateway}/api/{service}");
    let output = Command::new(st)
        .current_dir(folder)
        .arg("--config-file")
        .arg(repository().join("schemathesis.toml"))
        .args(["run", &format!("{base}/openapi.json"), "--url", &base])
        .args(["--max-examples", EXAMPLES, "--seed", SEED])
        .arg("--generation-deterministic")
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .env("NO_COLOR", "1")
        .output()
        .expect("st runs");
    (!output.status.success()).then(|| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_document_says_what_its_service_does() {
    let st = tokio::task::spawn_blocking(schemathesis)
        .await
        .expect("installed");
    let data = tempfile::tempdir().expect("a folder");
    let mut config = Config::ephemeral(data.path().to_owned());
    // Thousands of requests from one address: the limit would answer most of them.
    config.gateway.rate_limit.enabled = false;
    let shop = RunningShop::start_with(config).await;
    let token = shop.admin().await;
    let gateway = shop.url("");
    let cache = tempfile::tempdir().expect("a folder");
    let mut findings = Vec::new();
    for service in [
        "identity",
        "catalog",
        "inventory",
        "cart",
        "payments",
        "orders",
        "notifications",
    ] {
        let (st, folder, gateway, token) = (
            st.clone(),
            cache.path().to_owned(),
            gateway.clone(),
            token.clone(),
        );
        let found =
            tokio::task::spawn_blocking(move || check(&st, &folder, &gateway, service, &token))
                .await
                .expect("ran");
        if let Some(report) = found {
            findings.push(format!("== {service}\n{report}"));
        }
    }
    shop.stop().await;
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}
