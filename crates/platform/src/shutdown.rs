//! A cloneable shutdown signal shared by every server and worker of a process.

use tokio::sync::watch;

/// Triggered once (Ctrl-C, SIGTERM, or a test finishing); every clone observes it.
///
/// Servers stop accepting connections when it fires and drain the requests in flight.
#[derive(Clone, Debug)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    /// A signal that has not fired yet.
    pub fn new() -> Self {
        Self {
            sender: watch::Sender::new(false),
        }
    }

    /// Fires the signal. Calling it again does nothing.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }

    /// Completes once the signal has fired (immediately if it already has).
    pub async fn wait(&self) {
        let mut receiver = self.sender.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we hold it.
        let _ = receiver.wait_for(|fired| *fired).await;
    }

    /// Fires the signal on Ctrl-C or, on Unix, SIGTERM (what Kubernetes sends).
    pub fn trigger_on_os_signal(&self) {
        let shutdown = self.clone();
        tokio::spawn(async move {
            os_signal().await;
            tracing::info!("shutdown requested; draining in-flight work");
            shutdown.trigger();
        });
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

async fn os_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_signal_even_after_it_fired() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(!clone.is_triggered());
        shutdown.trigger();
        clone.wait().await;
        shutdown.clone().wait().await;
        assert!(clone.is_triggered());
    }
}
