//! The emulated API server authorizes like a real one with RBAC: every request is mapped to its
//! attributes (verb, API group, resource with subresource, name, namespace) and allowed only if a
//! rule of the Role it was given (the shipped `deploy/role.yaml`) covers all of them. Anything
//! else is answered 403 with the API server's own `Status` and sentence, so the tests prove that
//! the manifests are enough, and no more. `/version` is allowed to everyone, as the default
//! ClusterRole `system:public-info-viewer` does.

use serde::Deserialize;

/// What a request asks for, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub verb: &'static str,
    pub group: String,
    /// `configmaps`, `deployments`, `deployments/scale`.
    pub resource: String,
    pub name: String,
    pub namespace: String,
}

impl Attributes {
    /// The attributes of a request (None: not a namespaced object path this emulation knows).
    pub fn of(method: &str, path: &str) -> Option<Attributes> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let collection =
            matches!(parts.as_slice(), ["api", "v1", "namespaces", _, _] | ["apis", _, _, "namespaces", _, _]);
        let verb = match method {
            "GET" if collection => "list",
            "GET" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            "POST" => "create",
            _ => return None,
        };
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
            _ => return None,
        };
        match rest {
            // A collection: a list, or a create (whose object's name is in its body).
            ["namespaces", ns, resource] => Some(Attributes {
                verb,
                group,
                resource: resource.to_string(),
                name: String::new(),
                namespace: ns.to_string(),
            }),
            ["namespaces", ns, resource, name] => Some(Attributes {
                verb,
                group,
                resource: resource.to_string(),
                name: name.to_string(),
                namespace: ns.to_string(),
            }),
            ["namespaces", ns, resource, name, sub] => Some(Attributes {
                verb,
                group,
                resource: format!("{resource}/{sub}"),
                name: name.to_string(),
                namespace: ns.to_string(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
    pub verbs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct RoleObject {
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// A namespaced Role and the service account it is bound to (as named in messages).
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub namespace: String,
    pub rules: Vec<Rule>,
    pub user: String,
}

fn covers(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

impl Role {
    /// Reads the first `kind: Role` document of a YAML file's text.
    pub fn from_yaml(text: &str) -> Result<Role, String> {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| format!("not YAML: {e}"))?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("Role") {
                continue;
            }
            let role: RoleObject = serde_yaml::from_value(value).map_err(|e| format!("not a Role: {e}"))?;
            let namespace = role.metadata.namespace.unwrap_or_else(|| "default".into());
            debug_assert_eq!(role.kind, "Role");
            return Ok(Role {
                user: format!("system:serviceaccount:{namespace}:{}", role.metadata.name),
                name: role.metadata.name,
                namespace,
                rules: role.rules,
            });
        }
        Err("no document of kind Role".into())
    }

    /// This Role with the rules of another Role bound to the same account added (an optional
    /// manifest, such as the rollback's Jobs).
    pub fn with_rules_of(mut self, other: &Role) -> Role {
        self.rules.extend(other.rules.iter().cloned());
        self
    }

    pub fn allows(&self, a: &Attributes) -> bool {
        a.namespace == self.namespace
            && self.rules.iter().any(|r| {
                covers(&r.verbs, a.verb)
                    && covers(&r.api_groups, &a.group)
                    && covers(&r.resources, &a.resource)
                    && (r.resource_names.is_empty() || covers(&r.resource_names, &a.name))
            })
    }

    /// The API server's sentence for a refused request.
    pub fn forbidden_message(&self, a: &Attributes) -> String {
        let base = a.resource.split('/').next().unwrap_or_default();
        let group = if a.group.is_empty() { String::new() } else { format!(".{}", a.group) };
        format!(
            "{base}{group} \"{}\" is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\" in the namespace \"{}\"",
            a.name, self.user, a.verb, a.resource, a.group, a.namespace
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = include_str!("../../../deploy/role.yaml");

    #[test]
    fn the_shipped_role_allows_exactly_the_dashboards_calls() {
        let role = Role::from_yaml(ROLE).unwrap();
        let allowed = |m: &str, p: &str| role.allows(&Attributes::of(m, p).unwrap());
        let cm = "/api/v1/namespaces/diabetes/configmaps/feature-flags";
        let dep = "/apis/apps/v1/namespaces/diabetes/deployments/diary-writer";
        assert!(allowed("GET", cm) && allowed("PUT", cm));
        assert!(!allowed("PATCH", cm) && !allowed("DELETE", cm), "no patch or delete of the flag");
        assert!(!allowed("GET", "/api/v1/namespaces/diabetes/configmaps/other"), "only feature-flags");
        assert!(!allowed("GET", "/api/v1/namespaces/kube-system/configmaps/feature-flags"), "only its namespace");
        assert!(allowed("GET", dep) && !allowed("PATCH", dep), "the writers: read only");
        assert!(allowed("GET", &format!("{dep}/scale")) && allowed("PATCH", &format!("{dep}/scale")));
        assert!(!allowed("PUT", &format!("{dep}/scale")));
        assert!(!allowed("GET", "/api/v1/namespaces/diabetes/secrets/anything"));
        assert!(!allowed("POST", "/apis/batch/v1/namespaces/diabetes/jobs"), "Jobs only with the optional Role");
        assert!(!allowed("GET", "/api/v1/namespaces/diabetes/pods"));
    }

    #[test]
    fn the_optional_jobs_role_adds_exactly_the_rollbacks_jobs() {
        let jobs = Role::from_yaml(include_str!("../../../deploy/rollback-jobs/role.yaml")).unwrap();
        let role = Role::from_yaml(ROLE).unwrap().with_rules_of(&jobs);
        let allowed = |m: &str, p: &str| role.allows(&Attributes::of(m, p).unwrap());
        let jobs = "/apis/batch/v1/namespaces/diabetes/jobs";
        assert!(allowed("POST", jobs) && allowed("GET", &format!("{jobs}/rollback-1-schema-downgrade-1")));
        assert!(!allowed("DELETE", &format!("{jobs}/x")) && !allowed("GET", jobs), "no delete, no list of Jobs");
        assert!(
            allowed("GET", "/api/v1/namespaces/diabetes/pods") && !allowed("GET", "/api/v1/namespaces/diabetes/pods/p")
        );
        assert!(allowed("GET", "/api/v1/namespaces/diabetes/pods/p/log"));
        assert!(allowed("GET", "/apis/batch/v1/namespaces/diabetes/cronjobs/diary-backup"));
        assert!(!allowed("GET", "/apis/batch/v1/namespaces/diabetes/cronjobs/other"));
        assert!(!allowed("POST", "/apis/batch/v1/namespaces/kube-system/jobs"), "only its namespace");
    }

    #[test]
    fn a_refusal_reads_as_the_api_servers() {
        let role = Role::from_yaml(ROLE).unwrap();
        let a = Attributes::of("PATCH", "/apis/apps/v1/namespaces/diabetes/deployments/diary-writer").unwrap();
        assert_eq!(
            role.forbidden_message(&a),
            "deployments.apps \"diary-writer\" is forbidden: User \"system:serviceaccount:diabetes:rollout-dashboard\" \
             cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"diabetes\""
        );
        let a = Attributes::of("PUT", "/apis/apps/v1/namespaces/diabetes/deployments/diary-writer/scale").unwrap();
        assert!(role.forbidden_message(&a).contains("cannot update resource \"deployments/scale\""));
    }
}
