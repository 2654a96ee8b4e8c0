//! Server entry: configuration → state → routes → serve.

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use rollout_dashboard::server;

    server::telemetry::init();
    let config = match server::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration error: {e}");
            eprintln!("rollout-dashboard: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match server::serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("fatal: {e}");
            eprintln!("rollout-dashboard: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "ssr"))]
pub fn main() {
    // The browser entry is `hydrate()` in lib.rs.
}
