//! Who is acting, as either door saw them: a person signed in (or nobody), or the dashboard
//! itself, with the request id their audit entries carry.

use crate::api::audit::Action;
use crate::api::auth::{Identity, Role};

use super::audit::NewEntry;
use super::error::ApiError;

#[derive(Debug, Clone)]
pub struct Caller {
    who: Option<Identity>,
    request_id: String,
    system: bool,
}

impl Caller {
    pub fn new(who: Option<Identity>, request_id: impl Into<String>) -> Self {
        Caller { who, request_id: request_id.into(), system: false }
    }

    /// The dashboard acting by itself (the autopilot): an operator's rights, its own name, and
    /// the role `system` in the audit trail.
    pub fn system(name: &str, request_id: impl Into<String>) -> Self {
        let who = Identity { user: name.into(), role: Role::Operator, via: "system".into() };
        Caller { who: Some(who), request_id: request_id.into(), system: true }
    }

    /// The signed-in person, if any.
    pub fn who(&self) -> Option<&Identity> {
        self.who.as_ref()
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The name audit entries and flag comments carry.
    pub fn name(&self) -> &str {
        self.who.as_ref().map(|w| w.user.as_str()).unwrap_or("anonymous")
    }

    pub fn role(&self) -> &'static str {
        if self.system {
            return "system";
        }
        self.who.as_ref().map(|w| w.role.as_str()).unwrap_or("none")
    }

    /// An audit entry by this caller.
    pub fn entry(&self, action: Action, target: impl Into<String>) -> NewEntry {
        NewEntry::new(self.name(), self.role(), action, target).request(Some(&self.request_id))
    }

    /// The operator acting, or why this caller may not do it: 401 for nobody ("sign in first:
    /// `doing` needs an operator"), 403 for a viewer ("only operators may `verb`").
    pub fn operator(&self, doing: &str, verb: &str) -> Result<&Identity, ApiError> {
        match &self.who {
            None => Err(ApiError::Unauthenticated(format!("sign in first: {doing} needs an operator"))),
            Some(w) if w.role != Role::Operator => {
                Err(ApiError::Forbidden(format!("{} is a {}: only operators may {verb}", w.user, w.role.as_str())))
            }
            Some(w) => Ok(w),
        }
    }

    /// Passes a service's `result` on; a refusal or failure goes to the audit trail first, as
    /// this caller doing `action` to `target` (what was done is recorded by the change itself). A trail
    /// that cannot take the entry is logged loudly and does not change the answer.
    pub async fn refusal_recorded<T>(
        &self,
        db: &sqlx::PgPool,
        metrics: &super::own_metrics::OwnMetrics,
        action: Action,
        target: &str,
        result: Result<T, super::error::ApiError>,
    ) -> Result<T, super::error::ApiError> {
        if let Err(e) = &result {
            if self.counted_if_anonymous(metrics, action) {
                return result;
            }
            if let Err(err) = super::audit::record(db, &self.entry(action, target).refusal(e)).await {
                tracing::error!(
                    request_id = self.request_id(),
                    "cannot record a refused {action} in the audit trail: {err}"
                );
            }
        }
        result
    }

    /// A refusal of a caller without an identity: counted in `/metrics`
    /// (`rollout_dashboard_anonymous_refusals_total{action}`) and logged, never written to the audit
    /// trail, which anybody could otherwise fill. True when the caller is nobody.
    pub fn counted_if_anonymous(&self, metrics: &super::own_metrics::OwnMetrics, action: Action) -> bool {
        if self.who().is_some() {
            return false;
        }
        metrics.anonymous_refusal(action.as_str());
        tracing::info!(
            request_id = self.request_id(),
            action = action.as_str(),
            "refused a caller without an identity (counted, not audited)"
        );
        true
    }
}
