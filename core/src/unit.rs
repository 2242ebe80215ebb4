//! The deployment unit a class deployment sends to each of its clusters.
//!
//! What a spoke runs is described once, as the `ClassRuntimeSpec` the spoke stores; the
//! protobuf `DeploymentUnit` is only its wire form (`oaas_crds::convert` maps both ways, and
//! the spoke maps it straight back), so the hub and the spokes cannot disagree on a field.
use oaas_crds::ClassRuntimeSpec;
use oaas_crds::class_deployment::OClassDeploymentSpec;
use oaas_crds::convert::unit_with_revision;
use oaas_proto::deployment as pb;

use crate::resolve::ResolvedClass;

/// The unit for `cluster`, deployed into its spoke `namespace`; its revision is a hash of
/// everything else in it.
pub fn build(
    deployment_id: &str,
    spec: &OClassDeploymentSpec,
    resolved: &ResolvedClass,
    cluster: &str,
    namespace: &str,
) -> pb::DeploymentUnit {
    let runtime = ClassRuntimeSpec {
        deployment_id: deployment_id.to_string(),
        package_name: spec.package.clone(),
        class_key: spec.class_key.clone(),
        target_cluster: Some(cluster.to_string()),
        target_env: spec.target_env.clone(),
        functions: resolved.functions.clone(),
        template: spec.template,
        addons: spec.odgm.iter().map(|_| "odgm".to_string()).collect(),
        odgm: spec.odgm.clone(),
        nfr: spec.nfr.clone(),
        enforcement_mode: spec.enforcement_mode,
        consistency_model: resolved.consistency,
        revision: None,
    };
    unit_with_revision(&runtime, namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oaas_crds::common::{ConsistencyModel, OdgmSpec};
    use oaas_crds::convert::runtime_spec_from_unit;

    fn mk_resolved() -> ResolvedClass {
        ResolvedClass {
            functions: vec![oaas_crds::class_runtime::RuntimeFunction {
                function_key: "echo".into(),
                provision_config: oaas_crds::common::ProvisionConfig {
                    container_image: Some("img/echo:1".into()),
                    ..Default::default()
                },
                ..Default::default()
            }],
            consistency: ConsistencyModel::Strong,
        }
    }

    fn mk_spec() -> OClassDeploymentSpec {
        OClassDeploymentSpec {
            package: "example".into(),
            class_key: "Record".into(),
            odgm: Some(OdgmSpec {
                collections: vec!["records".into()],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_spoke_reads_back_what_the_hub_sent() {
        let unit = build(
            "h/team/record",
            &mk_spec(),
            &mk_resolved(),
            "spoke-a",
            "team",
        );
        let runtime = runtime_spec_from_unit(&unit).expect("a valid unit");
        assert_eq!(runtime.deployment_id, "h/team/record");
        assert_eq!(runtime.target_cluster.as_deref(), Some("spoke-a"));
        assert_eq!(runtime.addons, ["odgm"]);
        assert_eq!(runtime.consistency_model, ConsistencyModel::Strong);
        assert_eq!(runtime.functions, mk_resolved().functions);
        assert_eq!(runtime.revision, Some(unit.revision));
        assert_eq!(
            unit_with_revision(&runtime, "team").revision,
            unit.revision,
            "the spoke's hash of what it holds equals the hub's revision"
        );
    }

    #[test]
    fn the_revision_follows_the_content_and_nothing_else() {
        let a = build("h/ns/d", &mk_spec(), &mk_resolved(), "spoke-a", "ns");
        assert_eq!(
            a,
            build("h/ns/d", &mk_spec(), &mk_resolved(), "spoke-a", "ns")
        );
        let other_cluster = build("h/ns/d", &mk_spec(), &mk_resolved(), "spoke-b", "ns");
        assert_ne!(a.revision, other_cluster.revision);
        let other_namespace = build("h/ns/d", &mk_spec(), &mk_resolved(), "spoke-a", "p-ns");
        assert_ne!(a.revision, other_namespace.revision);
        let mut changed = mk_spec();
        changed.target_env = Some("staging".into());
        assert_ne!(
            a.revision,
            build("h/ns/d", &changed, &mk_resolved(), "spoke-a", "ns").revision
        );
        assert!(a.revision >= 0);
    }
}
