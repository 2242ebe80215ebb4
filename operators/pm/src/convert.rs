//! `oaas-pm convert`: the REST facade's document mapping, offline. Reads OaaS package files
//! (YAML or JSON, several YAML documents allowed) and prints the OPackage and
//! OClassDeployment manifests they stand for, ready for `kubectl apply -f -`.
use std::io::Read as _;

use crate::document::Package;
use crate::document::mapping::package_resources;
use anyhow::{Context as _, bail};

const USAGE: &str =
    "usage: oaas-pm convert [--namespace <namespace>] <package.yaml|package.json|->";

/// Runs the subcommand with the arguments after `convert`.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let (namespace, path) = parse_args(args)?;
    let text = if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?
    };
    print!(
        "{}",
        convert(&text, namespace.as_deref()).with_context(|| format!("converting {path}"))?
    );
    Ok(())
}

fn parse_args(args: &[String]) -> anyhow::Result<(Option<String>, String)> {
    match args {
        [flag, namespace, path] if flag == "--namespace" || flag == "-n" => {
            Ok((Some(namespace.clone()), path.clone()))
        }
        [path] if !path.starts_with("--") || path == "-" => Ok((None, path.clone())),
        _ => bail!("{USAGE}"),
    }
}

/// The manifests for every package document in `text`, as one multi-document YAML stream.
/// Without a namespace the manifests carry none, so `kubectl -n` chooses.
pub fn convert(text: &str, namespace: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let package: Package = serde_path_to_error::deserialize(document)
            .map_err(|e| anyhow::anyhow!("document {}: {}: {}", index + 1, e.path(), e.inner()))?;
        let (mut package, mut deployments) =
            package_resources(&package, namespace.unwrap_or_default())
                .map_err(|e| anyhow::anyhow!("document {}: {e}", index + 1))?;
        package.metadata.namespace = namespace.map(String::from);
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&package)?);
        for deployment in &mut deployments {
            deployment.metadata.namespace = namespace.map(String::from);
            out.push_str("---\n");
            out.push_str(&serde_yaml::to_string(deployment)?);
        }
    }
    if out.is_empty() {
        bail!("no package document found");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oaas_crds::{OClassDeployment, OPackage};
    use serde::Deserialize;

    #[test]
    fn a_package_file_converts_to_manifests_kubectl_can_apply() {
        let text = "name: shop\nversion: 2\nclasses: [{key: Cart}]\nfunctions: []\n\
                    deployments: [{key: Cart, class_key: Cart, target_envs: [spoke-a]}]\n";
        let out = convert(text, Some("team-a")).unwrap();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&out)
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        let package: OPackage = serde_yaml::from_value(docs[0].clone()).unwrap();
        assert_eq!(docs[0]["apiVersion"], "oaas.io/v1alpha1");
        assert_eq!(docs[0]["kind"], "OPackage");
        assert_eq!(package.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(package.spec.version.as_deref(), Some("2"));
        let deployment: OClassDeployment = serde_yaml::from_value(docs[1].clone()).unwrap();
        assert_eq!(docs[1]["kind"], "OClassDeployment");
        assert_eq!(deployment.spec.package, "shop");
        assert_eq!(deployment.metadata.name.as_deref(), Some("cart"));
    }

    #[test]
    fn several_documents_convert_and_errors_name_document_and_field() {
        let out = convert("name: a\n---\nname: b\n", None).unwrap();
        assert_eq!(out.matches("kind: OPackage").count(), 2);
        assert!(!out.contains("namespace:"), "{out}");

        let err = convert(
            "name: a\n---\nname: b\nfunctions: [{key: f, provision_config: {min_scale: many}}]\n",
            None,
        )
        .unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("document 2"), "{message}");
        assert!(
            message.contains("functions[0].provision_config.min_scale"),
            "{message}"
        );

        let err = convert(
            "name: a\ndeployments: [{key: d, class_key: C, env_templates: {x: fast}}]\n",
            None,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("deployments[0].env_templates.x"),
            "{err:#}"
        );
        assert!(convert("", None).is_err());
        assert!(parse_args(&[]).is_err());
        assert_eq!(
            parse_args(&["-n".into(), "x".into(), "f".into()]).unwrap(),
            (Some("x".into()), "f".into())
        );
    }
}
