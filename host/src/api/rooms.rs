//! Room endpoints: `GET /api/rooms/{collection}/{recordId}` upgrades a client to a room
//! socket (see `rooms/`), and `GET /api/rooms/{collectionId}/{recordId}/link` is where other
//! nodes link to rooms this node owns. Requests that are not websocket upgrades get
//! PocketBase-style JSON errors.

use std::collections::HashMap;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::rooms::{self, LinkRefused};

/// Room frames carry a payload of up to `--room-max-payload` bytes plus a small envelope;
/// a frame beyond twice that closes the socket (1009) instead of being read.
fn frame_limit(st: &AppState) -> usize {
    st.rooms.options().max_payload * 2 + 16 * 1024
}

fn not_websocket() -> Response {
    ApiError::bad_request("Rooms are websockets: connect with a websocket client.").into_response()
}

/// `GET /api/rooms/{collection}/{recordId}`: the token may come in the `Authorization`
/// header, as `?token=`, or in the `join` frame (browsers cannot set headers on websockets).
pub async fn join(
    State(st): State<AppState>,
    Path((collection, record)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return not_websocket();
    };
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|t| t.strip_prefix("Bearer ").unwrap_or(t).to_string())
        .or_else(|| q.get("token").cloned())
        .filter(|t| !t.is_empty());
    let limit = frame_limit(&st);
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| rooms::serve_client(st.rooms, socket, collection, record, token))
        .into_response()
}

/// `GET /api/rooms/{collectionId}/{recordId}/link`: node-to-node, signed.
pub async fn link(
    State(st): State<AppState>,
    Path((collection, record)): Path<(String, String)>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return not_websocket();
    };
    match st.rooms.accept_link(&collection, &record, &headers) {
        Ok((owner, key)) => ws
            .on_upgrade(move |socket| rooms::serve_link(st.rooms, owner, key, socket))
            .into_response(),
        Err(LinkRefused::Unauthorized) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Links must be signed by a node of this cluster.",
        )
        .into_response(),
        Err(LinkRefused::NotOwner) => {
            ApiError::new(StatusCode::CONFLICT, "This node does not own the room.").into_response()
        }
    }
}
