//! Writing and reading the append-only audit trail in the state database.

use crate::api::audit::Action;
use sqlx::PgPool;

use crate::api::audit::{AuditEntry, Outcome};

use super::error::{from_sqlx, Source, SourceError};

/// An entry about to be recorded (the database assigns id and time).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewEntry {
    pub actor: String,
    pub role: String,
    pub action: Action,
    pub target: String,
    pub value_before: Option<String>,
    pub value_after: Option<String>,
    pub reason: Option<String>,
    pub outcome: Outcome,
    pub outcome_detail: Option<String>,
    pub request_id: Option<String>,
    /// The rollback run it is about, if any.
    #[serde(default)]
    pub run_id: Option<i64>,
    /// The autopilot plan it is about, if any.
    #[serde(default)]
    pub plan_id: Option<i64>,
}

impl NewEntry {
    /// The one way to start an entry: `actor` (with `role`) did `action` to `target`; done, with
    /// nothing else said yet. The setters below fill in the rest.
    pub fn new(actor: impl Into<String>, role: impl Into<String>, action: Action, target: impl Into<String>) -> Self {
        NewEntry {
            actor: actor.into(),
            role: role.into(),
            action,
            target: target.into(),
            value_before: None,
            value_after: None,
            reason: None,
            outcome: Outcome::Done,
            outcome_detail: None,
            request_id: None,
            run_id: None,
            plan_id: None,
        }
    }
    pub fn values(self, before: Option<String>, after: Option<String>) -> Self {
        NewEntry { value_before: before, value_after: after, ..self }
    }
    pub fn reason(self, reason: Option<String>) -> Self {
        NewEntry { reason, ..self }
    }
    pub fn outcome(self, outcome: Outcome, detail: Option<String>) -> Self {
        NewEntry { outcome, outcome_detail: detail, ..self }
    }
    /// About the autopilot plan `id` (a step or a kill it made).
    pub fn plan(self, id: i64) -> Self {
        NewEntry { plan_id: Some(id), ..self }
    }

    pub fn request(self, request_id: Option<&str>) -> Self {
        NewEntry { request_id: request_id.map(str::to_string), ..self }
    }
    /// How a refusal or a failure is filed: failed when an outside system failed us, refused
    /// when the request itself was not acceptable.
    pub fn refusal(self, e: &super::error::ApiError) -> Self {
        use super::error::ApiError;
        let outcome = match e {
            ApiError::Unavailable(_) | ApiError::Failed(_) => Outcome::Failed,
            _ => Outcome::Refused,
        };
        self.outcome(outcome, Some(e.to_string()))
    }
}

type EntryInsert<'q, O> = sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// Binds the entry's twelve columns as `$1` to `$12`, in the order the inserts below name them.
fn bind_entry<'q, O>(q: EntryInsert<'q, O>, e: &'q NewEntry) -> EntryInsert<'q, O> {
    q.bind(&e.actor)
        .bind(&e.role)
        .bind(e.action.as_str())
        .bind(&e.target)
        .bind(&e.value_before)
        .bind(&e.value_after)
        .bind(&e.reason)
        .bind(e.outcome.as_str())
        .bind(&e.outcome_detail)
        .bind(&e.request_id)
        .bind(e.run_id)
        .bind(e.plan_id)
}

/// Who made the latest flag change the trail knows of, and how (`flag.set`, `flag.kill` or
/// `flag.external_change`): (actor, action).
pub async fn last_flag_change(db: &PgPool) -> Result<Option<(String, String)>, SourceError> {
    sqlx::query_as(
        "SELECT actor, action FROM audit_log WHERE action = ANY($1) AND outcome = 'done' ORDER BY id DESC LIMIT 1",
    )
    .bind(
        crate::api::audit::FLAG_WRITES
            .iter()
            .chain([&Action::FlagExternalChange])
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
    )
    .fetch_optional(db)
    .await
    .map_err(crate::server::error::db_err)
}

/// Records one entry; returns its id.
pub async fn record<'e>(db: impl sqlx::PgExecutor<'e>, e: &NewEntry) -> Result<i64, SourceError> {
    bind_entry(
        sqlx::query_scalar(
            "INSERT INTO audit_log (actor, role, action, target, value_before, value_after, reason, outcome, outcome_detail,
                                    request_id, run_id, plan_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        ),
        e,
    )
    .fetch_one(db)
    .await
    .map_err(|err| from_sqlx(Source::StateDatabase, &err))
}

/// Records an entry with the time it happened, unless `audit_log` already holds one with its
/// request id and action (replaying the audit journal twice records nothing twice). True when
/// recorded.
pub async fn record_once<'e>(
    db: impl sqlx::PgExecutor<'e>,
    at: chrono::DateTime<chrono::Utc>,
    e: &NewEntry,
) -> Result<bool, SourceError> {
    let id: Option<i64> = bind_entry(
        sqlx::query_scalar(
            "INSERT INTO audit_log (actor, role, action, target, value_before, value_after, reason, outcome, outcome_detail,
                                    request_id, run_id, plan_id, at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
              WHERE NOT EXISTS (SELECT 1 FROM audit_log WHERE request_id = $10 AND action = $3)
             RETURNING id",
        ),
        e,
    )
    .bind(at)
    .fetch_optional(db)
    .await
    .map_err(|err| from_sqlx(Source::StateDatabase, &err))?;
    Ok(id.is_some())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: chrono::DateTime<chrono::Utc>,
    actor: String,
    role: String,
    action: String,
    target: String,
    value_before: Option<String>,
    value_after: Option<String>,
    reason: Option<String>,
    outcome: String,
    outcome_detail: Option<String>,
    request_id: Option<String>,
    run_id: Option<i64>,
    plan_id: Option<i64>,
}

const COLUMNS: &str =
    "id, at, actor, role, action, target, value_before, value_after, reason, outcome, outcome_detail, \
                       request_id, run_id, plan_id";

/// The newest entries first, optionally of one action.
pub async fn list(db: &PgPool, limit: i64, action: Option<&str>) -> Result<Vec<AuditEntry>, SourceError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log WHERE ($2::text IS NULL OR action = $2) ORDER BY id DESC LIMIT $1"
    ))
    .bind(limit)
    .bind(action)
    .fetch_all(db)
    .await
    .map_err(|err| from_sqlx(Source::StateDatabase, &err))?;
    Ok(rows.into_iter().map(Row::entry).collect())
}

/// The entries done since `since` whose action is one of `actions`, oldest first (at most
/// `limit`, the newest kept): the events drawn as markers on the charts.
pub async fn done_since(
    db: &PgPool,
    since: chrono::DateTime<chrono::Utc>,
    actions: &[&str],
    limit: i64,
) -> Result<Vec<AuditEntry>, SourceError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT * FROM (SELECT {COLUMNS} FROM audit_log
            WHERE at >= $1 AND action = ANY($2) AND outcome = 'done' ORDER BY id DESC LIMIT $3) newest
          ORDER BY id"
    ))
    .bind(since)
    .bind(actions)
    .bind(limit)
    .fetch_all(db)
    .await
    .map_err(|err| from_sqlx(Source::StateDatabase, &err))?;
    Ok(rows.into_iter().map(Row::entry).collect())
}

/// The entries of `actions` after `after_id` that `receiver` has not been told about (no
/// `notify_sent` row), oldest first: the notification outbox (see the migration `notify`).
pub async fn not_yet_sent(
    db: &PgPool,
    receiver: &str,
    after_id: i64,
    actions: &[&str],
    limit: i64,
) -> Result<Vec<AuditEntry>, SourceError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log a
          WHERE a.id > $2 AND a.action = ANY($3) AND a.outcome <> 'refused'
            AND NOT EXISTS (SELECT 1 FROM notify_sent s WHERE s.receiver = $1 AND s.audit_id = a.id)
          ORDER BY a.id LIMIT $4"
    ))
    .bind(receiver)
    .bind(after_id)
    .bind(actions)
    .bind(limit)
    .fetch_all(db)
    .await
    .map_err(|err| from_sqlx(Source::StateDatabase, &err))?;
    Ok(rows.into_iter().map(Row::entry).collect())
}

impl Row {
    fn entry(self) -> AuditEntry {
        AuditEntry {
            id: self.id,
            at: self.at,
            actor: self.actor,
            role: self.role,
            action: self.action,
            target: self.target,
            value_before: self.value_before,
            value_after: self.value_after,
            reason: self.reason,
            outcome: match self.outcome.as_str() {
                "done" => Outcome::Done,
                "refused" => Outcome::Refused,
                _ => Outcome::Failed,
            },
            outcome_detail: self.outcome_detail,
            request_id: self.request_id,
            run_id: self.run_id,
            plan_id: self.plan_id,
        }
    }
}

/// RFC 4180 CSV of the entries, with a header row. Cells that a spreadsheet would take for a
/// formula are prefixed with an apostrophe.
pub fn to_csv(entries: &[AuditEntry]) -> String {
    use super::charts::csv_cell as cell;
    let mut out = String::from(
        "id,at,actor,role,action,target,value_before,value_after,reason,outcome,outcome_detail,request_id\r\n",
    );
    for e in entries {
        let fields = [
            e.id.to_string(),
            e.at.to_rfc3339(),
            e.actor.clone(),
            e.role.clone(),
            e.action.clone(),
            e.target.clone(),
            e.value_before.clone().unwrap_or_default(),
            e.value_after.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            e.outcome.as_str().to_string(),
            e.outcome_detail.clone().unwrap_or_default(),
            e.request_id.clone().unwrap_or_default(),
        ];
        out.push_str(&fields.iter().map(|f| cell(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let e = AuditEntry {
            id: 1,
            at: chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().to_utc(),
            actor: "ana".into(),
            role: "operator".into(),
            action: Action::FlagSet.as_str().into(),
            target: "diabetes/feature-flags/insulin_dose_split".into(),
            value_before: Some("5".into()),
            value_after: Some("25".into()),
            reason: Some("=HYPERLINK(\"x\"), step two".into()),
            outcome: Outcome::Done,
            outcome_detail: None,
            request_id: Some("r1".into()),
            run_id: None,
            plan_id: None,
        };
        let csv = to_csv(&[e]);
        let line = csv.lines().nth(1).unwrap();
        assert!(line.starts_with("1,2026-11-25T10:00:00+00:00,ana,operator,flag.set,"));
        assert!(line.contains(r#""'=HYPERLINK(""x""), step two""#), "{line}");
    }
}
