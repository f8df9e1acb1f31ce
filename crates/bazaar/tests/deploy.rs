//! The deployment files describe exactly the binary's services: a service added to
//! `ServiceName` but not to compose or Kubernetes (or the reverse) fails here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use bazaar::ServiceName;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn services() -> BTreeSet<String> {
    ServiceName::ALL
        .iter()
        .map(|service| service.as_str().to_owned())
        .collect()
}

/// The services compose runs from the Bazaar image: each `command: ["serve", "<name>"]`.
#[test]
fn compose_runs_every_service_and_nothing_else() {
    let compose = std::fs::read_to_string(root().join("deploy/compose.yaml")).expect("compose");
    let served: BTreeSet<String> = compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix(r#"command: ["serve", ""#))
        .map(|rest| rest.trim_end_matches(r#""]"#).to_owned())
        .collect();
    assert_eq!(served, services());
}

/// The Deployments `kubectl kustomize` renders for an overlay.
fn deployments(overlay: &str) -> BTreeSet<String> {
    let output = Command::new("kubectl")
        .args(["kustomize", &format!("deploy/k8s/overlays/{overlay}")])
        .current_dir(root())
        .output()
        .expect("kubectl runs (it renders the Kubernetes manifests; install it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered = String::from_utf8(output.stdout).expect("UTF-8");
    rendered
        .split("\n---\n")
        .filter(|document| document.lines().any(|line| line == "kind: Deployment"))
        .filter_map(|document| {
            let metadata = document.split("\nmetadata:\n").nth(1)?;
            metadata
                .lines()
                .take_while(|line| line.starts_with("  "))
                .find_map(|line| line.strip_prefix("  name: "))
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn kubernetes_deploys_every_service_and_nothing_else() {
    for overlay in ["local", "production"] {
        assert_eq!(deployments(overlay), services(), "overlay {overlay}");
    }
}
