//! The service layer's error: either a rejection the client is told about, or an internal
//! fault that is logged and hidden.

use crate::error::ApiError;

use super::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request was refused for a reason the client may see.
    #[error(transparent)]
    Rejected(#[from] ApiError),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// Any other server fault (a panicked blocking task, a hashing failure…).
    #[error("{0}")]
    Fault(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Rejected(api) => api,
            ServiceError::Store(cause) => {
                tracing::error!(error = %cause, "storage fault");
                ApiError::internal()
            }
            ServiceError::Fault(cause) => {
                tracing::error!(error = %cause, "server fault");
                ApiError::internal()
            }
        }
    }
}

/// An [`ApiError`] as a plain axum response (for handlers that are not server functions).
pub fn api_error_response(error: ApiError) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = axum::http::StatusCode::from_u16(error.status_code())
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let retry_after = error.retry_after_secs();
    let mut response = (status, axum::Json(error)).into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, secs.into());
    }
    response
}
