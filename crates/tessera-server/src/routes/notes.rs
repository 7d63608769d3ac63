//! The demo protected resource, `/api/notes`: each user creates, lists, reads, updates
//! and deletes their own notes and sees nobody else's (another user's note is a 404).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::clock;
use crate::current_user::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Note;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 32 * 1024;

/// What a client writes of a note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoteInput {
    /// 1 to 200 characters after trimming.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
    /// At most 32768 characters, within the 64 KiB limit on the whole request (larger
    /// bodies get 413); empty when left out.
    #[serde(default)]
    #[schema(max_length = 32768)]
    body: String,
}

impl NoteInput {
    fn checked(self) -> Result<(String, String), ApiError> {
        let title = self.title.trim().to_owned();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return Err(ApiError::Validation(format!(
                "title must be 1 to {MAX_TITLE_CHARS} characters"
            )));
        }
        if self.body.chars().count() > MAX_BODY_CHARS {
            return Err(ApiError::Validation(format!(
                "body must be at most {MAX_BODY_CHARS} characters"
            )));
        }
        Ok((title, self.body))
    }
}

/// A note as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Note)]
pub(super) struct NoteView {
    id: String,
    title: String,
    body: String,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: i64,
    #[serde(serialize_with = "clock::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: i64,
}

impl From<Note> for NoteView {
    fn from(note: Note) -> Self {
        Self {
            id: note.id,
            title: note.title,
            body: note.body,
            created_at: note.created_at,
            updated_at: note.updated_at,
        }
    }
}

/// `POST /api/notes`: creates one of the caller's notes.
#[utoipa::path(
    post,
    path = "/api/notes",
    operation_id = "create_note",
    tag = "notes",
    request_body = NoteInput,
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 201, description = "The new note", body = NoteView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn create(
    State(state): State<AppState>,
    caller: CurrentUser,
    ApiJson(input): ApiJson<NoteInput>,
) -> Result<(StatusCode, Json<NoteView>), ApiError> {
    let (title, body) = input.checked()?;
    let now = clock::now();
    let note = Note {
        id: uuid::Uuid::new_v4().to_string(),
        title,
        body,
        created_at: now,
        updated_at: now,
    };
    state.store.create_note(&caller.user, &note).await?;
    Ok((StatusCode::CREATED, Json(note.into())))
}

/// `GET /api/notes`: the caller's notes.
#[utoipa::path(
    get,
    path = "/api/notes",
    operation_id = "list_notes",
    tag = "notes",
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The caller's notes", body = Vec<NoteView>),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Json<Vec<NoteView>>, ApiError> {
    let notes = state.store.notes(&caller.user).await?;
    Ok(Json(notes.into_iter().map(NoteView::from).collect()))
}

/// `GET /api/notes/{id}`: one of the caller's notes.
#[utoipa::path(
    get,
    path = "/api/notes/{id}",
    operation_id = "read_note",
    tag = "notes",
    params(("id" = String, Path, description = "The note's id")),
    security(("bearer" = []), ("access_cookie" = [])),
    responses(
        (status = 200, description = "The note", body = NoteView),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    caller: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<NoteView>, ApiError> {
    let note = state.store.note(&caller.user, &id).await?;
    note.map(|note| Json(note.into())).ok_or(ApiError::NotFound)
}

/// `PUT /api/notes/{id}`: replaces one of the caller's notes.
#[utoipa::path(
    put,
    path = "/api/notes/{id}",
    operation_id = "update_note",
    tag = "notes",
    params(("id" = String, Path, description = "The note's id")),
    request_body = NoteInput,
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 200, description = "The note as updated", body = NoteView),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 415, response = crate::openapi::UnsupportedMediaType),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn update(
    State(state): State<AppState>,
    caller: CurrentUser,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<NoteInput>,
) -> Result<Json<NoteView>, ApiError> {
    let (title, body) = input.checked()?;
    let note = state
        .store
        .update_note(&caller.user, &id, &title, &body, clock::now())
        .await?;
    note.map(|note| Json(note.into())).ok_or(ApiError::NotFound)
}

/// `DELETE /api/notes/{id}`: deletes one of the caller's notes.
#[utoipa::path(
    delete,
    path = "/api/notes/{id}",
    operation_id = "delete_note",
    tag = "notes",
    params(("id" = String, Path, description = "The note's id")),
    security(("bearer" = []), ("access_cookie" = [], "csrf_cookie" = [], "csrf_header" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 500, response = crate::openapi::ServerError),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.delete_note(&caller.user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// This module's operations, for the OpenAPI document (`crate::openapi`).
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, read, update, delete))]
pub(crate) struct Api;
