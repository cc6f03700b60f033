//! Realtime endpoints: `GET /api/realtime` (SSE, as the PocketBase JS SDK expects),
//! `POST /api/realtime` (set subscriptions, bind auth), and `GET /api/realtime/ws` (the same
//! subscriptions over a websocket with JSON frames).

use std::convert::Infallible;

use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{Auth, JsonBody, authenticate};
use crate::realtime::{Message, SubscribeError};

/// Opens an SSE stream: `PB_CONNECT` first, then one event per delivery, every frame carrying
/// `id: <clientId>`. The stream ends after the idle timeout; the SDK reconnects.
pub async fn connect(
    State(st): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (reg, rx) = st.hub.connect();
    let idle = st.hub.opts.idle_timeout;
    let first = Event::default()
        .id(reg.id.clone())
        .event("PB_CONNECT")
        .data(json!({"clientId": reg.id}).to_string());
    let state = (Some(first), reg, rx);
    let events = stream::unfold(state, move |(first, reg, mut rx)| async move {
        if let Some(ev) = first {
            return Some((Ok(ev), (None, reg, rx)));
        }
        match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(Message { event, data })) => {
                let ev = Event::default()
                    .id(reg.id.clone())
                    .event(&*event)
                    .data(&*data);
                Some((Ok(ev), (None, reg, rx)))
            }
            // Closed (dropped as too slow) or idle: end the stream; dropping `reg` unregisters.
            _ => None,
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Sets a client's subscriptions and binds the request's auth to it.
pub async fn subscribe(
    State(st): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    let client_id = body
        .get("clientId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let topics: Vec<String> = match body.get("subscriptions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|t| t.as_str().map(String::from))
            .collect(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "subscriptions must be an array of topics.",
            ));
        }
    };
    st.hub
        .subscribe(client_id, auth, &topics)
        .map_err(subscribe_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn subscribe_error(e: SubscribeError) -> ApiError {
    let status = match e {
        SubscribeError::UnknownClient => StatusCode::NOT_FOUND,
        SubscribeError::AuthMismatch => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.to_string())
}

/// Websocket variant. Server frames: `{"event", "id", "data"}` (first `PB_CONNECT`). Client
/// frames: `{"subscriptions": [...], "token": "..."}`; answered with `{"event": "PB_SUBSCRIBED"}`
/// or `{"event": "PB_ERROR", "data": {status, message}}`.
pub async fn websocket(State(st): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| serve_socket(st, socket))
        .into_response()
}

async fn serve_socket(st: AppState, mut socket: WebSocket) {
    let (reg, mut rx) = st.hub.connect();
    let id = reg.id.clone();
    let hello = json!({"event": "PB_CONNECT", "id": id, "data": {"clientId": id}});
    if socket
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let idle = st.hub.opts.idle_timeout;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(Message { event, data }) = msg else { break };
                let frame = format!(r#"{{"event":{},"id":{},"data":{}}}"#, json!(&*event), json!(id), data);
                if socket.send(WsMessage::Text(frame.into())).await.is_err() {
                    break;
                }
            }
            incoming = tokio::time::timeout(idle, socket.recv()) => {
                let Ok(Some(Ok(frame))) = incoming else { break };
                match frame {
                    WsMessage::Text(text) => {
                        let reply = handle_frame(&st, &id, text.as_str()).await;
                        if socket.send(WsMessage::Text(reply.to_string().into())).await.is_err() {
                            break;
                        }
                    }
                    WsMessage::Close(_) => break,
                    _ => {}
                }
            }
        }
    }
    drop(reg);
}

async fn handle_frame(st: &AppState, id: &str, text: &str) -> Value {
    let err = |status: u16, message: String| json!({"event": "PB_ERROR", "id": id, "data": {"status": status, "message": message}});
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        return err(400, "Frames must be JSON objects.".into());
    };
    let auth = match body
        .get("token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        Some(t) => match authenticate(&st.store, &st.auth_cache, t).await {
            Some(a) => a,
            None => return err(401, "Invalid or expired token.".into()),
        },
        None => Auth::Guest,
    };
    let topics: Vec<String> = body
        .get("subscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    match st.hub.subscribe(id, auth, &topics) {
        Ok(()) => json!({"event": "PB_SUBSCRIBED", "id": id, "data": {"subscriptions": topics}}),
        Err(e) => {
            let e = subscribe_error(e);
            err(e.status.as_u16(), e.message)
        }
    }
}
