//! The demo protected resource, `/api/notes`: each user creates, lists, reads, updates
//! and deletes their own notes and sees nobody else's (another user's note is a 404).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::ApiJson;
use crate::clock;
use crate::current_user::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::Note;

const MAX_TITLE_CHARS: usize = 200;
const MAX_BODY_CHARS: usize = 32 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoteInput {
    title: String,
    #[serde(default)]
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
#[derive(Debug, Serialize)]
pub(super) struct NoteView {
    id: String,
    title: String,
    body: String,
    #[serde(serialize_with = "clock::rfc3339")]
    created_at: i64,
    #[serde(serialize_with = "clock::rfc3339")]
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

pub(super) async fn list(
    State(state): State<AppState>,
    caller: CurrentUser,
) -> Result<Json<Vec<NoteView>>, ApiError> {
    let notes = state.store.notes(&caller.user).await?;
    Ok(Json(notes.into_iter().map(NoteView::from).collect()))
}

pub(super) async fn read(
    State(state): State<AppState>,
    caller: CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<NoteView>, ApiError> {
    let note = state.store.note(&caller.user, &id).await?;
    note.map(|note| Json(note.into())).ok_or(ApiError::NotFound)
}

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
