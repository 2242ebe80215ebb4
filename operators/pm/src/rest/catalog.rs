//! `/api/v1/classes` and `/api/v1/functions`: what the namespace's packages offer.
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use kube::ResourceExt;
use oaas_crds::OPackage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{Namespace, Params};
use super::{Rest, in_namespace};
use crate::document::mapping::{class_document, function_document};
use crate::document::{Class, Function};

#[derive(Deserialize, JsonSchema)]
pub struct CatalogFilter {
    /// Only this package.
    package: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct CatalogClass {
    package_name: String,
    #[serde(flatten)]
    class: Class,
}

#[derive(Serialize, JsonSchema)]
pub struct CatalogFunction {
    package_name: String,
    #[serde(flatten)]
    function: Function,
}

/// What `offered` yields for every package in the namespace (or `?package=`), by package.
fn offered_by_packages<T>(
    rest: &Rest,
    namespace: &str,
    filter: &CatalogFilter,
    offered: impl Fn(&OPackage) -> Vec<T>,
) -> Vec<T> {
    in_namespace(&rest.packages, namespace)
        .iter()
        .filter(|p| {
            filter
                .package
                .as_ref()
                .is_none_or(|name| *name == p.name_any())
        })
        .flat_map(|p| offered(p))
        .collect()
}

/// Classes of every package in the namespace (or `?package=`).
pub async fn classes(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Params(filter): Params<CatalogFilter>,
) -> Json<Vec<CatalogClass>> {
    Json(offered_by_packages(&rest, &namespace, &filter, |p| {
        p.spec
            .classes
            .iter()
            .map(|c| CatalogClass {
                package_name: p.name_any(),
                class: class_document(c),
            })
            .collect()
    }))
}

/// Functions of every package in the namespace (or `?package=`).
pub async fn functions(
    State(rest): State<Arc<Rest>>,
    Namespace(namespace): Namespace,
    Params(filter): Params<CatalogFilter>,
) -> Json<Vec<CatalogFunction>> {
    Json(offered_by_packages(&rest, &namespace, &filter, |p| {
        p.spec
            .functions
            .iter()
            .map(|f| CatalogFunction {
                package_name: p.name_any(),
                function: function_document(f),
            })
            .collect()
    }))
}
