//! Errors of the REST facade: a JSON body `{error, details}` with the status that tells the
//! client whose problem it is. Client mistakes are 4xx; a hub or spoke that cannot be
//! reached is 503; nothing a client sends yields a 500.
use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{Operation, Response as ApiResponse, StatusCode as ApiStatus};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::document::mapping::MappingError;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ErrorBody {
    /// What went wrong, in one sentence.
    pub error: String,
    /// The fields at fault and what is wrong with each; empty when no field is.
    pub details: Vec<Detail>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Detail {
    /// Path of the field, e.g. `spec.classes[0].key` or `deployments[0].target_envs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
            },
        }
    }

    pub fn with_detail(mut self, field: Option<String>, message: impl Into<String>) -> Self {
        self.body.details.push(Detail {
            field,
            message: message.into(),
        });
        self
    }

    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn conflict(error: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, error)
    }

    pub fn unavailable(error: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, error)
    }
}

impl From<MappingError> for ApiError {
    fn from(e: MappingError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid document: {e}"),
        )
        .with_detail(Some(e.field), e.problem)
    }
}

/// The hub API server's answer, passed on with the status that fits the client: its
/// validation messages (schema and CEL) name the field and stay intact.
impl From<kube::Error> for ApiError {
    fn from(e: kube::Error) -> Self {
        let kube::Error::Api(status) = e else {
            return Self::unavailable(format!("the hub API server could not be reached: {e}"));
        };
        let mut error = match status.code {
            400 => Self::bad_request(status.message.clone()),
            404 => Self::new(StatusCode::NOT_FOUND, status.message.clone()),
            409 => Self::conflict(status.message.clone()),
            422 => Self::new(StatusCode::UNPROCESSABLE_ENTITY, status.message.clone()),
            // The PM's own rights or the API server's health: not the client's doing.
            _ => Self::unavailable(format!(
                "the hub API server refused the request ({} {}): {}",
                status.code, status.reason, status.message
            )),
        };
        if let Some(details) = &status.details {
            for cause in &details.causes {
                error = error.with_detail(
                    Some(cause.field.clone()).filter(|f| !f.is_empty()),
                    cause.message.clone(),
                );
            }
        }
        error
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<ApiResponse> {
        let mut response = Json::<ErrorBody>::operation_response(ctx, op)?;
        response.description =
            "An error: `error` says what went wrong, `details` which fields.".into();
        Some(response)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<ApiStatus>, ApiResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(None, r)])
            .unwrap_or_default()
    }
}
