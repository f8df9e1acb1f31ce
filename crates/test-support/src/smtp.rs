//! An SMTP server of the test's own: it takes every email handed to it, keeps it for the
//! test to look at, and can be told to refuse mail for a while (what a relay outage
//! looks like to a sender).
//!
//! It speaks the part of RFC 5321 a submitting client uses: the 220 greeting, `EHLO` and
//! `HELO`, `MAIL FROM`, `RCPT TO`, `DATA` (with the transparency dots removed), `RSET`,
//! `NOOP` and `QUIT`, each answered with the codes of the RFC, commands out of order
//! with 503. It offers no TLS and no authentication, so a client must be set up for
//! plain SMTP. While refusing, a new connection is greeted with 421 and closed, and
//! `MAIL`, `RCPT` and `DATA` on an open one are answered with 451: both transient, so a
//! well-behaved client tries again later.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The longest command line taken, in bytes (RFC 5321 allows 512; extensions add some).
const MAX_COMMAND_BYTES: usize = 4096;
/// The longest line of message data taken, in bytes.
const MAX_DATA_LINE_BYTES: usize = 64 * 1024;
/// The largest message taken, in bytes, as announced with `SIZE`.
const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// The most recipients of one message.
const MAX_RECIPIENTS: usize = 100;

/// An email the sink took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The envelope's sender (`MAIL FROM`), without angle brackets; empty for `<>`.
    pub from: String,
    /// The envelope's recipients (`RCPT TO`), in order, without angle brackets.
    pub recipients: Vec<String>,
    /// The message as received, transparency dots removed, lines ending in CRLF.
    pub data: Vec<u8>,
}

impl ReceivedMessage {
    /// The message as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header called `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.mail().header(name)
    }

    /// Everything after the header, as it was sent.
    pub fn body(&self) -> String {
        self.mail().raw_body()
    }

    /// The message, to read.
    pub fn mail(&self) -> crate::mail::Mail {
        crate::mail::Mail(self.data.clone())
    }
}

/// A running SMTP sink on `127.0.0.1`, stopped when dropped.
pub struct SmtpSink {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<ReceivedMessage>>,
    refusing: AtomicBool,
    connections: AtomicUsize,
    refusals: AtomicUsize,
}

impl Shared {
    fn refusing(&self) -> bool {
        self.refusing.load(Ordering::SeqCst)
    }

    fn refused(&self) {
        self.refusals.fetch_add(1, Ordering::SeqCst);
    }
}

impl SmtpSink {
    /// Starts a sink on a free port of `127.0.0.1`, taking mail.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port for the SMTP sink");
        let address = listener.local_addr().expect("bound");
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(serve(listener, shared.clone()));
        Self {
            address,
            shared,
            server,
        }
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The host to give a client: `127.0.0.1`.
    pub fn host(&self) -> String {
        self.address.ip().to_string()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Every email taken so far, in the order they were taken.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.shared
            .received
            .lock()
            .expect("the sink's lock is never poisoned")
            .clone()
    }

    /// From now on, refuses mail: 421 to new connections, 451 to `MAIL`, `RCPT` and
    /// `DATA`.
    pub fn refuse(&self) {
        self.shared.refusing.store(true, Ordering::SeqCst);
    }

    /// From now on, takes mail again.
    pub fn accept(&self) {
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// How many connections clients opened.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many times it answered 421 or 451 because it was refusing.
    pub fn refusals(&self) -> usize {
        self.shared.refusals.load(Ordering::SeqCst)
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Dropping the server's task drops its set of sessions, which aborts them all.
        self.server.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = shared.clone();
                sessions.spawn(async move {
                    // A client that hangs up mid-session is its own business.
                    let _ = session(stream, &shared).await;
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// One mail transaction in progress: `MAIL FROM` was accepted.
struct Transaction {
    from: String,
    recipients: Vec<String>,
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if shared.refusing() {
        shared.refused();
        return reply(
            &mut write,
            "421 4.3.2 bazaar-sink is not taking mail now, try again later",
        )
        .await;
    }
    reply(&mut write, "220 bazaar-sink ESMTP ready").await?;
    let mut greeted = false;
    let mut transaction: Option<Transaction> = None;
    loop {
        let line = match read_line(&mut reader, MAX_COMMAND_BYTES).await? {
            None => return Ok(()),
            Some(Line::TooLong) => {
                reply(&mut write, "500 5.5.2 command line too long").await?;
                continue;
            }
            Some(Line::Text(line)) => String::from_utf8_lossy(&line).into_owned(),
        };
        let (verb, argument) = line
            .split_once(' ')
            .map_or((line.as_str(), ""), |(verb, rest)| (verb, rest.trim()));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" if argument.is_empty() => {
                reply(&mut write, "501 5.5.4 EHLO needs a domain").await?;
            }
            "EHLO" => {
                greeted = true;
                transaction = None;
                let greeting = format!(
                    "250-bazaar-sink greets {argument}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE {MAX_MESSAGE_BYTES}"
                );
                reply(&mut write, &greeting).await?;
            }
            "HELO" if argument.is_empty() => {
                reply(&mut write, "501 5.5.4 HELO needs a domain").await?;
            }
            "HELO" => {
                greeted = true;
                transaction = None;
                reply(&mut write, "250 bazaar-sink").await?;
            }
            "MAIL" if !greeted => {
                reply(&mut write, "503 5.5.1 say EHLO or HELO first").await?;
            }
            "MAIL" if transaction.is_some() => {
                reply(&mut write, "503 5.5.1 a mail transaction is already open").await?;
            }
            "MAIL" => match path(argument, "FROM:", true) {
                None => {
                    reply(&mut write, "501 5.5.4 expected MAIL FROM:<address>").await?;
                }
                Some(_) if shared.refusing() => {
                    shared.refused();
                    reply(&mut write, "451 4.3.0 not taking mail now, try again later").await?;
                }
                Some(from) => {
                    transaction = Some(Transaction {
                        from,
                        recipients: Vec::new(),
                    });
                    reply(&mut write, "250 2.1.0 sender ok").await?;
                }
            },
            "RCPT" => match (transaction.as_mut(), path(argument, "TO:", false)) {
                (None, _) => reply(&mut write, "503 5.5.1 need MAIL FROM first").await?,
                (Some(_), None) => {
                    reply(&mut write, "501 5.5.4 expected RCPT TO:<address>").await?;
                }
                (Some(_), Some(_)) if shared.refusing() => {
                    shared.refused();
                    reply(&mut write, "451 4.3.0 not taking mail now, try again later").await?;
                }
                (Some(open), Some(_)) if open.recipients.len() >= MAX_RECIPIENTS => {
                    reply(&mut write, "452 4.5.3 too many recipients").await?;
                }
                (Some(open), Some(recipient)) => {
                    open.recipients.push(recipient);
                    reply(&mut write, "250 2.1.5 recipient ok").await?;
                }
            },
            "DATA" if !argument.is_empty() => {
                reply(&mut write, "501 5.5.4 DATA takes no argument").await?;
            }
            "DATA" => {
                let ready = transaction
                    .as_ref()
                    .is_some_and(|open| !open.recipients.is_empty());
                if !ready {
                    reply(&mut write, "503 5.5.1 need RCPT TO first").await?;
                } else if shared.refusing() {
                    shared.refused();
                    reply(&mut write, "451 4.3.0 not taking mail now, try again later").await?;
                } else {
                    reply(&mut write, "354 end data with <CR><LF>.<CR><LF>").await?;
                    let Some(data) = read_data(&mut reader).await? else {
                        return Ok(());
                    };
                    let Some(open) = transaction.take() else {
                        continue;
                    };
                    match data {
                        None => reply(&mut write, "552 5.3.4 message too big").await?,
                        Some(_) if shared.refusing() => {
                            shared.refused();
                            reply(&mut write, "451 4.3.0 not taking mail now, try again later")
                                .await?;
                        }
                        Some(data) => {
                            let number = {
                                let mut received = shared
                                    .received
                                    .lock()
                                    .expect("the sink's lock is never poisoned");
                                received.push(ReceivedMessage {
                                    from: open.from,
                                    recipients: open.recipients,
                                    data,
                                });
                                received.len()
                            };
                            reply(&mut write, &format!("250 2.0.0 queued as {number}")).await?;
                        }
                    }
                }
            }
            "RSET" => {
                transaction = None;
                reply(&mut write, "250 2.0.0 reset").await?;
            }
            "NOOP" => reply(&mut write, "250 2.0.0 ok").await?,
            "QUIT" => {
                reply(&mut write, "221 2.0.0 bye").await?;
                return Ok(());
            }
            "VRFY" | "EXPN" | "HELP" | "STARTTLS" | "AUTH" | "BDAT" | "ETRN" | "TURN" => {
                reply(&mut write, "502 5.5.1 command not implemented").await?;
            }
            _ => reply(&mut write, "500 5.5.2 command not recognised").await?,
        }
    }
}

/// The address of `MAIL FROM:<…>` or `RCPT TO:<…>`, parameters after it ignored; the
/// empty `<>` only where `null_allowed`.
fn path(argument: &str, keyword: &str, null_allowed: bool) -> Option<String> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = argument[keyword.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let (address, _parameters) = inner.split_once('>')?;
    if address.is_empty() && !null_allowed {
        return None;
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(address.to_owned())
}

enum Line {
    Text(Vec<u8>),
    TooLong,
}

/// The next line without its line ending; `None` at the end of the stream.
async fn read_line(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    limit: usize,
) -> std::io::Result<Option<Line>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(limit as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if read < limit {
            // The stream ended mid-line.
            return Ok(None);
        }
        // Skip the rest of the overlong line.
        loop {
            let mut rest = Vec::new();
            let read = (&mut *reader)
                .take(limit as u64)
                .read_until(b'\n', &mut rest)
                .await?;
            if read == 0 {
                return Ok(None);
            }
            if rest.last() == Some(&b'\n') {
                return Ok(Some(Line::TooLong));
            }
        }
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Line::Text(line)))
}

/// The message after `354`, up to the line holding a single dot, with the leading dot
/// of every other line that starts with one removed (RFC 5321 §4.5.2). `Some(None)` if
/// it was too big (read to its end all the same); `None` if the stream ended first.
async fn read_data(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<Option<Vec<u8>>>> {
    let mut data = Vec::new();
    let mut too_big = false;
    loop {
        let line = match read_line(reader, MAX_DATA_LINE_BYTES).await? {
            None => return Ok(None),
            Some(Line::TooLong) => {
                too_big = true;
                continue;
            }
            Some(Line::Text(line)) => line,
        };
        if line == b"." {
            return Ok(Some((!too_big).then_some(data)));
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + line.len() + 2 > MAX_MESSAGE_BYTES {
            too_big = true;
        }
        if !too_big {
            data.extend_from_slice(line);
            data.extend_from_slice(b"\r\n");
        }
    }
}

async fn reply(write: &mut OwnedWriteHalf, text: &str) -> std::io::Result<()> {
    write.write_all(text.as_bytes()).await?;
    write.write_all(b"\r\n").await?;
    write.flush().await
}

#[cfg(test)]
mod tests {
    use lettre::message::Mailbox;
    use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn transport(sink: &SmtpSink) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(sink.host())
            .port(sink.port())
            .timeout(Some(std::time::Duration::from_secs(5)))
            .build()
    }

    fn message(body: &str) -> Message {
        let from: Mailbox = "Shop <shop@bazaar.localhost>".parse().expect("a mailbox");
        Message::builder()
            .from(from)
            .to("ada@example.com".parse().expect("a mailbox"))
            .cc("bob@example.com".parse().expect("a mailbox"))
            .subject("Dots and all")
            .message_id(Some("<m-1@bazaar.localhost>".to_owned()))
            .body(body.to_owned())
            .expect("a message")
    }

    #[tokio::test]
    async fn it_takes_what_lettre_sends_with_dots_unstuffed() {
        let sink = SmtpSink::start().await;
        let body = "Hello,\r\n.one dot\r\n..two dots\r\n.\r\nend\r\n";
        transport(&sink)
            .send(message(body))
            .await
            .expect("the sink took it");
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        let received = &messages[0];
        assert_eq!(received.from, "shop@bazaar.localhost");
        assert_eq!(received.recipients, ["ada@example.com", "bob@example.com"]);
        assert_eq!(received.header("subject").as_deref(), Some("Dots and all"));
        assert_eq!(
            received.header("Message-ID").as_deref(),
            Some("<m-1@bazaar.localhost>")
        );
        // lettre ends DATA with CRLF . CRLF after the message's own last line break,
        // which RFC 5321 reads as one more, empty, line.
        assert_eq!(
            received.body(),
            format!("{body}\r\n"),
            "the body arrives as written"
        );
    }

    #[tokio::test]
    async fn a_refusing_sink_fails_transiently_until_it_accepts_again() {
        let sink = SmtpSink::start().await;
        let mailer = transport(&sink);
        mailer.send(message("first\r\n")).await.expect("taken");
        sink.refuse();
        // The pooled connection is answered 451, a new one 421: transient either way.
        for _ in 0..2 {
            let error = mailer
                .send(message("second\r\n"))
                .await
                .expect_err("refused");
            assert!(error.is_transient(), "{error}");
        }
        let fresh = transport(&sink)
            .send(message("third\r\n"))
            .await
            .expect_err("refused");
        assert!(fresh.is_transient(), "{fresh}");
        assert!(sink.refusals() >= 3);
        sink.accept();
        mailer.send(message("fourth\r\n")).await.expect("taken");
        let bodies: Vec<String> = sink.messages().iter().map(ReceivedMessage::body).collect();
        assert_eq!(bodies, ["first\r\n\r\n", "fourth\r\n\r\n"]);
    }

    /// Talks to the sink line by line.
    struct Client {
        reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
        write: OwnedWriteHalf,
    }

    impl Client {
        async fn connect(sink: &SmtpSink) -> (Self, String) {
            let (read, write) = TcpStream::connect(sink.address())
                .await
                .expect("connected")
                .into_split();
            let mut client = Self {
                reader: BufReader::new(read),
                write,
            };
            let greeting = client.reply().await;
            (client, greeting)
        }

        /// The next reply, its lines joined by `|`.
        async fn reply(&mut self) -> String {
            let mut lines = Vec::new();
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).await.expect("a reply");
                let line = line.trim_end().to_owned();
                let last = line.as_bytes().get(3) != Some(&b'-');
                lines.push(line);
                if last {
                    return lines.join("|");
                }
            }
        }

        async fn send(&mut self, line: &str) -> String {
            self.write
                .write_all(format!("{line}\r\n").as_bytes())
                .await
                .expect("written");
            self.reply().await
        }
    }

    fn code(reply: &str) -> &str {
        &reply[..3]
    }

    #[tokio::test]
    async fn commands_follow_rfc_5321() {
        let sink = SmtpSink::start().await;
        let (mut client, greeting) = Client::connect(&sink).await;
        assert_eq!(code(&greeting), "220");
        assert_eq!(
            code(&client.send("MAIL FROM:<a@x>").await),
            "503",
            "before EHLO"
        );
        assert_eq!(code(&client.send("EHLO").await), "501");
        let ehlo = client.send("EHLO client.test").await;
        assert!(
            ehlo.starts_with("250-") && ehlo.contains("8BITMIME"),
            "{ehlo}"
        );
        assert_eq!(
            code(&client.send("RCPT TO:<b@x>").await),
            "503",
            "before MAIL"
        );
        assert_eq!(code(&client.send("DATA").await), "503", "before RCPT");
        assert_eq!(code(&client.send("MAIL FROM:a@x").await), "501");
        assert_eq!(
            code(&client.send("mail from: <> BODY=8BITMIME").await),
            "250"
        );
        assert_eq!(code(&client.send("MAIL FROM:<a@x>").await), "503", "nested");
        assert_eq!(code(&client.send("RCPT TO:<>").await), "501");
        assert_eq!(code(&client.send("RCPT TO:<b@x>").await), "250");
        assert_eq!(code(&client.send("RSET").await), "250");
        assert_eq!(code(&client.send("DATA").await), "503", "RSET ended it");
        assert_eq!(code(&client.send("NOOP").await), "250");
        assert_eq!(code(&client.send("VRFY b@x").await), "502");
        assert_eq!(code(&client.send("FROB").await), "500");
        let long = format!("NOOP {}", "x".repeat(MAX_COMMAND_BYTES * 2));
        assert_eq!(code(&client.send(&long).await), "500");
        assert_eq!(code(&client.send("HELO client.test").await), "250");
        assert_eq!(code(&client.send("MAIL FROM:<a@x>").await), "250");
        assert_eq!(code(&client.send("RCPT TO:<b@x>").await), "250");
        assert_eq!(code(&client.send("DATA").await), "354");
        client
            .write
            .write_all(b"Subject: raw\r\n\r\n..dot\r\nplain\r\n")
            .await
            .expect("written");
        assert_eq!(code(&client.send(".").await), "250");
        assert_eq!(code(&client.send("QUIT").await), "221");
        let messages = sink.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].from, "a@x");
        assert_eq!(messages[0].data, b"Subject: raw\r\n\r\n.dot\r\nplain\r\n");
        assert!(sink.connections() >= 1);
    }

    #[tokio::test]
    async fn refusing_is_421_at_the_door_and_451_inside() {
        let sink = SmtpSink::start().await;
        let (mut inside, _) = Client::connect(&sink).await;
        assert_eq!(code(&inside.send("EHLO client.test").await), "250");
        assert_eq!(code(&inside.send("MAIL FROM:<a@x>").await), "250");
        assert_eq!(code(&inside.send("RCPT TO:<b@x>").await), "250");
        sink.refuse();
        let (_, greeting) = Client::connect(&sink).await;
        assert_eq!(code(&greeting), "421");
        assert_eq!(code(&inside.send("RCPT TO:<c@x>").await), "451");
        assert_eq!(code(&inside.send("DATA").await), "451");
        sink.accept();
        assert_eq!(code(&inside.send("DATA").await), "354");
        assert_eq!(code(&inside.send(".").await), "250");
        assert_eq!(sink.messages()[0].recipients, ["b@x"]);
        assert_eq!(sink.refusals(), 3);
    }
}
