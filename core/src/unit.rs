//! The deployment unit a class deployment sends to each of its clusters.
//!
//! What a spoke runs is described once, as the `ClassRuntimeSpec` the spoke stores; the
//! protobuf `DeploymentUnit` is only its wire form (`oaas_crds::convert` maps both ways, and
//! the spoke maps it straight back), so the hub and the spokes cannot disagree on a field.
use oaas_crds::ClassRuntimeSpec;
use oaas_crds::class_deployment::OClassDeploymentSpec;
use oaas_crds::class_runtime::RuntimeFunction;
use oaas_crds::convert::unit_with_revision;
use oaas_proto::deployment as pb;

use crate::resolve::ResolvedClass;

/// Where and how a unit runs: its cluster, the spoke namespace, and the replicas each
/// function needs there (the plan's `replicasPerCluster`).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub replicas: u32,
}

/// The unit for one target; its revision is a hash of everything else in it. The cluster's
/// own template wins over the deployment's, and each function's `minScale` is raised to the
/// planned replicas (never past its `maxScale`).
pub fn build(
    deployment_id: &str,
    spec: &OClassDeploymentSpec,
    resolved: &ResolvedClass,
    target: Target,
) -> pb::DeploymentUnit {
    let Target {
        cluster,
        namespace,
        replicas,
    } = target;
    let runtime = ClassRuntimeSpec {
        deployment_id: deployment_id.to_string(),
        package_name: spec.package.clone(),
        class_key: spec.class_key.clone(),
        target_cluster: Some(cluster.to_string()),
        target_env: spec.target_env.clone(),
        functions: resolved
            .functions
            .iter()
            .cloned()
            .map(|f| with_replicas(f, replicas))
            .collect(),
        template: spec
            .cluster_templates
            .get(cluster)
            .copied()
            .or(spec.template),
        addons: spec.odgm.iter().map(|_| "odgm".to_string()).collect(),
        odgm: spec.odgm.clone(),
        telemetry: spec.telemetry.clone(),
        nfr: spec.nfr.clone(),
        enforcement_mode: spec.enforcement_mode,
        consistency_model: resolved.consistency,
        revision: None,
    };
    unit_with_revision(&runtime, namespace)
}

/// The function with at least `replicas` as its minimum scale. One replica changes nothing,
/// so a plan without a raise leaves units (and their revisions) as they were.
fn with_replicas(mut function: RuntimeFunction, replicas: u32) -> RuntimeFunction {
    let provision = &mut function.provision_config;
    if replicas > provision.min_scale.unwrap_or(1) {
        let ceiling = provision
            .max_scale
            .filter(|max| *max > 0)
            .unwrap_or(u32::MAX);
        provision.min_scale = Some(replicas.min(ceiling));
    }
    function
}

#[cfg(test)]
mod tests {
    use super::*;
    use oaas_crds::common::{ConsistencyModel, OdgmSpec, Template};
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

    fn at<'a>(cluster: &'a str, namespace: &'a str) -> Target<'a> {
        Target {
            cluster,
            namespace,
            replicas: 1,
        }
    }

    #[test]
    fn the_spoke_reads_back_what_the_hub_sent() {
        let unit = build(
            "h/team/record",
            &mk_spec(),
            &mk_resolved(),
            at("spoke-a", "team"),
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
        let a = build("h/ns/d", &mk_spec(), &mk_resolved(), at("spoke-a", "ns"));
        assert_eq!(
            a,
            build("h/ns/d", &mk_spec(), &mk_resolved(), at("spoke-a", "ns"))
        );
        let other_cluster = build("h/ns/d", &mk_spec(), &mk_resolved(), at("spoke-b", "ns"));
        assert_ne!(a.revision, other_cluster.revision);
        let other_namespace = build("h/ns/d", &mk_spec(), &mk_resolved(), at("spoke-a", "p-ns"));
        assert_ne!(a.revision, other_namespace.revision);
        let mut changed = mk_spec();
        changed.target_env = Some("staging".into());
        assert_ne!(
            a.revision,
            build("h/ns/d", &changed, &mk_resolved(), at("spoke-a", "ns")).revision
        );
        assert!(a.revision >= 0);
    }

    #[test]
    fn a_cluster_template_wins_and_planned_replicas_raise_min_scale() {
        let mut spec = mk_spec();
        spec.template = Some(Template::K8sDeployment);
        spec.cluster_templates = [("edge-1".to_string(), Template::Edge)].into();
        let template = |cluster| build("h/ns/d", &spec, &mk_resolved(), at(cluster, "ns")).template;
        assert_eq!(template("edge-1"), "edge");
        assert_eq!(template("core-1"), "k8s_deployment");

        let scales = |min: Option<u32>, max: Option<u32>, replicas| {
            let mut resolved = mk_resolved();
            let provision = &mut resolved.functions[0].provision_config;
            provision.min_scale = min;
            provision.max_scale = max;
            let target = Target {
                replicas,
                ..at("spoke-a", "ns")
            };
            let unit = build("h/ns/d", &spec, &resolved, target);
            let runtime = runtime_spec_from_unit(&unit).expect("a valid unit");
            runtime.functions[0].provision_config.min_scale
        };
        assert_eq!(scales(None, None, 1), None, "one replica changes nothing");
        assert_eq!(scales(None, None, 3), Some(3));
        assert_eq!(scales(Some(5), None, 3), Some(5), "never lowered");
        assert_eq!(scales(None, Some(2), 3), Some(2), "never past maxScale");
    }
}
