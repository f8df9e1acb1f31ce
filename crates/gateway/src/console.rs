//! The console: what the shop is doing, seen from the gateway, for admins.
//!
//! `/console` shows each service's request rate, error rate and p99 over the last
//! minute, the map of which service called which, the upstreams' instances and their
//! health, the releases of split upstreams with their weights and shares, the chaos
//! scenarios with a start and a stop button (`POST /console/scenarios/{name}`), the
//! feature flags with a button per variant (`POST /console/flags/{key}` switches
//! one), the outbox and consumer backlogs, the orders by status (asked of
//! the orders service, so they survive a restart of this process), and the recent
//! traces; `/console/traces/{id}` draws one trace as a waterfall. Everything comes from
//! this process: its recent spans (`platform::telemetry::recent_spans`), its metrics
//! and its route table. In `bazaar up` that is the whole shop; in a distributed shop a
//! tracing backend does this job. Pages are rendered here, with inline styles and no
//! script, so they work offline.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use contracts::identity::Role;
use http::HeaderMap;
use platform::auth::AuthError;
use platform::problem::Problem;
use platform::telemetry::SpanRecord;

use crate::Shared;

/// The cookie a browser may carry the admin's access token in.
pub const TOKEN_COOKIE: &str = "bazaar-token";

/// How far back the live figures look.
const WINDOW: Duration = Duration::from_secs(60);
/// How many traces the overview lists.
const TRACES_LISTED: usize = 25;

/// `GET /console`.
pub async fn overview(State(gateway): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let admin = match admit(&gateway, &headers).await {
        Ok(admin) => admin,
        Err(problem) => return refused(&gateway, &headers, problem, "/console"),
    };
    let counts = order_counts(&gateway, &admin.token).await;
    let spans = platform::telemetry::recent_spans()
        .map(|recent| recent.snapshot())
        .unwrap_or_default();
    let mut page = String::new();
    head(&mut page, "Bazaar console");
    page.push_str("<h1>Bazaar console</h1>");
    if platform::telemetry::recent_spans().is_none() {
        page.push_str("<p class=note>This process keeps no spans (<code>log.recent_spans = 0</code>): live figures and traces are empty.</p>");
    }
    services(&mut page, &spans);
    service_map(&mut page, &spans);
    upstreams(&mut page, &gateway);
    releases(&mut page, &gateway);
    let views = gateway.flags.describe();
    scenarios(&mut page, &gateway, &views);
    flags(&mut page, &views);
    backlog(&mut page);
    checkouts(&mut page, counts);
    traces(&mut page, &spans);
    page.push_str("</body></html>");
    Html(page).into_response()
}

/// `GET /console/traces/{id}`.
pub async fn trace(
    State(gateway): State<Arc<Shared>>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(problem) = admit(&gateway, &headers).await {
        return refused(&gateway, &headers, problem, "/console");
    }
    if trace_id.len() != 32 || !trace_id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Problem::invalid_field("id", "a trace id is 32 hexadecimal digits").into_response();
    }
    let spans = platform::telemetry::recent_spans()
        .map(|recent| recent.trace(&trace_id))
        .unwrap_or_default();
    if spans.is_empty() {
        return Problem::not_found("this process keeps no span of that trace (any more)")
            .into_response();
    }
    let mut page = String::new();
    head(&mut page, "Trace");
    let _ = write!(
        page,
        "<p><a href=\"/console\">← console</a></p><h1>Trace <code>{}</code></h1>",
        escape(&trace_id)
    );
    waterfall(&mut page, &spans);
    page.push_str("</body></html>");
    Html(page).into_response()
}

/// The answer to someone the console did not let in. A browser that is not signed in
/// (it asks for HTML and sends no bearer token) is sent to the shop's sign-in page,
/// which comes back here afterwards, when the gateway serves a shop; anyone else gets
/// the problem.
fn refused(gateway: &Shared, headers: &HeaderMap, problem: Problem, back: &str) -> Response {
    let browser = headers
        .get(http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
        && !headers.contains_key(http::header::AUTHORIZATION);
    if browser && problem.status == 401 && gateway.config.site.is_some() {
        let location = format!("/sign-in?next={}", back.replace('/', "%2F"));
        return (
            http::StatusCode::SEE_OTHER,
            [(http::header::LOCATION, location)],
        )
            .into_response();
    }
    problem.into_response()
}

/// An admin let in: who, and the token they came with (the console asks services on
/// their behalf).
struct Admitted {
    id: String,
    token: String,
}

/// Lets admins in: a bearer token, or the token in the [`TOKEN_COOKIE`] cookie.
async fn admit(gateway: &Shared, headers: &HeaderMap) -> Result<Admitted, Problem> {
    let token = match platform::auth::bearer_token(headers) {
        Ok(token) => token.to_owned(),
        Err(_) => crate::proxy::cookie(headers, TOKEN_COOKIE).ok_or(AuthError::Missing)?,
    };
    let claims = gateway.tokens.verify(&token).await?;
    if claims.roles.contains(&Role::Admin) {
        Ok(Admitted {
            id: claims.sub.clone(),
            token,
        })
    } else {
        Err(AuthError::Forbidden(Role::Admin.as_str()).into())
    }
}

/// The orders by status, from the orders service itself (`GET /stats` as the admin),
/// so that they survive a restart of this process; what went wrong if it did not
/// answer.
async fn order_counts(gateway: &Shared, token: &str) -> Result<BTreeMap<String, i64>, String> {
    use http_body_util::BodyExt as _;

    let table = gateway.table.load_full();
    let pool = table
        .pools()
        .find(|pool| pool.name == "orders")
        .ok_or("no route to orders")?;
    let now = std::time::Instant::now();
    let endpoint = pool
        .endpoints()
        .find(|endpoint| endpoint.is_available(now))
        .or_else(|| pool.endpoints().next())
        .ok_or("orders has no instance")?;
    let request = http::Request::get(format!("http://{}/stats", endpoint.url.authority()))
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|error| error.to_string())?;
    let answer = tokio::time::timeout(Duration::from_secs(2), gateway.client.request(request))
        .await
        .map_err(|_| "orders did not answer within 2 s".to_owned())?
        .map_err(|_| "orders is unreachable".to_owned())?;
    if !answer.status().is_success() {
        return Err(format!("orders answered {}", answer.status().as_u16()));
    }
    let body = answer
        .into_body()
        .collect()
        .await
        .map_err(|_| "orders' answer broke off".to_owned())?
        .to_bytes();
    let counts: serde_json::Value =
        serde_json::from_slice(&body).map_err(|_| "orders' answer is not JSON".to_owned())?;
    counts["by_status"]
        .as_object()
        .map(|by_status| {
            by_status
                .iter()
                .filter_map(|(status, count)| Some((status.clone(), count.as_i64()?)))
                .collect()
        })
        .ok_or_else(|| "orders' answer has no counts".to_owned())
}

/// The form a flag's buttons send.
#[derive(serde::Deserialize)]
pub struct Switch {
    /// The variant to make the flag's default.
    variant: String,
}

/// `POST /console/flags/{key}` (`variant=…`, a form): makes `variant` the flag's
/// default in the flag file, audited as the admin's change, and goes back to the
/// console. A form posted from another site is refused: the session cookie is
/// `SameSite=Lax` already, and the browser must say the page was this host's.
pub async fn switch_flag(
    State(gateway): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    axum::Form(switch): axum::Form<Switch>,
) -> Response {
    match from_the_console(&gateway, &headers).await {
        Ok(admin) => set_flag(&gateway, &admin, &key, &switch.variant, "flags"),
        Err(refusal) => refusal,
    }
}

/// A fault the console can start and stop: one of the shop's chaos scenarios
/// (`bazaar chaos list`), which puts flag `flag` at variant `breaks`, and back at
/// `heals`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// What it breaks, and what should heal it.
    pub what: String,
    /// The fault flag it switches.
    pub flag: String,
    /// The variant that breaks.
    pub breaks: String,
    /// The variant that heals.
    pub heals: String,
}

/// The form of a scenario's buttons.
#[derive(serde::Deserialize)]
pub struct Action {
    /// `start` or `stop`.
    action: String,
}

/// `POST /console/scenarios/{name}` (`action=start` or `stop`, a form): switches the
/// scenario's flag to the variant that breaks or to the one that heals, as
/// [`switch_flag`] does.
pub async fn run_scenario(
    State(gateway): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::Form(action): axum::Form<Action>,
) -> Response {
    let admin = match from_the_console(&gateway, &headers).await {
        Ok(admin) => admin,
        Err(refusal) => return refusal,
    };
    let Some(scenario) = gateway
        .scenarios
        .get()
        .and_then(|scenarios| scenarios.iter().find(|scenario| scenario.name == name))
    else {
        return Problem::not_found(format!("there is no scenario `{name}`")).into_response();
    };
    let variant = match action.action.as_str() {
        "start" => &scenario.breaks,
        "stop" => &scenario.heals,
        other => {
            return Problem::invalid_field(
                "action",
                format!("`{other}` is neither start nor stop"),
            )
            .into_response();
        }
    };
    set_flag(&gateway, &admin, &scenario.flag, variant, "scenarios")
}

/// The id of the admin posting from the console's own page, or the refusal.
async fn from_the_console(gateway: &Shared, headers: &HeaderMap) -> Result<String, Response> {
    let admin = match admit(gateway, headers).await {
        Ok(admin) => admin.id,
        Err(problem) => return Err(refused(gateway, headers, problem, "/console")),
    };
    if !same_origin(headers) {
        return Err(Problem::new(
            http::StatusCode::FORBIDDEN,
            "cross-origin",
            "flags are switched from the console's own page",
        )
        .into_response());
    }
    Ok(admin)
}

/// Makes `variant` flag `key`'s default, audited as `admin`'s change, and goes back to
/// the console's `section`.
fn set_flag(gateway: &Shared, admin: &str, key: &str, variant: &str, section: &str) -> Response {
    if !gateway.flags.current().keys().any(|known| known == key) {
        return Problem::not_found(format!("there is no flag `{key}`")).into_response();
    }
    match gateway
        .flags
        .set_default(key, variant, &format!("admin {admin}"))
    {
        Ok(()) => (
            http::StatusCode::SEE_OTHER,
            [(http::header::LOCATION, format!("/console#{section}"))],
        )
            .into_response(),
        Err(error) if error.chain().any(|cause| cause.is::<std::io::Error>()) => Problem::new(
            http::StatusCode::CONFLICT,
            "flags-read-only",
            format!(
                "{error:#}: where the flags come from a read-only mount (a Kubernetes ConfigMap), switch them there"
            ),
        )
        .into_response(),
        Err(error) => Problem::invalid_field("variant", format!("{error:#}")).into_response(),
    }
}

/// Whether a request comes from a page of this host, as far as the browser says: its
/// `Sec-Fetch-Site` when it sends one, else its `Origin` (which a page whose referrer
/// policy is `no-referrer`, as the console's is, sends as `null`). A request with
/// neither comes from no browser page (a script with a bearer token) and passes.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority);
    matches!((origin, host), (Some(origin), Some(host)) if origin == host)
}

/// The chaos scenarios, each running or not, with a button to start or stop it.
fn scenarios(page: &mut String, gateway: &Shared, set: &[platform::flags::FlagView]) {
    let Some(scenarios) = gateway.scenarios.get().filter(|list| !list.is_empty()) else {
        return;
    };
    page.push_str("<h2 id=scenarios>Scenarios</h2><p class=note>Start one while shoppers are on (<code>bazaar load</code>), watch the sections above react, stop it, then audit (<code>bazaar verify</code>). <code>bazaar chaos run &lt;scenario&gt;</code> does all of it and reports.</p>");
    page.push_str("<table class=scenarios><tr><th>scenario<th>what it breaks, and what heals it<th>fault<th>state</tr>");
    for scenario in scenarios {
        let current = set
            .iter()
            .find(|flag| flag.key == scenario.flag)
            .and_then(|flag| flag.default_variant.as_deref());
        let running = current == Some(scenario.breaks.as_str());
        let _ = write!(
            page,
            "<tr data-scenario=\"{name}\"><td><code>{name}</code><td>{what}<td><code>{flag}={breaks}</code>\
             <td><form method=post action=\"/console/scenarios/{path}\">{state} \
             <button name=action value={action}{pressed}>{label}</button></form></tr>",
            name = escape(&scenario.name),
            what = escape(&scenario.what),
            flag = escape(&scenario.flag),
            breaks = escape(&scenario.breaks),
            path = escape(&path_segment(&scenario.name)),
            state = if running {
                "<span class=bad>running</span>"
            } else {
                "<span class=ok>off</span>"
            },
            action = if running { "stop" } else { "start" },
            pressed = if running { " class=on" } else { "" },
            label = if running { "Stop" } else { "Start" },
        );
    }
    page.push_str("</table>");
}

/// The feature flags, each with a button per variant: the default is marked, and a
/// click makes another the default for everyone its rule does not choose for.
fn flags(page: &mut String, views: &[platform::flags::FlagView]) {
    page.push_str("<h2 id=flags>Feature flags</h2>");
    if views.is_empty() {
        page.push_str("<p class=note>This process has no flag file.</p>");
        return;
    }
    page.push_str("<table class=flags><tr><th>flag<th>variants<th>what it does</tr>");
    for view in views {
        let key = escape(&view.key);
        let path = escape(&path_segment(&view.key));
        let _ = write!(
            page,
            "<tr><td><code>{key}</code>{}{}<td><form method=post action=\"/console/flags/{path}\">",
            if view.enabled {
                ""
            } else {
                " <span class=note>disabled</span>"
            },
            if view.targeted {
                " <span class=note>targeted</span>"
            } else {
                ""
            },
        );
        for (name, value) in &view.variants {
            let chosen = view.default_variant.as_deref() == Some(name.as_str());
            let name = escape(name);
            let _ = write!(
                page,
                "<button name=variant value=\"{name}\" title=\"{}\"{}>{name}</button> ",
                escape(&value.to_string()),
                if chosen {
                    " class=on aria-pressed=true"
                } else {
                    " aria-pressed=false"
                },
            );
        }
        let _ = write!(
            page,
            "</form><td>{}</tr>",
            escape(view.description.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</table>");
}

fn head(page: &mut String, title: &str) {
    let _ = write!(
        page,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.bad{color:#b00020;font-weight:600}.ok{color:#1b7f3a}.note{color:#666}code{font-size:.9em}\
.bar{position:relative;height:.9rem;background:#f4f4f4;min-width:20rem}\
.bar span{position:absolute;top:0;bottom:0;background:#3f6fd8;min-width:2px}\
.bar span.failed{background:#b00020}.bar span.compensating{background:#d98a00}a{color:#2748a8}\
svg.graph{max-width:60rem;display:block;margin:.5rem 0}\
svg .node rect{fill:#f4f6fb;stroke:#3f6fd8;stroke-width:1.5}svg .node.bad rect{fill:#fdecee;stroke:#b00020}\
svg .call path{fill:none;stroke:#555;stroke-width:1.5}svg .call.bad path{stroke:#b00020;stroke-width:2.5}\
svg text{font:12px system-ui,sans-serif;fill:#222}svg .call.bad text{fill:#b00020}\
svg.spark{width:8rem;height:1.6rem;vertical-align:middle}svg.spark polyline{fill:none;stroke:#3f6fd8;stroke-width:1.5}\
svg.spark polyline.bad{stroke:#b00020}svg.spark polyline.slow{stroke:#d98a00}\
button{font:inherit;padding:.1rem .5rem;margin:.1rem;border:1px solid #999;border-radius:3px;background:#fff;cursor:pointer}\
button.on{background:#2748a8;color:#fff;border-color:#2748a8}";

/// Whether a span is a health check or a scrape: traffic of the platform, not of
/// customers, left out of rates and of the trace list.
fn is_probe(span: &SpanRecord) -> bool {
    span.detail.contains(" /health/") || span.detail.ends_with(" /metrics")
}

/// Whether a span is a page of the console or of the API docs: an operator looking,
/// left out of the trace list so that looking does not push out what is looked for.
fn is_looking(span: &SpanRecord) -> bool {
    [" /console", " /api/docs"].iter().any(|page| {
        span.detail.find(page).is_some_and(|at| {
            let rest = &span.detail[at + page.len()..];
            rest.is_empty() || rest.starts_with(['/', '?', '#'])
        })
    })
}

/// Per service over the last minute: request rate, error rate, p99.
fn services(page: &mut String, spans: &[SpanRecord]) {
    let since = SystemTime::now() - WINDOW;
    let mut by_service: BTreeMap<&str, Vec<&SpanRecord>> = BTreeMap::new();
    for span in spans
        .iter()
        .filter(|span| span.name == "request" && span.start >= since && !is_probe(span))
    {
        by_service.entry(&span.service).or_default().push(span);
    }
    let history = history(spans);
    page.push_str("<h2>Services, last minute</h2><table class=services><tr><th>service<th>requests/s<th>errors<th>p99<th>requests, last five minutes<th>p99, last five minutes</tr>");
    if by_service.is_empty() {
        page.push_str("<tr><td colspan=6 class=note>no requests in the last minute</tr>");
    }
    for (service, requests) in by_service {
        let failed = requests.iter().filter(|span| span.failed).count();
        let mut durations: Vec<Duration> = requests.iter().map(|span| span.duration).collect();
        durations.sort();
        let p99 = durations[(durations.len() * 99).div_ceil(100).saturating_sub(1)];
        let error_rate = failed as f64 / requests.len() as f64;
        let _ = write!(
            page,
            "<tr data-service=\"{service}\"><td>{service}<td class=n>{:.2}<td class=\"n{}\">{:.1} %<td class=n>{}<td>{}<td>{}</tr>",
            requests.len() as f64 / WINDOW.as_secs_f64(),
            if failed > 0 { " bad" } else { "" },
            error_rate * 100.0,
            millis(p99),
            history
                .get(service)
                .map(|steps| sparkline(steps))
                .unwrap_or_default(),
            history
                .get(service)
                .map(|steps| latency_line(steps))
                .unwrap_or_default(),
            service = escape(service),
        );
    }
    page.push_str("</table>");
}

/// Which service called which, from parent and child spans of different services.
fn service_map(page: &mut String, spans: &[SpanRecord]) {
    let since = SystemTime::now() - WINDOW;
    let service_of: HashMap<&str, &str> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span.service.as_str()))
        .collect();
    // Every call seen, and those of the last minute with how many failed.
    let mut calls: BTreeMap<(&str, &str), Edge> = BTreeMap::new();
    for span in spans {
        if let Some(caller) = service_of.get(span.parent_id.as_str())
            && *caller != span.service
        {
            let edge = calls.entry((caller, &span.service)).or_default();
            edge.seen += 1;
            if span.start >= since {
                edge.recent += 1;
                edge.failed += usize::from(span.failed);
            }
        }
    }
    page.push_str("<h2>Service map</h2>");
    if calls.is_empty() {
        page.push_str("<p class=note>no calls between services seen yet</p>");
        return;
    }
    draw_map(page, &calls);
    page.push_str(
        "<table class=map><tr><th>caller<th>callee<th>calls seen<th>per second, last minute<th>failed, last minute</tr>",
    );
    for ((caller, callee), edge) in &calls {
        let _ = write!(
            page,
            "<tr><td>{}<td>→ {}<td class=n>{}<td class=n>{:.2}<td class=\"n{}\">{}</tr>",
            escape(caller),
            escape(callee),
            edge.seen,
            edge.per_second(),
            if edge.failed > 0 { " bad" } else { "" },
            edge.failed,
        );
    }
    page.push_str("</table>");
}

/// The calls from one service to another.
#[derive(Clone, Copy, Debug, Default)]
struct Edge {
    /// Among the spans kept.
    seen: usize,
    /// In the last minute.
    recent: usize,
    /// Of those, failed.
    failed: usize,
}

impl Edge {
    #[allow(clippy::cast_precision_loss, reason = "a count of calls")]
    fn per_second(&self) -> f64 {
        self.recent as f64 / WINDOW.as_secs_f64()
    }

    /// The rate as a label: per second, or per minute when below one a second.
    fn rate(&self) -> String {
        let per_second = self.per_second();
        if per_second >= 1.0 {
            format!("{per_second:.1}/s")
        } else {
            format!("{:.0}/min", per_second * 60.0)
        }
    }
}

/// How far back the services' small charts look, and in how many steps.
const HISTORY: Duration = Duration::from_secs(300);
const STEPS: usize = 30;

/// One step of a service's history.
#[derive(Clone, Debug, Default)]
struct Step {
    requests: u32,
    failed: u32,
    /// How long each request took.
    took: Vec<Duration>,
}

impl Step {
    /// The 99th percentile of how long its requests took.
    fn p99(&self) -> Duration {
        let mut took = self.took.clone();
        took.sort_unstable();
        took.get((took.len() * 99).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    }
}

/// Per service, its requests in each step of the last [`HISTORY`], oldest first.
fn history(spans: &[SpanRecord]) -> BTreeMap<&str, Vec<Step>> {
    let now = SystemTime::now();
    let step = HISTORY / u32::try_from(STEPS).unwrap_or(1);
    let mut history: BTreeMap<&str, Vec<Step>> = BTreeMap::new();
    for span in spans
        .iter()
        .filter(|span| span.name == "request" && !is_probe(span))
    {
        let Ok(age) = now.duration_since(span.start) else {
            continue;
        };
        let Some(back) = usize::try_from(age.as_nanos() / step.as_nanos().max(1))
            .ok()
            .filter(|back| *back < STEPS)
        else {
            continue;
        };
        let steps = history
            .entry(&span.service)
            .or_insert_with(|| vec![Step::default(); STEPS]);
        let bucket = &mut steps[STEPS - 1 - back];
        bucket.requests += 1;
        bucket.failed += u32::from(span.failed);
        bucket.took.push(span.duration);
    }
    history
}

/// The points of a small chart of `values` over [`HISTORY`], `highest` at the top.
fn points(values: impl Iterator<Item = f64>, highest: f64) -> String {
    let highest = if highest > 0.0 { highest } else { 1.0 };
    values
        .enumerate()
        .map(|(index, value)| format!("{},{:.1}", index * 4, 19.0 - 18.0 * value / highest))
        .collect::<Vec<_>>()
        .join(" ")
}

fn chart(title: &str, lines: &str) -> String {
    format!(
        "<svg class=spark viewBox=\"0 0 {} 20\" preserveAspectRatio=none role=img>\
         <title>{}</title>{lines}</svg>",
        (STEPS - 1) * 4,
        escape(title)
    )
}

/// A small chart of requests (blue) and failures (red, on the same scale) over the
/// last [`HISTORY`].
fn sparkline(steps: &[Step]) -> String {
    let highest = steps.iter().map(|step| step.requests).max().unwrap_or(0);
    let line = |value: fn(&Step) -> u32| {
        points(
            steps.iter().map(|step| f64::from(value(step))),
            f64::from(highest),
        )
    };
    let total: u32 = steps.iter().map(|step| step.requests).sum();
    let failed: u32 = steps.iter().map(|step| step.failed).sum();
    let mut lines = format!("<polyline points=\"{}\"/>", line(|step| step.requests));
    if failed > 0 {
        let _ = write!(
            lines,
            "<polyline class=bad points=\"{}\"/>",
            line(|step| step.failed)
        );
    }
    chart(
        &format!("{total} requests, {failed} failed, in the last five minutes"),
        &lines,
    )
}

/// A small chart of each step's p99 latency over the last [`HISTORY`].
fn latency_line(steps: &[Step]) -> String {
    let p99: Vec<Duration> = steps.iter().map(Step::p99).collect();
    let highest = p99.iter().max().copied().unwrap_or_default();
    chart(
        &format!(
            "p99 per {} s step, at most {} in the last five minutes",
            (HISTORY / u32::try_from(STEPS).unwrap_or(1)).as_secs(),
            millis(highest)
        ),
        &format!(
            "<polyline class=slow points=\"{}\"/>",
            points(p99.iter().map(Duration::as_secs_f64), highest.as_secs_f64())
        ),
    )
}

/// The service map as an SVG graph: services in rows by how far they are from the
/// edge (a service nobody calls is on the first row), each call an arrow labelled with
/// its rate over the last minute, red when some of those calls failed.
fn draw_map(page: &mut String, calls: &BTreeMap<(&str, &str), Edge>) {
    const WIDTH: f64 = 960.0;
    const ROW: f64 = 110.0;
    const BOX_W: f64 = 130.0;
    const BOX_H: f64 = 34.0;
    let mut nodes: BTreeSet<&str> = BTreeSet::new();
    for (caller, callee) in calls.keys() {
        nodes.insert(caller);
        nodes.insert(callee);
    }
    // Rows: the fewest calls from a service nobody calls (the edge), breadth first;
    // replies by message make cycles, which a shortest path ignores.
    let called: BTreeSet<&str> = calls.keys().map(|(_, callee)| *callee).collect();
    let mut roots: Vec<&str> = nodes
        .iter()
        .copied()
        .filter(|node| !called.contains(node))
        .collect();
    if roots.is_empty() {
        roots.extend(nodes.first());
    }
    let mut depth: BTreeMap<&str, usize> = roots.iter().map(|root| (*root, 0)).collect();
    let mut frontier = roots;
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for caller in frontier {
            for (_, callee) in calls.keys().filter(|(from, _)| *from == caller) {
                if !depth.contains_key(callee) {
                    depth.insert(callee, depth[caller] + 1);
                    next.push(*callee);
                }
            }
        }
        frontier = next;
    }
    // What no root reaches (a cycle of its own) goes on the last row.
    let last = depth.values().max().copied().unwrap_or(0) + 1;
    for node in &nodes {
        depth.entry(node).or_insert(last);
    }
    let rows = depth.values().max().copied().unwrap_or(0) + 1;
    let mut place: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for row in 0..rows {
        let members: Vec<&str> = depth
            .iter()
            .filter(|(_, depth)| **depth == row)
            .map(|(node, _)| *node)
            .collect();
        #[allow(clippy::cast_precision_loss, reason = "a handful of services")]
        for (index, node) in members.iter().enumerate() {
            let x = WIDTH * (index as f64 + 0.5) / members.len() as f64;
            let y = 30.0 + ROW * row as f64;
            place.insert(node, (x, y));
        }
    }
    #[allow(clippy::cast_precision_loss, reason = "a handful of rows")]
    let height = 30.0 + ROW * (rows as f64 - 1.0) + BOX_H + 20.0;
    let _ = write!(
        page,
        "<svg class=graph role=img aria-labelledby=map-title viewBox=\"0 0 {WIDTH} {height}\" width=\"100%\">\
         <title id=map-title>Which service calls which, with calls per second over the last minute</title>\
         <defs><marker id=arrow viewBox=\"0 0 10 10\" refX=10 refY=5 markerWidth=7 markerHeight=7 orient=auto-start-reverse>\
         <path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555\"/></marker></defs>"
    );
    for ((caller, callee), edge) in calls {
        let ((x1, y1), (x2, y2)) = (place[caller], place[callee]);
        // From the caller's bottom edge to the callee's top edge (or side, same row).
        // Down from the caller's bottom to the callee's top, up the other way, and over
        // the top in an arc between services of one row.
        let (top, bottom) = (BOX_H / 2.0, BOX_H / 2.0);
        let (path, label) = if (y2 - y1).abs() < 1.0 {
            let lift = 22.0 + ((x2 - x1).abs() * 0.06).min(26.0);
            let (from_y, peak) = (y1 - top, y1 - top - 2.0 * lift);
            (
                format!(
                    "M {x1:.0} {from_y:.0} Q {:.0} {peak:.0} {x2:.0} {from_y:.0}",
                    f64::midpoint(x1, x2)
                ),
                (f64::midpoint(x1, x2), from_y - lift - 3.0),
            )
        } else {
            let (from, to) = if y2 > y1 {
                ((x1, y1 + bottom), (x2, y2 - top))
            } else {
                ((x1, y1 - top), (x2, y2 + bottom))
            };
            (
                format!("M {:.0} {:.0} L {:.0} {:.0}", from.0, from.1, to.0, to.1),
                (
                    f64::midpoint(from.0, to.0) + 4.0,
                    f64::midpoint(from.1, to.1) - 4.0,
                ),
            )
        };
        let class = if edge.failed > 0 { "call bad" } else { "call" };
        let _ = write!(
            page,
            "<g class=\"{class}\"><title>{} → {}: {:.2}/s, {} failed in the last minute</title>\
             <path d=\"{path}\" marker-end=\"url(#arrow)\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\">{}{}</text></g>",
            escape(caller),
            escape(callee),
            edge.per_second(),
            edge.failed,
            label.0,
            label.1,
            edge.rate(),
            if edge.failed > 0 {
                format!(", {} failed", edge.failed)
            } else {
                String::new()
            },
        );
    }
    for (node, (x, y)) in &place {
        let failing = calls
            .iter()
            .any(|((_, callee), edge)| callee == node && edge.failed > 0);
        let _ = write!(
            page,
            "<g class=\"node{}\"><rect x=\"{:.0}\" y=\"{:.0}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\"/>\
             <text x=\"{x:.0}\" y=\"{:.0}\" text-anchor=middle>{}</text></g>",
            if failing { " bad" } else { "" },
            x - BOX_W / 2.0,
            y - BOX_H / 2.0,
            y + 5.0,
            escape(node),
        );
    }
    page.push_str("</svg>");
}

/// The route table's upstreams and what the gateway knows of their instances.
fn upstreams(page: &mut String, gateway: &Shared) {
    let table = gateway.table.load_full();
    let now = std::time::Instant::now();
    page.push_str("<h2>Upstreams</h2><table class=upstreams><tr><th>upstream<th>instance<th>state<th>in flight<th>circuit</tr>");
    for pool in table.pools() {
        let breaker = match pool.breaker.state() {
            crate::breaker::State::Closed => "<span class=ok>closed</span>",
            crate::breaker::State::Open => "<span class=bad>open</span>",
            crate::breaker::State::HalfOpen => "<span class=bad>half-open</span>",
        };
        for endpoint in pool.endpoints() {
            let state = if endpoint.is_available(now) {
                "<span class=ok>serving</span>"
            } else {
                "<span class=bad>unhealthy or ejected</span>"
            };
            let _ = write!(
                page,
                "<tr><td>{}<td><code>{}</code><td>{state}<td class=n>{}<td>{breaker}</tr>",
                escape(&pool.name),
                escape(&endpoint.url.to_string()),
                endpoint.outstanding()
            );
        }
    }
    page.push_str("</table>");
}

/// Each upstream served by more than one release (canary, blue/green): every track's
/// weight beside the share of requests it got since the routes were loaded.
fn releases(page: &mut String, gateway: &Shared) {
    let table = gateway.table.load_full();
    let split: Vec<_> = table.pools().filter(|pool| pool.tracks.len() > 1).collect();
    page.push_str("<h2>Releases</h2>");
    if split.is_empty() {
        page.push_str("<p class=note>Every upstream runs one release: no canary or blue/green split is configured (<code>track</code> and <code>weight</code> of a route's instances, docs/gateway.md).</p>");
        return;
    }
    page.push_str("<table class=releases><tr><th>upstream<th>track<th>instances<th>weight<th>share since the routes were loaded<th>requests</tr>");
    for pool in split {
        let weights: u64 = pool.tracks.iter().map(|track| track.weight).sum();
        let chosen: Vec<u64> = pool
            .tracks
            .iter()
            .map(|track| track.chosen.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let requests: u64 = chosen.iter().sum();
        for (track, chosen) in pool.tracks.iter().zip(chosen) {
            let _ = write!(
                page,
                "<tr data-track=\"{name}\"><td>{upstream}<td>{name}<td class=n>{instances}<td class=n>{weight}<td class=n>{live}<td class=n>{chosen}</tr>",
                upstream = escape(&pool.name),
                name = escape(&track.name),
                instances = track.members.len(),
                weight = share(track.weight, weights),
                live = share(chosen, requests),
            );
        }
    }
    page.push_str("</table>");
}

/// `part` of `whole` as a percentage, `-` when there is no whole.
fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_owned();
    }
    #[allow(clippy::cast_precision_loss, reason = "request counts")]
    let percent = part as f64 / whole as f64 * 100.0;
    format!("{percent:.1}%")
}

/// Outbox and consumer backlogs, from this process's metrics.
fn backlog(page: &mut String) {
    let text = platform::telemetry::metrics().render();
    let series = |name: &str| -> Vec<(String, f64)> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (key, value) = line.rsplit_once(' ')?;
                let labels = key.strip_prefix(name)?;
                (labels.is_empty() || labels.starts_with('{'))
                    .then(|| Some((labels.to_owned(), value.parse().ok()?)))?
            })
            .collect()
    };
    page.push_str("<h2>Backlogs</h2><table class=backlog><tr><th>what<th>where<th>value</tr>");
    for (name, what) in [
        ("outbox_pending", "events waiting in the outbox"),
        (
            "outbox_oldest_pending_age_seconds",
            "age of the oldest, seconds",
        ),
        ("bus_consumer_pending", "messages waiting for a consumer"),
        ("bus_dead_lettered_total", "dead letters"),
    ] {
        for (labels, value) in series(name) {
            let _ = write!(
                page,
                "<tr><td>{what}<td><code>{}</code><td class=n>{value}</tr>",
                escape(&labels)
            );
        }
    }
    page.push_str("</table>");
}

/// The orders by status, as the orders service counts them.
fn checkouts(page: &mut String, counts: Result<BTreeMap<String, i64>, String>) {
    page.push_str("<h2>Checkouts</h2>");
    let counts = match counts {
        Ok(counts) => counts,
        Err(why) => {
            let _ = write!(page, "<p class=note>No counts: {}.</p>", escape(&why));
            return;
        }
    };
    page.push_str("<table class=checkouts><tr><th>status<th>orders</tr>");
    if counts.is_empty() {
        page.push_str("<tr><td colspan=2 class=note>no order yet</tr>");
    }
    for (status, count) in &counts {
        let _ = write!(
            page,
            "<tr data-status=\"{status}\"><td>{status}<td class=n>{count}</tr>",
            status = escape(status)
        );
    }
    page.push_str("</table>");
}

/// The latest traces, newest first.
fn traces(page: &mut String, spans: &[SpanRecord]) {
    let mut by_trace: HashMap<&str, Vec<&SpanRecord>> = HashMap::new();
    for span in spans {
        by_trace.entry(&span.trace_id).or_default().push(span);
    }
    let mut listed: Vec<(SystemTime, &str, Vec<&SpanRecord>)> = by_trace
        .into_iter()
        .filter(|(_, spans)| !spans.iter().all(|span| is_probe(span) || is_looking(span)))
        .map(|(trace, spans)| {
            let start = spans
                .iter()
                .map(|span| span.start)
                .min()
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (start, trace, spans)
        })
        .collect();
    listed.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    page.push_str("<h2>Recent traces</h2><table class=traces><tr><th>trace<th>first span<th>services<th>spans<th>duration</tr>");
    for (start, trace, spans) in listed.into_iter().take(TRACES_LISTED) {
        let first = spans
            .iter()
            .min_by_key(|span| span.start)
            .map_or("-", |span| span.detail.as_str());
        let services: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
        let end = spans
            .iter()
            .map(|span| span.start + span.duration)
            .max()
            .unwrap_or(start);
        let _ = write!(
            page,
            "<tr data-services=\"{count}\"><td><a href=\"/console/traces/{trace}\"><code>{short}</code></a><td>{}<td>{}<td class=n>{}<td class=n>{}</tr>",
            escape(first),
            escape(&services.iter().copied().collect::<Vec<_>>().join(", ")),
            spans.len(),
            millis(end.duration_since(start).unwrap_or_default()),
            count = services.len(),
            trace = escape(trace),
            short = escape(&trace[..12.min(trace.len())]),
        );
    }
    page.push_str("</table>");
}

/// One trace's spans as a waterfall, each indented under its parent.
fn waterfall(page: &mut String, spans: &[SpanRecord]) {
    let start = spans
        .iter()
        .map(|span| span.start)
        .min()
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let end = spans
        .iter()
        .map(|span| span.start + span.duration)
        .max()
        .unwrap_or(start);
    let total = end
        .duration_since(start)
        .unwrap_or_default()
        .as_secs_f64()
        .max(1e-6);
    let parents: HashMap<&str, &str> = spans
        .iter()
        .map(|span| (span.span_id.as_str(), span.parent_id.as_str()))
        .collect();
    let depth = |span: &SpanRecord| {
        let mut depth = 0;
        let mut parent = span.parent_id.as_str();
        while let Some(next) = parents.get(parent) {
            depth += 1;
            parent = next;
            if depth > 64 {
                break;
            }
        }
        depth
    };
    let services: BTreeSet<&str> = spans.iter().map(|span| span.service.as_str()).collect();
    let _ = write!(
        page,
        "<p>{} spans in {} services over {}</p>",
        spans.len(),
        services.len(),
        millis(Duration::from_secs_f64(total))
    );
    page.push_str("<table class=waterfall><tr><th>service<th>span<th>duration<th>timeline</tr>");
    for span in spans {
        let offset = span
            .start
            .duration_since(start)
            .unwrap_or_default()
            .as_secs_f64()
            / total
            * 100.0;
        let width = span.duration.as_secs_f64() / total * 100.0;
        let _ = write!(
            page,
            "<tr class=span data-service=\"{service}\"><td>{service}<td style=\"padding-left:{indent}rem\">{detail}<td class=n>{took}<td><div class=bar><span class=\"{failed}\" style=\"left:{offset:.2}%;width:{width:.2}%\"></span></div></tr>",
            service = escape(&span.service),
            indent = 0.5 + f64::from(depth(span)) * 1.0,
            detail = escape(&span.detail),
            took = millis(span.duration),
            failed = if span.failed {
                "failed"
            } else if is_compensating(span) {
                "compensating"
            } else {
                ""
            },
        );
    }
    page.push_str("</table>");
}

/// Whether a span publishes or handles one of the saga's compensations: stock given
/// back, a payment voided or refunded.
fn is_compensating(span: &SpanRecord) -> bool {
    use contracts::messaging::{Message as _, inventory, payments};
    [
        inventory::ReleaseStockV1::TYPE,
        inventory::StockReleasedV1::TYPE,
        payments::VoidPaymentV1::TYPE,
        payments::PaymentVoidedV1::TYPE,
        payments::RefundPaymentV1::TYPE,
        payments::PaymentRefundedV1::TYPE,
    ]
    .iter()
    .any(|kind| span.detail.ends_with(kind))
}

/// `text` as one segment of a URL path: every byte but letters, digits and `-._~`
/// percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes().fold(String::new(), |mut segment, byte| {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            segment.push(char::from(byte));
        } else {
            let _ = write!(segment, "%{byte:02X}");
        }
        segment
    })
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Text made safe to place in HTML.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_looking_are_told_from_customer_traffic() {
        let span = |detail: &str| SpanRecord {
            trace_id: "0".repeat(32),
            span_id: "1".repeat(16),
            parent_id: "0".repeat(16),
            name: "request".to_owned(),
            service: "orders".to_owned(),
            detail: detail.to_owned(),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            failed: false,
        };
        assert!(is_probe(&span("GET /health/ready")));
        assert!(is_probe(&span("GET /metrics")));
        assert!(!is_probe(&span("POST /")));
        assert!(!is_probe(&span("GET /health-food")));
        assert!(is_looking(&span("GET /console")));
        assert!(is_looking(&span("GET /console/traces/abc")));
        assert!(is_looking(&span("GET /api/docs/openapi.json")));
        assert!(!is_looking(&span("GET /consoles-and-tables")));
        assert!(!is_looking(&span("GET /api/catalog/products")));
    }

    fn span(id: &str, parent: &str, service: &str, failed: bool) -> SpanRecord {
        SpanRecord {
            trace_id: "a".repeat(32),
            span_id: id.to_owned(),
            parent_id: parent.to_owned(),
            name: "request".to_owned(),
            service: service.to_owned(),
            detail: "POST /orders".to_owned(),
            start: SystemTime::now(),
            duration: Duration::from_millis(3),
            failed,
        }
    }

    #[test]
    fn the_map_draws_each_call_between_services_and_marks_failing_ones() {
        let spans = [
            span("g1", "", "gateway", false),
            span("o1", "g1", "orders", false),
            span("p1", "o1", "payments", true),
            span("p2", "o1", "payments", false),
            span("o2", "o1", "orders", false),
        ];
        let mut page = String::new();
        service_map(&mut page, &spans);
        assert!(page.contains("<svg class=graph"), "{page}");
        assert!(
            page.contains("<title>gateway → orders: 0.02/s, 0 failed in the last minute</title>"),
            "{page}"
        );
        assert!(
            page.contains("<g class=\"call bad\"><title>orders → payments"),
            "{page}"
        );
        assert!(
            page.contains("<g class=\"node bad\">"),
            "payments is failing: {page}"
        );
        assert!(
            !page.contains("orders → orders"),
            "a service calling itself is no edge"
        );
        // Rows by depth: the gateway above orders above payments.
        let y = |name: &str| {
            let at = page.find(&format!(">{name}</text>")).expect("drawn");
            let before = &page[..at];
            let y = &before[before.rfind("y=\"").expect("a y") + 3..];
            y[..y.find('"').expect("closed")]
                .parse::<f64>()
                .expect("a number")
        };
        assert!(
            y("gateway") < y("orders") && y("orders") < y("payments"),
            "{page}"
        );
    }

    #[test]
    fn the_services_history_is_a_small_chart_with_failures_in_red() {
        let spans = [
            span("a", "", "catalog", false),
            span("b", "", "catalog", true),
            span("c", "", "catalog", false),
        ];
        let history = history(&spans);
        let steps = history.get("catalog").expect("catalog's history");
        let latest = &steps[STEPS - 1];
        assert_eq!((latest.requests, latest.failed), (3, 1), "the latest step");
        let chart = sparkline(steps);
        assert!(chart.contains("3 requests, 1 failed"), "{chart}");
        assert!(chart.contains("<polyline class=bad"), "{chart}");
        let quiet = sparkline(&vec![Step::default(); STEPS]);
        assert!(!quiet.contains("class=bad"), "{quiet}");
    }

    #[test]
    fn the_services_latency_is_a_small_chart_of_each_steps_p99() {
        let mut steps = vec![Step::default(); STEPS];
        steps[STEPS - 1].took = (1..=100).map(Duration::from_millis).collect();
        steps[STEPS - 2].took = vec![Duration::from_millis(40)];
        assert_eq!(steps[STEPS - 1].p99(), Duration::from_millis(99));
        let chart = latency_line(&steps);
        assert!(chart.contains("at most 99.0 ms"), "{chart}");
        // The slowest step at the top, the one at 40 ms lower, the quiet ones at 0.
        assert!(chart.ends_with(" 116,1.0\"/></svg>"), "{chart}");
        assert!(chart.contains(" 112,11.7 "), "{chart}");
        assert!(chart.contains("points=\"0,19.0 "), "{chart}");
    }

    #[test]
    fn a_flag_key_is_one_path_segment() {
        assert_eq!(path_segment("payments-decline-all"), "payments-decline-all");
        assert_eq!(path_segment("a/b?c d%"), "a%2Fb%3Fc%20d%25");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
