//! The API's errors: a stable code, an HTTP status, a message, and for scenarios every
//! problem with its place.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::MixerError;
use crate::store::StoreError;

/// The stable code of an error response: what a client matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// `401`: no token, or not the right one.
    Unauthorized,
    /// `400`: a request the API cannot use (a bad parameter or body).
    BadRequest,
    /// `400`: a scenario that does not parse or validate; see the problems.
    InvalidScenario,
    /// `404`: no such rack.
    NoRack,
    /// `404`: no such scenario version.
    NoScenario,
    /// `404`: no such route, gear type or dead letter.
    NotFound,
    /// `409`: the request contradicts the state (a changed scenario version, a taken name).
    Conflict,
    /// `503`: the transport or the store is not answering.
    Unavailable,
    /// `500`: anything else; the mixer's log says more.
    Internal,
}

impl ErrorCode {
    fn status(self) -> StatusCode {
        match self {
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::BadRequest | ErrorCode::InvalidScenario => StatusCode::BAD_REQUEST,
            ErrorCode::NoRack | ErrorCode::NoScenario | ErrorCode::NotFound => {
                StatusCode::NOT_FOUND
            }
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One problem of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProblemBody {
    /// The line, from 1, when the problem has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The column, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    /// What is wrong.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for machines.
    pub code: ErrorCode,
    /// What went wrong, for people (for a scenario: every problem, one per line, with
    /// `line:col`).
    pub message: String,
    /// A scenario's problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProblemBody>,
}

/// An error the API answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    /// An error with no problems list.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(ErrorBody {
            code,
            message: message.into(),
            problems: Vec::new(),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0.code.status(), Json(self.0)).into_response()
    }
}

impl From<MixerError> for ApiError {
    fn from(e: MixerError) -> ApiError {
        match e {
            MixerError::Scenario(e) => {
                let problems = e
                    .problems()
                    .iter()
                    .map(|p| ProblemBody {
                        line: p.pos.map(|p| p.line),
                        col: p.pos.map(|p| p.col),
                        message: p.message.clone(),
                    })
                    .collect();
                ApiError(ErrorBody {
                    code: ErrorCode::InvalidScenario,
                    message: e.to_string(),
                    problems,
                })
            }
            MixerError::Version(_) => ApiError::new(ErrorCode::InvalidScenario, e.to_string()),
            MixerError::NoRack(_) => ApiError::new(ErrorCode::NoRack, e.to_string()),
            MixerError::NoScenario(_) => ApiError::new(ErrorCode::NoScenario, e.to_string()),
            MixerError::Store(e) => e.into(),
            MixerError::Snake(e) => e.into(),
            other => internal(&other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NameTaken(_) | StoreError::VersionExists { .. } => {
                ApiError::new(ErrorCode::Conflict, e.to_string())
            }
            StoreError::NoRack(_) => ApiError::new(ErrorCode::NoRack, e.to_string()),
            StoreError::NoScenario { .. } => ApiError::new(ErrorCode::NoScenario, e.to_string()),
            StoreError::Backend(_) => {
                tracing::error!(error = %chain(&e), "The store failed under an API request.");
                ApiError::new(ErrorCode::Unavailable, "the store is not answering")
            }
            other => internal(&other),
        }
    }
}

impl From<snake::Error> for ApiError {
    fn from(e: snake::Error) -> ApiError {
        match e {
            snake::Error::DeadLetterNotFound(_) => {
                ApiError::new(ErrorCode::NotFound, e.to_string())
            }
            snake::Error::NotReplayable { .. } => ApiError::new(ErrorCode::Conflict, e.to_string()),
            snake::Error::InvalidName { .. } => ApiError::new(ErrorCode::BadRequest, e.to_string()),
            snake::Error::StreamNotFound(_) => ApiError::new(
                ErrorCode::NotFound,
                format!("{e}: no dead letters are kept"),
            ),
            other => {
                tracing::warn!(error = %chain(&other), "The transport failed under an API request.");
                ApiError::new(ErrorCode::Unavailable, "the transport is not answering")
            }
        }
    }
}

/// Logs the error with its causes and answers `500` without them: causes may carry
/// details the caller has no business seeing.
fn internal(e: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %chain(e), "An API request failed.");
    ApiError::new(ErrorCode::Internal, e.to_string())
}

/// The error and its causes, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
