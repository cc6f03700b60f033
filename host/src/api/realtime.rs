//! Realtime endpoints: `GET /api/realtime` (SSE, as the PocketBase JS SDK expects),
//! `POST /api/realtime` (set subscriptions, bind auth), and `GET /api/realtime/ws` (the same
//! subscriptions over a websocket with JSON frames).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::access::{Auth, authenticate};
use crate::realtime::{Message, SubscribeError};

/// Largest chunk written to an SSE connection at once.
const MAX_CHUNK: usize = 64 * 1024;

/// One SSE frame. `data` is compact JSON (no newlines), so it fits one `data:` line.
fn frame(buf: &mut String, id: &str, event: &str, data: &str) {
    buf.push_str("id:");
    buf.push_str(id);
    buf.push_str("\nevent:");
    buf.push_str(event);
    buf.push_str("\ndata:");
    buf.push_str(data);
    buf.push_str("\n\n");
}

/// Opens an SSE stream: `PB_CONNECT` first, then one event per delivery, every frame carrying
/// `id: <clientId>`. Messages already queued for the client go out in one write, so a busy
/// connection costs one syscall per burst rather than per event. The stream ends after the
/// idle timeout; the SDK reconnects.
pub async fn connect(State(st): State<AppState>) -> Response {
    let (reg, rx) = st.hub.connect();
    let idle = st.hub.opts.idle_timeout;
    let mut hello = String::new();
    frame(
        &mut hello,
        &reg.id,
        "PB_CONNECT",
        &json!({"clientId": reg.id}).to_string(),
    );
    let state = (Some(hello), reg, rx);
    let chunks = stream::unfold(state, move |(first, reg, mut rx)| async move {
        if let Some(hello) = first {
            return Some((Ok::<_, Infallible>(Bytes::from(hello)), (None, reg, rx)));
        }
        match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(Message { event, data })) => {
                let mut buf = String::with_capacity(data.len() + 128);
                frame(&mut buf, &reg.id, &event, &data);
                while buf.len() < MAX_CHUNK {
                    match rx.try_recv() {
                        Ok(Message { event, data }) => frame(&mut buf, &reg.id, &event, &data),
                        Err(_) => break,
                    }
                }
                Some((Ok(Bytes::from(buf)), (None, reg, rx)))
            }
            // Closed (dropped as too slow) or idle: end the stream; dropping `reg` unregisters.
            _ => None,
        }
    });
    Response::builder()
        .header(CONTENT_TYPE, "text/event-stream")
        .header(CACHE_CONTROL, "no-store")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
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
    fold_barrier(&st).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Before a subscription is confirmed: if the fold's last batch started while no client was
/// connected, it announces nothing and may not have committed yet; wait for the writer (a
/// no-op job behind it), so that every change committed after the confirmation is announced.
async fn fold_barrier(st: &AppState) {
    if st.hub.fold_was_blind()
        && let Err(e) = st.store.write(|_| Ok(())).await
    {
        tracing::warn!(error = %e, "waiting for the writer before confirming a subscription");
    }
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
        Ok(()) => {
            fold_barrier(st).await;
            json!({"event": "PB_SUBSCRIBED", "id": id, "data": {"subscriptions": topics}})
        }
        Err(e) => {
            let e = subscribe_error(e);
            err(e.status.as_u16(), e.message)
        }
    }
}
