//! One shutdown source, fanned out: a `CancellationToken` cancelled on SIGINT or SIGTERM.
//!
//! `server::run` takes the token as an argument (tests cancel it themselves); the binary wires
//! it to the signals with [`on_signals`].

use tokio_util::sync::CancellationToken;

/// Returns a token cancelled when the process receives SIGINT (Ctrl-C) or SIGTERM (systemd).
pub fn on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let t = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(
            signal = which,
            "shutting down: no new calls, finishing calls in flight"
        );
        t.cancel();
    });
    Ok(token)
}
