//! Rollout control as pages and API clients see it.

use serde::{Deserialize, Serialize};

/// One precondition for increasing the rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guard {
    pub name: String,
    pub passed: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutState {
    pub key: String,
    pub source: String,
    pub percentage: Option<u8>,
    pub raw: Option<String>,
    /// The version a change must name (`expected_version`), so that nothing is overwritten blindly.
    pub version: Option<String>,
    /// False when the stored value is in a format the dashboard will not rewrite.
    pub writable: bool,
    pub guards: Vec<Guard>,
}

/// `POST /api/v1/rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPercentage {
    pub percentage: i64,
    pub reason: String,
    pub expected_version: String,
    #[serde(default)]
    pub override_guards: bool,
    /// Required when `override_guards` is true and a guard fails.
    #[serde(default)]
    pub override_reason: Option<String>,
}

/// `POST /api/v1/rollout/kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillSwitch {
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeDone {
    pub before: String,
    pub after: String,
    pub version: Option<String>,
    pub audit_id: i64,
    /// The failed guards that were overridden, and the operator's reason for it.
    pub overridden: Option<String>,
}

use leptos::prelude::*;

use super::auth::Identity;

/// The rollout page's data: the flag with its guards, and who is looking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub state: Result<RolloutState, String>,
    pub me: Option<Identity>,
    /// Where the flag lives, for the confirmation dialog.
    pub target: String,
}

#[cfg(feature = "ssr")]
use super::auth::{caller, page_request_id, refused};

#[server(endpoint = "rollout", input = leptos::server_fn::codec::GetUrl, output = crate::api::codec::JsonText)]
pub async fn get_rollout() -> Result<RolloutView, ServerFnError> {
    let (state, me) = caller().await?;
    Ok(RolloutView {
        state: crate::server::rollout::current(&state).await.map_err(|e| e.to_string()),
        me,
        target: state.flags.describe_target(),
    })
}

/// The same service call as `POST /api/v1/rollout`.
#[server(endpoint = "rollout_set", input = leptos::server_fn::codec::PostUrl, output = crate::api::codec::JsonText)]
pub async fn set_rollout(
    percentage: i64,
    reason: String,
    expected_version: String,
    override_guards: bool,
    override_reason: Option<String>,
) -> Result<ChangeDone, ServerFnError> {
    let (state, me) = caller().await?;
    let id = page_request_id();
    let body = SetPercentage { percentage, reason, expected_version, override_guards, override_reason };
    crate::server::rollout::set_percentage(&state, me.as_ref(), Ok(body), &id).await.map_err(refused)
}

/// The same service call as `POST /api/v1/rollout/kill`.
#[server(endpoint = "rollout_kill", input = leptos::server_fn::codec::PostUrl, output = crate::api::codec::JsonText)]
pub async fn kill_rollout(reason: Option<String>) -> Result<ChangeDone, ServerFnError> {
    let (state, me) = caller().await?;
    let id = page_request_id();
    crate::server::rollout::kill(&state, me.as_ref(), reason, &id).await.map_err(refused)
}
