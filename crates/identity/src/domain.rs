//! Identity's domain: email addresses, the password policy, users. Pure.

use std::collections::HashSet;
use std::sync::LazyLock;

use contracts::identity::Role;

/// A normalised email address: trimmed and lower-cased, so one mailbox is one account.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// The longest address accepted (RFC 5321's path limit).
    pub const MAX_LEN: usize = 254;

    /// Parses and normalises an address, or says what is wrong with it.
    ///
    /// One person must not hold look-alike accounts, so the address is normalised to
    /// one form: NFKC (fullwidth `ａｄａ` is `ada`), lower case, the domain in its ASCII
    /// form (IDNA, UTS 46: an internationalised domain becomes its `xn--` name). What
    /// could only disguise an address is refused: invisible characters (zero-width
    /// spaces and joiners, soft hyphens, direction overrides), quoted local parts, and
    /// local parts outside ASCII (where a Cyrillic `а` would pass for a Latin `a`).
    pub fn parse(text: &str) -> Result<Self, String> {
        use unicode_normalization::UnicodeNormalization as _;
        let shape = || "must be an email address like name@example.com".to_owned();
        let text = text.trim();
        if text.chars().any(is_invisible) {
            return Err("must not contain invisible characters".to_owned());
        }
        let email: String = text.nfkc().collect::<String>().to_lowercase();
        if email.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err(shape());
        };
        if local.contains('"') {
            return Err("must not be a quoted address".to_owned());
        }
        if !local
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b'@')
        {
            return Err(
                "the part before @ must be ASCII letters, digits and punctuation".to_owned(),
            );
        }
        let domain = idna::domain_to_ascii(domain).map_err(|_| shape())?;
        let plausible = (1..=64).contains(&local.len())
            && domain.len() >= 3
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.');
        let email = format!("{local}@{domain}");
        if plausible && email.len() <= Self::MAX_LEN {
            Ok(Self(email))
        } else {
            Err(shape())
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }
}

/// Characters that show nothing (or reorder what is shown): a way to make two
/// addresses look the same.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
}

/// The password rules, in the spirit of NIST SP 800-63B: long enough, not absurdly long,
/// not a commonly used password, not built from the account's own name. No composition
/// rules (they make passwords harder to remember, not to guess).
#[derive(Clone, Copy, Debug)]
pub struct PasswordPolicy {
    /// The fewest characters accepted.
    pub min_chars: usize,
    /// The most characters accepted.
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    /// 15 characters, the minimum SP 800-63B-4 sets for a password that is the only
    /// factor; 128 at most, well above the 64 it asks verifiers to allow.
    fn default() -> Self {
        Self {
            min_chars: 15,
            max_chars: 128,
        }
    }
}

/// Frequency-ranked common passwords, shipped with the service.
static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect()
});

impl PasswordPolicy {
    /// Checks `password` for the account `email`, saying what is wrong with it.
    pub fn check(&self, password: &str, email: &Email) -> Result<(), String> {
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(format!(
                "must be at least {} characters; a few unrelated words make a good one",
                self.min_chars
            ));
        }
        if chars > self.max_chars {
            return Err(format!("must be at most {} characters", self.max_chars));
        }
        let lowered = password.to_lowercase();
        if COMMON.contains(lowered.as_str()) || repeats_a_short_unit(&lowered) {
            return Err("is too common or too easy to guess".to_owned());
        }
        let local = email.local_part();
        if (local.len() >= 4 && lowered.contains(local)) || lowered.contains("bazaar") {
            return Err("must not contain your email name or the shop's name".to_owned());
        }
        Ok(())
    }
}

/// `aaaaaaaaaaaaaaa`, `abcabcabcabcabc`, `passwordpassword`: one unit, repeated.
fn repeats_a_short_unit(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    (1..=chars.len() / 2).any(|unit| {
        chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|chunk| chunk == &chars[..unit])
    })
}

/// Roles as stored: a comma-separated list.
pub fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Roles from their stored form; unknown names are dropped.
pub fn roles_from_text(text: &str) -> Vec<Role> {
    text.split(',').filter_map(Role::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(text: &str) -> Email {
        Email::parse(text).expect("valid")
    }

    #[test]
    fn emails_are_normalised() {
        assert_eq!(
            email("  Ada.Lovelace@Example.COM ").as_str(),
            "ada.lovelace@example.com"
        );
    }

    #[test]
    fn look_alike_addresses_are_one_address_or_refused() {
        // The same address, written otherwise: one account.
        for same in [
            "ａｄａ@example.com",
            "ada@ｅｘａｍｐｌｅ.com",
            "ADA@EXAMPLE.COM",
        ] {
            assert_eq!(email(same).as_str(), "ada@example.com", "{same:?}");
        }
        // Disguises: refused.
        for disguised in [
            "ad\u{200B}a@example.com",
            "ad\u{00AD}a@example.com",
            "ada\u{202E}@example.com",
            "\u{FEFF}ada@example.com",
            "\"ada\"@example.com",
            "\"a da\"@example.com",
            "\u{0430}da@example.com",
        ] {
            assert!(Email::parse(disguised).is_err(), "{disguised:?} accepted");
        }
        // An internationalised domain is kept, in its ASCII form.
        assert_eq!(
            email("ada@bücher.example").as_str(),
            "ada@xn--bcher-kva.example"
        );
    }

    #[test]
    fn implausible_emails_are_refused() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@.example.com",
            &long,
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_password_policy_wants_long_uncommon_passwords() {
        let policy = PasswordPolicy::default();
        let ada = email("ada@example.com");
        assert!(policy.check("correct horse battery staple", &ada).is_ok());
        assert!(policy.check("short", &ada).is_err());
        assert!(policy.check(&"x".repeat(129), &ada).is_err());
        assert!(policy.check("aaaaaaaaaaaaaaaaaaaa", &ada).is_err());
        assert!(policy.check("passwordpassword", &ada).is_err());
        assert!(
            policy
                .check("adalovelace-is-great", &email("adalovelace@example.com"))
                .is_err()
        );
        assert!(policy.check("my-bazaar-password-2026", &ada).is_err());
        let lenient = PasswordPolicy {
            min_chars: 8,
            max_chars: 64,
        };
        assert!(
            lenient.check("Password1", &ada).is_err(),
            "a listed password passed"
        );
        assert!(
            lenient.check("qwertyuiop", &ada).is_err(),
            "a listed password passed"
        );
    }

    #[test]
    fn roles_survive_storage() {
        let roles = [Role::Customer, Role::Admin];
        assert_eq!(roles_from_text(&roles_to_text(&roles)), roles);
    }
}
