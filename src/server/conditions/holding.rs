//! Every domain's conditions, collected.

use sqlx::PgPool;

use super::super::error::SourceError;
use super::Condition;

/// The conditions that hold now, the rollout's first.
pub async fn holding(db: &PgPool) -> Result<Vec<Condition>, SourceError> {
    let mut out = super::super::kill_requests::conditions(db).await?;
    out.extend(super::super::autopilot::facts::conditions(db).await?);
    out.extend(super::super::rollback::facts::conditions(db).await?);
    Ok(out)
}
