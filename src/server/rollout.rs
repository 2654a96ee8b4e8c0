//! Rollout control: the current state with its guards, setting the percentage, the kill switch.
//! Every attempt, done, refused or failed, goes to the audit trail with who, why and the outcome.

use crate::api::audit::Outcome;
use crate::api::auth::{Identity, Role};
use crate::api::rollout::{ChangeDone, Guard, RolloutState, SetPercentage};
use crate::api::window::Window;

use super::audit::{self, NewEntry};
use super::error::{ApiError, SourceError};
use super::flags::{FlagWriteError, Percentage};
use super::service;
use super::state::AppState;

const MAX_REASON: usize = 500;

/// The flag as it is now (never from a cache: a change must name the current version), and
/// whether each precondition for an increase holds. A guard that cannot be checked fails.
pub async fn current(state: &AppState) -> Result<RolloutState, SourceError> {
    let reading = state.flags.read().await?;
    let (percentage, writable) = match &reading.parsed {
        Some(Ok(p)) => (Some(p.get()), true),
        _ => (None, false),
    };
    Ok(RolloutState {
        key: state.settings.flag.key.clone(),
        source: state.flags.source_name().into(),
        percentage,
        raw: reading.raw,
        version: reading.version,
        writable,
        guards: guards(state).await,
    })
}

async fn guards(state: &AppState) -> Vec<Guard> {
    let day = Window::hours(24).expect("24h is a valid window");
    let (summary, alerts, schema) =
        tokio::join!(service::records_summary(state, day), service::alerts(state), service::diary_and_schema(state));
    let doubled = match summary.map(|s| s.counts.doubled) {
        Ok(Some(0)) => Guard {
            name: "no_doubled_records".into(),
            passed: true,
            reason: "no doubled record in the last 24 h".into(),
        },
        Ok(Some(n)) => Guard {
            name: "no_doubled_records".into(),
            passed: false,
            reason: format!("{n} record(s) in the last 24 h copy dose into both insulin_short and insulin_long"),
        },
        Ok(None) => {
            Guard { name: "no_doubled_records".into(), passed: false, reason: "the split columns do not exist".into() }
        }
        Err(e) => Guard { name: "no_doubled_records".into(), passed: false, reason: format!("cannot check: {e}") },
    };
    let alerts = match alerts {
        Ok(a) => {
            let firing: Vec<String> = a.iter().filter(|a| a.state == "firing").map(|a| a.name.clone()).collect();
            if firing.is_empty() {
                Guard { name: "no_firing_alert".into(), passed: true, reason: "no rollout alert is firing".into() }
            } else {
                Guard {
                    name: "no_firing_alert".into(),
                    passed: false,
                    reason: format!("firing: {}", firing.join(", ")),
                }
            }
        }
        Err(e) => Guard { name: "no_firing_alert".into(), passed: false, reason: format!("cannot check: {e}") },
    };
    let columns = match schema {
        Ok((_, s)) if s.has_split_columns() => Guard {
            name: "split_columns_exist".into(),
            passed: true,
            reason: "insulin_short and insulin_long exist".into(),
        },
        Ok(_) => {
            Guard { name: "split_columns_exist".into(), passed: false, reason: "a split column is missing".into() }
        }
        Err(e) => Guard { name: "split_columns_exist".into(), passed: false, reason: format!("cannot check: {e}") },
    };
    let rollback = match sqlx::query_as::<_, (i64, String)>("SELECT id, state FROM rollback_runs WHERE active")
        .fetch_optional(&state.state_db)
        .await
    {
        Ok(None) => {
            Guard { name: "no_rollback_in_progress".into(), passed: true, reason: "no rollback is running".into() }
        }
        Ok(Some((id, st))) => Guard {
            name: "no_rollback_in_progress".into(),
            passed: false,
            reason: format!("rollback run #{id} is {st}"),
        },
        Err(e) => Guard { name: "no_rollback_in_progress".into(), passed: false, reason: format!("cannot check: {e}") },
    };
    vec![doubled, alerts, columns, rollback]
}

/// Who is acting, for the audit trail, and whether they may change the rollout.
pub(super) fn operator(who: Option<&Identity>) -> Result<&Identity, ApiError> {
    match who {
        None => Err(ApiError::Unauthenticated("sign in first: changing the rollout needs an operator".into())),
        Some(w) if w.role != Role::Operator => Err(ApiError::Forbidden(format!(
            "{} is a {}: only operators may change the rollout",
            w.user,
            w.role.as_str()
        ))),
        Some(w) => Ok(w),
    }
}

pub(super) fn check_reason(reason: &str, what: &str, required: bool) -> Result<Option<String>, ApiError> {
    let r = reason.trim();
    if r.is_empty() {
        return if required { Err(ApiError::BadRequest(format!("{what} is required"))) } else { Ok(None) };
    }
    if r.chars().count() > MAX_REASON {
        return Err(ApiError::BadRequest(format!("{what} is longer than {MAX_REASON} characters")));
    }
    Ok(Some(r.to_string()))
}

/// Records the attempt and passes its result on. If the audit trail cannot be written, a done
/// change is still reported done, with the failure logged loudly (the change cannot be undone here).
async fn audited(
    state: &AppState,
    who: Option<&Identity>,
    action: &str,
    reason: Option<String>,
    request_id: &str,
    result: Result<ChangeDone, ApiError>,
) -> Result<ChangeDone, ApiError> {
    let (outcome, detail, after) = match &result {
        Ok(c) => (Outcome::Done, c.overridden.clone(), Some(c.after.clone())),
        Err(e @ (ApiError::Unavailable(_) | ApiError::Failed(_))) => (Outcome::Failed, Some(e.to_string()), None),
        Err(e) => (Outcome::Refused, Some(e.to_string()), None),
    };
    let entry = NewEntry {
        value_before: result.as_ref().map(|c| c.before.clone()).ok(),
        value_after: after,
        outcome,
        outcome_detail: detail,
        ..entry_for(state, who, action, reason, request_id)
    };
    let recorded = audit::record(&state.state_db, &entry).await;
    // Recorded, or journaled for the state database to take when it answers again.
    state.journal.settle(&entry, recorded.is_ok());
    match (recorded, result) {
        (Ok(id), Ok(done)) => Ok(ChangeDone { audit_id: id, ..done }),
        (Err(e), Ok(done)) => {
            tracing::error!(
                request_id,
                "the change was made; the state database cannot take its audit entry now ({e}), the journal holds it until it can"
            );
            Ok(done)
        }
        (_, Err(e)) => Err(e),
    }
}

fn entry_for(
    state: &AppState,
    who: Option<&Identity>,
    action: &str,
    reason: Option<String>,
    request_id: &str,
) -> NewEntry {
    NewEntry {
        actor: who.map(|w| w.user.clone()).unwrap_or_else(|| "anonymous".into()),
        role: who.map(|w| w.role.as_str().to_string()).unwrap_or_else(|| "none".into()),
        action: action.into(),
        target: state.settings.flag.target(),
        value_before: None,
        value_after: None,
        reason,
        outcome: Outcome::Done,
        outcome_detail: None,
        request_id: Some(request_id.into()),
    }
}

/// Journals a change before the flag store is touched; no journal, no change.
fn journal_intent(
    state: &AppState,
    who: Option<&Identity>,
    action: &str,
    reason: Option<String>,
    request_id: &str,
) -> Result<(), ApiError> {
    state
        .journal
        .intent(&entry_for(state, who, action, reason, request_id))
        .map_err(|e| ApiError::Failed(e.to_string()))
}

fn write_error(e: FlagWriteError) -> ApiError {
    match e {
        FlagWriteError::Conflict(m) => ApiError::Conflict { code: "version_conflict", message: m, details: None },
        FlagWriteError::Source(s) => ApiError::Unavailable(s),
        FlagWriteError::ReadBackMismatch { .. } => ApiError::Failed(e.to_string()),
        other => ApiError::Conflict { code: "not_writable", message: other.to_string(), details: None },
    }
}

/// `POST /api/v1/rollout`: `body` is the parsed request, or why it could not be parsed.
pub async fn set_percentage(
    state: &AppState,
    who: Option<&Identity>,
    body: Result<SetPercentage, ApiError>,
    request_id: &str,
) -> Result<ChangeDone, ApiError> {
    let reason = body.as_ref().ok().map(|b| b.reason.trim().to_string()).filter(|r| !r.is_empty());
    let result = async {
        operator(who)?;
        let b = body?;
        let p = Percentage::new(b.percentage)
            .ok_or_else(|| ApiError::BadRequest(format!("percentage must be a whole number from 0 to 100, not {}", b.percentage)))?;
        check_reason(&b.reason, "a reason", true)?;
        if b.expected_version.trim().is_empty() {
            return Err(ApiError::BadRequest("expected_version is required (the version you saw)".into()));
        }
        let now = current(state).await.map_err(ApiError::Unavailable)?;
        let increase = now.percentage.is_none_or(|cur| p.get() > cur);
        let failed: Vec<&Guard> = now.guards.iter().filter(|g| !g.passed).collect();
        let mut overridden = None;
        if increase && !failed.is_empty() {
            let override_reason = b.override_reason.as_deref().map(|r| check_reason(r, "override_reason", true)).transpose()?;
            if !b.override_guards || override_reason.is_none() {
                return Err(ApiError::Conflict {
                    code: "guard_failed",
                    message: format!(
                        "an increase is blocked while a guard fails ({}); override only with override_guards and an override_reason",
                        failed.iter().map(|g| format!("{}: {}", g.name, g.reason)).collect::<Vec<_>>().join("; ")
                    ),
                    details: serde_json::to_value(&now.guards).ok(),
                });
            }
            overridden = Some(format!(
                "guards overridden ({}): {}",
                failed.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", "),
                override_reason.flatten().unwrap_or_default()
            ));
        }
        let comment = change_comment(who, b.reason.trim());
        journal_intent(state, who, "flag.set", Some(b.reason.trim().to_string()), request_id)?;
        let change = state.flags.write(b.expected_version.trim(), p, &comment).await.map_err(write_error)?;
        Ok(ChangeDone { before: change.before, after: change.after, version: change.version, audit_id: 0, overridden })
    }
    .await;
    audited(state, who, "flag.set", reason, request_id, result).await
}

/// `POST /api/v1/rollout/kill`: the flag to 0 % at once. Always allowed for operators.
pub async fn kill(
    state: &AppState,
    who: Option<&Identity>,
    reason: Option<String>,
    request_id: &str,
) -> Result<ChangeDone, ApiError> {
    let reason = reason.as_deref().map(|r| check_reason(r, "the reason", false));
    let (reason, reason_error) = match reason {
        Some(Ok(r)) => (r, None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let result = async {
        operator(who)?;
        if let Some(e) = reason_error {
            return Err(e);
        }
        // The kill switch does not make the operator race anyone: it reads the version itself,
        // and retries once if the flag moved in between.
        journal_intent(state, who, "flag.kill", reason.clone(), request_id)?;
        let mut last = None;
        for _ in 0..2 {
            let reading = state.flags.read().await.map_err(ApiError::Unavailable)?;
            let version = reading.version.unwrap_or_default();
            let comment = change_comment(who, reason.as_deref().unwrap_or("kill switch"));
            match state.flags.write(&version, Percentage::OFF, &comment).await {
                Ok(c) => {
                    return Ok(ChangeDone {
                        before: c.before,
                        after: c.after,
                        version: c.version,
                        audit_id: 0,
                        overridden: None,
                    })
                }
                Err(FlagWriteError::Conflict(m)) => last = Some(m),
                Err(e) => return Err(write_error(e)),
            }
        }
        Err(ApiError::Conflict { code: "version_conflict", message: last.unwrap_or_default(), details: None })
    }
    .await;
    audited(state, who, "flag.kill", reason, request_id, result).await
}

/// The note a flag store keeps with the change (LaunchDarkly's audit log shows it).
fn change_comment(who: Option<&Identity>, reason: &str) -> String {
    let name = who.map(|w| w.user.as_str()).unwrap_or("?");
    format!("rollout-dashboard, by {name}: {reason}")
}

/// Records a request refused before it could be understood (bad body), and passes the error on.
pub async fn refuse(
    state: &AppState,
    who: Option<&Identity>,
    action: &str,
    e: ApiError,
    request_id: &str,
) -> Result<ChangeDone, ApiError> {
    // Who may not act at all hears that first, whatever their body said.
    let e = operator(who).err().unwrap_or(e);
    audited(state, who, action, None, request_id, Err(e)).await
}
