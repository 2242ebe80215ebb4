//! Who owns what a spoke holds, and where it lives there.
//!
//! A class deployment is known everywhere by its id `<hub>/<namespace>/<name>`: the hub's
//! identity, then the OClassDeployment's namespace and name on that hub. Each hub namespace
//! maps to one spoke namespace (its own name, or with the OCluster's prefix); a spoke
//! namespace serves exactly one hub namespace of one hub, so object names inside it only need
//! to tell the deployments of that one namespace apart.
use oaas_crds::validation::{MAX_NAME_LEN, check_dns_label, fnv1a, resource_name};

/// On a spoke namespace: the CRM that may place workloads there (its value is the CRM's
/// own namespace, unique per CRM in a cluster). The CRM sets it on namespaces it creates;
/// an administrator sets it to hand an existing namespace over.
pub const CRM_LABEL: &str = "oaas.io/crm";
/// On a spoke namespace: `<hub>/<namespace>`, the one hub namespace it serves.
pub const SERVES_ANNOTATION: &str = "oaas.io/serves";
/// On a spoke namespace the CRM created (and so removes once it holds nothing there).
pub const CREATED_BY_CRM_ANNOTATION: &str = "oaas.io/created-by-crm";
/// On a ClassRuntime: the hub namespace of its class deployment (namespace names are
/// valid label values).
pub const HUB_NAMESPACE_LABEL: &str = "oaas.io/hub-namespace";
/// On a ClassRuntime: a hash of its deployment id (ids are longer than label values may be).
pub const ID_HASH_LABEL: &str = "oaas.io/deployment-id-hash";
/// On a ClassRuntime: `<namespace>/<name>` of the runtimes of the same deployment it
/// replaces (an older name or namespace); they go once it is Available.
pub const REPLACES_ANNOTATION: &str = "oaas.io/replaces";

/// A deployment id taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentId<'a> {
    pub hub: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl DeploymentId<'_> {
    /// `<hub>/<namespace>`: what a spoke namespace serves.
    pub fn tenant(&self) -> String {
        format!("{}/{}", self.hub, self.namespace)
    }

    /// `<namespace>/<name>`: the id within its hub (what REST shows), and the whole id
    /// before ids carried the hub.
    pub fn within_hub(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

pub fn deployment_id(hub: &str, namespace: &str, name: &str) -> String {
    format!("{hub}/{namespace}/{name}")
}

/// Splits `<hub>/<namespace>/<name>`; the message says what is wrong.
pub fn parse_deployment_id(id: &str) -> Result<DeploymentId<'_>, String> {
    let mut parts = id.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(hub), Some(namespace), Some(name))
            if !hub.is_empty()
                && !namespace.is_empty()
                && !name.is_empty()
                && !name.contains('/') =>
        {
            Ok(DeploymentId {
                hub,
                namespace,
                name,
            })
        }
        _ => Err(format!(
            "deployment id {id:?} is not <hub>/<namespace>/<name> (e.g. hub-1/default/record)"
        )),
    }
}

/// The spoke namespace a hub namespace maps to under an OCluster's prefix: the joined name
/// when it is a valid namespace name, else a DNS label made from it.
pub fn spoke_namespace(prefix: &str, hub_namespace: &str) -> String {
    let joined = format!("{prefix}{hub_namespace}");
    if check_dns_label(&joined).is_ok() {
        joined
    } else {
        dns_label(&joined)
    }
}

/// The name of a deployment's ClassRuntime in its spoke namespace.
pub fn runtime_name(id: &DeploymentId) -> String {
    dns_label(id.name)
}

/// Short, label-safe hash of a deployment id.
pub fn id_hash(id: &str) -> String {
    format!("{:016x}", fnv1a(id.as_bytes()))
}

/// `name` itself when it is a DNS label (what Services and namespaces need); otherwise a
/// readable label made from it plus a hash of the original, so distinct names stay distinct.
pub fn dns_label(name: &str) -> String {
    if is_dns_label(name) {
        return name.to_string();
    }
    let hash = format!("{:08x}", fnv1a(name.as_bytes()) as u32);
    let readable = resource_name(&[name]);
    let room = MAX_NAME_LEN - hash.len() - 1;
    let prefix = readable[..readable.len().min(room)].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// A DNS-1035 label (what Service names need): a namespace-style name that starts with a
/// letter.
fn is_dns_label(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase()) && check_dns_label(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ones_say_the_form() {
        let id = deployment_id("hub-1", "team-b", "record");
        let parsed = parse_deployment_id(&id).expect("valid");
        assert_eq!(
            (parsed.hub, parsed.namespace, parsed.name),
            ("hub-1", "team-b", "record")
        );
        assert_eq!(parsed.tenant(), "hub-1/team-b");
        assert_eq!(parsed.within_hub(), "team-b/record");
        for bad in [
            "team/record",
            "record",
            "hub//record",
            "/ns/name",
            "hub/ns/",
            "a/b/c/d",
        ] {
            let error = parse_deployment_id(bad).expect_err(bad);
            assert!(error.contains("<hub>/<namespace>/<name>"), "{error}");
        }
    }

    #[test]
    fn names_stay_readable_and_become_dns_labels_when_they_are_not() {
        assert_eq!(spoke_namespace("", "team-b"), "team-b");
        assert_eq!(spoke_namespace("hub1-", "team-b"), "hub1-team-b");
        assert_eq!(
            spoke_namespace("", "1team"),
            "1team",
            "a namespace may start with a digit"
        );
        let id = parse_deployment_id("h/ns/record").unwrap();
        assert_eq!(runtime_name(&id), "record");
        let dotted = dns_label("record.v2");
        assert!(
            dotted.starts_with("record-v2-") && is_dns_label(&dotted),
            "{dotted}"
        );
        assert_ne!(dotted, dns_label("record-v2"));
    }

    #[test]
    fn long_names_fit_in_63_characters_and_stay_distinct() {
        let long_a = format!("{}-a", "x".repeat(100));
        let long_b = format!("{}-b", "x".repeat(100));
        let a = dns_label(&long_a);
        assert_eq!(a, dns_label(&long_a), "deterministic");
        assert!(a.len() <= MAX_NAME_LEN && is_dns_label(&a), "{a}");
        assert_ne!(a, dns_label(&long_b));
        let ns = spoke_namespace("a-long-prefix-", &"n".repeat(60));
        assert!(ns.len() <= MAX_NAME_LEN && is_dns_label(&ns), "{ns}");
    }
}
