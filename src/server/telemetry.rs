//! Logging setup. Log lines never carry connection strings or tokens: configuration values
//! that hold secrets are wrapped in `config::Secret`, whose Debug and Display print a mask.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn,kube=warn,tower_http=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
