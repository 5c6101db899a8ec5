//! The HTTP surface: where a request enters, is authenticated, gets its tenant and its tenant
//! session, and leaves.
//!
//! `POST /graphql` (or `/t/{slug}/graphql`) runs one GraphQL request in one [`TenantSession`]
//! (one transaction): committed when the response has no errors, rolled back otherwise, so
//! mutations are atomic. `GET` with a `query` parameter runs queries (never mutations).
//!
//! GraphQL over HTTP: the response is `application/graphql-response+json` when the `Accept`
//! header prefers it, `application/json` otherwise. Checks run cheapest first and all of them
//! before the tenant is resolved, so a refused request costs no database work: authentication
//! (401), then the request itself: media type (415), size (413, with or without a
//! Content-Length), JSON shape (400; batches are refused), a mutation over GET (405), then
//! parsing, the [`Limits`] and validation. Parse and validation errors are HTTP 400 with
//! `application/graphql-response+json` and 200 with `application/json`, as the specification
//! asks; errors during execution are 200 either way.

use std::sync::Arc;

use async_graphql::http::GraphiQLSource;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType,
};
use async_graphql::{Positioned, ServerError, Variables};
use async_graphql_poem::GraphQLResponse;
use poem::error::ReadBodyError;
use poem::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use poem::middleware::{CatchPanic, Tracing};
use poem::web::{Data, Html, Path};
use poem::{get, handler, Body, Endpoint, EndpointExt, IntoResponse, Request, Response, Route};

use crate::auth::{Authenticator, Caller};
use crate::crypto::KeyRing;
use crate::db::{Database, TenantSession};
use crate::features::Features;
use crate::graphql::limits::{self, DocumentCache, IntrospectionOff};
use crate::graphql::{db_error, error, AppSchema, ErrorCode, Limits};
use crate::ids::{Role, DEFAULT_TENANT};
use crate::pipeline::events::JobEvents;
use crate::pipeline::progress::SubscriptionScope;
use crate::tenants::settings::SettingsCache;
use crate::tenants::{self, ResolveError};

mod ws;

/// What every handler shares.
pub struct AppState {
    /// The application role's database.
    pub db: Database,
    /// The executable GraphQL schema (built with [`crate::graphql::build_schema`], which
    /// also gives it the request [`Limits`]).
    pub schema: AppSchema,
    /// Serve GraphiQL at `GET /graphql`.
    pub graphiql: bool,
    /// How callers are authenticated.
    pub auth: Authenticator,
    /// What this deployment offers.
    pub features: Features,
    /// Single-tenant deployments: the role an authenticated non-member gets on first request
    /// (`None`: they must be added by an owner).
    pub join_role: Option<Role>,
    /// Per-process cache of tenant settings, keyed by tenant.
    pub settings_cache: Arc<SettingsCache>,
    /// The master keys that encrypt tenants' API keys (`None`: no ENCRYPTION_KEY, so API keys
    /// cannot be stored).
    pub key_ring: Option<Arc<KeyRing>>,
    /// The process's job announcements, for `jobProgress` subscriptions (`None`: subscriptions
    /// are refused).
    pub events: Option<Arc<JobEvents>>,
}

impl AppState {
    /// The limits the schema was built with.
    fn limits(&self) -> Limits {
        self.schema.data::<Limits>().copied().unwrap_or_default()
    }

    /// Whether the schema serves introspection.
    fn introspection(&self) -> bool {
        self.schema.data::<IntrospectionOff>().is_none()
    }
}

/// All routes.
pub fn router(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at("/graphql", get(graphql).post(graphql))
        .at(
            "/t/:slug/graphql",
            get(graphql_for_slug).post(graphql_for_slug),
        )
        .at("/healthz", get(healthz))
        .at("/readyz", get(readyz))
        .data(state)
        // A panic is a bug: answer 500 with a GraphQL-shaped error instead of dropping the
        // connection. An open tenant session rolls back as it is dropped during the unwind.
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request panicked");
            error_response(
                MediaType::Json,
                error(ErrorCode::Internal, "internal error"),
            )
        }))
        .with(Tracing)
}

#[handler]
async fn graphql(state: Data<&Arc<AppState>>, req: &Request, body: Body) -> Response {
    if is_websocket(req) {
        return subscribe(&state, req, None, body).await;
    }
    serve(&state, req, None, body).await
}

#[handler]
async fn graphql_for_slug(
    state: Data<&Arc<AppState>>,
    Path(slug): Path<String>,
    req: &Request,
    body: Body,
) -> Response {
    if is_websocket(req) {
        return subscribe(&state, req, Some(&slug), body).await;
    }
    serve(&state, req, Some(&slug), body).await
}

fn is_websocket(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// GraphQL over WebSocket (`graphql-transport-ws`, and the older `graphql-ws`) for
/// subscriptions. The caller is authenticated and the tenant resolved at `connection_init`,
/// from its payload (`Authorization`, `x-tenant-id`) or else the upgrade request's headers;
/// membership is checked then, through a tenant session. A refused init closes the connection.
/// The connection itself is served by [`ws::serve`], with its limits.
async fn subscribe(
    state: &Arc<AppState>,
    req: &Request,
    slug: Option<&str>,
    body: Body,
) -> Response {
    use async_graphql_poem::GraphQLProtocol;
    use poem::web::websocket::{WebSocket, WebSocketConfig};
    use poem::FromRequest;

    let mut body = poem::RequestBody::new(body);
    let (websocket, protocol) = match (
        WebSocket::from_request(req, &mut body).await,
        GraphQLProtocol::from_request(req, &mut body).await,
    ) {
        (Ok(ws), Ok(protocol)) => (ws, protocol),
        _ => {
            return refuse(
                MediaType::Json,
                StatusCode::BAD_REQUEST,
                vec![request_error(error(
                    ErrorCode::BadUserInput,
                    "a WebSocket upgrade with the graphql-transport-ws protocol is expected",
                ))],
            )
        }
    };
    let headers = (
        header_text(req.headers(), "authorization"),
        header_text(req.headers(), "x-tenant-id"),
    );
    let slug = slug.map(str::to_owned);
    let state = Arc::clone(state);
    let limits = state.limits();
    // A message is a request: held to the body's limit, refused before it is buffered whole.
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.max_body_bytes))
        .max_frame_size(Some(limits.max_body_bytes));
    let gate = ws::Gate::new(state.schema.clone(), limits, state.introspection());
    websocket
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .config(config)
        .on_upgrade(move |stream| {
            ws::serve(stream, gate, protocol.0, move |payload| async move {
                let field = |name: &str| {
                    payload.as_object().and_then(|o| {
                        o.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .and_then(|(_, v)| v.as_str().map(str::to_owned))
                    })
                };
                let authorization = field("authorization").or(headers.0);
                let tenant_header = field("x-tenant-id").or(headers.1);
                let scope = connection_scope(
                    &state,
                    authorization.as_deref(),
                    tenant_header.as_deref(),
                    slug.as_deref(),
                )
                .await?;
                let mut data = async_graphql::Data::default();
                data.insert(scope);
                data.insert(state.features);
                Ok(data)
            })
        })
        .into_response()
}

/// Authenticates a subscription connection and checks membership of its tenant.
async fn connection_scope(
    state: &AppState,
    authorization: Option<&str>,
    tenant_header: Option<&str>,
    slug: Option<&str>,
) -> async_graphql::Result<SubscriptionScope> {
    let Some(events) = state.events.clone() else {
        return Err(error(
            ErrorCode::BadUserInput,
            "subscriptions are not enabled on this server",
        ));
    };
    let caller = state
        .auth
        .authenticate(authorization)
        .await
        .map_err(|e| error(ErrorCode::Unauthenticated, e.to_string()))?;
    let resolved = tenants::resolve(&state.db, &state.features, &caller, tenant_header, slug)
        .await
        .map_err(|e| match e {
            ResolveError::BadHeader => error(ErrorCode::BadUserInput, e.to_string()),
            ResolveError::NotMember => error(ErrorCode::Forbidden, "not a member of this tenant"),
            ResolveError::Db(e) => db_error(e),
        })?;
    let session = state
        .db
        .session(resolved.tenant, caller.user)
        .await
        .map_err(db_error)?;
    let member = session.role().is_some();
    let _ = session.rollback().await;
    if !member {
        return Err(error(ErrorCode::Forbidden, "not a member of this tenant"));
    }
    Ok(SubscriptionScope {
        door: state.db.door(resolved.tenant, caller.user),
        events,
    })
}

/// The media types of GraphQL responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MediaType {
    /// `application/json`: the default, and what older clients expect.
    Json,
    /// `application/graphql-response+json`: request errors get HTTP 4xx.
    GraphQLResponse,
}

impl MediaType {
    const GRAPHQL_RESPONSE: &'static str = "application/graphql-response+json";

    /// The type the `Accept` header prefers (by q-value; on a tie, the one named explicitly,
    /// graphql-response+json first). Without an acceptable one, `application/json` anyway.
    fn negotiate(headers: &HeaderMap) -> MediaType {
        let (mut json, mut graphql_response, mut any) = (None::<f32>, None::<f32>, None::<f32>);
        for value in headers.get_all(header::ACCEPT) {
            let Ok(value) = value.to_str() else { continue };
            for range in value.split(',') {
                let mut parts = range.split(';');
                let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                    .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let slot = match essence.as_str() {
                    "application/json" => &mut json,
                    Self::GRAPHQL_RESPONSE => &mut graphql_response,
                    "application/*" | "*/*" => &mut any,
                    _ => continue,
                };
                *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
            }
        }
        let explicit = graphql_response.is_some();
        let preferred = graphql_response.or(any).unwrap_or(0.0);
        let json = json.or(any).unwrap_or(0.0);
        if preferred > 0.0 && (preferred > json || (preferred == json && explicit)) {
            MediaType::GraphQLResponse
        } else {
            MediaType::Json
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            MediaType::Json => "application/json; charset=utf-8",
            MediaType::GraphQLResponse => "application/graphql-response+json; charset=utf-8",
        }
    }

    /// The status of a response with request errors only (no execution): 400 with
    /// graphql-response+json; 200 with application/json, where older clients expect it.
    fn request_error_status(self) -> StatusCode {
        match self {
            MediaType::Json => StatusCode::OK,
            MediaType::GraphQLResponse => StatusCode::BAD_REQUEST,
        }
    }
}

async fn serve(state: &AppState, req: &Request, slug: Option<&str>, body: Body) -> Response {
    let headers = req.headers();
    let media = MediaType::negotiate(headers);
    let is_get = req.method() == Method::GET;
    let params = if is_get {
        // Percent-decoding is lossy, never failing; duplicates are refused later.
        let params: Vec<(String, String)> = req.params().unwrap_or_default();
        if !params.iter().any(|(k, _)| k == "query") {
            return graphiql(state, req.uri().path());
        }
        Some(params)
    } else {
        None
    };
    let caller = match state
        .auth
        .authenticate(header_text(headers, "authorization").as_deref())
        .await
    {
        Ok(caller) => caller,
        Err(e) => return error_response(media, error(ErrorCode::Unauthenticated, e.to_string())),
    };
    let limits = state.limits();
    let request = match params {
        Some(params) => from_params(params),
        None => read_body(headers, body, &limits).await,
    };
    let mut request = match request {
        Ok(request) => request,
        Err((status, message)) => {
            // Only the size is a limit; the rest is malformed input.
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::LimitExceeded
            } else {
                ErrorCode::BadUserInput
            };
            return refuse(media, status, vec![request_error(error(code, message))]);
        }
    };
    if let Err(response) = check(state, &limits, &mut request, is_get, media).await {
        return response;
    }
    execute(state, headers, slug, caller, request, media).await
}

/// A header's value as text. Bytes that are not UTF-8 become U+FFFD rather than making the
/// header absent: a tenant header that is not text is a bad tenant header (not "no tenant
/// named"), a credential that is not text an invalid one (not a missing one).
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// A client error (bad input) that is not about GraphQL: a status and a message.
type HttpError = (StatusCode, String);

fn http_error(status: StatusCode, message: impl Into<String>) -> HttpError {
    (status, message.into())
}

/// Reads a POST body: JSON only (415 otherwise), at most `max_body_bytes` (413).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
) -> Result<async_graphql::Request, HttpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if !content_type.is_some_and(is_json) {
        return Err(http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the request as application/json",
        ));
    }
    let too_large = || {
        http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than {} bytes",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    // Counted as it arrives: a chunked body has no Content-Length.
    let bytes = match body.into_bytes_limit(limits.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(ReadBodyError::PayloadTooLarge) => return Err(too_large()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the request body");
            return Err(http_error(
                StatusCode::BAD_REQUEST,
                "cannot read the request body",
            ));
        }
    };
    let body: TopLevel = serde_json::from_slice(&bytes).map_err(|e| {
        http_error(
            StatusCode::BAD_REQUEST,
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    match body {
        TopLevel::Object {
            duplicate: Some(name),
            ..
        } => Err(http_error(
            StatusCode::BAD_REQUEST,
            format!("the {name} field is given more than once"),
        )),
        TopLevel::Object { fields, .. } => from_fields(fields),
        TopLevel::Array => Err(http_error(
            StatusCode::BAD_REQUEST,
            "batched requests are not supported: send one request per HTTP request",
        )),
        TopLevel::Other => Err(http_error(
            StatusCode::BAD_REQUEST,
            "the request body must be a JSON object with a query",
        )),
    }
}

/// A request body's JSON, as far as its shape goes. A field given twice is noted rather than
/// overwritten: JSON parsers disagree on which one wins, so a proxy and this server could
/// read two different requests in the same bytes (GET refuses a repeated parameter too).
enum TopLevel {
    Object {
        fields: serde_json::Map<String, serde_json::Value>,
        duplicate: Option<String>,
    },
    Array,
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

        struct Shape;

        impl<'de> Visitor<'de> for Shape {
            type Value = TopLevel;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
                let mut fields = serde_json::Map::new();
                let mut duplicate = None;
                while let Some(name) = map.next_key::<String>()? {
                    let value = map.next_value()?;
                    if fields.contains_key(&name) {
                        duplicate.get_or_insert(name);
                    } else {
                        fields.insert(name, value);
                    }
                }
                Ok(TopLevel::Object { fields, duplicate })
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TopLevel, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Array)
            }

            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
        }

        deserializer.deserialize_any(Shape)
    }
}

/// `application/json`, optionally with `charset=utf-8`.
fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            Some(_) => true,
            None => p.trim().is_empty(),
        })
}

/// A GET request's parameters: `query`, `operationName`, and `variables` and `extensions` as
/// JSON text.
fn from_params(params: Vec<(String, String)>) -> Result<async_graphql::Request, HttpError> {
    let mut fields = serde_json::Map::new();
    for (name, value) in params {
        let value = match name.as_str() {
            "query" | "operationName" => serde_json::Value::String(value),
            "variables" | "extensions" => serde_json::from_str(&value).map_err(|e| {
                http_error(
                    StatusCode::BAD_REQUEST,
                    format!("the {name} parameter is not valid JSON: {e}"),
                )
            })?,
            _ => continue,
        };
        if fields.insert(name.clone(), value).is_some() {
            return Err(http_error(
                StatusCode::BAD_REQUEST,
                format!("the {name} parameter is given more than once"),
            ));
        }
    }
    from_fields(fields)
}

/// The GraphQL request the fields of a JSON body (or GET parameters) describe.
fn from_fields(
    mut fields: serde_json::Map<String, serde_json::Value>,
) -> Result<async_graphql::Request, HttpError> {
    use serde_json::Value as Json;
    let bad = |message: &str| http_error(StatusCode::BAD_REQUEST, message);
    let query = match fields.remove("query") {
        Some(Json::String(query)) if !query.trim().is_empty() => query,
        None | Some(Json::Null) | Some(Json::String(_)) => {
            return Err(bad("the request has no query"))
        }
        Some(_) => return Err(bad("query must be a string")),
    };
    let operation_name = match fields.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name),
        Some(_) => return Err(bad("operationName must be a string")),
    };
    let variables = match fields.remove("variables") {
        None | Some(Json::Null) => Variables::default(),
        Some(variables @ Json::Object(_)) => Variables::from_json(variables),
        Some(_) => return Err(bad("variables must be a JSON object")),
    };
    // No extension is supported; a malformed one is still an error.
    match fields.remove("extensions") {
        None | Some(Json::Null) | Some(Json::Object(_)) => {}
        Some(_) => return Err(bad("extensions must be a JSON object")),
    }
    let mut request = async_graphql::Request::new(query).variables(variables);
    request.operation_name = operation_name;
    Ok(request)
}

/// Everything that can be checked without the database: parsing, the document's size and
/// shape ([`limits::check_document`]), the method (queries only over GET), then
/// async-graphql's own limits and validation. The parsed document is kept in `request`.
async fn check(
    state: &AppState,
    limits: &Limits,
    request: &mut async_graphql::Request,
    is_get: bool,
    media: MediaType,
) -> Result<(), Response> {
    let request_errors = |errors| refuse(media, media.request_error_status(), errors);
    let cache = state.schema.data::<DocumentCache>();
    let doc = match cache.and_then(|c| c.get(&request.query)) {
        Some(doc) => doc,
        None => {
            let doc = match async_graphql::parser::parse_query(&request.query) {
                Ok(doc) => doc,
                Err(e) => return Err(request_errors(vec![e.into()])),
            };
            if let Err(e) = limits::check_document(&doc, limits, state.introspection()) {
                return Err(request_errors(vec![e]));
            }
            if let Some(cache) = cache {
                cache.insert(&request.query, &doc);
            }
            doc
        }
    };
    let operation = selected_operation(&doc, request.operation_name.as_deref());
    // An operation that cannot be told apart is left to validation to report.
    if operation.is_some_and(|op| op.node.ty == OperationType::Subscription) {
        return Err(request_errors(vec![request_error(error(
            ErrorCode::BadUserInput,
            "subscriptions are served over WebSocket (graphql-transport-ws), not HTTP",
        ))]));
    }
    if is_get && operation.is_some_and(|op| op.node.ty != OperationType::Query) {
        let mut response = refuse(
            media,
            StatusCode::METHOD_NOT_ALLOWED,
            vec![request_error(error(
                ErrorCode::BadUserInput,
                "only queries may be sent with GET; send mutations with POST",
            ))],
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(response);
    }
    if let Err(errors) = limits::validate(
        &state.schema,
        doc.clone(),
        request.variables.clone(),
        request.operation_name.clone(),
    )
    .await
    {
        return Err(request_errors(errors));
    }
    if let Some(operation) = selected_operation(&doc, request.operation_name.as_deref()) {
        let missing = missing_variables(operation, &request.variables);
        if !missing.is_empty() {
            return Err(request_errors(missing));
        }
    }
    request.set_parsed_query(doc);
    Ok(())
}

/// The operation `name` selects, when it can be told.
fn selected_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(operation), None) => Some(operation),
        (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
            operations.values().next()
        }
        _ => None,
    }
}

/// Required variables the request does not give. Like any variable that cannot be coerced,
/// a request error; async-graphql itself would notice only during execution.
fn missing_variables(
    operation: &Positioned<OperationDefinition>,
    variables: &Variables,
) -> Vec<ServerError> {
    operation
        .node
        .variable_definitions
        .iter()
        .filter(|def| {
            !def.node.var_type.node.nullable
                && def.node.default_value.is_none()
                && variables
                    .get(def.node.name.node.as_str())
                    .is_none_or(|v| *v == async_graphql::Value::Null)
        })
        .map(|def| {
            error(
                ErrorCode::BadUserInput,
                format!(
                    "variable ${} of type {} was not given",
                    def.node.name.node, def.node.var_type.node
                ),
            )
            .into_server_error(def.pos)
        })
        .collect()
}

/// Runs a checked request: resolves the tenant, opens its session, executes, then commits
/// (no errors) or rolls back.
async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    slug: Option<&str>,
    caller: Caller,
    request: async_graphql::Request,
    media: MediaType,
) -> Response {
    let resolved = match tenants::resolve(
        &state.db,
        &state.features,
        &caller,
        header_text(headers, "x-tenant-id").as_deref(),
        slug,
    )
    .await
    {
        Ok(resolved) => resolved,
        Err(ResolveError::BadHeader) => {
            return error_response(
                media,
                error(ErrorCode::BadUserInput, ResolveError::BadHeader.to_string()),
            )
        }
        Err(ResolveError::NotMember) => return forbidden(media),
        Err(ResolveError::Db(e)) => return error_response(media, db_error(e)),
    };
    let mut session = match state.db.session(resolved.tenant, caller.user).await {
        Ok(session) => session,
        Err(e) => return error_response(media, db_error(e)),
    };
    if session.role().is_none() {
        match join_default_tenant(state, session, caller.user).await {
            Ok(Joined::Yes(joined)) => session = joined,
            // A tenant the request named: refused before anything runs.
            Ok(Joined::No(_)) if resolved.explicit => return forbidden(media),
            // A user with no tenant yet: fields that need membership refuse one by one
            // (MemberGuard), while myTenants, createTenant and features work.
            Ok(Joined::No(unjoined)) => session = unjoined,
            Err(e) => return error_response(media, e),
        }
    }
    let session = Arc::new(session);
    let request = crate::graphql::with_request_data(
        request,
        &session,
        state.features,
        Arc::clone(&state.settings_cache),
        state.key_ring.clone(),
    );
    let mut response = state.schema.execute(request).await;
    // The request's data (holding the other reference) is dropped once execution ends.
    let Ok(session) = Arc::try_unwrap(session) else {
        tracing::error!("tenant session still referenced after execution; rolling back");
        return error_response(media, error(ErrorCode::Internal, "internal error"));
    };
    if response.is_ok() {
        if let Err(e) = session.commit().await {
            return error_response(media, db_error(e));
        }
    } else if let Err(e) = session.rollback().await {
        tracing::warn!(error = %e, "rollback failed; the connection was discarded");
    }
    with_codes(&mut response.errors);
    let mut response = GraphQLResponse(response).into_response();
    set_media_type(&mut response, media);
    response
}

fn set_media_type(response: &mut Response, media: MediaType) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
}

/// A response carrying request errors only (no `data`), with `status`.
fn refuse(media: MediaType, status: StatusCode, mut errors: Vec<ServerError>) -> Response {
    #[derive(serde::Serialize)]
    struct Errors {
        errors: Vec<ServerError>,
    }
    with_codes(&mut errors);
    let body = serde_json::to_vec(&Errors { errors })
        .unwrap_or_else(|_| br#"{"errors":[{"message":"internal error"}]}"#.to_vec());
    let mut response = Response::builder().status(status).body(body);
    set_media_type(&mut response, media);
    response
}

/// An error about the request as a whole: no location in the document.
fn request_error(error: async_graphql::Error) -> ServerError {
    let mut error = error.into_server_error(async_graphql::Pos::default());
    error.locations.clear();
    error
}

/// At most this many errors are returned (a large invalid document can have thousands).
const MAX_ERRORS: usize = 100;

/// Messages longer than this are shortened (a syntax error quotes the whole line).
const MAX_MESSAGE_BYTES: usize = 1024;

/// Gives every error an `extensions.code`: errors raised by resolvers carry theirs; async-graphql's
/// limits get LIMIT_EXCEEDED; the rest come from parsing, validating or coercing the request
/// (BAD_USER_INPUT) or are unexpected (INTERNAL, with the message replaced so nothing internal
/// leaks). Keeps at most [`MAX_ERRORS`] errors, and shortens long messages.
fn with_codes(errors: &mut Vec<ServerError>) {
    errors.truncate(MAX_ERRORS);
    for e in errors {
        if e.extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some())
        {
            continue;
        }
        let code = if limits::is_limit_message(&e.message) {
            ErrorCode::LimitExceeded
        } else if e.path.is_empty()
            || e.message.starts_with("Failed to parse")
            || e.message.starts_with("Invalid value")
            // An argument that validation let through but that does not parse as its type
            // (an Int where an input object is expected, say).
            || e.message.starts_with("Expected input type ")
            || (e.message.starts_with("Variable ") && e.message.ends_with(" is not defined."))
        {
            ErrorCode::BadUserInput
        } else {
            tracing::error!(message = %e.message, "error without a code");
            e.message = "internal error".into();
            ErrorCode::Internal
        };
        shorten(&mut e.message);
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code.as_str());
    }
}

/// Shortens a message longer than [`MAX_MESSAGE_BYTES`]: a syntax error keeps what was
/// expected (its position is in `locations`), anything else is cut.
fn shorten(message: &mut String) {
    if message.len() <= MAX_MESSAGE_BYTES {
        return;
    }
    let expected = message
        .lines()
        .last()
        .map(str::trim)
        .and_then(|line| line.strip_prefix("= "))
        .filter(|line| line.len() <= MAX_MESSAGE_BYTES / 2)
        .map(|line| format!("syntax error: {line}"));
    *message = match expected {
        Some(short) => short,
        None => {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &message[..end])
        }
    };
}

/// The outcome of [`join_default_tenant`].
enum Joined {
    /// The user joined: a new session with their role.
    Yes(TenantSession),
    /// Joining does not apply: the original session, still without a role.
    No(TenantSession),
}

/// Single-tenant deployments let an authenticated user who is not yet a member join the
/// default tenant with the configured role.
async fn join_default_tenant(
    state: &AppState,
    session: TenantSession,
    user: crate::ids::UserId,
) -> Result<Joined, async_graphql::Error> {
    let (Some(role), false, true) = (
        state.join_role,
        state.features.multi_tenant,
        session.tenant() == DEFAULT_TENANT,
    ) else {
        return Ok(Joined::No(session));
    };
    let _ = session.rollback().await;
    state
        .db
        .join_default_tenant(user, role)
        .await
        .map_err(db_error)?;
    let session = state
        .db
        .session(DEFAULT_TENANT, user)
        .await
        .map_err(db_error)?;
    Ok(if session.role().is_some() {
        Joined::Yes(session)
    } else {
        Joined::No(session)
    })
}

fn forbidden(media: MediaType) -> Response {
    error_response(
        media,
        error(ErrorCode::Forbidden, "not a member of this tenant"),
    )
}

/// A response carrying one error, with the HTTP status its code calls for.
fn error_response(media: MediaType, error: async_graphql::Error) -> Response {
    let code = error
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|c| match c {
            async_graphql::Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let status = match code.as_str() {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "BAD_USER_INPUT" => StatusCode::BAD_REQUEST,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = refuse(media, status, vec![request_error(error)]);
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // A restart or an exhausted pool passes within seconds.
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// `GET` without a query: GraphiQL in development, 405 otherwise.
fn graphiql(state: &AppState, path: &str) -> Response {
    if !state.graphiql {
        return StatusCode::METHOD_NOT_ALLOWED
            .with_header(header::ALLOW, "POST")
            .into_response();
    }
    Html(GraphiQLSource::build().endpoint(path).finish()).into_response()
}

/// Liveness: the process answers.
#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[handler]
async fn readyz(state: Data<&Arc<AppState>>) -> Response {
    match state.db.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}
