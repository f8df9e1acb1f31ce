//! A Redis server for tests.
//!
//! [`RedisServer::new`] uses the server on `127.0.0.1:6379` when it answers `PING`
//! (override with `BAZAAR_TEST_REDIS_URL`), and otherwise starts a throwaway
//! `redis-server` on a free port, without persistence, that is killed when the value is
//! dropped. If neither works, it panics and says what to install: a Redis test never
//! passes by skipping.
//!
//! Tests share a server, so each should keep to keys of its own, under a
//! [`unique_prefix`].

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis server a test can use; a server this value started stops when it is dropped.
pub struct RedisServer {
    url: String,
    child: Option<Child>,
}

impl RedisServer {
    /// The local server if it answers, or a throwaway one. Panics, saying what is
    /// missing, if neither is possible.
    pub fn new() -> Self {
        #[allow(
            clippy::disallowed_methods,
            reason = "tests choose their server from the environment"
        )]
        if let Ok(url) = std::env::var("BAZAAR_TEST_REDIS_URL") {
            return Self { url, child: None };
        }
        if pings(6379) {
            return Self {
                url: "redis://127.0.0.1:6379/0".to_owned(),
                child: None,
            };
        }
        Self::start().unwrap_or_else(|reason| {
            panic!(
                "Redis tests need a server: none answers PING on 127.0.0.1:6379 and a \
                 throwaway one could not be started ({reason}). Install Redis (Debian: \
                 apt-get install redis-server) or set BAZAAR_TEST_REDIS_URL."
            )
        })
    }

    /// Its URL, e.g. `redis://127.0.0.1:6379/0`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn start() -> Result<Self, String> {
        let port = free_port()?;
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("running redis-server: {error}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if pings(port) {
                return Ok(Self {
                    url: format!("redis://127.0.0.1:{port}/0"),
                    child: Some(child),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "redis-server did not answer on port {port} within 10 s"
        ))
    }
}

impl Default for RedisServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A key prefix no other test uses, e.g. `test:0195…:`.
pub fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::now_v7().simple())
}

/// Whether a Redis server on `port` answers `PING` with `PONG` (one that demands a
/// password answers with an error, and is not usable without it).
fn pings(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return false;
    };
    let timeout = Some(Duration::from_millis(500));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut answer = [0_u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// A port nothing listens on now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_server_answers_until_dropped() {
        let server = RedisServer::start().expect("redis-server starts");
        let port: u16 = server
            .url()
            .trim_start_matches("redis://127.0.0.1:")
            .trim_end_matches("/0")
            .parse()
            .expect("a port");
        assert!(pings(port));
        drop(server);
        assert!(!pings(port), "the server outlived its owner");
    }
}
