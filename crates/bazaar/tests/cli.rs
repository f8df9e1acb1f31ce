//! The `bazaar` command line: configuration layering, redaction and errors.

use std::process::Command;

fn bazaar(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    bazaar_with_input(args, env, "")
}

fn bazaar_with_input(args: &[&str], env: &[(&str, &str)], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
    command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("bazaar runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("written");
    child.wait_with_output().expect("bazaar exits")
}

/// The shop's identity database in `data`, as the first `bazaar up` there makes it.
fn a_shop_in(data: &std::path::Path) {
    let config = bazaar::Config {
        data_dir: data.to_owned(),
        ..bazaar::Config::default()
    }
    .resolved();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(identity::context(&config.identity, &config.auth))
        .expect("identity's database");
}

#[test]
fn the_first_admin_is_created_with_a_password_from_stdin() {
    let data = tempfile::tempdir().expect("a folder");
    a_shop_in(data.path());
    let dir = data.path().to_str().expect("UTF-8 path");
    let env = [("BAZAAR__DATA_DIR", dir)];
    let args = [
        "admin",
        "create-user",
        "--email",
        "root@example.com",
        "--role",
        "admin",
    ];
    let created = bazaar_with_input(&args, &env, "correct horse battery staple\n");
    assert!(created.status.success(), "{created:?}");
    let said = String::from_utf8(created.stderr).expect("UTF-8");
    assert!(
        said.contains("root@example.com") && said.contains("admin"),
        "{said}"
    );
    assert!(
        !said.contains("correct horse"),
        "the password was echoed: {said}"
    );

    let again = bazaar_with_input(&args, &env, "correct horse battery staple\n");
    assert!(!again.status.success());
    assert!(
        String::from_utf8(again.stderr)
            .expect("UTF-8")
            .contains("already exists")
    );
    let weak = bazaar_with_input(
        &["admin", "create-user", "--email", "other@example.com"],
        &env,
        "password\n",
    );
    assert!(!weak.status.success());
    assert!(
        String::from_utf8(weak.stderr)
            .expect("UTF-8")
            .contains("password")
    );
    let bad_role = bazaar(
        &[
            "admin",
            "create-user",
            "--email",
            "x@example.com",
            "--role",
            "god",
        ],
        &env,
    );
    assert_eq!(bad_role.status.code(), Some(2));
}

/// Run where no shop keeps its data, the operator commands refuse and name the folder,
/// rather than creating empty databases and reporting success about a shop nobody runs.
#[test]
fn operator_commands_refuse_a_folder_with_no_shop() {
    let data = tempfile::tempdir().expect("a folder");
    let dir = data.path().to_str().expect("UTF-8 path");
    let env = [("BAZAAR__DATA_DIR", dir)];
    let created = bazaar_with_input(
        &["admin", "create-user", "--email", "root@example.com"],
        &env,
        "correct horse battery staple\n",
    );
    assert!(!created.status.success());
    let said = String::from_utf8(created.stderr).expect("UTF-8");
    assert!(said.contains("no shop in") && said.contains(dir), "{said}");
    let verified = bazaar(&["verify"], &env);
    assert_eq!(verified.status.code(), Some(3));
    let said = String::from_utf8(verified.stderr).expect("UTF-8");
    assert!(said.contains("no shop in") && said.contains(dir), "{said}");
    let left: Vec<_> = std::fs::read_dir(data.path()).expect("readable").collect();
    assert!(left.is_empty(), "files were created: {left:?}");
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let output = bazaar(
        &["config"],
        &[
            (
                "BAZAAR__CATALOG__DATABASE_URL",
                "postgres://shop:hunter2@db:5432/catalog",
            ),
            ("BAZAAR__GATEWAY__LISTEN", "0.0.0.0:9090"),
            ("BAZAAR__BUS__KIND", "jetstream"),
            ("BAZAAR__BUS__URL", "nats://bus:hunter3@nats:4222"),
            ("BAZAAR__BUS__STREAM", "BAZAAR"),
            ("BAZAAR__GATEWAY__RATE_LIMIT__STORE__KIND", "redis"),
            (
                "BAZAAR__GATEWAY__RATE_LIMIT__STORE__URL",
                "redis://:hunter4@cache:6379/0",
            ),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SERVICE_NAME", "shop-eu"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        printed.contains("postgres://shop:***@db:5432/catalog"),
        "{printed}"
    );
    assert!(printed.contains("nats://bus:***@nats:4222"), "{printed}");
    assert!(printed.contains("redis://:***@cache:6379/0"), "{printed}");
    for password in ["hunter2", "hunter3", "hunter4"] {
        assert!(!printed.contains(password), "{printed}");
    }
    assert!(printed.contains("listen = \"0.0.0.0:9090\""), "{printed}");
    // The standard OpenTelemetry variables are honoured.
    assert!(
        printed.contains("otlp_endpoint = \"http://collector:4317\""),
        "{printed}"
    );
    assert!(printed.contains("service_name = \"shop-eu\""), "{printed}");
    // Defaults are filled in: the gateway knows where the catalog is.
    assert!(
        printed.contains("catalog = \"http://127.0.0.1:8101\""),
        "{printed}"
    );
}

#[test]
fn a_file_is_layered_under_the_environment() {
    let folder = tempfile::tempdir().expect("a folder");
    let file = folder.path().join("bazaar.toml");
    std::fs::write(
        &file,
        "[gateway]\nlisten = \"127.0.0.1:7000\"\nupstream_timeout_ms = 1234\n",
    )
    .expect("written");
    let output = bazaar(
        &["--config", file.to_str().expect("UTF-8 path"), "config"],
        &[("BAZAAR__GATEWAY__LISTEN", "127.0.0.1:7001")],
    );
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(printed.contains("upstream_timeout_ms = 1234"), "{printed}");
    assert!(printed.contains("listen = \"127.0.0.1:7001\""), "{printed}");
}

#[test]
fn an_invalid_setting_exits_with_a_message_naming_the_key() {
    let cases = [
        (
            "BAZAAR__GATEWAY__LISTEN",
            "not-an-address",
            "gateway.listen",
        ),
        (
            "BAZAAR__CATALOG__DATABASE_URL",
            "mysql://x",
            "catalog.database_url",
        ),
        ("BAZAAR__CATALOG__LISTN", "127.0.0.1:1", "listn"),
        ("BAZAAR__LOG__FORMAT", "xml", "log.format"),
    ];
    for (key, value, named) in cases {
        let output = bazaar(&["config"], &[(key, value)]);
        assert_eq!(output.status.code(), Some(2), "{key}={value}: {output:?}");
        let message = String::from_utf8(output.stderr).expect("UTF-8");
        assert!(
            message.to_lowercase().contains(named),
            "{key}={value}: {message}"
        );
    }
}

#[test]
fn a_missing_config_file_is_an_error() {
    let output = bazaar(&["--config", "/no/such/bazaar.toml", "config"], &[]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(message.contains("/no/such/bazaar.toml"), "{message}");
}

/// `bazaar up` on `data`, every service on a port of its own.
fn up_in(data: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bazaar"));
    command.arg("up").env("BAZAAR__DATA_DIR", data);
    for service in [
        "GATEWAY",
        "CATALOG",
        "IDENTITY",
        "INVENTORY",
        "PAYMENTS",
        "CART",
        "ORDERS",
        "NOTIFICATIONS",
        "STOREFRONT",
    ] {
        command.env(format!("BAZAAR__{service}__LISTEN"), "127.0.0.1:0");
    }
    command
}

/// `bazaar up` prints its address once ready, logs JSON when asked, serves, refuses a
/// second process on its data folder (the embedded bus is one process's), and exits
/// cleanly on Ctrl-C (SIGINT) after draining.
#[test]
fn up_serves_until_interrupted() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;

    let data = tempfile::tempdir().expect("a folder");
    let mut child = up_in(data.path())
        .env("BAZAAR__LOG__FORMAT", "json")
        .stdout(Stdio::piped())
        .spawn()
        .expect("bazaar starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut json_lines = 0;
    let address = loop {
        let line = lines
            .next()
            .expect("bazaar printed its address before exiting")
            .expect("UTF-8");
        if let Some(url) = line.strip_prefix("Bazaar is ready in ") {
            let address = url.split("http://").nth(1).expect("a URL");
            break address.trim_end_matches('/').to_owned();
        }
        let event: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
        assert!(event["level"].is_string(), "{line}");
        json_lines += 1;
    };
    assert!(json_lines > 0, "no log line before ready");

    let mut stream = std::net::TcpStream::connect(&address).expect("the gateway accepts");
    write!(
        stream,
        "GET /api/catalog/products?limit=1 HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let second = up_in(data.path()).output().expect("a second bazaar runs");
    assert!(!second.status.success(), "a second process shared the bus");
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("belongs to one process"), "{said}");

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let status = child.wait().expect("bazaar exits");
    assert!(status.success(), "bazaar exited with {status} on SIGINT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|line| line.contains("draining")),
        "no shutdown log line in {rest:?}"
    );
}

/// Logs written to a pipe or a file carry no colour escapes.
#[test]
fn logs_to_a_pipe_have_no_colour() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let data = tempfile::tempdir().expect("a folder");
    let mut child = up_in(data.path())
        .env("BAZAAR__LOG__FORMAT", "pretty")
        .stdout(Stdio::piped())
        .spawn()
        .expect("bazaar starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut logged = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("bazaar printed its address before exiting")
            .expect("UTF-8");
        if line.starts_with("Bazaar is ready in ") {
            break;
        }
        logged.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!logged.is_empty(), "no log line before ready");
    assert!(
        logged.iter().all(|line| !line.contains('\u{1b}')),
        "{logged:?}"
    );
}

/// `bazaar probe` is the containers' health check: 200 is healthy, anything else not.
#[test]
fn probe_passes_on_200_and_fails_otherwise() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = listener.local_addr().expect("bound");
    let server = std::thread::spawn(move || {
        for status in ["200 OK", "503 Service Unavailable"] {
            let (mut stream, _) = listener.accept().expect("a probe");
            let mut request = Vec::new();
            let mut chunk = [0_u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let read = stream.read(&mut chunk).expect("a request");
                assert!(read > 0, "the request ended early");
                request.extend_from_slice(&chunk[..read]);
            }
            assert!(request.starts_with(b"GET /health/ready "));
            // One write: the probe hangs up once it has read the status, and a second
            // write to a closed socket would be reset.
            let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
            stream.write_all(response.as_bytes()).expect("answered");
        }
    });
    let url = format!("http://{address}/health/ready");
    assert!(bazaar(&["probe", &url], &[]).status.success());
    let unhealthy = bazaar(&["probe", &url], &[]);
    assert!(!unhealthy.status.success());
    assert!(String::from_utf8_lossy(&unhealthy.stderr).contains("503"));
    server.join().expect("the server ran");
    let closed = bazaar(&["probe", "http://127.0.0.1:1/health/live"], &[]);
    assert!(!closed.status.success());
}

/// Fraud thresholds that would hold or decline every payment stop payments at start,
/// naming the setting, instead of serving with them.
#[test]
fn nonsensical_fraud_rules_stop_payments_at_start() {
    let data = tempfile::tempdir().expect("a folder");
    let dir = data.path().to_str().expect("UTF-8 path");
    let refused = bazaar(
        &["serve", "payments"],
        &[
            ("BAZAAR__DATA_DIR", dir),
            ("BAZAAR__PAYMENTS__LISTEN", "127.0.0.1:0"),
            ("BAZAAR__PAYMENTS__FRAUD__HOLD_ABOVE_MINOR", "-5"),
        ],
    );
    assert!(!refused.status.success());
    let said = String::from_utf8(refused.stderr).expect("UTF-8");
    assert!(
        said.contains("payments.fraud.hold_above_minor must not be negative"),
        "{said}"
    );
}

#[test]
fn flags_are_listed_and_switched_in_the_flag_file() {
    let data = tempfile::tempdir().expect("a folder");
    let dir = data.path().to_str().expect("UTF-8 path");
    let env = [("BAZAAR__DATA_DIR", dir)];

    let listed = bazaar(&["flags"], &env);
    assert!(listed.status.success(), "{listed:?}");
    let listing = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listing.contains("payments-decline-all: *off=false on=true"),
        "{listing}"
    );
    assert!(
        listing.contains("bus-outage: *off=false on=true"),
        "{listing}"
    );

    let switched = bazaar(&["flags", "set", "payments-decline-all", "on"], &env);
    assert!(switched.status.success(), "{switched:?}");
    let file = std::fs::read_to_string(data.path().join("flags.json")).expect("the flag file");
    let file: serde_json::Value = serde_json::from_str(&file).expect("JSON");
    assert_eq!(
        file["flags"]["payments-decline-all"]["defaultVariant"],
        "on"
    );

    let refused = bazaar(&["flags", "set", "payments-decline-all", "maybe"], &env);
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("no variant `maybe`; it has off, on"),
        "{error}"
    );
    let refused = bazaar(&["flags", "set", "no-such-flag", "on"], &env);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no flag `no-such-flag`"));
}

/// A shop started with `bazaar up` in `data`, its defences against one busy client
/// (the gateway's rate limits, identity's sign-in throttle, the fraud rules' velocity
/// hold) lifted, as for any load from one address; and its URL.
fn a_shop_for_load(data: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead as _, BufReader};
    use std::process::Stdio;

    let lifted = [
        ("BAZAAR__GATEWAY__RATE_LIMIT__ENABLED", "false"),
        ("BAZAAR__IDENTITY__ADDRESS_ATTEMPTS_BURST", "1000000"),
        ("BAZAAR__PAYMENTS__FRAUD__VELOCITY_HOLD_AFTER", "1000000000"),
        ("BAZAAR__INVENTORY__INITIAL_STOCK", "100000"),
    ];
    let mut up = up_in(data);
    up.envs(lifted).stdout(Stdio::piped());
    let mut shop = up.spawn().expect("bazaar starts");
    let url = BufReader::new(shop.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let ready = line.strip_prefix("Bazaar is ready in ")?;
            let url = ready.split("http://").nth(1)?;
            Some(format!("http://{}", url.trim_end_matches('/')))
        })
        .expect("bazaar printed its address");
    (shop, url)
}

/// Stops a shop started by [`a_shop_for_load`], as Ctrl-C would.
fn stop(mut shop: std::process::Child) {
    let _ = Command::new("kill")
        .args(["-INT", &shop.id().to_string()])
        .status();
    let _ = shop.wait();
}

/// `bazaar load` drives a running shop for a few seconds, with customers it makes in
/// the shop's identity database, and writes a report every journey appears in with no
/// failure and some orders confirmed.
#[test]
fn load_walks_every_journey_against_a_running_shop() {
    let data = tempfile::tempdir().expect("a folder");
    let (shop, url) = a_shop_for_load(data.path());

    let report = data.path().join("load.json");
    let dir = data.path().to_str().expect("UTF-8 path");
    let ran = bazaar(
        &[
            "load",
            "--url",
            &url,
            "--users",
            "3",
            "--customers",
            "3",
            "--seconds",
            "3",
            // Even weights: every journey is walked in three seconds.
            "--mix",
            "browse=1,product=1,search=1,cart=1,checkout=1,sign-in=1",
            "--quiet",
            "--json",
            report.to_str().expect("UTF-8 path"),
        ],
        &[("BAZAAR__DATA_DIR", dir)],
    );
    stop(shop);
    assert!(ran.status.success(), "{ran:?}");
    let table = String::from_utf8_lossy(&ran.stdout);
    assert!(table.contains("closed loop, 3 shoppers"), "{table}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("the JSON report"))
            .expect("JSON");
    let journeys = report["journeys"].as_array().expect("journeys");
    let walked: Vec<&str> = journeys
        .iter()
        .filter_map(|journey| journey["journey"].as_str())
        .collect();
    for journey in ["browse", "product", "search", "cart", "checkout", "sign-in"] {
        assert!(
            walked.contains(&journey),
            "{journey} was not walked: {report:#}"
        );
    }
    for journey in journeys {
        assert_eq!(journey["failed"], 0, "{report:#}");
        assert!(
            journey["ok"].as_u64().is_some_and(|ok| ok > 0),
            "{report:#}"
        );
        assert!(
            journey["p99_ms"].as_f64().is_some_and(|p99| p99 > 0.0),
            "{report:#}"
        );
    }
    let checkout = journeys
        .iter()
        .find(|journey| journey["journey"] == "checkout")
        .expect("checkouts");
    assert!(
        checkout["ends"]["confirmed"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{report:#}"
    );
}

/// `bazaar chaos run` declines every card for two seconds under load: checkouts are
/// cancelled meanwhile, the flag is back off afterwards, and the audit is clean.
#[test]
fn a_chaos_scenario_breaks_the_shop_under_load_and_audits_it() {
    let data = tempfile::tempdir().expect("a folder");
    let (shop, url) = a_shop_for_load(data.path());
    let dir = data.path().to_str().expect("UTF-8 path");
    let args = [
        "chaos",
        "run",
        "decline-all",
        "--before",
        "1",
        "--fault",
        "2",
        "--after",
        "1",
        "--users",
        "3",
        "--customers",
        "3",
        "--url",
        &url,
    ];
    let ran = bazaar(&args, &[("BAZAAR__DATA_DIR", dir)]);
    stop(shop);
    let report = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{ran:?}");
    assert!(
        report.contains("scenario decline-all: payments-decline-all=on"),
        "{report}"
    );
    assert!(report.contains("checkout ended cancelled"), "{report}");
    // Every declined order was compensated: its stock went back.
    let line = |start: &str| {
        report
            .lines()
            .find(|line| line.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in {report}"))
            .to_owned()
    };
    let declined = line("orders:");
    let declined: u32 = declined
        .split_once(" cancelled (")
        .and_then(|(_, reasons)| reasons.split_once(" payment_declined"))
        .and_then(|(count, _)| count.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no declined orders counted in {declined:?}"));
    assert!(declined > 0);
    assert!(
        line("saga:").contains(&format!("stock released {declined},")),
        "{report}"
    );
    assert!(report.contains("invariants clean"), "{report}");
    let flags = std::fs::read_to_string(data.path().join("flags.json")).expect("the flag file");
    let flags: serde_json::Value = serde_json::from_str(&flags).expect("JSON");
    assert_eq!(
        flags["flags"]["payments-decline-all"]["defaultVariant"], "off",
        "switched back"
    );

    let unknown = bazaar(
        &["chaos", "run", "meteor-strike"],
        &[("BAZAAR__DATA_DIR", dir)],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("broker-outage"));
}
