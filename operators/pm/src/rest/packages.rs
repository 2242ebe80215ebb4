//! `/api/v1/packages`: OaaS package documents ↔ OPackage (+ OClassDeployment) resources.
use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::IF_MATCH;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use oaas_crds::{OClassDeployment, OPackage};
use schemars::JsonSchema;
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Document, Namespace, Params, Segments};
use super::outcome::{Created, Deleted, Outcome, WithHeaders};
use super::{Rest, at_least, deleting, in_namespace, page, until_cached};
use crate::document::mapping::{deployment_document, package_document, package_resources};
use crate::document::{Deployment, Package};

/// Field manager of the deployments a package document carries.
use oaas_core::wire::PM_REST_FIELD_MANAGER as FIELD_MANAGER;

#[derive(Deserialize, JsonSchema)]
pub struct PackageFilter {
    /// Only names containing this text; `*` matches any characters, e.g. `shop-*`.
    name_pattern: Option<String>,
    /// Only packages carrying every one of these tags, comma-separated.
    tags: Option<String>,
    /// Only disabled (true) or enabled (false) packages.
    disabled: Option<bool>,
    /// At most this many packages (default: all).
    limit: Option<usize>,
    /// Skip this many packages first (ordered by name).
    offset: Option<usize>,
}

#[derive(Deserialize, JsonSchema)]
pub struct PackageName {
    #[schemars(pattern(oaas_crds::validation::SUBDOMAIN_PATTERN))]
    name: String,
}

/// Whether `name` matches a pattern: `*` is any run of characters; without `*`, a substring.
fn matches_pattern(name: &str, pattern: &str) -> bool {
    if !pattern.contains('*') {
        return name.contains(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Class deployments of the namespace as documents, by package name.
fn deployments_by_package(rest: &Rest, namespace: &str) -> HashMap<String, Vec<Deployment>> {
    let mut by_package: HashMap<String, Vec<Deployment>> = HashMap::new();
    for deployment in in_namespace(&rest.deployments, namespace) {
        by_package
            .entry(deployment.spec.package.clone())
            .or_default()
            .push(deployment_document(&deployment));
    }
    by_package
}

/// List packages, with their deployments.
pub async fn list(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Params(filter): Params<PackageFilter>,
) -> ApiResult<Json<Vec<Package>>> {
    let tags: Vec<&str> = filter
        .tags
        .as_deref()
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut deployments = deployments_by_package(&rest, &namespace);
    let packages = in_namespace(&rest.packages, &namespace)
        .into_iter()
        .filter(|p| {
            let spec = &p.spec;
            let package_tags = spec
                .metadata
                .as_ref()
                .map(|m| m.tags.as_slice())
                .unwrap_or_default();
            filter
                .name_pattern
                .as_deref()
                .is_none_or(|pat| matches_pattern(&p.name_any(), pat))
                && filter.disabled.is_none_or(|d| d == spec.disabled)
                && tags.iter().all(|t| package_tags.iter().any(|pt| pt == t))
        })
        .collect();
    let packages = page(packages, filter.offset, filter.limit)
        .into_iter()
        .map(|p| package_document(&p, deployments.remove(&p.name_any()).unwrap_or_default()))
        .collect();
    Ok(Json(packages))
}

/// One package, with its deployments; the ETag is its resourceVersion.
pub async fn get(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(PackageName { name }): Segments<PackageName>,
) -> ApiResult<WithHeaders<Package>> {
    let key = kube::runtime::reflector::ObjectRef::new(&name).within(&namespace);
    let package = rest.packages.get(&key).ok_or_else(|| {
        ApiError::not_found(format!("package {name:?} in namespace {namespace:?}"))
    })?;
    let deployments = deployments_by_package(&rest, &namespace)
        .remove(&name)
        .unwrap_or_default();
    Ok(WithHeaders::tagged(
        package_document(&package, deployments),
        package.resource_version(),
    ))
}

/// Store a new package and create the class deployments it lists. Everything is checked
/// by the API server (dry run) before anything is stored.
pub async fn create(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Document(doc): Document<Package>,
) -> ApiResult<Created<Outcome>> {
    let (package, deployments) = package_resources(&doc, &namespace)?;
    let packages: Api<OPackage> = rest.api(&namespace);
    let deployment_api: Api<OClassDeployment> = rest.api(&namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    packages.create(&dry_run, &package).await?;
    for deployment in &deployments {
        deployment_api.create(&dry_run, deployment).await?;
    }
    let created = packages.create(&PostParams::default(), &package).await?;
    for deployment in &deployments {
        deployment_api
            .create(&PostParams::default(), deployment)
            .await
            .map_err(|e| stored_but(ApiError::from(e), &doc.name))?;
    }
    until_cached(&rest.packages, &namespace, &doc.name, |c| {
        at_least(c, &created)
    })
    .await;
    Ok(Created(Outcome {
        id: doc.name,
        status: "created",
        message: format!("package created with {} deployment(s)", deployments.len()),
        resource_version: created.resource_version(),
    }))
}

/// An error after the package itself was stored: say so, the client must not retry blindly.
fn stored_but(mut error: ApiError, package: &str) -> ApiError {
    error.body.error = format!(
        "package {package:?} was stored, but a deployment failed: {}",
        error.body.error
    );
    error
}

/// Replace a package's definition (`POST` as in the seeds, or `PUT`) and apply the class
/// deployments it lists. With `If-Match: "<resourceVersion>"` only that version is
/// replaced (409 otherwise); without it, the latest version is.
pub async fn update(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(PackageName { name }): Segments<PackageName>,
    headers: HeaderMap,
    Document(doc): Document<Package>,
) -> ApiResult<Json<Outcome>> {
    if doc.name != name {
        return Err(ApiError::bad_request(format!(
            "the document names package {:?} but the URL names {name:?}",
            doc.name
        )));
    }
    let expected = if_match(&headers)?;
    let (package, deployments) = package_resources(&doc, &namespace)?;
    let packages: Api<OPackage> = rest.api(&namespace);
    let updated = replace_spec(&packages, &name, expected.as_deref(), |current| {
        current.spec = package.spec.clone();
    })
    .await?;
    let deployment_api: Api<OClassDeployment> = rest.api(&namespace);
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    for deployment in &deployments {
        deployment_api
            .patch(&deployment.name_any(), &apply, &Patch::Apply(deployment))
            .await
            .map_err(|e| stored_but(ApiError::from(e), &name))?;
    }
    until_cached(&rest.packages, &namespace, &name, |c| at_least(c, &updated)).await;
    Ok(Json(Outcome {
        id: name,
        status: "updated",
        message: format!(
            "package updated; {} deployment(s) applied",
            deployments.len()
        ),
        resource_version: updated.resource_version(),
    }))
}

/// The resourceVersion in `If-Match`, quotes and weak marker removed.
pub(super) fn if_match(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| {
        ApiError::bad_request("If-Match must be text: the resourceVersion in quotes")
    })?;
    Ok(Some(
        value
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string(),
    ))
}

/// Reads the object, changes it and writes it back with its resourceVersion, so nothing
/// written in between is lost. Without an expected version a conflict means a concurrent
/// writer: read again and retry. With one, a different stored version is a 409.
pub(super) async fn replace_spec<K>(
    api: &Api<K>,
    name: &str,
    expected: Option<&str>,
    change: impl Fn(&mut K),
) -> ApiResult<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    const ATTEMPTS: usize = 5;
    for attempt in 1..=ATTEMPTS {
        let mut current = api.get(name).await?;
        if let Some(expected) = expected
            && current.meta().resource_version.as_deref() != Some(expected)
        {
            return Err(ApiError::conflict(format!(
                "{name:?} changed: it is at version {:?}, not {expected:?}; read it again and retry",
                current
                    .meta()
                    .resource_version
                    .as_deref()
                    .unwrap_or_default()
            )));
        }
        change(&mut current);
        match api.replace(name, &PostParams::default(), &current).await {
            Err(kube::Error::Api(status))
                if status.code == 409 && expected.is_none() && attempt < ATTEMPTS =>
            {
                continue;
            }
            result => return Ok(result?),
        }
    }
    unreachable!("the last attempt returns")
}

/// Delete a package. 204 once it is gone; 202 while deletion waits for the class
/// deployments that still use it (the package keeps serving them until then).
pub async fn delete(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Segments(PackageName { name }): Segments<PackageName>,
) -> ApiResult<Deleted> {
    let packages: Api<OPackage> = rest.api(&namespace);
    packages.delete(&name, &DeleteParams::default()).await?;
    // Unused packages go at once (the PM drops its finalizer); used ones wait for their
    // deployments, which the package's status names.
    let waits = |c: Option<&OPackage>| c.is_some_and(|p| deleting(Some(p)) && !users(p).is_empty());
    until_cached(&rest.packages, &namespace, &name, |c| {
        c.is_none() || waits(c)
    })
    .await;
    let key = kube::runtime::reflector::ObjectRef::new(&name).within(&namespace);
    match rest.packages.get(&key) {
        None => Ok(Deleted::Gone),
        Some(package) => Ok(Deleted::Waiting(Outcome {
            id: name,
            status: "deleting",
            message: format!(
                "deletion waits until these class deployments are deleted: {}",
                users(&package).join(", ")
            ),
            resource_version: package.resource_version(),
        })),
    }
}

fn users(package: &OPackage) -> &[String] {
    package
        .status
        .as_ref()
        .map(|s| s.used_by.as_slice())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn name_patterns_are_substrings_or_globs() {
        assert!(matches_pattern("shop-app", "shop"));
        assert!(matches_pattern("shop-app", "op-a"));
        assert!(!matches_pattern("shop-app", "cart"));
        assert!(matches_pattern("shop-app", "shop-*"));
        assert!(matches_pattern("shop-app", "*app"));
        assert!(matches_pattern("shop-app", "s*p*p"));
        assert!(matches_pattern("shop-app", "*"));
        assert!(!matches_pattern("shop-app", "app*"));
        assert!(!matches_pattern("ab", "a*b*b"));
        assert!(
            !matches_pattern("aba", "ab*ba"),
            "the ends must not overlap"
        );
    }
}
