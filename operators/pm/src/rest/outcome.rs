//! Answers of writes, in the seeds' `{id, status, message}` shape, and the response types
//! that carry a status code other than 200 or an ETag, with their OpenAPI description.
use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response as ApiResponse, StatusCode as ApiStatus};
use axum::Json;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header::{ETAG, WARNING};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

#[derive(Serialize, JsonSchema, Debug)]
pub struct Outcome {
    /// Name of the package, or key of the deployment.
    pub id: String,
    /// created, updated or deleting.
    pub status: &'static str,
    pub message: String,
    /// resourceVersion of the stored object; send it as `If-Match` to update only that
    /// version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// 201 with a JSON body.
pub struct Created<T>(pub T);

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

/// The JSON body of `T` documented under each status code.
fn json_responses<T: JsonSchema>(
    ctx: &mut GenContext,
    op: &mut Operation,
    codes: &[u16],
) -> Vec<(Option<ApiStatus>, ApiResponse)> {
    Json::<T>::operation_response(ctx, op)
        .map(|r| {
            codes
                .iter()
                .map(|code| (Some(ApiStatus::Code(*code)), r.clone()))
                .collect()
        })
        .unwrap_or_default()
}

impl<T: JsonSchema> OperationOutput for Created<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<ApiResponse> {
        Json::<T>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        json_responses::<T>(ctx, op, &[201])
    }
}

/// 201 when a write created the object, 200 when it updated one (an upsert).
pub enum Stored<T> {
    Created(T),
    Updated(T),
}

impl<T: Serialize> IntoResponse for Stored<T> {
    fn into_response(self) -> Response {
        match self {
            Stored::Created(body) => Created(body).into_response(),
            Stored::Updated(body) => Json(body).into_response(),
        }
    }
}

impl<T: JsonSchema> OperationOutput for Stored<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<ApiResponse> {
        Json::<T>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        json_responses::<T>(ctx, op, &[201, 200])
    }
}

/// 200 with a JSON body and headers about it: the object's resourceVersion as ETag (for
/// `If-Match`), or a `Warning` per part missing from the answer (a spoke that did not
/// answer), as the Kubernetes API does for its warnings.
pub struct WithHeaders<T> {
    body: T,
    headers: HeaderMap,
}

impl<T> WithHeaders<T> {
    pub fn tagged(body: T, resource_version: Option<String>) -> Self {
        let mut headers = HeaderMap::new();
        if let Some(value) = resource_version.and_then(|rv| format!("\"{rv}\"").parse().ok()) {
            headers.insert(ETAG, value);
        }
        Self { body, headers }
    }

    pub fn warned(body: T, warnings: Vec<String>) -> Self {
        let mut headers = HeaderMap::new();
        for warning in warnings {
            let text = warning.replace(['"', '\\'], "'");
            if let Ok(value) = format!("299 oaas-pm \"{text}\"").parse() {
                headers.append(WARNING, value);
            }
        }
        Self { body, headers }
    }
}

impl<T: Serialize> IntoResponse for WithHeaders<T> {
    fn into_response(self) -> Response {
        (self.headers, Json(self.body)).into_response()
    }
}

impl<T: JsonSchema> OperationOutput for WithHeaders<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<ApiResponse> {
        Json::<T>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        Json::<T>::inferred_responses(ctx, op)
    }
}

/// 204 when the object is gone, 202 with the reason when deletion waits (a finalizer:
/// a package still used by deployments, a deployment still being removed from spokes).
pub enum Deleted {
    Gone,
    Waiting(Outcome),
}

impl IntoResponse for Deleted {
    fn into_response(self) -> Response {
        match self {
            Deleted::Gone => StatusCode::NO_CONTENT.into_response(),
            Deleted::Waiting(outcome) => (StatusCode::ACCEPTED, Json(outcome)).into_response(),
        }
    }
}

impl OperationOutput for Deleted {
    type Inner = Outcome;

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        let mut responses = axum::response::NoContent::inferred_responses(ctx, op);
        if let Some(waiting) = Json::<Outcome>::operation_response(ctx, op) {
            responses.push((Some(ApiStatus::Code(202)), waiting));
        }
        responses
    }
}
