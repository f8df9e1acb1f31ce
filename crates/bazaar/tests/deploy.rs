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

/// What `kubectl kustomize` renders for `kustomization` (a folder of deploy/k8s).
fn rendered(kustomization: &str) -> String {
    let output = Command::new("kubectl")
        .args(["kustomize", &format!("deploy/k8s/{kustomization}")])
        .current_dir(root())
        .output()
        .expect("kubectl runs (it renders the Kubernetes manifests; install it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The Deployment documents of a rendering.
fn deployment_documents(rendered: &str) -> impl Iterator<Item = &str> {
    rendered
        .split("\n---\n")
        .filter(|document| document.lines().any(|line| line == "kind: Deployment"))
}

/// The Deployments `kubectl kustomize` renders for an overlay.
fn deployments(overlay: &str) -> BTreeSet<String> {
    deployment_documents(&rendered(&format!("overlays/{overlay}")))
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

/// The file `key` of a ConfigMap manifest: the indented block under it.
fn file_in(manifest: &str, key: &str) -> String {
    let text = std::fs::read_to_string(root().join(manifest)).expect("the manifest");
    let mut lines = text
        .lines()
        .skip_while(|line| line.trim() != format!("{key}: |"));
    lines
        .next()
        .unwrap_or_else(|| panic!("no key {key} in {manifest}"));
    lines
        .take_while(|line| line.starts_with("    ") || line.trim().is_empty())
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The route tables shipped for Kubernetes are ones the gateway accepts, and the
/// canary's sends traffic to the canary's Service.
#[test]
fn the_shipped_route_tables_load() {
    for manifest in [
        "deploy/k8s/base/gateway/routes.yaml",
        "deploy/k8s/canary/routes.yaml",
    ] {
        let table: gateway::RouteTableConfig = toml::from_str(&file_in(manifest, "routes.toml"))
            .unwrap_or_else(|error| panic!("{manifest}: {error}"));
        let config = gateway::Config {
            upstreams: [(
                "orders".to_owned(),
                gateway::Upstream::at(([127, 0, 0, 1], 8107).into()),
            )]
            .into(),
            ..gateway::Config::default()
        };
        gateway::table::Registry::default()
            .compile(&config, Some(&table))
            .unwrap_or_else(|error| panic!("{manifest}: {error}"));
    }
    let canary: gateway::RouteTableConfig =
        toml::from_str(&file_in("deploy/k8s/canary/routes.yaml", "routes.toml")).expect("valid");
    let orders = &canary.upstreams["orders"].instances;
    assert!(orders.iter().any(|instance| instance.track == "canary"
        && instance.url.to_string() == "http://orders-canary:8107"));
}

/// In Kubernetes the flags come from the ConfigMap bazaar-flags, which holds the flags
/// the binary knows, and which every pod, the canary's too, mounts where the
/// configuration says the file is.
#[test]
fn every_pod_reads_the_shipped_flags_from_one_config_map() {
    let shipped: serde_json::Value =
        serde_json::from_str(bazaar::flags::DEFAULT_FLAGS).expect("JSON");
    let in_cluster: serde_json::Value =
        serde_json::from_str(&file_in("deploy/k8s/base/flags.yaml", "flags.json"))
            .expect("the ConfigMap holds JSON");
    assert_eq!(
        in_cluster, shipped,
        "deploy/k8s/base/flags.yaml and crates/bazaar/flags.json differ"
    );
    let config = std::fs::read_to_string(root().join("deploy/k8s/base/configmap.yaml"))
        .expect("the configuration");
    assert!(config.contains("BAZAAR__FLAGS__FILE: /etc/bazaar/flags/flags.json"));
    for kustomization in ["overlays/local", "overlays/production", "canary"] {
        let rendered = rendered(kustomization);
        for document in deployment_documents(&rendered) {
            let lines: Vec<&str> = document
                .lines()
                .map(|line| line.trim().trim_start_matches("- "))
                .collect();
            let volume = lines
                .windows(2)
                .any(|pair| pair == ["configMap:", "name: bazaar-flags"]);
            assert!(
                volume && lines.contains(&"mountPath: /etc/bazaar/flags"),
                "a Deployment of {kustomization} does not mount bazaar-flags:\n{document}"
            );
        }
    }
}
