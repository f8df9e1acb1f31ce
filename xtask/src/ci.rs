//! The CI pipeline: the one command a developer and CI both run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::Context as _;

use crate::{run, workspace_root};

/// Format check, lints with warnings denied, the Kubernetes manifests against the
/// API's schemas, the Prometheus configuration, rules and rule tests, then every test
/// of every crate.
pub(crate) fn pipeline() -> anyhow::Result<()> {
    install_missing_servers();
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    validate_manifests()?;
    check_observability()?;
    run(
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let tests = test_all();
    // The tests may have started a PostgreSQL server of their own; leave nothing behind.
    test_support::stop_throwaway_postgres();
    tests
}

/// The tests need PostgreSQL's binaries, nats-server and redis-server on the machine (they start
/// their own servers from them when none runs), and Chromium and Node.js for the
/// console's browser test. Whatever cannot be installed is only reported: the tests
/// then fail loudly on it, saying what they missed.
fn install_missing_servers() {
    let servers: [(&str, &[&str]); 6] = [
        ("chromium", &["/usr/bin/chromium"]),
        ("nodejs", &["/usr/bin/node", "/usr/local/bin/node"]),
        ("npm", &["/usr/bin/npm", "/usr/local/bin/npm"]),
        (
            "postgresql",
            &[
                "/usr/local/bin/initdb",
                "/usr/bin/initdb",
                "/usr/lib/postgresql",
            ],
        ),
        (
            "nats-server",
            &[
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
                "/usr/local/bin/nats-server",
            ],
        ),
        (
            "redis-server",
            &[
                "/usr/bin/redis-server",
                "/usr/local/bin/redis-server",
                "/usr/sbin/redis-server",
            ],
        ),
    ];
    if let Err(error) = install_missing(&servers) {
        eprintln!("xtask: the tests will fail: {error:#}");
    }
}

/// Installs with apt-get each Debian package of `wanted` whose program is on none of
/// the paths given with it. Only root on a Debian machine can (a fresh CI machine is
/// one); anywhere else the error names what to install.
pub(crate) fn install_missing(wanted: &[(&str, &[&str])]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, paths)| find_installed(paths).is_none())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::ensure!(
        test_support::is_root() && std::path::Path::new("/usr/bin/apt-get").exists(),
        "missing: {}; install them (Debian: apt-get install {}), or run this as root to \
         have them installed",
        missing.join(" and "),
        missing.join(" ")
    );
    let _ = run("apt-get", &["update", "-qq"]);
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    run("apt-get", &args).with_context(|| format!("installing {}", missing.join(" and ")))
}

/// The first of `paths` that exists: where a package put its program, if it is installed.
pub(crate) fn find_installed<'a>(paths: &[&'a str]) -> Option<&'a str> {
    paths
        .iter()
        .copied()
        .find(|path| std::path::Path::new(path).exists())
}

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.32.0";

/// Renders every kustomize overlay (and the canary) with `kubectl kustomize` and checks
/// each object against the Kubernetes schemas with `kubernetes-validate --strict`
/// (unknown fields are errors), installed from PyPI into a virtualenv under `target/`.
fn validate_manifests() -> anyhow::Result<()> {
    let root = workspace_root();
    let venv = root.join("target/kubernetes-validate");
    let validator = venv.join("bin/kubernetes-validate");
    if !validator.exists() {
        run("python3", &["-m", "venv", &venv.to_string_lossy()])?;
        let pip = venv.join("bin/pip");
        run(
            &pip.to_string_lossy(),
            &["install", "--quiet", "kubernetes-validate"],
        )?;
    }
    let rendered = root.join("target/manifests");
    std::fs::create_dir_all(&rendered)?;
    let mut files = Vec::new();
    for kustomization in ["overlays/local", "overlays/production", "canary"] {
        let output = Command::new("kubectl")
            .args(["kustomize", &format!("deploy/k8s/{kustomization}")])
            .current_dir(&root)
            .output()
            .context("running kubectl kustomize (install kubectl)")?;
        anyhow::ensure!(
            output.status.success(),
            "kubectl kustomize deploy/k8s/{kustomization} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let file = rendered.join(format!("{}.yaml", kustomization.replace('/', "-")));
        std::fs::write(&file, output.stdout)?;
        files.push(file.to_string_lossy().into_owned());
    }
    // Applied on their own with `kubectl apply -f` during a release.
    files.push(
        root.join("deploy/k8s/canary/routes.yaml")
            .to_string_lossy()
            .into_owned(),
    );
    let mut args = vec!["-k", KUBERNETES_VERSION, "--strict"];
    args.extend(files.iter().map(String::as_str));
    run(&validator.to_string_lossy(), &args)
}

/// Where promtool is once installed: Debian's package `prometheus` puts it in /usr/bin.
const PROMTOOL: &[&str] = &["/usr/bin/promtool", "/usr/local/bin/promtool"];

/// Checks `deploy/observability` with promtool (Debian package `prometheus`, installed
/// when missing): both Prometheus configurations with the rule files they load, every
/// rule file in `rules/`, and the rules' unit tests in `tests/`.
fn check_observability() -> anyhow::Result<()> {
    /// The `.yaml` files of `dir` (relative to the workspace root), sorted, as paths
    /// relative to the root: the shell's `dir/*.yaml`.
    fn yaml_files(dir: &str) -> anyhow::Result<Vec<String>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(workspace_root().join(dir))
            .with_context(|| format!("reading {dir}"))?
        {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".yaml") {
                files.push(format!("{dir}/{name}"));
            }
        }
        files.sort();
        anyhow::ensure!(!files.is_empty(), "no .yaml file in {dir}");
        Ok(files)
    }

    let wanted: [(&str, &[&str]); 1] = [("prometheus", PROMTOOL)];
    install_missing(&wanted)?;
    let promtool = find_installed(PROMTOOL).context("promtool is not installed")?;
    let dir = "deploy/observability";

    let compose = format!("{dir}/prometheus.yaml");
    run(promtool, &["check", "config", &compose])?;

    // Debian builds promtool without Kubernetes service discovery: its `check config`
    // refuses `kubernetes_sd_configs` as an unknown field, and that alone is forgiven
    // (an upstream promtool checks the whole file). The rule files it loads are the ones
    // checked below.
    let kubernetes = format!("{dir}/prometheus-kubernetes.yaml");
    eprintln!("$ {promtool} check config {kubernetes}");
    let output = Command::new(promtool)
        .args(["check", "config", &kubernetes])
        .current_dir(workspace_root())
        .output()
        .context("running promtool")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("{said}");
    if !output.status.success() {
        let unsupported = "field kubernetes_sd_configs not found in type config.ScrapeConfig";
        let only_unsupported = said.contains(unsupported)
            && said
                .lines()
                .filter(|line| line.trim_start().starts_with("line "))
                .all(|line| line.contains(unsupported));
        anyhow::ensure!(
            only_unsupported,
            "`{promtool} check config {kubernetes}` failed with {}",
            output.status
        );
        eprintln!(
            "xtask: {kubernetes}: this promtool has no Kubernetes service discovery \
             (Debian's is built without it), so only its rule files are checked"
        );
    }

    let rules = yaml_files(&format!("{dir}/rules"))?;
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    run(promtool, &args)?;

    let tests = yaml_files(&format!("{dir}/tests"))?;
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    run(promtool, &args)
}

/// Runs every test, echoing the output, and closes with one line totalling all the test
/// binaries, so the outcome is not buried in per-binary summaries.
fn test_all() -> anyhow::Result<()> {
    let args = ["test", "--workspace", "--locked", "--no-fail-fast"];
    eprintln!("$ cargo {}", args.join(" "));
    let mut child = Command::new("cargo")
        .args(args)
        .current_dir(workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut passed, mut failed) = (0_u64, 0_u64);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(counts) = line.strip_prefix("test result: ") {
            passed += count(counts, " passed");
            failed += count(counts, " failed");
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed");
    anyhow::ensure!(status.success() && failed == 0, "tests failed ({status})");
    anyhow::ensure!(passed > 0, "no test ran");
    Ok(())
}

/// The number before `label` in `ok. 36 passed; 0 failed; …`.
fn count(counts: &str, label: &str) -> u64 {
    counts
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label.trim_start())
                .map(str::trim)
        })
        .and_then(|number| number.parse().ok())
        .unwrap_or(0)
}
