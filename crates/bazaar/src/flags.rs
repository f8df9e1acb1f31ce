//! The shop's feature flags: the ones it knows, the file a shop reads them from, and
//! the `bazaar flags` command that lists and switches them.

use std::fmt::Write as _;

use platform::flags::{FlagSet, Flags};

use crate::Config;

/// Every flag the shop knows, all off: written as the flag file when there is none.
pub const DEFAULT_FLAGS: &str = include_str!("../flags.json");

/// The shop's feature flags, from the configured file (`flags.file`, resolved). A
/// missing file is written with [`DEFAULT_FLAGS`] first, so that a learner finds every
/// flag there to switch; where it cannot be written (a read-only mount), the flags are
/// those definitions, fixed. A file that is not a valid definition is an error.
pub fn open(config: &Config) -> anyhow::Result<Flags> {
    let shipped = || Ok(Flags::fixed(FlagSet::parse(DEFAULT_FLAGS)?));
    let Some(file) = &config.flags.file else {
        return shipped();
    };
    if !file.exists() {
        // Written whole and renamed into place: the processes of a shop that share a
        // data folder start together, and one must never read half of another's file.
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| platform::flags::write_whole(file, DEFAULT_FLAGS.as_bytes()));
        if let Err(error) = written {
            tracing::warn!(file = %file.display(), %error, "the flag file cannot be written; the shop's flags stay off");
            return shipped();
        }
    }
    Flags::open(file)
}

/// `bazaar flags`: every flag with its variants, the default marked, and what it does.
pub fn list(config: &Config) -> anyhow::Result<String> {
    let config = config.clone().resolved();
    let flags = open(&config)?;
    let mut listing = String::new();
    if let Some(file) = &config.flags.file {
        writeln!(listing, "flags in {}\n", file.display())?;
    }
    for flag in flags.describe() {
        let variants: Vec<String> = flag
            .variants
            .iter()
            .map(|(name, value)| {
                let chosen = if flag.default_variant.as_deref() == Some(name) {
                    "*"
                } else {
                    ""
                };
                format!("{chosen}{name}={value}")
            })
            .collect();
        let mut state = Vec::new();
        if !flag.enabled {
            state.push("disabled");
        }
        if flag.targeted {
            state.push("targeted");
        }
        let state = if state.is_empty() {
            String::new()
        } else {
            format!(" ({})", state.join(", "))
        };
        writeln!(listing, "{}{state}: {}", flag.key, variants.join(" "))?;
        if let Some(description) = &flag.description {
            writeln!(listing, "    {description}")?;
        }
    }
    Ok(listing)
}

/// `bazaar flags set`: gives everyone `variant` of `flag` (a targeting rule, if the flag
/// has one, still chooses for those it matches). A running shop reads the change within
/// a second.
pub fn set(config: &Config, flag: &str, variant: &str) -> anyhow::Result<String> {
    let config = config.clone().resolved();
    let flags = open(&config)?;
    flags.set_default(flag, variant, "bazaar flags set")?;
    Ok(format!("{flag} is now {variant}"))
}
