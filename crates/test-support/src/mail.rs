//! Reading the RFC 5322 messages the shop sends, from its mailbox folder or an SMTP
//! sink: headers unfolded, bodies decoded, and the link of a confirmation email.

use std::path::Path;
use std::time::Duration;

/// An RFC 5322 message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail(pub Vec<u8>);

impl Mail {
    /// The message as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// The value of the first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// Everything after the header as it was sent.
    pub fn raw_body(&self) -> String {
        let text = self.text();
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// The body, decoded if it was sent quoted-printable (lines over 76 characters).
    pub fn body(&self) -> String {
        let body = self.raw_body();
        if self
            .header("Content-Transfer-Encoding")
            .is_some_and(|encoding| encoding.eq_ignore_ascii_case("quoted-printable"))
        {
            decode_quoted_printable(&body)
        } else {
            body
        }
    }
}

/// Undoes quoted-printable (RFC 2045 §6.7): soft line breaks and `=XX` escapes.
pub fn decode_quoted_printable(text: &str) -> String {
    let bytes = text.replace("=\r\n", "").into_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'=')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The subject of the email that confirms a new account.
const CONFIRM_SUBJECT: &str = "Confirm your Bazaar account";

/// The link of the newest confirmation email to `email` in the mailbox folder `dir`
/// (files are named by time-ordered ids), waiting up to 20 s for one that was not
/// handed out before: each is returned once, and then deleted.
pub async fn confirmation_link(dir: &Path, email: &str) -> String {
    let arrived = format!(
        "a confirmation email to {email} arriving in {}",
        dir.display()
    );
    let (path, link) = crate::eventually(&arrived, Duration::from_secs(20), || async {
        newest_confirmation(dir, email).ok_or("none yet")
    })
    .await;
    std::fs::remove_file(&path).expect("the confirmation email is handed out once");
    link
}

/// The file and link of the newest confirmation email to `email` in `dir`, if any.
fn newest_confirmation(dir: &Path, email: &str) -> Option<(std::path::PathBuf, String)> {
    let mut newest: Option<(String, std::path::PathBuf, String)> = None;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".eml") || name.starts_with('.') {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path()) else {
            continue;
        };
        let mail = Mail(raw);
        let to_them = mail
            .header("To")
            .is_some_and(|to| to.trim_matches(['<', '>']).eq_ignore_ascii_case(email));
        if !to_them || mail.header("Subject").as_deref() != Some(CONFIRM_SUBJECT) {
            continue;
        }
        let Some(link) = mail
            .body()
            .lines()
            .find(|line| line.contains("/confirm?token="))
            .map(|line| line.trim().to_owned())
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|(seen, ..)| name > *seen) {
            newest = Some((name, entry.path(), link));
        }
    }
    newest.map(|(_, path, link)| (path, link))
}

/// The token of a confirmation link.
pub fn token_of(link: &str) -> &str {
    link.split_once("token=")
        .map(|(_, token)| token)
        .expect("a confirmation link")
}

/// Registers `email` with `password` at the shop whose gateway is at `gateway` (e.g.
/// `http://127.0.0.1:8080`), confirms it with the link mailed into `mailbox`, and
/// returns the token response (signed in).
pub async fn sign_up(
    client: &reqwest::Client,
    gateway: &str,
    mailbox: &Path,
    email: &str,
    password: &str,
) -> serde_json::Value {
    let registered = client
        .post(format!("{gateway}/api/identity/register"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(registered.status().as_u16(), 202, "registering {email}");
    let link = confirmation_link(mailbox, email).await;
    let confirmed = client
        .post(format!("{gateway}/api/identity/confirm"))
        .json(&serde_json::json!({"token": token_of(&link), "password": password}))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(confirmed.status().as_u16(), 200, "confirming {email}");
    confirmed.json().await.expect("JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_soft_breaks_and_escapes_are_undone() {
        assert_eq!(
            decode_quoted_printable("a long=\r\n line =C3=A9t=C3=A9 =3D done"),
            "a long line été = done"
        );
    }

    #[test]
    fn headers_are_unfolded_and_bodies_decoded() {
        let mail = Mail(
            b"To: ada@example.com\r\nSubject: a\r\n long one\r\n\
              Content-Transfer-Encoding: quoted-printable\r\n\r\nx=3Dy"
                .to_vec(),
        );
        assert_eq!(mail.header("subject").as_deref(), Some("a long one"));
        assert_eq!(mail.body(), "x=y");
        assert_eq!(mail.raw_body(), "x=3Dy");
    }
}
