//! Feature flags, defined in the OpenFeature flagd JSON format and evaluated in process.
//!
//! A flag file is what flagd reads, so the same file works with flagd and OpenFeature
//! tooling:
//!
//! ```json
//! {
//!   "flags": {
//!     "new-checkout": {
//!       "state": "ENABLED",
//!       "variants": { "on": true, "off": false },
//!       "defaultVariant": "off",
//!       "targeting": { "fractional": [["on", 10], ["off", 90]] }
//!     }
//!   },
//!   "$evaluators": { "staff": { "ends_with": [{ "var": "email" }, "@bazaar.test"] } }
//! }
//! ```
//!
//! A flag has variants of one type (boolean, number, string or object), a default
//! variant, and optionally a targeting rule in JsonLogic ([`logic`]) that names a variant
//! from the [`EvaluationContext`]: the user (`targetingKey`), their role, a request
//! header, or a stable percentage of users (`fractional`). `$ref` reuses a rule from
//! `$evaluators`. A flag that is `DISABLED`, absent, or whose rule names no variant
//! evaluates to the code's own default.
//!
//! [`Flags`] holds the set in use and re-reads its file when the file changes
//! ([`Flags::watch`]): a ConfigMap mounted as a file is reloaded the same way. A file
//! that does not parse or validate is refused and the set in use stays. Every change is
//! audited: logged with the flag, what changed and who changed it, and counted in
//! `feature_flag_changes_total`; an evaluation that chooses another than the default
//! variant is an event on the request's span (`feature_flag.key`,
//! `feature_flag.variant`; [`EVALUATION`]), which traces carry and log lines
//! leave out: one per request would drown them.

mod logic;

/// The field naming the flag in the events that record an evaluation on a span.
pub const EVALUATION: &str = "feature_flag.key";

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::shutdown::Shutdown;
use logic::Rule;

/// A set of flags, as one file defines them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlagSet {
    flags: BTreeMap<String, Flag>,
}

/// One flag.
#[derive(Clone, Debug, PartialEq)]
struct Flag {
    enabled: bool,
    variants: BTreeMap<String, Value>,
    default_variant: Option<String>,
    targeting: Option<Rule>,
    /// The definition as written, to tell what a reload changed.
    source: Value,
}

/// Why an evaluation gave the value it gave, as OpenFeature names the reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The flag has no targeting rule: its default variant.
    Static,
    /// The targeting rule named the variant.
    TargetingMatch,
    /// The targeting rule named no variant: the flag's default variant.
    Default,
    /// The flag is switched off: the code's default.
    Disabled,
    /// No flag of that name is defined: the code's default.
    Unknown,
    /// The flag's value is not of the type the code asked for, or its rule named a
    /// variant it does not define: the code's default.
    Error,
}

/// What one flag evaluated to.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    /// The variant's value, or `None` when the code's default applies.
    pub value: Option<Value>,
    /// The variant's name, when one was chosen.
    pub variant: Option<String>,
    /// Why.
    pub reason: Reason,
}

/// What a flag's targeting may look at: the user (the targeting key, which
/// percentage rollouts hash), their role, request headers, and anything else a
/// caller adds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EvaluationContext {
    data: Map<String, Value>,
}

impl EvaluationContext {
    /// An empty context: only rules that look at nothing (or at the flag's key) match.
    pub fn new() -> Self {
        Self::default()
    }

    /// With `key` as the targeting key, normally the user's id: what `fractional`
    /// hashes, so that a user keeps their variant.
    #[must_use]
    pub fn targeting_key(self, key: impl Into<String>) -> Self {
        self.with("targetingKey", key.into())
    }

    /// With `value` at `name` (read in rules as `{"var": "name"}`).
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.data.insert(name.to_owned(), value.into());
        self
    }

    /// With a request header, read in rules as `{"var": "headers.<lowercase name>"}`.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let headers = self
            .data
            .entry("headers")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(headers) = headers {
            headers.insert(name.to_ascii_lowercase(), Value::from(value));
        }
        self
    }
}

/// A flag as an operator reads it: its variants, which one is the default, and whether
/// a rule chooses among them.
#[derive(Clone, Debug, PartialEq)]
pub struct FlagView {
    /// The flag's key.
    pub key: String,
    /// False when its state is `DISABLED`: the code's own default applies.
    pub enabled: bool,
    /// The variant given to everyone its rule does not choose for.
    pub default_variant: Option<String>,
    /// The variants, by name, with their values.
    pub variants: Vec<(String, Value)>,
    /// Whether a targeting rule chooses the variant for some.
    pub targeted: bool,
    /// What the flag does, from its `metadata.description`.
    pub description: Option<String>,
}

/// Why a flag file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    /// Not JSON of the flagd shape.
    #[error("the flag file is not a flagd definition: {0}")]
    Shape(String),
    /// A flag is defined wrongly.
    #[error("flag `{flag}`: {problem}")]
    Flag {
        /// The flag.
        flag: String,
        /// What is wrong with it.
        problem: String,
    },
}

#[derive(Deserialize)]
struct FileDefinition {
    #[serde(default)]
    flags: BTreeMap<String, Value>,
    #[serde(rename = "$evaluators", default)]
    evaluators: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlagDefinition {
    state: State,
    variants: BTreeMap<String, Value>,
    #[serde(default)]
    default_variant: Option<String>,
    #[serde(default)]
    targeting: Value,
    #[serde(default)]
    #[allow(dead_code, reason = "read so that flagd's field is accepted")]
    metadata: Value,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "UPPERCASE")]
enum State {
    Enabled,
    Disabled,
}

impl FlagSet {
    /// Parses and checks a flagd flag definition.
    pub fn parse(json: &str) -> Result<Self, FlagError> {
        let file: FileDefinition =
            serde_json::from_str(json).map_err(|error| FlagError::Shape(error.to_string()))?;
        let mut flags = BTreeMap::new();
        for (key, source) in file.flags {
            let wrong = |problem: String| FlagError::Flag {
                flag: key.clone(),
                problem,
            };
            let definition: FlagDefinition =
                serde_json::from_value(source.clone()).map_err(|error| wrong(error.to_string()))?;
            check_variants(&definition.variants).map_err(wrong)?;
            if let Some(default) = &definition.default_variant
                && !definition.variants.contains_key(default)
            {
                return Err(wrong(format!(
                    "the default variant `{default}` is not one of its variants"
                )));
            }
            let targeting =
                resolve_refs(&definition.targeting, &file.evaluators, 0).map_err(wrong)?;
            let targeting = match &targeting {
                Value::Null => None,
                Value::Object(object) if object.is_empty() => None,
                rule => Some(Rule::compile(rule).map_err(wrong)?),
            };
            if let Some(rule) = &targeting {
                let mut named = Vec::new();
                rule.named_variants(&mut named);
                if let Some(missing) = named
                    .iter()
                    .find(|name| !definition.variants.contains_key(*name))
                {
                    return Err(wrong(format!(
                        "its targeting names the variant `{missing}`, which it does not define"
                    )));
                }
            }
            flags.insert(
                key,
                Flag {
                    enabled: definition.state == State::Enabled,
                    variants: definition.variants,
                    default_variant: definition.default_variant,
                    targeting,
                    source,
                },
            );
        }
        Ok(Self { flags })
    }

    /// What flag `key` evaluates to in `context`.
    pub fn resolve(&self, key: &str, context: &EvaluationContext) -> Resolution {
        let none = |reason| Resolution {
            value: None,
            variant: None,
            reason,
        };
        let Some(flag) = self.flags.get(key) else {
            return none(Reason::Unknown);
        };
        if !flag.enabled {
            return none(Reason::Disabled);
        }
        let (variant, reason) = match &flag.targeting {
            None => (flag.default_variant.clone(), Reason::Static),
            Some(rule) => {
                let mut data = context.data.clone();
                data.insert(
                    "$flagd".to_owned(),
                    serde_json::json!({
                        "flagKey": key,
                        "timestamp": crate::clock::now_secs(),
                    }),
                );
                match rule.evaluate(&data, key) {
                    Value::String(name) => (Some(name), Reason::TargetingMatch),
                    Value::Bool(truth) => (Some(truth.to_string()), Reason::TargetingMatch),
                    _ => (flag.default_variant.clone(), Reason::Default),
                }
            }
        };
        match variant {
            None => none(Reason::Default),
            Some(name) => match flag.variants.get(&name) {
                Some(value) => Resolution {
                    value: Some(value.clone()),
                    variant: Some(name),
                    reason,
                },
                None => none(Reason::Error),
            },
        }
    }

    /// Whether flag `key` gives everyone nothing: it is absent or disabled, or has no
    /// targeting and a default variant whose value is `false`, `0` or empty. A caller on
    /// a hot path asks this before building an evaluation context.
    pub fn is_off(&self, key: &str) -> bool {
        self.flags.get(key).is_none_or(|flag| {
            !flag.enabled
                || (flag.targeting.is_none()
                    && flag
                        .default_variant
                        .as_ref()
                        .and_then(|name| flag.variants.get(name))
                        .is_none_or(|value| !logic::truthy(value)))
        })
    }

    /// The flags defined, by key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.flags.keys().map(String::as_str)
    }

    /// How this set differs from `before`: each flag added, removed or changed.
    fn changes_since(&self, before: &Self) -> Vec<(String, &'static str)> {
        let mut changes = Vec::new();
        for (key, flag) in &self.flags {
            match before.flags.get(key) {
                None => changes.push((key.clone(), "added")),
                Some(old) if old.source != flag.source => changes.push((key.clone(), "changed")),
                Some(_) => {}
            }
        }
        for key in before.flags.keys() {
            if !self.flags.contains_key(key) {
                changes.push((key.clone(), "removed"));
            }
        }
        changes
    }
}

/// All variants of a flag are of one type.
fn check_variants(variants: &BTreeMap<String, Value>) -> Result<(), String> {
    let kind = |value: &Value| match value {
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
    };
    if variants.is_empty() {
        return Err("it has no variants".to_owned());
    }
    let kinds: Vec<&str> = variants.values().map(kind).collect();
    if kinds.contains(&"null") || kinds.contains(&"array") {
        return Err("a variant's value is a boolean, a number, a string or an object".to_owned());
    }
    if kinds.windows(2).any(|pair| pair[0] != pair[1]) {
        return Err("its variants are not all of one type".to_owned());
    }
    Ok(())
}

/// `value` with every `{"$ref": "name"}` replaced by the evaluator `name`.
fn resolve_refs(
    value: &Value,
    evaluators: &Map<String, Value>,
    depth: usize,
) -> Result<Value, String> {
    if depth > 16 {
        return Err("`$ref`s nest too deep (a cycle?)".to_owned());
    }
    match value {
        Value::Object(object) => {
            if let (1, Some(Value::String(name))) = (object.len(), object.get("$ref")) {
                let evaluator = evaluators.get(name).ok_or_else(|| {
                    format!("`$ref` names `{name}`, which `$evaluators` does not define")
                })?;
                return resolve_refs(evaluator, evaluators, depth + 1);
            }
            object
                .iter()
                .map(|(key, value)| Ok((key.clone(), resolve_refs(value, evaluators, depth)?)))
                .collect::<Result<Map<_, _>, String>>()
                .map(Value::Object)
        }
        Value::Array(items) => items
            .iter()
            .map(|item| resolve_refs(item, evaluators, depth))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// The flags in use, shared by every service of a process; cheap to clone.
#[derive(Clone, Debug)]
pub struct Flags {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: Option<PathBuf>,
    set: RwLock<Arc<FlagSet>>,
    /// The file's content as last read, to see a change.
    read: Mutex<Option<Vec<u8>>>,
}

impl Default for Flags {
    fn default() -> Self {
        Self::fixed(FlagSet::default())
    }
}

impl Flags {
    /// `set`, which nothing changes: for tests, and for a process run without a file.
    pub fn fixed(set: FlagSet) -> Self {
        Self {
            inner: Arc::new(Inner {
                file: None,
                set: RwLock::new(Arc::new(set)),
                read: Mutex::new(None),
            }),
        }
    }

    /// The flags in `file`, re-read by [`Flags::reload`]. Fails if the file cannot be
    /// read or is not a valid definition.
    pub fn open(file: &Path) -> anyhow::Result<Self> {
        let content = std::fs::read(file).map_err(|error| {
            anyhow::anyhow!("reading the flag file {}: {error}", file.display())
        })?;
        let set = parse_bytes(&content)
            .map_err(|error| anyhow::anyhow!("the flag file {}: {error}", file.display()))?;
        tracing::info!(file = %file.display(), flags = set.flags.len(), "feature flags loaded");
        Ok(Self {
            inner: Arc::new(Inner {
                file: Some(file.to_owned()),
                set: RwLock::new(Arc::new(set)),
                read: Mutex::new(Some(content)),
            }),
        })
    }

    /// The set in use now.
    pub fn current(&self) -> Arc<FlagSet> {
        Arc::clone(
            &self
                .inner
                .set
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Re-reads the file if it changed, swaps the new set in and audits each change;
    /// `by` says who changed it. Returns whether anything changed. A file that cannot
    /// be read or does not validate is refused and the set in use stays.
    pub fn reload(&self, by: &str) -> anyhow::Result<bool> {
        let Some(file) = &self.inner.file else {
            return Ok(false);
        };
        // Read under the lock, so that a reload never swaps in a file older than one a
        // switch has just written.
        let mut read = self
            .inner
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let content = std::fs::read(file).map_err(|error| {
            anyhow::anyhow!("reading the flag file {}: {error}", file.display())
        })?;
        self.apply(&mut read, content, by)
    }

    /// Swaps in the set `content` defines, if it differs from what was last read, and
    /// audits each change as `by`'s. The caller holds the `read` lock.
    fn apply(
        &self,
        read: &mut Option<Vec<u8>>,
        content: Vec<u8>,
        by: &str,
    ) -> anyhow::Result<bool> {
        if read.as_deref() == Some(content.as_slice()) {
            return Ok(false);
        }
        let file = self.inner.file.as_deref().unwrap_or(Path::new("-"));
        *read = Some(content.clone());
        let set = parse_bytes(&content)
            .map_err(|error| anyhow::anyhow!("the flag file {}: {error}", file.display()))?;
        let before = self.current();
        let changes = set.changes_since(&before);
        *self
            .inner
            .set
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        for (flag, change) in &changes {
            tracing::info!(flag, change, by, file = %file.display(), "feature flag changed");
            metrics::counter!("feature_flag_changes_total", "flag" => flag.clone()).increment(1);
        }
        Ok(!changes.is_empty())
    }

    /// Sets flag `key`'s default variant to `variant` in the file, then reads the file
    /// again (auditing the change as made `by`). The file is written whole and renamed
    /// into place, so the other processes watching it never read half of it. Fails if
    /// the flags come from no file, or the flag or the variant does not exist.
    pub fn set_default(&self, key: &str, variant: &str, by: &str) -> anyhow::Result<()> {
        let Some(file) = &self.inner.file else {
            anyhow::bail!("these flags come from no file; there is nothing to change");
        };
        // One switch at a time in this process, and no reload between its read and its
        // write.
        let mut read = self
            .inner
            .read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let content = std::fs::read_to_string(file)
            .with_context(|| format!("reading the flag file {}", file.display()))?;
        let mut definition: Value = serde_json::from_str(&content)
            .map_err(|error| anyhow::anyhow!("the flag file {}: {error}", file.display()))?;
        let flag = definition
            .get_mut("flags")
            .and_then(|flags| flags.get_mut(key))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| anyhow::anyhow!("there is no flag `{key}`"))?;
        let variants = flag.get("variants").and_then(Value::as_object);
        if !variants.is_some_and(|variants| variants.contains_key(variant)) {
            let known: Vec<&str> = variants
                .map(|variants| variants.keys().map(String::as_str).collect())
                .unwrap_or_default();
            anyhow::bail!(
                "flag `{key}` has no variant `{variant}`; it has {}",
                known.join(", ")
            );
        }
        flag.insert("defaultVariant".to_owned(), Value::from(variant));
        let mut written = serde_json::to_string_pretty(&definition)?;
        written.push('\n');
        FlagSet::parse(&written)?;
        // I/O errors stay in the chain: a caller tells a file it cannot change (a
        // read-only mount) from a bad request.
        write_whole(file, written.as_bytes())
            .with_context(|| format!("writing the flag file {}", file.display()))?;
        self.apply(&mut read, written.into_bytes(), by)?;
        Ok(())
    }

    /// Every flag of the set in use, as an operator reads it.
    pub fn describe(&self) -> Vec<FlagView> {
        self.current()
            .flags
            .iter()
            .map(|(key, flag)| FlagView {
                key: key.clone(),
                enabled: flag.enabled,
                default_variant: flag.default_variant.clone(),
                variants: flag
                    .variants
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
                targeted: flag.targeting.is_some(),
                description: flag
                    .source
                    .pointer("/metadata/description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
            .collect()
    }

    /// Re-reads the file every second until `shutdown`; a file refused is logged once
    /// per change, and the set in use stays.
    pub async fn watch(self, shutdown: Shutdown) {
        loop {
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if let Err(error) = self.reload("file") {
                tracing::error!("the flag file was not loaded, the flags in use stay: {error:#}");
            }
        }
    }

    /// What flag `key` evaluates to in `context`. The variant chosen is an event on the
    /// current span ([`EVALUATION`]): at `info` when it is not the flag's default
    /// (a user in a rollout), else at `debug`.
    pub fn resolve(&self, key: &str, context: &EvaluationContext) -> Resolution {
        let set = self.current();
        let resolution = set.resolve(key, context);
        if let Some(variant) = resolution.variant.as_deref() {
            let default = set
                .flags
                .get(key)
                .and_then(|flag| flag.default_variant.as_deref());
            if default == Some(variant) {
                tracing::debug!(
                    feature_flag.key = key,
                    feature_flag.variant = variant,
                    "feature_flag"
                );
            } else {
                tracing::info!(
                    feature_flag.key = key,
                    feature_flag.variant = variant,
                    "feature_flag"
                );
            }
        }
        resolution
    }

    /// Flag `key` as a boolean, or `default`.
    pub fn boolean(&self, key: &str, context: &EvaluationContext, default: bool) -> bool {
        self.typed(key, context, Value::as_bool).unwrap_or(default)
    }

    /// Flag `key` as a number, or `default`.
    pub fn number(&self, key: &str, context: &EvaluationContext, default: f64) -> f64 {
        self.typed(key, context, Value::as_f64).unwrap_or(default)
    }

    /// Flag `key` as a number of milliseconds to wait, at most `cap`; none when the flag
    /// is off, negative, or not a number.
    pub fn delay(&self, key: &str, context: &EvaluationContext, cap: Duration) -> Duration {
        let millis = self.number(key, context, 0.0);
        if millis.is_nan() || millis <= 0.0 {
            return Duration::ZERO;
        }
        // Capped before converting: a huge number in the file must not overflow.
        Duration::from_secs_f64((millis / 1000.0).min(cap.as_secs_f64()))
    }

    /// Flag `key` as a string, or `default`.
    pub fn string(&self, key: &str, context: &EvaluationContext, default: &str) -> String {
        self.typed(key, context, |value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    }

    fn typed<T>(
        &self,
        key: &str,
        context: &EvaluationContext,
        read: impl Fn(&Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.resolve(key, context).value?;
        let typed = read(&value);
        if typed.is_none() {
            tracing::warn!(flag = key, %value, "a feature flag's value is not of the type the code reads; its default applies");
        }
        typed
    }
}

/// Writes `content` to `file` so that no reader ever sees part of it: into a file of
/// its own beside it first (named for this process and a random number, so that
/// writers never share one), then renamed over `file`.
pub fn write_whole(file: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut draft = file.as_os_str().to_owned();
    draft.push(format!(
        ".{}-{:016x}.draft",
        std::process::id(),
        fastrand::u64(..)
    ));
    let draft = PathBuf::from(draft);
    let written = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::fs::File::create(&draft)?;
        out.write_all(content)?;
        // On disk before it replaces the file: a crash leaves the old file or the new.
        out.sync_all()
    };
    written()
        .and_then(|()| std::fs::rename(&draft, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&draft);
        })
}

fn parse_bytes(content: &[u8]) -> Result<FlagSet, FlagError> {
    let text = std::str::from_utf8(content).map_err(|error| FlagError::Shape(error.to_string()))?;
    FlagSet::parse(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(json: Value) -> FlagSet {
        FlagSet::parse(&json.to_string()).expect("a valid definition")
    }

    fn rollout() -> Value {
        json!({
            "flags": {
                "new-checkout": {
                    "state": "ENABLED",
                    "variants": {"on": true, "off": false},
                    "defaultVariant": "off",
                    "targeting": {"if": [
                        {"$ref": "staff"}, "on",
                        {"==": [{"var": "role"}, "admin"]}, "on",
                        {"==": [{"var": "headers.x-bazaar-preview"}, "checkout"]}, "on",
                        {"fractional": [["on", 20], ["off", 80]]}
                    ]}
                },
                "slow-ms": {
                    "state": "ENABLED",
                    "variants": {"none": 0, "some": 250},
                    "defaultVariant": "some"
                },
                "retired": {
                    "state": "DISABLED",
                    "variants": {"on": true, "off": false},
                    "defaultVariant": "on"
                }
            },
            "$evaluators": {"staff": {"ends_with": [{"var": "email"}, "@bazaar.test"]}}
        })
    }

    #[test]
    fn targeting_by_user_role_and_header() {
        let flags = Flags::fixed(set(rollout()));
        let user = |id: &str| EvaluationContext::new().targeting_key(id);
        assert!(flags.boolean(
            "new-checkout",
            &user("u1").with("email", "ana@bazaar.test"),
            false
        ));
        assert!(flags.boolean("new-checkout", &user("u1").with("role", "admin"), false));
        assert!(flags.boolean(
            "new-checkout",
            &user("u1").header("X-Bazaar-Preview", "checkout"),
            false
        ));
        let resolution =
            flags.resolve("new-checkout", &user("u1").with("email", "ana@bazaar.test"));
        assert_eq!(resolution.reason, Reason::TargetingMatch);
        assert_eq!(resolution.variant.as_deref(), Some("on"));
    }

    #[test]
    fn a_percentage_rollout_is_stable_per_user_and_near_its_share() {
        let flags = Flags::fixed(set(rollout()));
        let mut on = 0;
        for user in 0..2000 {
            let context = EvaluationContext::new().targeting_key(format!("01HUSER{user}"));
            let first = flags.boolean("new-checkout", &context, false);
            for _ in 0..3 {
                assert_eq!(first, flags.boolean("new-checkout", &context, false));
            }
            on += usize::from(first);
        }
        assert!(
            (330..470).contains(&on),
            "{on} of 2000 users in a 20% rollout"
        );
    }

    #[test]
    fn static_disabled_and_unknown_flags() {
        let flags = Flags::fixed(set(rollout()));
        let anyone = EvaluationContext::new();
        assert!((flags.number("slow-ms", &anyone, 0.0) - 250.0).abs() < f64::EPSILON);
        assert_eq!(flags.resolve("slow-ms", &anyone).reason, Reason::Static);
        assert!(
            !flags.boolean("retired", &anyone, false),
            "a disabled flag gives the code's default"
        );
        assert_eq!(flags.resolve("retired", &anyone).reason, Reason::Disabled);
        assert!(flags.boolean("nowhere", &anyone, true));
        assert_eq!(flags.resolve("nowhere", &anyone).reason, Reason::Unknown);
        // Asked as the wrong type: the code's default.
        assert_eq!(flags.string("slow-ms", &anyone, "fallback"), "fallback");
        let set = flags.current();
        assert!(!set.is_off("slow-ms"), "250 by default");
        assert!(set.is_off("retired") && set.is_off("nowhere"));
        assert!(!set.is_off("new-checkout"), "targeted: some users get it");
    }

    #[test]
    fn wrong_definitions_are_refused_with_the_flag_named() {
        let refused = |flags: Value| {
            FlagSet::parse(&json!({"flags": flags}).to_string())
                .expect_err("refused")
                .to_string()
        };
        let problem = refused(
            json!({"a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off"}}),
        );
        assert!(
            problem.contains("flag `a`") && problem.contains("default variant `off`"),
            "{problem}"
        );
        let problem = refused(
            json!({"b": {"state": "ENABLED", "variants": {"on": true, "n": 1}, "defaultVariant": "on"}}),
        );
        assert!(problem.contains("one type"), "{problem}");
        let problem = refused(json!({"c": {"state": "ON", "variants": {"on": true}}}));
        assert!(problem.contains("flag `c`"), "{problem}");
        let problem = refused(
            json!({"d": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"if": [true, "elsewhere"]}}}),
        );
        assert!(problem.contains("`elsewhere`"), "{problem}");
        let problem = refused(
            json!({"e": {"state": "ENABLED", "variants": {"on": true}, "targeting": {"$ref": "nobody"}}}),
        );
        assert!(problem.contains("`nobody`"), "{problem}");
        assert!(FlagSet::parse("{not json").is_err());
    }

    #[test]
    fn a_changed_file_is_reloaded_and_a_broken_one_refused() {
        let folder = std::env::temp_dir().join(format!("bazaar-flags-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).expect("a folder");
        let file = folder.join("flags.json");
        let definition = |default: &str| {
            json!({"flags": {"decline-all": {
                "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": default
            }}})
            .to_string()
        };
        std::fs::write(&file, definition("off")).expect("written");
        let flags = Flags::open(&file).expect("opened");
        let anyone = EvaluationContext::new();
        assert!(!flags.boolean("decline-all", &anyone, false));
        assert!(!flags.reload("test").expect("read"), "nothing changed");

        std::fs::write(&file, definition("on")).expect("written");
        assert!(flags.reload("test").expect("read"));
        assert!(flags.boolean("decline-all", &anyone, false));

        std::fs::write(&file, "{\"flags\": {\"decline-all\": {}}}").expect("written");
        assert!(flags.reload("test").is_err());
        assert!(
            flags.boolean("decline-all", &anyone, false),
            "the set in use stays"
        );
        std::fs::remove_dir_all(&folder).expect("removed");
    }

    #[test]
    fn a_delay_is_capped_and_never_negative_whatever_the_file_says() {
        let flags = |value: f64| {
            let definition = json!({"flags": {"slow": {
                "state": "ENABLED", "variants": {"on": value}, "defaultVariant": "on"
            }}});
            Flags::fixed(set(definition))
        };
        let anyone = EvaluationContext::new();
        let cap = Duration::from_secs(60);
        assert_eq!(flags(1e300).delay("slow", &anyone, cap), cap);
        assert_eq!(flags(-5.0).delay("slow", &anyone, cap), Duration::ZERO);
        assert_eq!(
            flags(250.0).delay("slow", &anyone, cap),
            Duration::from_millis(250)
        );
        assert_eq!(Flags::default().delay("slow", &anyone, cap), Duration::ZERO);
    }

    #[test]
    fn a_file_written_whole_is_never_read_in_part() {
        let folder = std::env::temp_dir().join(format!("bazaar-flags-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).expect("a folder");
        let file = folder.join("flags.json");
        let versions: Vec<String> = (0..4).map(|n| format!("{n}").repeat(64 * 1024)).collect();
        write_whole(&file, versions[0].as_bytes()).expect("written");
        std::thread::scope(|scope| {
            for version in &versions {
                let file = &file;
                scope.spawn(move || {
                    for _ in 0..20 {
                        write_whole(file, version.as_bytes()).expect("written");
                    }
                });
            }
            for _ in 0..200 {
                let read = std::fs::read_to_string(&file).expect("read");
                assert!(
                    versions.contains(&read),
                    "read {} bytes of a file in part",
                    read.len()
                );
            }
        });
        let left: Vec<_> = std::fs::read_dir(&folder).expect("listed").collect();
        assert_eq!(left.len(), 1, "no draft is left behind");
        std::fs::remove_dir_all(&folder).expect("removed");
    }

    #[test]
    fn an_operator_switches_a_flag_by_its_variant_in_the_file() {
        let folder = std::env::temp_dir().join(format!("bazaar-flags-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&folder).expect("a folder");
        let file = folder.join("flags.json");
        std::fs::write(&file, rollout().to_string()).expect("written");
        let flags = Flags::open(&file).expect("opened");
        let anyone = EvaluationContext::new();

        flags
            .set_default("slow-ms", "none", "ops@example.com")
            .expect("switched");
        assert!(flags.number("slow-ms", &anyone, 99.0).abs() < f64::EPSILON);
        let written =
            FlagSet::parse(&std::fs::read_to_string(&file).expect("read")).expect("valid");
        assert_eq!(
            written.resolve("slow-ms", &anyone).variant.as_deref(),
            Some("none")
        );

        let unknown = flags
            .set_default("slow-ms", "glacial", "ops")
            .expect_err("refused");
        assert!(unknown.to_string().contains("none, some"), "{unknown}");
        assert!(flags.set_default("nowhere", "on", "ops").is_err());

        let views = flags.describe();
        let slow = views
            .iter()
            .find(|view| view.key == "slow-ms")
            .expect("listed");
        assert_eq!(slow.default_variant.as_deref(), Some("none"));
        assert!(!slow.targeted);
        assert!(
            views
                .iter()
                .any(|view| view.key == "new-checkout" && view.targeted)
        );
        assert!(
            Flags::default()
                .set_default("slow-ms", "none", "ops")
                .is_err(),
            "no file"
        );
        std::fs::remove_dir_all(&folder).expect("removed");
    }
}
