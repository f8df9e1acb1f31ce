//! Targeting rules: the JsonLogic subset flagd evaluates, compiled once when a flag
//! file is read, so that a rule the shop cannot evaluate is refused with the file
//! instead of failing on a request.
//!
//! Supported: `var` (dotted paths, with a default), `if`, `==`, `!=`, `===`, `!==`, `!`,
//! `!!`, `and`, `or`, `<`, `<=` (both also as "between"), `>`, `>=`, `in`, `cat`,
//! and flagd's `starts_with`, `ends_with` and `fractional`. Values compare as
//! JavaScript's loose rules would for the cases flags meet: numbers with numbers (a
//! numeric string counts as its number), strings with strings, and anything with itself.

use serde_json::{Map, Value};

/// A compiled targeting rule.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Rule {
    /// A constant.
    Literal(Value),
    /// An array whose items are rules.
    List(Vec<Rule>),
    /// A value of the evaluation context by dotted path, or `default` when it is absent.
    Var(Vec<String>, Option<Box<Rule>>),
    /// `if` with condition/value pairs and an optional `else`.
    If(Vec<Rule>),
    /// A comparison or combination with its operands.
    Op(Op, Vec<Rule>),
    /// flagd's `fractional`: a stable bucket of `by` (the flag key and the targeting key
    /// when absent) chooses among the weighted variants.
    Fractional {
        /// What is hashed, when not the flag key and the targeting key.
        by: Option<Box<Rule>>,
        /// Variants with their weights.
        buckets: Vec<(String, u64)>,
    },
}

/// The operators other than `var`, `if` and `fractional`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Equal,
    NotEqual,
    StrictEqual,
    StrictNotEqual,
    Not,
    Truthy,
    And,
    Or,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    In,
    Cat,
    StartsWith,
    EndsWith,
}

impl Op {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "==" => Self::Equal,
            "!=" => Self::NotEqual,
            "===" => Self::StrictEqual,
            "!==" => Self::StrictNotEqual,
            "!" => Self::Not,
            "!!" => Self::Truthy,
            "and" => Self::And,
            "or" => Self::Or,
            "<" => Self::Less,
            "<=" => Self::LessOrEqual,
            ">" => Self::Greater,
            ">=" => Self::GreaterOrEqual,
            "in" => Self::In,
            "cat" => Self::Cat,
            "starts_with" => Self::StartsWith,
            "ends_with" => Self::EndsWith,
            _ => return None,
        })
    }
}

impl Rule {
    /// Compiles `value`, a JsonLogic expression; says what is wrong when it is not one
    /// the shop evaluates.
    pub(crate) fn compile(value: &Value) -> Result<Self, String> {
        match value {
            Value::Array(items) => Ok(Self::List(
                items.iter().map(Self::compile).collect::<Result<_, _>>()?,
            )),
            Value::Object(object) if object.len() == 1 => {
                let (name, arguments) = object.iter().next().expect("one entry");
                Self::operation(name, arguments)
            }
            Value::Object(object) if object.is_empty() => Ok(Self::Literal(Value::Null)),
            Value::Object(_) => Err("an operation must be an object with one key".to_owned()),
            other => Ok(Self::Literal(other.clone())),
        }
    }

    fn operation(name: &str, arguments: &Value) -> Result<Self, String> {
        let listed = |arguments: &Value| -> Result<Vec<Rule>, String> {
            match arguments {
                Value::Array(items) => items.iter().map(Self::compile).collect(),
                single => Ok(vec![Self::compile(single)?]),
            }
        };
        match name {
            "var" => {
                let (path, default) = match arguments {
                    Value::Array(items) => (
                        items.first().cloned().unwrap_or(Value::Null),
                        items.get(1).map(Self::compile).transpose()?,
                    ),
                    single => (single.clone(), None),
                };
                let path = match path {
                    Value::String(path) if path.is_empty() => Vec::new(),
                    Value::String(path) => path.split('.').map(str::to_owned).collect(),
                    Value::Number(index) => vec![index.to_string()],
                    Value::Null => Vec::new(),
                    _ => return Err("`var` takes a path".to_owned()),
                };
                Ok(Self::Var(path, default.map(Box::new)))
            }
            "if" | "?:" => Ok(Self::If(listed(arguments)?)),
            "fractional" => Self::fractional(arguments),
            _ => match Op::named(name) {
                Some(op) => Ok(Self::Op(op, listed(arguments)?)),
                None => Err(format!("the operator `{name}` is not supported")),
            },
        }
    }

    fn fractional(arguments: &Value) -> Result<Self, String> {
        let Value::Array(items) = arguments else {
            return Err("`fractional` takes an array of [variant, weight] pairs".to_owned());
        };
        let is_bucket = |item: &Value| {
            item.as_array()
                .is_some_and(|pair| pair.first().is_some_and(Value::is_string))
        };
        let (by, rest) = match items.split_first() {
            Some((first, rest)) if !is_bucket(first) => {
                (Some(Box::new(Self::compile(first)?)), rest)
            }
            _ => (None, items.as_slice()),
        };
        let buckets = rest
            .iter()
            .map(|bucket| {
                let pair = bucket
                    .as_array()
                    .filter(|pair| is_bucket(bucket) && pair.len() <= 2);
                let pair = pair.ok_or("each `fractional` bucket is [variant, weight]")?;
                let variant = pair[0].as_str().unwrap_or_default().to_owned();
                let weight = match pair.get(1) {
                    None => 1,
                    Some(weight) => weight
                        .as_u64()
                        .ok_or("a `fractional` weight is a whole number")?,
                };
                Ok((variant, weight))
            })
            .collect::<Result<Vec<_>, &str>>()?;
        if buckets.is_empty() || buckets.iter().all(|(_, weight)| *weight == 0) {
            return Err("`fractional` needs a bucket with a weight".to_owned());
        }
        if buckets
            .iter()
            .try_fold(0_u64, |total, (_, weight)| total.checked_add(*weight))
            .is_none_or(|total| total > u64::from(u32::MAX))
        {
            return Err("`fractional` weights add up to more than 4294967295".to_owned());
        }
        Ok(Self::Fractional { by, buckets })
    }

    /// The variants this rule can name directly (as a constant or a bucket), to check
    /// that a flag defines them.
    pub(crate) fn named_variants(&self, into: &mut Vec<String>) {
        match self {
            Self::Literal(Value::String(name)) => into.push(name.clone()),
            Self::Literal(_) | Self::Var(..) => {}
            Self::Fractional { buckets, .. } => {
                into.extend(buckets.iter().map(|(variant, _)| variant.clone()));
            }
            Self::If(rules) => {
                // The values, not the conditions: every second item and the `else`.
                for (index, rule) in rules.iter().enumerate() {
                    if index % 2 == 1 || index == rules.len() - 1 {
                        rule.named_variants(into);
                    }
                }
            }
            Self::List(_) | Self::Op(..) => {}
        }
    }

    /// The rule's value over `data`, the evaluation context; `flag` is the flag's key,
    /// hashed by `fractional`.
    pub(crate) fn evaluate(&self, data: &Map<String, Value>, flag: &str) -> Value {
        match self {
            Self::Literal(value) => value.clone(),
            Self::List(rules) => {
                Value::Array(rules.iter().map(|rule| rule.evaluate(data, flag)).collect())
            }
            Self::Var(path, default) => lookup(data, path)
                .cloned()
                .filter(|value| !value.is_null())
                .or_else(|| default.as_ref().map(|rule| rule.evaluate(data, flag)))
                .unwrap_or(Value::Null),
            Self::If(rules) => {
                let mut rest = rules.as_slice();
                while let [condition, then, tail @ ..] = rest {
                    if truthy(&condition.evaluate(data, flag)) {
                        return then.evaluate(data, flag);
                    }
                    rest = tail;
                }
                rest.first()
                    .map_or(Value::Null, |otherwise| otherwise.evaluate(data, flag))
            }
            Self::Op(op, rules) => operate(*op, rules, data, flag),
            Self::Fractional { by, buckets } => {
                let key = match by {
                    Some(by) => text(&by.evaluate(data, flag)),
                    None => {
                        let targeting_key = data.get("targetingKey").map(text).unwrap_or_default();
                        format!("{flag}{targeting_key}")
                    }
                };
                Value::String(bucket(&key, buckets).to_owned())
            }
        }
    }
}

fn operate(op: Op, rules: &[Rule], data: &Map<String, Value>, flag: &str) -> Value {
    let value = |index: usize| {
        rules
            .get(index)
            .map_or(Value::Null, |rule| rule.evaluate(data, flag))
    };
    let boolean = |truth: bool| Value::Bool(truth);
    match op {
        Op::Equal => boolean(loosely_equal(&value(0), &value(1))),
        Op::NotEqual => boolean(!loosely_equal(&value(0), &value(1))),
        Op::StrictEqual => boolean(value(0) == value(1)),
        Op::StrictNotEqual => boolean(value(0) != value(1)),
        Op::Not => boolean(!truthy(&value(0))),
        Op::Truthy => boolean(truthy(&value(0))),
        // Both answer the operand that decided, as JsonLogic does.
        Op::And => {
            let mut last = Value::Bool(true);
            for rule in rules {
                last = rule.evaluate(data, flag);
                if !truthy(&last) {
                    break;
                }
            }
            last
        }
        Op::Or => {
            let mut last = Value::Bool(false);
            for rule in rules {
                last = rule.evaluate(data, flag);
                if truthy(&last) {
                    break;
                }
            }
            last
        }
        Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual => {
            let values: Vec<Value> = rules.iter().map(|rule| rule.evaluate(data, flag)).collect();
            let holds = |ordering: Option<std::cmp::Ordering>| {
                ordering.is_some_and(|ordering| match op {
                    Op::Less => ordering.is_lt(),
                    Op::LessOrEqual => ordering.is_le(),
                    Op::Greater => ordering.is_gt(),
                    _ => ordering.is_ge(),
                })
            };
            // Two operands compare; three (`<` and `<=` only) test "between".
            boolean(
                values.len() >= 2
                    && values
                        .windows(2)
                        .all(|pair| holds(compare(&pair[0], &pair[1]))),
            )
        }
        Op::In => boolean(match (value(0), value(1)) {
            (needle, Value::Array(items)) => items.iter().any(|item| loosely_equal(&needle, item)),
            (Value::String(needle), Value::String(haystack)) => haystack.contains(&needle),
            _ => false,
        }),
        Op::Cat => Value::String(
            rules
                .iter()
                .map(|rule| text(&rule.evaluate(data, flag)))
                .collect(),
        ),
        Op::StartsWith | Op::EndsWith => boolean(match (value(0), value(1)) {
            (Value::String(whole), Value::String(part)) if op == Op::StartsWith => {
                whole.starts_with(&part)
            }
            (Value::String(whole), Value::String(part)) => whole.ends_with(&part),
            _ => false,
        }),
    }
}

/// The value at `path` in `data`.
fn lookup<'a>(data: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut value = data.get(first)?;
    for step in rest {
        value = match value {
            Value::Object(object) => object.get(step)?,
            Value::Array(items) => items.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// JavaScript's truthiness: `false`, `null`, `0`, `""` and `[]` are false.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(truth) => *truth,
        Value::Number(number) => number.as_f64().is_some_and(|number| number != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

/// A value as text: strings as they are, anything else as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        Value::Bool(truth) => Some(f64::from(u8::from(*truth))),
        _ => None,
    }
}

fn loosely_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::String(left), Value::String(right)) => left == right,
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (
            Value::Number(_) | Value::String(_) | Value::Bool(_),
            Value::Number(_) | Value::String(_) | Value::Bool(_),
        ) => match (number(left), number(right)) {
            (Some(left), Some(right)) => left == right,
            _ => false,
        },
        _ => left == right,
    }
}

fn compare(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::String(left), Value::String(right)) => Some(left.cmp(right)),
        _ => number(left)?.partial_cmp(&number(right)?),
    }
}

/// The variant `key` falls in: flagd's bucketing, so that a user gets the same variant
/// here as from flagd. The key's 32-bit MurmurHash3, read as signed, maps to a point in
/// [0, 100]; each variant owns a share of that line in proportion to its weight.
pub(crate) fn bucket<'a>(key: &str, buckets: &'a [(String, u64)]) -> &'a str {
    #[allow(clippy::cast_possible_wrap, reason = "flagd reads the hash as signed")]
    let hash = murmur3_32(key.as_bytes(), 0) as i32;
    let point = f64::from(hash).abs() / f64::from(i32::MAX) * 100.0;
    let total: u64 = buckets.iter().map(|(_, weight)| weight).sum();
    let mut edge = 0.0;
    for (variant, weight) in buckets {
        #[allow(
            clippy::cast_precision_loss,
            reason = "weights are small whole numbers"
        )]
        let share = *weight as f64 * 100.0 / total as f64;
        edge += share;
        if point < edge {
            return variant;
        }
    }
    // Only a rounding error at the very end of the line gets here.
    buckets.last().map_or("", |(variant, _)| variant)
}

/// MurmurHash3's 32-bit x86 variant.
fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let scramble = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut hash = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        hash ^= scramble(k);
        hash = hash
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .rev()
            .fold(0_u32, |k, &byte| (k << 8) | u32::from(byte));
        hash ^= scramble(k);
    }
    #[allow(
        clippy::cast_possible_truncation,
        reason = "MurmurHash3 mixes in the length modulo 2^32"
    )]
    let length = data.len() as u32;
    hash ^= length;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn evaluate(rule: Value, data: Value) -> Value {
        let data = data.as_object().cloned().unwrap_or_default();
        Rule::compile(&rule)
            .expect("compiles")
            .evaluate(&data, "flag")
    }

    #[test]
    fn murmur3_matches_the_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"test", 0), 0xba6b_d213);
        assert_eq!(murmur3_32(b"Hello, world!", 0), 0xc036_3e43);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2e4f_f723
        );
        assert_eq!(murmur3_32(b"abc", 0), 0xb3dd_93fa);
    }

    #[test]
    fn vars_read_dotted_paths_with_defaults() {
        let data = json!({"role": "admin", "headers": {"x-canary": "yes"}, "items": [3, 4]});
        assert_eq!(
            evaluate(json!({"var": "role"}), data.clone()),
            json!("admin")
        );
        assert_eq!(
            evaluate(json!({"var": "headers.x-canary"}), data.clone()),
            json!("yes")
        );
        assert_eq!(evaluate(json!({"var": "items.1"}), data.clone()), json!(4));
        assert_eq!(
            evaluate(json!({"var": ["missing", "none"]}), data.clone()),
            json!("none")
        );
        assert_eq!(
            evaluate(json!({"var": "missing.deeper"}), data),
            Value::Null
        );
    }

    #[test]
    fn conditions_choose_the_first_true_branch() {
        let rule = json!({"if": [
            {"==": [{"var": "role"}, "admin"]}, "on",
            {"in": [{"var": "email"}, ["a@example.com", "b@example.com"]]}, "listed",
            "off"
        ]});
        assert_eq!(
            evaluate(rule.clone(), json!({"role": "admin"})),
            json!("on")
        );
        assert_eq!(
            evaluate(rule.clone(), json!({"email": "b@example.com"})),
            json!("listed")
        );
        assert_eq!(evaluate(rule, json!({})), json!("off"));
    }

    #[test]
    fn comparisons_follow_loose_rules() {
        assert_eq!(evaluate(json!({"==": [1, "1"]}), json!({})), json!(true));
        assert_eq!(evaluate(json!({"===": [1, "1"]}), json!({})), json!(false));
        assert_eq!(
            evaluate(json!({"<": [1, {"var": "n"}, 10]}), json!({"n": 5})),
            json!(true)
        );
        assert_eq!(
            evaluate(json!({"<": [1, {"var": "n"}, 10]}), json!({"n": 10})),
            json!(false)
        );
        assert_eq!(evaluate(json!({">=": ["b", "a"]}), json!({})), json!(true));
        assert_eq!(
            evaluate(json!({"and": [true, {"!": [false]}]}), json!({})),
            json!(true)
        );
        assert_eq!(
            evaluate(json!({"or": [0, "", "first"]}), json!({})),
            json!("first")
        );
        assert_eq!(
            evaluate(
                json!({"starts_with": [{"var": "email"}, "ops@"]}),
                json!({"email": "ops@example.com"})
            ),
            json!(true)
        );
        assert_eq!(
            evaluate(
                json!({"ends_with": [{"var": "email"}, "@example.com"]}),
                json!({"email": "ops@example.com"})
            ),
            json!(true)
        );
        assert_eq!(
            evaluate(json!({"in": ["shop", "workshop"]}), json!({})),
            json!(true)
        );
        assert_eq!(
            evaluate(json!({"cat": ["a", 1, {"var": "x"}]}), json!({"x": "b"})),
            json!("a1b")
        );
    }

    #[test]
    fn unsupported_operators_and_bad_buckets_are_refused() {
        assert!(
            Rule::compile(&json!({"sem_ver": ["1.0.0", ">", "0.9.0"]}))
                .unwrap_err()
                .contains("sem_ver")
        );
        assert!(Rule::compile(&json!({"fractional": [["on", "half"]]})).is_err());
        assert!(Rule::compile(&json!({"fractional": [["on", 0]]})).is_err());
        assert!(Rule::compile(&json!({"fractional": [["on", u64::MAX], ["off", 1]]})).is_err());
        assert!(Rule::compile(&json!({"a": 1, "b": 2})).is_err());
    }

    #[test]
    fn fractional_buckets_are_stable_and_proportional() {
        let rule = json!({"fractional": [["on", 25], ["off", 75]]});
        let rule = Rule::compile(&rule).expect("compiles");
        let mut on = 0;
        for user in 0..4000 {
            let data = json!({"targetingKey": format!("user-{user}")});
            let data = data.as_object().expect("object");
            let first = rule.evaluate(data, "new-checkout");
            assert_eq!(
                first,
                rule.evaluate(data, "new-checkout"),
                "the same user, the same variant"
            );
            if first == json!("on") {
                on += 1;
            }
        }
        assert!((850..1150).contains(&on), "{on} of 4000 in a 25% bucket");
    }

    #[test]
    fn fractional_hashes_the_flag_key_and_the_targeting_key_or_what_it_is_given() {
        let buckets = vec![("a".to_owned(), 50), ("b".to_owned(), 50)];
        let data = json!({"targetingKey": "user-7", "email": "x@example.com"});
        let data = data.as_object().expect("object");
        let implicit = Rule::Fractional {
            by: None,
            buckets: buckets.clone(),
        };
        assert_eq!(
            implicit.evaluate(data, "flag"),
            json!(bucket("flaguser-7", &buckets))
        );
        let explicit =
            Rule::compile(&json!({"fractional": [{"var": "email"}, ["a", 50], ["b", 50]]}))
                .expect("compiles");
        assert_eq!(
            explicit.evaluate(data, "flag"),
            json!(bucket("x@example.com", &buckets))
        );
    }
}
