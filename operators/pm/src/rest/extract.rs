//! Request extractors whose failures are [`ApiError`]s (JSON, status 400/413/415) rather
//! than axum's plain-text rejections, and which document themselves in the OpenAPI output.
use std::sync::Arc;

use aide::OperationInput;
use aide::generate::GenContext;
use aide::openapi::Operation;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Rest;
use super::error::ApiError;

/// A request body in JSON or, with `Content-Type: application/yaml`, YAML (package files
/// are usually YAML). Errors name the path of the field at fault.
pub struct Document<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Document<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_ascii_lowercase();
        let yaml = content_type.contains("yaml");
        if !yaml && !content_type.contains("json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type {content_type:?}; send application/json or application/yaml"
                ),
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| ApiError::new(r.status(), r.body_text()))?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "the request has no body; send a document",
            ));
        }
        let parsed = if yaml {
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_slice(&bytes))
                .map_err(|e| malformed(e.path().to_string(), e.inner().to_string()))
        } else {
            let mut json = serde_json::Deserializer::from_slice(&bytes);
            serde_path_to_error::deserialize(&mut json)
                .map_err(|e| malformed(e.path().to_string(), e.inner().to_string()))
        };
        parsed.map(Document)
    }
}

fn malformed(path: String, problem: String) -> ApiError {
    let field = Some(path).filter(|p| p != ".");
    ApiError::bad_request(format!("malformed document: {problem}")).with_detail(field, problem)
}

impl<T: JsonSchema> OperationInput for Document<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
    }
}

/// Query parameters; unknown or badly typed values are a 400 naming the parameter.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(q)| Params(q))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for Params<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Query::<T>::operation_input(ctx, operation);
    }
}

/// Path parameters.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| Segments(p))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for Segments<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Path::<T>::operation_input(ctx, operation);
    }
}

#[derive(Deserialize, JsonSchema)]
pub struct NamespaceParam {
    /// Namespace of the resources on the hub (default: the PM's configured namespace).
    pub namespace: Option<String>,
}

/// The namespace a request works in: `?namespace=`, else the configured default.
pub struct Namespace(pub String);

impl FromRequestParts<Arc<Rest>> for Namespace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, rest: &Arc<Rest>) -> Result<Self, ApiError> {
        let Params(NamespaceParam { namespace }) = Params::from_request_parts(parts, rest).await?;
        rest.namespace(namespace.as_deref()).map(Namespace)
    }
}

impl OperationInput for Namespace {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Query::<NamespaceParam>::operation_input(ctx, operation);
    }
}
