//! The shipped Role (deploy/role.yaml) is enough and no more: the simulator's API server enforces
//! it in every integration test (support::SimulatorHarness), so every test that changes the flag
//! or scales the writers proves it is enough. Here a verb is taken away and the dashboard says,
//! in a sentence, which verb on which resource its service account lacks.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::rbac::Role;
use rollout_dashboard::server::cluster::Cluster;
use rollout_dashboard::server::config::KubeAccess;
use sqlx::PgPool;

use crate::rollout::{call, control_world, flag_value, As};

const SHIPPED: &str = include_str!("../../deploy/role.yaml");

/// The shipped Role without `verb` in the rule for `resource`.
fn without(resource: &str, verb: &str) -> Role {
    let mut role = Role::from_yaml(SHIPPED).unwrap();
    for rule in role.rules.iter_mut().filter(|r| r.resources.iter().any(|r| r == resource)) {
        rule.verbs.retain(|v| v != verb);
    }
    role
}

#[sqlx::test(migrations = false)]
async fn without_update_on_the_flag_the_change_is_refused_with_the_missing_verb_named(pool: PgPool) {
    let w = control_world(pool, "25").await;
    w.sim.cluster.set_role(Some(without("configmaps", "update")));
    let (_, rollout) = call(&w, As::Operator, "GET", "/api/v1/rollout", None).await;
    assert_eq!(rollout["percentage"], 25, "get is still allowed: {rollout}");
    let version = rollout["version"].as_str().unwrap();
    let body = format!(r#"{{"percentage": 10, "reason": "lower", "expected_version": "{version}"}}"#);
    let (status, err) = call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await;
    assert!(status.is_server_error(), "{status} {err}");
    let message = err["error"].as_str().unwrap();
    assert!(
        message.contains(
            r#"the dashboard's service account may not update configmaps "feature-flags" in namespace diabetes"#
        ) && message.contains(r#"allow the verb "update" on resource "configmaps""#),
        "{message}"
    );
    assert_eq!(flag_value(&w), "25", "nothing was written");
    let refused: (String, Option<String>) = sqlx::query_as(
        "SELECT outcome, outcome_detail FROM audit_log WHERE action = 'flag.set' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert!(refused.1.as_deref().unwrap_or_default().contains("may not update configmaps"), "{refused:?}");
    // With the shipped Role again, the same change goes through.
    w.sim.cluster.set_role(Some(Role::from_yaml(SHIPPED).unwrap()));
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    let body = format!(r#"{{"percentage": 10, "reason": "lower", "expected_version": "{version}"}}"#);
    assert_eq!(call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await.0, StatusCode::OK);
    assert_eq!(flag_value(&w), "10");
}

#[sqlx::test(migrations = false)]
async fn without_patch_on_the_scale_subresource_scaling_names_it(pool: PgPool) {
    let w = control_world(pool, "25").await;
    let cluster =
        Cluster::connect(&KubeAccess::Kubeconfig(w.sim.kubeconfig.clone()), "diabetes", Duration::from_secs(3))
            .await
            .unwrap();
    cluster.scale_deployment("diary-writer", 2).await.expect("the shipped Role allows scaling the writers");
    w.sim.cluster.set_role(Some(without("deployments/scale", "patch")));
    let e = cluster.scale_deployment("diary-writer", 3).await.unwrap_err().to_string();
    assert!(
        e.contains(r#"may not patch deployments/scale "diary-writer" in namespace diabetes"#) && e.contains("Role"),
        "{e}"
    );
    // Anything the Role does not name is refused: another ConfigMap, a Secret.
    assert!(cluster.configmap("other").await.unwrap_err().to_string().contains("may not get configmaps \"other\""));
}
