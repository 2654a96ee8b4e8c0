//! The built-in check `schema`.

use crate::api::autopilot::Verdict;

use super::super::super::service;
use super::super::super::state::AppState;
use super::{Check, Found, Look, Round};

/// The split columns exist, and the revision is the expected head (when the settings name one).
pub struct Schema;

impl Check for Schema {
    fn name(&self) -> &'static str {
        "schema"
    }

    fn look<'a>(&'a self, r: &'a Round<'a>) -> Look<'a> {
        Box::pin(schema(r.state))
    }
}

async fn schema(state: &AppState) -> Found {
    let expected = state.settings.schema.expected_head.clone();
    let threshold = match &expected {
        Some(h) => format!("insulin_short and insulin_long exist; revision {h}"),
        None => "insulin_short and insulin_long exist".into(),
    };
    let query = "information_schema.columns of history_records; SELECT version_num FROM alembic_version";
    match service::diary_and_schema(state).await {
        Err(e) => Found::inconclusive(threshold, query, e),
        Ok((_, s)) => {
            let columns = s.has_split_columns();
            let revision_ok = expected.as_ref().is_none_or(|h| s.alembic_revision.as_ref() == Some(h));
            let passed = columns && revision_ok;
            Found {
                verdict: if passed { Verdict::Pass } else { Verdict::Fail },
                value: None,
                threshold,
                sample: None,
                query: query.into(),
                detail: match (s.split_columns(), revision_ok) {
                    (Err(said), _) => said.into(),
                    (Ok(_), false) => {
                        format!("the revision is {}", s.alembic_revision.unwrap_or_else(|| "unknown".into()))
                    }
                    (Ok(_), true) => "the split columns exist at the expected revision".into(),
                },
            }
        }
    }
}
