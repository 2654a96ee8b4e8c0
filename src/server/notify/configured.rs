//! The receivers as configured: built once at start from the settings and the named secrets,
//! held by the shared state.

use super::super::config::{Config, ReceiverSettings, Secret};
use super::receivers::Receiver;

/// The receivers as configured: those that can send, those that cannot (a secret they name is
/// not set) with the reason, and the hook's token.
#[derive(Debug, Default)]
pub struct Receivers {
    pub ready: Vec<Receiver>,
    pub unusable: Vec<(ReceiverSettings, String)>,
    pub hook_token: Option<Secret>,
    /// The hook's kill claims made while the state database did not answer (`hook/`).
    /// By key, whether done.
    pub outage_claims: std::sync::Mutex<std::collections::HashMap<String, bool>>,
}

impl Receivers {
    /// Refused (the start with it) when a receiver's kind is unknown or its settings do not suit
    /// its kind (`kinds::checked`); a receiver whose secret is not set is kept as unusable.
    pub fn from_config(config: &Config) -> Result<Receivers, String> {
        let mut out = Receivers {
            hook_token: config.named_secrets.get(&config.settings.hooks.alertmanager.token_env).cloned(),
            ..Default::default()
        };
        for r in &config.settings.notify.receivers {
            super::kinds::checked(r)?;
            match Receiver::new(r, &config.named_secrets) {
                Ok(ready) => out.ready.push(ready),
                Err(why) => {
                    tracing::error!("notifications: {why}; this receiver gets nothing until it is set");
                    out.unusable.push((r.clone(), why));
                }
            }
        }
        Ok(out)
    }
}
