//! One GraphQL-over-WebSocket connection, and its limits.
//!
//! async-graphql speaks the protocols (`graphql-transport-ws`, and the older `graphql-ws`);
//! this module stands between it and the socket, so that a connection is held to what an HTTP
//! request is held to:
//! - a message is at most `GRAPHQL_MAX_BODY_BYTES`, like a request body: the WebSocket layer
//!   refuses a larger frame or message as it arrives, and the connection is closed with 1009;
//! - a message that is not one of the protocol's closes the connection with 4400, a subscribe
//!   before `connection_init` with 4401 (async-graphql would close with 1011, an internal
//!   error), a refused `connection_init` with 4403 (1013 when the database is unavailable),
//!   and a connection not acknowledged within [`CONNECTION_INIT_TIMEOUT`] with 4408;
//! - each subscribe is checked as an HTTP request is ([`limits::check_document`]: fragment
//!   bombs and cycles, introspection when it is off), only subscriptions run (a query or a
//!   mutation needs a tenant session: HTTP), at most `GRAPHQL_MAX_SUBSCRIPTIONS` run at once
//!   (more are refused with LIMIT_EXCEEDED), and every error gets its `extensions.code`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_graphql::http::{ClientMessage, WebSocketProtocols, WsMessage};
use async_graphql::parser::types::OperationType;
use async_graphql::{Data, Executor, Response, ServerError};
use futures_util::stream::{self, BoxStream, SplitStream, Stream, StreamExt};
use futures_util::SinkExt;
use poem::web::websocket::{Message, WebSocketStream};

use super::{request_error, selected_operation, with_codes};
use crate::graphql::limits::{self, Limits};
use crate::graphql::{error, AppSchema, ErrorCode};

/// How long a connection may stay open without a successful `connection_init`.
pub(super) const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The executor of one connection's subscriptions: checks each request, counts the running
/// ones, and codes every error.
#[derive(Clone)]
pub(super) struct Gate {
    schema: AppSchema,
    limits: Limits,
    introspection: bool,
    running: Arc<AtomicUsize>,
}

impl Gate {
    /// The executor of a new connection.
    pub(super) fn new(schema: AppSchema, limits: Limits, introspection: bool) -> Gate {
        Gate {
            schema,
            limits,
            introspection,
            running: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// What [`super::check`] does for HTTP, before async-graphql validates the document.
    fn check(
        &self,
        mut request: async_graphql::Request,
    ) -> Result<async_graphql::Request, Vec<ServerError>> {
        let doc = async_graphql::parser::parse_query(&request.query).map_err(|e| vec![e.into()])?;
        limits::check_document(&doc, &self.limits, self.introspection).map_err(|e| vec![e])?;
        let operation = selected_operation(&doc, request.operation_name.as_deref());
        // An operation that cannot be told apart is left to validation to report.
        if operation.is_some_and(|op| op.node.ty != OperationType::Subscription) {
            return Err(vec![request_error(error(
                ErrorCode::BadUserInput,
                "only subscriptions are served over WebSocket; send queries and mutations over HTTP",
            ))]);
        }
        request.set_parsed_query(doc);
        Ok(request)
    }
}

/// A response of request errors only, as a stream that then ends.
fn refused(mut errors: Vec<ServerError>) -> BoxStream<'static, Response> {
    with_codes(&mut errors);
    stream::once(async move { Response::from_errors(errors) }).boxed()
}

impl Executor for Gate {
    /// The WebSocket transport runs every request as a stream; nothing calls this.
    fn execute(&self, _request: async_graphql::Request) -> impl Future<Output = Response> + Send {
        let mut errors = vec![request_error(error(
            ErrorCode::BadUserInput,
            "only subscriptions are served over WebSocket",
        ))];
        with_codes(&mut errors);
        std::future::ready(Response::from_errors(errors))
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let request = match self.check(request) {
            Ok(request) => request,
            Err(errors) => return refused(errors),
        };
        let Some(slot) = Slot::take(&self.running, self.limits.max_subscriptions) else {
            return refused(vec![request_error(error(
                ErrorCode::LimitExceeded,
                format!(
                    "at most {} subscriptions run at once on one connection",
                    self.limits.max_subscriptions
                ),
            ))]);
        };
        let inner = Executor::execute_stream(&self.schema, request, session_data)
            .map(|mut response| {
                with_codes(&mut response.errors);
                response
            })
            .boxed();
        Counted { inner, _slot: slot }.boxed()
    }
}

/// A place among a connection's running subscriptions, given back when dropped: when the
/// subscription ends, is completed by the client, or the connection closes.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(running: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(Arc::clone(running)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A running subscription's responses, holding its [`Slot`].
struct Counted {
    inner: BoxStream<'static, Response>,
    _slot: Slot,
}

impl Stream for Counted {
    type Item = Response;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The close frame the server ends a connection with, when it is the one to end it.
type Closing = Arc<Mutex<Option<(u16, String)>>>;

fn set(closing: &Closing, code: u16, reason: impl Into<String>) {
    let mut closing = closing.lock().unwrap_or_else(|e| e.into_inner());
    closing.get_or_insert((code, reason.into()));
}

fn take(closing: &Closing) -> Option<(u16, String)> {
    closing.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// A close frame; its reason is cut to the 123 bytes a frame has room for.
fn close(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::close_with(code, &reason[..end])
}

/// Serves an upgraded connection until either side ends it. `on_init` authenticates
/// `connection_init` and gives the connection's data.
pub(super) async fn serve<F, R>(
    socket: WebSocketStream,
    gate: Gate,
    protocol: WebSocketProtocols,
    on_init: F,
) where
    F: FnOnce(serde_json::Value) -> R + Send + 'static,
    R: Future<Output = async_graphql::Result<Data>> + Send + 'static,
{
    let (mut sink, incoming) = socket.split();
    let closing = Closing::default();
    let acknowledged = Arc::new(AtomicBool::new(false));
    let init = {
        let (closing, acknowledged) = (Arc::clone(&closing), Arc::clone(&acknowledged));
        move |payload| {
            let init = on_init(payload);
            async move {
                let result = init.await;
                match &result {
                    Ok(_) => acknowledged.store(true, Ordering::Release),
                    Err(e) => {
                        let unavailable = e
                            .extensions
                            .as_ref()
                            .and_then(|x| x.get("code"))
                            .is_some_and(|c| {
                                *c == async_graphql::Value::from(ErrorCode::Unavailable.as_str())
                            });
                        set(&closing, if unavailable { 1013 } else { 4403 }, &e.message);
                    }
                }
                result
            }
        }
    };
    let connection = async_graphql::http::WebSocket::from_message_stream(
        gate,
        client_messages(incoming, Arc::clone(&closing)),
        protocol,
    )
    .on_connection_init(init);
    let mut connection = std::pin::pin!(connection);
    let mut deadline = std::pin::pin!(tokio::time::sleep(CONNECTION_INIT_TIMEOUT));
    loop {
        let message = tokio::select! {
            message = connection.next() => message,
            () = &mut deadline, if !acknowledged.load(Ordering::Acquire) => {
                set(&closing, 4408, "Connection initialisation timeout");
                None
            }
        };
        let (message, last) = match message {
            Some(WsMessage::Text(text)) => (Message::text(text), false),
            // async-graphql closes after a refused init (1002, whatever the reason: the
            // code set by `init` replaces it) and after a second init (4429).
            Some(WsMessage::Close(code, reason)) => match take(&closing) {
                Some((code, reason)) => (close(code, &reason), true),
                None => (close(code, &reason), true),
            },
            None => match take(&closing) {
                Some((code, reason)) => (close(code, &reason), true),
                None => break,
            },
        };
        if sink.send(message).await.is_err() || last {
            break;
        }
    }
    let _ = sink.close().await;
}

/// The client's protocol messages. Ends (and sets why in `closing`) at the first message
/// that is too big, is not one of the protocol's, or subscribes before `connection_init`.
fn client_messages(
    incoming: SplitStream<WebSocketStream>,
    closing: Closing,
) -> impl Stream<Item = serde_json::Result<ClientMessage>> + Send {
    stream::unfold((incoming, false), move |(mut incoming, mut initialised)| {
        let closing = Arc::clone(&closing);
        async move {
            loop {
                let bytes = match incoming.next().await? {
                    Ok(Message::Text(text)) => text.into_bytes(),
                    Ok(Message::Binary(bytes)) => bytes,
                    // Pings, pongs and close frames are the WebSocket layer's.
                    Ok(_) => continue,
                    Err(e) => {
                        // The WebSocket layer's words for a frame or message over its limit.
                        if e.to_string().starts_with("Space limit exceeded") {
                            set(&closing, 1009, "Message too big");
                        }
                        return None;
                    }
                };
                let message = match ClientMessage::from_bytes(&bytes) {
                    Ok(message) => message,
                    Err(e) => {
                        set(&closing, 4400, format!("Invalid message: {e}"));
                        return None;
                    }
                };
                match message {
                    ClientMessage::ConnectionInit { .. } => initialised = true,
                    ClientMessage::Start { .. } if !initialised => {
                        set(&closing, 4401, "Unauthorized");
                        return None;
                    }
                    _ => {}
                }
                return Some((Ok(message), (incoming, initialised)));
            }
        }
    })
}
