//! Ctrl-C (or SIGTERM) during a benchmark: setup steps give up, the measured interval ends
//! early and its results are still reported.

use std::future::Future;
use std::time::Duration;

use anyhow::bail;
use tokio::sync::watch;

/// Turns true once a stop signal arrived.
#[derive(Debug)]
pub struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    /// Starts listening for SIGINT and SIGTERM (from inside the runtime). From then on they no
    /// longer end the process, so that the child coordinator is always reaped.
    pub fn listen() -> Self {
        let (signalled, receiver) = watch::channel(false);
        tokio::spawn(async move {
            crate::signals::terminated().await;
            let _ = signalled.send(true);
        });
        Self(receiver)
    }

    /// Waits for `duration`; `false` if interrupted first.
    pub async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            Ok(_) = self.0.wait_for(|&signalled| signalled) => false,
        }
    }

    /// Runs a setup step unless interrupted first.
    pub async fn unless_interrupted<T>(
        &mut self,
        step: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        tokio::select! {
            result = step => result,
            Ok(_) = self.0.wait_for(|&signalled| signalled) => bail!("interrupted"),
        }
    }
}
