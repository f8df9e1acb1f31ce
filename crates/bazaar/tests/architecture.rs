//! Architecture rules, checked over `cargo metadata`.

use std::collections::BTreeSet;
use std::process::Command;

use bazaar::ServiceName;
use serde_json::Value;

fn metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

/// **Architecture Invariant:** services never depend on each other; they talk over the
/// network through `contracts`. Only the binary links them together. (A service's tests
/// may start another service to talk to, over the network: dev-dependencies are
/// allowed.)
#[test]
fn no_service_crate_depends_on_another_service_crate() {
    let metadata = metadata();
    let services: BTreeSet<&str> = ServiceName::ALL
        .iter()
        .map(|service| service.as_str())
        .collect();
    let packages = metadata["packages"].as_array().expect("packages");
    let mut found = BTreeSet::new();
    for package in packages {
        let name = package["name"].as_str().expect("a name");
        if !services.contains(name) {
            continue;
        }
        found.insert(name);
        let dependencies = package["dependencies"].as_array().expect("dependencies");
        for dependency in dependencies
            .iter()
            .filter(|dependency| dependency["kind"] != "dev")
        {
            let dependency = dependency["name"].as_str().expect("a name");
            assert!(
                !services.contains(dependency),
                "service {name} depends on service {dependency}; talk over the network instead"
            );
        }
    }
    assert_eq!(
        found, services,
        "every service in the topology is a crate of its own"
    );
}

/// The chassis and contracts stay below every service: they depend on no service.
#[test]
fn the_shared_crates_depend_on_no_service() {
    let metadata = metadata();
    let services: BTreeSet<&str> = ServiceName::ALL
        .iter()
        .map(|service| service.as_str())
        .collect();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("a name");
        if !["platform", "contracts"].contains(&name) {
            continue;
        }
        for dependency in package["dependencies"].as_array().expect("dependencies") {
            let dependency = dependency["name"].as_str().expect("a name");
            assert!(
                !services.contains(dependency),
                "{name} depends on service {dependency}"
            );
        }
    }
}

/// The load generator stands outside the services' dependency graph: it speaks to a
/// shop only over HTTP, so it depends on no service and not on the chassis.
#[test]
fn the_load_generator_depends_on_no_bazaar_crate() {
    let metadata = metadata();
    let own: BTreeSet<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|package| package["name"].as_str())
        .filter(|name| *name != "load")
        .collect();
    let load = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|package| package["name"] == "load")
        .expect("the load crate");
    for dependency in load["dependencies"].as_array().expect("dependencies") {
        let dependency = dependency["name"].as_str().expect("a name");
        assert!(!own.contains(dependency), "load depends on {dependency}");
    }
}
