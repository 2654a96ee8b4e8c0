//! Server entry: configuration → state → routes → serve.

/// mimalloc instead of glibc malloc: under steady load glibc's resident memory crept up by 15 %
/// in 15 minutes without a leak to show for it (docs/reliability.md, soak).
#[cfg(feature = "ssr")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "ssr")]
fn main() -> std::process::ExitCode {
    // `rollout-dashboard hash-password`: reads a password on stdin, prints its argon2id hash for
    // the users file (auth mode `local`). The password never appears in arguments or logs.
    if std::env::args().nth(1).as_deref() == Some("hash-password") {
        let mut password = String::new();
        if std::io::stdin().read_line(&mut password).is_err() || password.trim_end_matches(['\r', '\n']).is_empty() {
            eprintln!("rollout-dashboard hash-password: give the password on stdin");
            return std::process::ExitCode::from(2);
        }
        println!("{}", rollout_dashboard::server::auth::hash_password(password.trim_end_matches(['\r', '\n'])));
        return std::process::ExitCode::SUCCESS;
    }
    // Roomier worker stacks than tokio's 2 MiB default: server-side rendering of the overview
    // nests deeply, more so in debug builds.
    match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build() {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("rollout-dashboard: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "ssr")]
async fn run() -> std::process::ExitCode {
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
    match rollout_dashboard::site::serve(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Settings refused once the receivers are built (a receiver's kind and what it needs,
        // `notify::kinds::checked`): a configuration error like any other.
        Err(e @ server::StartError::Settings(_)) => {
            tracing::error!("configuration error: {e}");
            eprintln!("rollout-dashboard: configuration error: {e}");
            std::process::ExitCode::from(2)
        }
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
