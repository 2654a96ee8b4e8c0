//! Rollout control: the current state with its guards, setting the percentage, the kill switch.
//! Every attempt, done, refused or failed, goes to the audit trail with who, why and the outcome.

use crate::api::audit::Action;
use crate::api::audit::Outcome;
use crate::api::auth::Identity;
use crate::api::check::{as_guards, Check};
use crate::api::rollout::{ChangeDone, RolloutState, SetPercentage};
use crate::api::window::Window;

use super::audit;
use super::caller::Caller;
use super::error::{ApiError, SourceError};
use super::flags::{FlagWriteError, Percentage, UNCONFIRMED};
use super::kill_requests;
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

async fn guards(state: &AppState) -> Vec<Check> {
    let day = Window::hours(24).expect("24h is a valid window");
    let (summary, alerts, schema, rollback) = tokio::join!(
        service::records_summary(state, day),
        service::alerts(state),
        service::diary_and_schema(state),
        super::rollback::facts::active_run(&state.state_db)
    );
    let doubled = match summary.map(|s| s.counts.doubled) {
        Ok(Some(0)) => Check::pass("no_doubled_records", "no doubled record in the last 24 h"),
        Ok(Some(n)) => Check::fail(
            "no_doubled_records",
            format!("{n} record(s) in the last 24 h copy dose into both insulin_short and insulin_long"),
        ),
        Ok(None) => Check::fail("no_doubled_records", "the split columns do not exist"),
        Err(e) => Check::unknown("no_doubled_records", e),
    };
    let alerts = match alerts {
        Ok(a) => match super::alerts::firing(&a) {
            (names, said) if names.is_empty() => Check::pass("no_firing_alert", said),
            (_, said) => Check::fail("no_firing_alert", said),
        },
        Err(e) => Check::unknown("no_firing_alert", e),
    };
    let columns = match schema.map(|(_, s)| s.split_columns()) {
        Ok(Ok(said)) => Check::pass("split_columns_exist", said),
        Ok(Err(said)) => Check::fail("split_columns_exist", said),
        Err(e) => Check::unknown("split_columns_exist", e),
    };
    let rollback = match rollback {
        Ok(None) => Check::pass("no_rollback_in_progress", "no rollback is running"),
        Ok(Some((id, st))) => Check::fail("no_rollback_in_progress", format!("rollback run #{id} is {st}")),
        Err(e) => Check::unknown("no_rollback_in_progress", e),
    };
    vec![doubled, alerts, columns, rollback]
}

/// Who may change the rollout: operators (401 for nobody, 403 for a viewer).
pub(super) fn operator(caller: &Caller) -> Result<&Identity, ApiError> {
    caller.operator("changing the rollout", "change the rollout")
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
    caller: &Caller,
    action: Action,
    reason: Option<String>,
    result: Result<ChangeDone, ApiError>,
) -> Result<ChangeDone, ApiError> {
    if result.is_err() && caller.counted_if_anonymous(&state.services.metrics, action) {
        return result;
    }
    let entry = caller.entry(action, state.settings.flag.target()).reason(reason);
    let entry = match &result {
        Ok(c) => {
            let detail = match (&c.unconfirmed, &c.overridden) {
                (Some(u), Some(o)) => Some(format!("{u}; {o}")),
                (u, o) => u.clone().or_else(|| o.clone()),
            };
            entry.values(Some(c.before.clone()), Some(c.after.clone())).outcome(Outcome::Done, detail)
        }
        Err(e) => entry.refusal(e),
    };
    let recorded = bounded(state, KILL_BOOKKEEPING, audit::record(&state.state_db, &entry)).await;
    // Recorded, or journaled for the state database to take when it answers again.
    state.journal.settle(&entry, recorded.is_ok());
    match (recorded, result) {
        (Ok(id), Ok(done)) => Ok(ChangeDone { audit_id: id, ..done }),
        (Err(e), Ok(done)) => {
            tracing::error!(
                request_id = caller.request_id(),
                "the change was made; the state database cannot take its audit entry now ({e}), the journal holds it until it can"
            );
            Ok(done)
        }
        (_, Err(e)) => Err(e),
    }
}

/// Journals a change before the flag store is touched; no journal, no change.
fn journal_intent(state: &AppState, caller: &Caller, action: Action, reason: Option<String>) -> Result<(), ApiError> {
    state
        .journal
        .intent(&caller.entry(action, state.settings.flag.target()).reason(reason))
        .map_err(|e| ApiError::Failed(e.to_string()))
}

/// A write that went through without a read-back is a change made (audited done, "written, not
/// confirmed", so that the poller does not later call it an external change); any other error is
/// no change.
fn unconfirmed_or(e: FlagWriteError, overridden: Option<String>) -> Result<ChangeDone, ApiError> {
    match e {
        FlagWriteError::WrittenNotConfirmed { before, written, why } => Ok(ChangeDone {
            before,
            after: written,
            version: None,
            audit_id: 0,
            overridden,
            unconfirmed: Some(format!("{UNCONFIRMED}: reading the flag back failed: {why}")),
        }),
        other => Err(write_error(other)),
    }
}

fn write_error(e: FlagWriteError) -> ApiError {
    match e {
        FlagWriteError::Conflict(m) => ApiError::Conflict { code: "version_conflict", message: m, details: None },
        FlagWriteError::Source(s) => ApiError::Unavailable(s),
        FlagWriteError::ReadBackMismatch { .. } => ApiError::Failed(e.to_string()),
        other => ApiError::Conflict { code: "not_writable", message: other.to_string(), details: None },
    }
}

/// `POST /api/v1/rollout`.
pub async fn set_percentage(state: &AppState, caller: &Caller, body: SetPercentage) -> Result<ChangeDone, ApiError> {
    let reason = Some(body.reason.trim().to_string()).filter(|r| !r.is_empty());
    let result = async {
        operator(caller)?;
        let b = body;
        let p = Percentage::new(b.percentage).ok_or_else(|| {
            ApiError::BadRequest(format!("percentage must be a whole number from 0 to 100, not {}", b.percentage))
        })?;
        check_reason(&b.reason, "a reason", true)?;
        if b.expected_version.trim().is_empty() {
            return Err(ApiError::BadRequest("expected_version is required (the version you saw)".into()));
        }
        let now = current(state).await?;
        let increase = now.percentage.is_none_or(|cur| p.get() > cur);
        let overridden = if increase { guards_overridden(&now.guards, &b)? } else { None };
        // Last before the write (the guards above take a while): a kill asked meanwhile wins.
        if p.get() > 0 {
            refuse_while_a_kill_is_pending(state).await?;
        }
        let comment = change_comment(caller, b.reason.trim());
        journal_intent(state, caller, Action::FlagSet, Some(b.reason.trim().to_string()))?;
        match state.flags.write(b.expected_version.trim(), p, &comment).await {
            Ok(change) => Ok(ChangeDone {
                before: change.before,
                after: change.after,
                version: change.version,
                audit_id: 0,
                overridden,
                unconfirmed: None,
            }),
            Err(e) => unconfirmed_or(e, overridden),
        }
    }
    .await;
    audited(state, caller, Action::FlagSet, reason, result).await
}

/// Nothing raises the flag while a kill has not landed: it is retried until it does.
async fn refuse_while_a_kill_is_pending(state: &AppState) -> Result<(), ApiError> {
    let pending = kill_requests::pending(&state.state_db).await?;
    if let Some(k) = pending.first() {
        return Err(ApiError::Conflict {
            code: "kill_pending",
            message: format!(
                "a kill asked by {} at {} has not landed yet ({}); it is retried every round, and nothing \
                 raises the flag until it lands",
                k.actor,
                k.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
                k.last_error.as_deref().unwrap_or("not tried yet")
            ),
            details: None,
        });
    }
    Ok(())
}

/// An increase while a guard fails: refused, unless the operator overrides with a reason, which
/// is then what the audit entry says.
fn guards_overridden(guards: &[Check], b: &SetPercentage) -> Result<Option<String>, ApiError> {
    let failed: Vec<&Check> = guards.iter().filter(|g| !g.passed).collect();
    if failed.is_empty() {
        return Ok(None);
    }
    let override_reason = b.override_reason.as_deref().map(|r| check_reason(r, "override_reason", true)).transpose()?;
    if !b.override_guards || override_reason.is_none() {
        return Err(ApiError::Conflict {
            code: "guard_failed",
            message: format!(
                "an increase is blocked while a guard fails ({}); override only with override_guards and an override_reason",
                failed.iter().map(|g| format!("{}: {}", g.name, g.detail)).collect::<Vec<_>>().join("; ")
            ),
            details: as_guards::to_value(guards),
        });
    }
    Ok(Some(format!(
        "guards overridden ({}): {}",
        failed.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", "),
        override_reason.flatten().unwrap_or_default()
    )))
}

/// `POST /api/v1/rollout/kill`: the flag to 0 % at once. Always allowed for operators.
///
/// The kill is asked for (`kill_requests`) and ends any active autopilot plan in the same
/// transition, before the flag is written: whatever a round or a Promote was about to write, it
/// writes nothing after this (`autopilot::decide`, invariant 1). A write that fails leaves the
/// kill pending: retried every round, told to every receiver, shown in red until it lands.
pub async fn kill(state: &AppState, caller: &Caller, reason: Option<String>) -> Result<ChangeDone, ApiError> {
    let reason = reason.as_deref().map(|r| check_reason(r, "the reason", false));
    let (reason, reason_error) = match reason {
        Some(Ok(r)) => (r, None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let result = async {
        operator(caller)?;
        if let Some(e) = reason_error {
            return Err(e);
        }
        journal_intent(state, caller, Action::FlagKill, reason.clone())?;
        let db = &state.state_db;
        // The state database's part (the pending request, the plan's end) is bounded: with the
        // database down or hanging the flag is still written, within seconds.
        let (request, ended) = tokio::join!(
            bounded(state, KILL_BOOKKEEPING, kill_requests::ask(db, caller.name(), reason.as_deref())),
            // The plan's row may be held by a step write (up to its 5 s lock timeout).
            bounded(state, KILL_BOOKKEEPING * 3, end_plan(state, caller, reason.as_deref())),
        );
        if let Err(e) = &request {
            tracing::error!("the kill request cannot be kept ({e}); the flag is written anyway");
        }
        if let Err(e) = ended {
            tracing::error!("the active plan could not be ended with the kill ({e}); its next round ends it");
        }
        // Whatever stops the write (a conflict twice over, a value it cannot write), the kill
        // failed: it is a failure, told to everyone, never a mere refusal.
        let written =
            write_kill(state, caller, reason.as_deref().unwrap_or("kill switch")).await.map_err(|e| match e {
                ApiError::Unavailable(_) | ApiError::Failed(_) => e,
                other => ApiError::Failed(format!("the kill could not be written: {other}")),
            });
        let kept = match &written {
            Ok(_) => bounded(state, KILL_BOOKKEEPING, kill_requests::landed(db)).await.map(|_| ()),
            Err(e) => bounded(state, KILL_BOOKKEEPING, kill_requests::attempt_failed(db, &e.to_string())).await,
        };
        if let Err(e) = kept {
            tracing::error!("the kill's request cannot be updated: {e}");
        }
        written
    }
    .await;
    audited(state, caller, Action::FlagKill, reason, result).await
}

/// How long the kill waits for each of the state database's parts before it goes on without.
const KILL_BOOKKEEPING: std::time::Duration = std::time::Duration::from_secs(2);

/// `fut` on the state database, through the kill path's breaker.
async fn bounded<T>(
    state: &AppState,
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, super::error::SourceError>>,
) -> Result<T, super::error::SourceError> {
    state.services.state_db.call(limit, fut).await
}

/// Ends the active autopilot plan because the rollout is being killed (the autopilot's own kill
/// is `autopilot.kill`; anyone else's ends it as `autopilot.end`, naming who).
async fn end_plan(state: &AppState, caller: &Caller, reason: Option<&str>) -> Result<(), super::error::SourceError> {
    let by_autopilot = caller.name() == "autopilot";
    let why = match (by_autopilot, reason) {
        (true, Some(r)) => r.to_string(),
        (_, Some(r)) => format!("the rollout was killed by {}: {r}", caller.name()),
        (_, None) => format!("the rollout was killed by {}", caller.name()),
    };
    let action = if by_autopilot { Action::AutopilotKill } else { Action::AutopilotEnd };
    let n = caller.entry(action, "").outcome(crate::api::audit::Outcome::Done, Some(why.clone()));
    if let Some(id) = super::autopilot::facts::end_for_kill(&state.state_db, &why, n).await? {
        tracing::warn!(plan = id, "the autopilot plan ended with the kill");
    }
    Ok(())
}

/// The kill switch's write: the flag to 0 % on the version it reads itself (the kill does not
/// make anyone race), once more if the flag moved in between.
pub(super) async fn write_kill(state: &AppState, caller: &Caller, reason: &str) -> Result<ChangeDone, ApiError> {
    let mut last = None;
    for _ in 0..2 {
        let reading = state.flags.read().await?;
        let version = reading.version.unwrap_or_default();
        let comment = change_comment(caller, reason);
        match state.flags.write(&version, Percentage::OFF, &comment).await {
            Ok(c) => {
                return Ok(ChangeDone {
                    before: c.before,
                    after: c.after,
                    version: c.version,
                    audit_id: 0,
                    overridden: None,
                    unconfirmed: None,
                })
            }
            Err(FlagWriteError::Conflict(m)) => last = Some(m),
            Err(e) => return unconfirmed_or(e, None),
        }
    }
    Err(ApiError::Conflict { code: "version_conflict", message: last.unwrap_or_default(), details: None })
}

/// The note a flag store keeps with the change (LaunchDarkly's audit log shows it).
fn change_comment(caller: &Caller, reason: &str) -> String {
    let name = caller.who().map(|w| w.user.as_str()).unwrap_or("?");
    format!("rollout-dashboard, by {name}: {reason}")
}

/// Records a request refused before it could be understood (bad body), and passes the error on.
pub async fn refuse(state: &AppState, caller: &Caller, action: Action, e: ApiError) -> Result<ChangeDone, ApiError> {
    // Who may not act at all hears that first, whatever their body said.
    let e = operator(caller).err().unwrap_or(e);
    audited(state, caller, action, None, Err(e)).await
}

/// Tries the pending kills again, one replica at a time: one write of 0 % through the kill
/// switch's own write, as the actor `kill-retry`. Its landing is audited (`flag.kill_retry`, a
/// critical event); its failures update the request, whose first failure was already told to
/// everyone.
pub async fn retry_kills(state: &AppState) -> Result<(), SourceError> {
    if kill_requests::pending(&state.state_db).await?.is_empty() {
        return Ok(());
    }
    super::locks::with_lock(&state.locks, super::locks::Lock::KillRetry, retry_locked(state)).await.map(|_| ())
}

async fn retry_locked(state: &AppState) -> Result<(), SourceError> {
    let db = &state.state_db;
    let waiting = kill_requests::pending(db).await?;
    let Some(first) = waiting.first() else { return Ok(()) };
    let caller =
        Caller::system("kill-retry", format!("kill-retry-{}-{}", first.id, chrono::Utc::now().timestamp_micros()));
    let reason = format!(
        "the kill asked by {} at {} had not landed ({} attempt(s))",
        first.actor,
        first.requested_at.format("%Y-%m-%d %H:%M:%S UTC"),
        first.attempts + 1
    );
    match write_kill(state, &caller, &reason).await {
        Ok(done) => {
            kill_requests::landed(db).await?;
            let entry = caller
                .entry(Action::FlagKillRetry, state.settings.flag.target())
                .values(Some(done.before), Some(done.after))
                .reason(Some(reason))
                .outcome(Outcome::Done, Some(format!("{} pending kill(s) landed", waiting.len())));
            super::audit::record(db, &entry).await?;
            tracing::warn!("a pending kill landed: the flag is at 0 %");
        }
        Err(e) => {
            tracing::error!("a pending kill still cannot be written: {e}");
            kill_requests::attempt_failed(db, &e.to_string()).await?;
        }
    }
    Ok(())
}
