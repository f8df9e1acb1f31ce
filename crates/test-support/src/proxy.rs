//! A TCP proxy a test can cut: a dependency (PostgreSQL, Redis) that goes away and
//! comes back, at the network, without stopping the server other tests share.
//!
//! Cut, it closes every connection it carries and closes each new one at once, which
//! is what a client sees of a server that stopped; restored, it forwards again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy to one address; stops when dropped.
pub struct Proxy {
    address: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a fresh loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("bound");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0_u64);
        let accepting = tokio::spawn({
            let cut = Arc::clone(&cut);
            let generation = generation.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let mut cuts = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cuts.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            address,
            cut,
            generation,
            accepting,
        }
    }

    /// A proxy to the server of `url` (`scheme://[user@]host:port/...`).
    pub async fn to_server_of(url: &str) -> Self {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, at)| at);
        let target = tokio::net::lookup_host(host_port)
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .unwrap_or_else(|| panic!("{url:?} names no reachable host and port"));
        Self::start(target).await
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `url` (`scheme://[user@]host:port/...`) with its host and port replaced by the
    /// proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        format!("{scheme}://{user}{}{path}", self.address)
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.generation.send_modify(|generation| *generation += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_pointed_at_the_proxy() {
        let proxy = Proxy::start("127.0.0.1:9".parse().expect("an address")).await;
        let at = proxy.address();
        assert_eq!(
            proxy.url_through("postgres://root@127.0.0.1:5432/shop"),
            format!("postgres://root@{at}/shop")
        );
        assert_eq!(
            proxy.url_through("redis://127.0.0.1:6379/0"),
            format!("redis://{at}/0")
        );
        assert_eq!(
            proxy.url_through("redis://127.0.0.1:6379"),
            format!("redis://{at}")
        );
    }
}
