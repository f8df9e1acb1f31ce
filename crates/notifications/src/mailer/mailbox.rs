//! The mailbox: each email as an RFC 5322 `.eml` file in a folder, named by its
//! notification's id, which any mail client opens.
//!
//! A file appears whole or not at all: the message is written to a hidden temporary file,
//! flushed to disk, then linked under its final name, which fails if that name exists. So
//! a crash never leaves half a message, and an email sent again (the process died before
//! marking it sent) does not overwrite or duplicate the first.

use std::fs::File;
use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures_util::future::BoxFuture;

use super::{Letter, MailError, Mailer};
use crate::domain::NotificationId;

/// Temporary files older than this were left by a crash and are removed at start.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// Writes emails as files into one folder.
#[derive(Clone, Debug)]
pub struct Mailbox {
    dir: PathBuf,
}

impl Mailbox {
    /// The mailbox in `dir`, created if needed. Temporary files a crash left behind are
    /// removed.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the mailbox {}", dir.display()))?;
        let entries = std::fs::read_dir(dir)
            .with_context(|| format!("reading the mailbox {}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok()
                .and_then(|modified| SystemTime::now().duration_since(modified).ok())
                .is_some_and(|age| age > STALE_TEMPORARY);
            if name.starts_with('.') && name.ends_with(".tmp") && stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the email of notification `id` is (or will be) kept.
    pub fn path_of(&self, id: &NotificationId) -> PathBuf {
        self.dir.join(format!("{id}.eml"))
    }
}

impl Mailer for Mailbox {
    fn deliver<'a>(&'a self, letter: &'a Letter) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let target = self.path_of(&letter.notification_id);
            let temporary = self.dir.join(format!(
                ".{}.{}.tmp",
                letter.notification_id,
                uuid::Uuid::now_v7().simple()
            ));
            let bytes = letter.message.formatted();
            let dir = self.dir.clone();
            let written =
                tokio::task::spawn_blocking(move || write_once(&dir, &temporary, &target, &bytes))
                    .await
                    .map_err(|error| MailError::Transient(error.into()))?;
            match written {
                Ok(true) => Ok(()),
                Ok(false) => {
                    tracing::info!(
                        notification = %letter.notification_id,
                        "the mailbox already holds this email; not writing it again"
                    );
                    Ok(())
                }
                // A full disk or a permission fixed by an operator: worth another try.
                Err(error) => Err(MailError::Transient(
                    anyhow::Error::new(error).context("writing to the mailbox"),
                )),
            }
        })
    }
}

/// Writes `bytes` to `target` unless it exists, through `temporary`. Returns whether it
/// wrote.
fn write_once(dir: &Path, temporary: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    if target.exists() {
        return Ok(false);
    }
    let written = (|| {
        let mut file = File::create_new(temporary)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(temporary);
        return Err(error);
    }
    // A hard link refuses an existing name, so of two writers racing on one email only
    // one places it. Where links are not supported, a rename still places it whole.
    let placed = match std::fs::hard_link(temporary, target) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(_) => std::fs::rename(temporary, target).map(|()| true),
    };
    let _ = std::fs::remove_file(temporary);
    let placed = placed?;
    // The new name is durable once the folder is.
    File::open(dir)?.sync_all()?;
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Kind;
    use crate::mailer::compose;
    use crate::store::Claimed;

    fn letter(body: &str) -> Letter {
        let claimed = Claimed {
            id: NotificationId::parse("0192f0c4-aaaa-7bbb-8ccc-123456789abc").expect("an id"),
            kind: Kind::Welcome,
            email: "ada@example.com".to_owned(),
            subject: "Welcome to Bazaar".to_owned(),
            body: body.to_owned(),
            attempts: 0,
            created_at_ms: 1_700_000_000_000,
        };
        let from = "Bazaar <shop@bazaar.localhost>".parse().expect("a mailbox");
        compose(&from, &claimed).expect("composed")
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("a folder")
            .map(|entry| {
                entry
                    .expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn an_email_is_written_once_under_its_id() {
        let folder = tempfile::tempdir().expect("a folder");
        let mailbox = Mailbox::open(&folder.path().join("mailbox")).expect("opened");
        mailbox
            .deliver(&letter("first\n"))
            .await
            .expect("delivered");
        mailbox
            .deliver(&letter("a different body\n"))
            .await
            .expect("delivered again");
        assert_eq!(
            files(mailbox.dir()),
            ["0192f0c4-aaaa-7bbb-8ccc-123456789abc.eml"],
            "no temporary file is left"
        );
        let text = std::fs::read_to_string(mailbox.path_of(&letter("").notification_id))
            .expect("the file");
        assert!(
            text.ends_with("\r\n\r\nfirst\r\n"),
            "the first write stays: {text}"
        );
    }

    #[tokio::test]
    async fn stale_temporary_files_are_removed_at_start() {
        let folder = tempfile::tempdir().expect("a folder");
        let stale = folder.path().join(".x.y.tmp");
        let fresh = folder.path().join(".x.z.tmp");
        std::fs::write(&stale, "half a mess").expect("written");
        std::fs::write(&fresh, "being written").expect("written");
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|file| file.set_modified(SystemTime::now() - 2 * STALE_TEMPORARY))
            .expect("aged");
        Mailbox::open(folder.path()).expect("opened");
        assert_eq!(files(folder.path()), [".x.z.tmp"]);
    }

    #[tokio::test]
    async fn an_unwritable_mailbox_is_a_transient_failure() {
        let folder = tempfile::tempdir().expect("a folder");
        let mailbox = Mailbox::open(&folder.path().join("mailbox")).expect("opened");
        std::fs::remove_dir(mailbox.dir()).expect("removed");
        // A file where the folder was: nothing can be written until someone fixes it.
        std::fs::write(mailbox.dir(), "").expect("a file");
        match mailbox.deliver(&letter("x\n")).await {
            Err(MailError::Transient(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
