//! The shipped Role (deploy/role.yaml) is enough and no more: the simulator's API server enforces
//! it in every integration test (support::SimulatorHarness), so every test that changes the flag
//! or scales the writers proves it is enough. Here a verb is taken away and the dashboard says,
//! in a sentence, which verb on which resource its service account lacks. Also the API server's
//! other wire rules (absent zero counts, `Status` for bad bodies) and a write whose read-back fails.

use std::time::Duration;

use axum::http::StatusCode;
use diary_writer::rbac::Role;
use rollout_dashboard::server::cluster::Cluster;
use rollout_dashboard::server::config::KubeAccess;
use sqlx::PgPool;

use crate::support::control::{call, control_world, flag_value, As};

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

/// The emulated API server follows the real one's wire rules, and the dashboard reads them: zero
/// counts are absent from a Deployment's status (`readyReplicas` disappears at 0), and a body that
/// is not JSON, or of a media type it does not speak, is answered with a `Status` object.
#[sqlx::test(migrations = false)]
async fn zero_counts_are_absent_and_bad_bodies_get_a_status(pool: PgPool) {
    let w = control_world(pool, "25").await;
    let cluster =
        Cluster::connect(&KubeAccess::Kubeconfig(w.sim.kubeconfig.clone()), "diabetes", Duration::from_secs(3))
            .await
            .unwrap();
    cluster.scale_deployment("diary-writer", 0).await.unwrap();
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", w.sim.token);
    let deployment = format!("{}/apis/apps/v1/namespaces/diabetes/deployments/diary-writer", w.sim.url);
    let d: serde_json::Value =
        client.get(&deployment).header("authorization", &auth).send().await.unwrap().json().await.unwrap();
    assert!(d["status"].get("readyReplicas").is_none() && d["status"].get("replicas").is_none(), "{d}");
    let r = cluster.deployment_replicas("diary-writer").await.unwrap();
    assert_eq!((r.desired, r.ready), (0, 0), "an absent readyReplicas reads as none ready");

    let cm = format!("{}/api/v1/namespaces/diabetes/configmaps/feature-flags", w.sim.url);
    for (content_type, body, code, reason) in [
        ("text/plain", "data: {}", 415, "UnsupportedMediaType"),
        ("application/json", "{not json", 400, "BadRequest"),
        ("application/json", "[1, 2]", 400, "BadRequest"),
    ] {
        let resp = client
            .put(&cm)
            .header("authorization", &auth)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code, "{content_type} {body}");
        let status: serde_json::Value = resp.json().await.unwrap();
        assert_eq!((status["kind"].as_str(), status["reason"].as_str()), (Some("Status"), Some(reason)), "{status}");
        assert_eq!(status["code"], code);
    }
    // RBAC comes first, as in the API server: the Role allows no PATCH of the flag's ConfigMap…
    let resp = client.patch(&cm).header("authorization", &auth).header("content-type", "application/merge-patch+json");
    assert_eq!(resp.body("{}").send().await.unwrap().status().as_u16(), 403);
    // …but a PATCH of the scale subresource, in a patch type this emulation does not speak: 415.
    let resp = client
        .patch(format!("{deployment}/scale"))
        .header("authorization", &auth)
        .header("content-type", "application/apply-patch+yaml")
        .body("data: {}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["kind"], "Status");
    assert_eq!(flag_value(&w), "25", "nothing was written");
}

/// A write the API server took, whose read-back then failed: audited as done, "written, not
/// confirmed" (not as failed), the operator told so, and the flag poller, seeing the new value
/// once Kubernetes answers again, does not call it a change made outside the dashboard.
#[sqlx::test(migrations = false)]
async fn a_write_whose_read_back_fails_is_written_not_confirmed_and_not_an_external_change(pool: PgPool) {
    use diary_writer::cluster::Fault;
    let w = control_world(pool, "25").await;
    rollout_dashboard::server::background::observe_flag(&w.state);
    tokio::time::sleep(Duration::from_millis(2500)).await; // the poller has seen 25
    let version =
        call(&w, As::Operator, "GET", "/api/v1/rollout", None).await.1["version"].as_str().unwrap().to_string();
    w.sim.set_fault(Fault::ErrorAfterWrite);
    let body = format!(r#"{{"percentage": 10, "reason": "lower", "expected_version": "{version}"}}"#);
    let (status, done) = call(&w, As::Operator, "POST", "/api/v1/rollout", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!((done["before"].as_str(), done["after"].as_str()), (Some("25"), Some("10")), "{done}");
    assert!(
        done["unconfirmed"].as_str().unwrap().starts_with("written, not confirmed: reading the flag back failed"),
        "{done}"
    );
    assert_eq!(flag_value(&w), "10", "the write went through");
    let entry: (String, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT outcome, value_after, outcome_detail FROM audit_log WHERE action = 'flag.set' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!((entry.0.as_str(), entry.1.as_deref()), ("done", Some("10")), "{entry:?}");
    assert!(entry.2.as_deref().unwrap().starts_with("written, not confirmed"), "{entry:?}");
    // Kubernetes answers again; the poller reads 10 and knows it for the dashboard's own change.
    w.sim.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen: Vec<(Option<String>,)> =
        sqlx::query_as("SELECT raw_value FROM flag_observations ORDER BY id").fetch_all(&w.pool).await.unwrap();
    assert_eq!(seen.last().and_then(|r| r.0.as_deref()), Some("10"), "the poller saw the new value: {seen:?}");
    let external: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'flag.external_change'")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(external, 0, "an unconfirmed write of ours is not an external change");
}
