//! No request can crash the server. Three property tests throw generated input at the router
//! (in-process, through poem's test client, over a real database with two seeded tenants):
//! arbitrary bytes as a POST body under arbitrary content types, arbitrary JSON in the fields of
//! a GraphQL request, and documents generated from the served schema's field names. A corpus of
//! named hostile requests then checks the exact status and `extensions.code` of each, over HTTP
//! in-process, on the wire through a real socket, and over GraphQL-over-WebSocket.
//!
//! Every response must be under 500, well-formed JSON with `data` or `errors`, every error
//! coded with one of the project's codes (and never `INTERNAL`), and the server must answer a
//! normal query and `/healthz` right after. The corpus also bounds the test process's memory:
//! the server runs in this process, so whatever it buffers shows in the resident set.
//!
//! Property tests run 64 cases each by default, from a fixed seed; `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` change that. Failures are not persisted to files: the seed reproduces
//! them, and each real bug found becomes a named corpus case.
//!
//! Tests here run one at a time (they take one lock), so the resident set measured by one is
//! not inflated by another.

mod common;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use common::http::{gql, hs256_settings, token, Client};
use common::{seed_tenant, Seeded, TestDb};
use futures_util::{SinkExt, StreamExt};
use poem::http::HeaderValue;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::test::TestClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use research_graph::auth::{Authenticator, JwtVerifier};
use research_graph::db::Database;
use research_graph::features::Features;
use research_graph::graphql::relay::{global_id, Kind};
use research_graph::graphql::{build_schema, sdl, Limits};
use research_graph::http::{router, AppState};
use research_graph::pipeline::events::JobEvents;
use research_graph::tenants::settings::{SettingsCache, SETTINGS_TTL};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// One test at a time: see the module documentation.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The body cap of the default limits.
const CAP: usize = 1024 * 1024;

/// Every `extensions.code` the project uses.
const CODES: [&str; 7] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "LIMIT_EXCEEDED",
    "UNAVAILABLE",
    "INTERNAL",
];

type Builder<'a> =
    poem::test::TestRequestBuilder<'a, poem::endpoint::BoxEndpoint<'static, poem::Response>>;

// ---------------------------------------------------------------------------------------------
// The world: a database with two tenants, and the app over it.

/// Tenant `a` takes the hostile requests; tenant `b` checks the server still answers.
struct World {
    t: TestDb,
    a: Seeded,
    a_token: String,
    b: Seeded,
    b_token: String,
}

impl World {
    async fn new() -> World {
        let t = TestDb::new().await;
        let a = seed_tenant(&t, "alpha", "10.1000/alpha", "graphnet").await;
        let b = seed_tenant(&t, "beta", "10.1000/beta", "graphnet-b").await;
        World {
            a_token: token(a.owner),
            b_token: token(b.owner),
            t,
            a,
            b,
        }
    }

    /// `request` as the owner of tenant `a`, in tenant `a`.
    fn as_a<'c>(&self, request: Builder<'c>) -> Builder<'c> {
        request
            .header("authorization", format!("Bearer {}", self.a_token))
            .header("x-tenant-id", self.a.tenant.to_string())
    }

    /// Real ids (of both tenants: the other one's must be as good as unknown), for arguments.
    fn ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for s in [&self.a, &self.b] {
            ids.extend(
                [
                    s.paper,
                    s.section,
                    s.source_node,
                    s.target_node,
                    s.edge,
                    s.mention,
                    s.insight,
                    s.job,
                ]
                .iter()
                .map(|id| id.to_string()),
            );
        }
        ids.push(self.a.owner.0.to_string());
        ids
    }
}

/// The app's state over `db`: multi-tenant, HS256 tokens, the default limits.
fn state(db: &Database, introspection: bool, events: Option<Arc<JobEvents>>) -> Arc<AppState> {
    Arc::new(AppState {
        db: db.clone(),
        schema: build_schema(introspection, &Limits::default()),
        graphiql: false,
        auth: Authenticator::Jwt(Box::new(JwtVerifier::new(hs256_settings()).unwrap())),
        features: Features {
            multi_tenant: true,
            ..Features::default()
        },
        join_role: None,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 100)),
        key_ring: None,
        events,
    })
}

fn client(state: Arc<AppState>) -> Client {
    TestClient::new(poem::EndpointExt::boxed(
        poem::EndpointExt::map_to_response(router(state)),
    ))
}

/// The router on a real socket; returns its address.
async fn listen(state: Arc<AppState>) -> std::net::SocketAddr {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(router(state)));
    addr
}

// ---------------------------------------------------------------------------------------------
// What every response must be.

#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    text: String,
}

impl Reply {
    async fn of(response: poem::test::TestResponse) -> Reply {
        let response = response.0;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let bytes = response.into_body().into_vec().await.unwrap_or_default();
        Reply {
            status,
            content_type,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The `extensions.code` of the first error, if any.
    fn code(&self) -> Option<String> {
        self.json()["errors"][0]["extensions"]["code"]
            .as_str()
            .map(str::to_owned)
    }

    /// The text, cut for messages.
    fn short(&self) -> String {
        cut(&self.text, 600)
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// The properties every response has: not a server error; JSON with `data` or `errors`; every
/// error with a message and one of the project's codes, never INTERNAL or UNAVAILABLE (the
/// database is up: either would be a bug).
fn well_formed(reply: &Reply) -> Result<(), String> {
    if reply.status >= 500 {
        return Err(format!("HTTP {}: {}", reply.status, reply.short()));
    }
    if !reply.content_type.contains("json") {
        // Only a GET without a query (GraphiQL off) answers a bare 405.
        if reply.status == 405 && reply.text.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "HTTP {} with {:?}: {}",
            reply.status,
            reply.content_type,
            reply.short()
        ));
    }
    let body: Value = serde_json::from_str(&reply.text)
        .map_err(|e| format!("not JSON ({e}): {}", reply.short()))?;
    let Some(object) = body.as_object() else {
        return Err(format!("not a JSON object: {}", reply.short()));
    };
    let errors = object.get("errors");
    if !object.contains_key("data") && errors.is_none() {
        return Err(format!("neither data nor errors: {}", reply.short()));
    }
    if let Some(errors) = errors {
        let errors = errors
            .as_array()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| format!("errors is not a non-empty list: {}", reply.short()))?;
        for error in errors {
            if !error["message"].is_string() {
                return Err(format!("an error without a message: {error}"));
            }
            match error["extensions"]["code"].as_str() {
                Some(code) if CODES.contains(&code) => {
                    if code == "INTERNAL" || code == "UNAVAILABLE" {
                        return Err(format!("HTTP {}: {error}", reply.status));
                    }
                }
                _ => return Err(format!("an error without a known code: {error}")),
            }
        }
    }
    Ok(())
}

/// A normal query (as the other tenant's owner) and `/healthz` still succeed.
async fn still_answers(cli: &Client, w: &World) -> Result<(), String> {
    let (status, body) = gql(
        cli,
        "/graphql",
        Some(&w.b_token),
        &[("x-tenant-id", w.b.tenant.to_string())],
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    if (status, &body) != (200, &json!({ "data": { "viewer": { "role": "OWNER" } } })) {
        return Err(format!("a normal query afterwards: HTTP {status}: {body}"));
    }
    let health = cli.get("/healthz").send().await.0;
    if health.status() != 200 {
        return Err(format!("/healthz afterwards: {}", health.status()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// 64 cases per property unless PROPTEST_CASES says otherwise; a fixed seed unless
/// PROPTEST_RNG_SEED says otherwise; no failure files.
fn runner() -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    if matches!(config.rng_seed, RngSeed::Random) {
        config.rng_seed = RngSeed::Fixed(0x5eed_0fba_5e00);
    }
    config.failure_persistence = None;
    config.max_shrink_iters = 512;
    TestRunner::new(config)
}

/// Runs `property` over `strategy` with a runtime and a world of its own.
fn check_property<S: Strategy>(
    strategy: S,
    introspection: bool,
    property: impl for<'a> Fn(
        &'a Client,
        &'a World,
        S::Value,
    ) -> futures_util::future::BoxFuture<'a, Result<(), String>>,
) {
    let _serial = SERIAL.blocking_lock();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (w, cli) = runtime.block_on(async {
        let w = World::new().await;
        let cli = client(state(&w.t.db, introspection, None));
        (w, cli)
    });
    let started = Instant::now();
    let mut runner = runner();
    let cases = runner.config().cases;
    let result = runner.run(&strategy, |value| {
        runtime.block_on(async {
            property(&cli, &w, value)
                .await
                .and(still_answers(&cli, &w).await)
                .map_err(TestCaseError::fail)
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!("{cases} cases in {:.1?}", started.elapsed());
}

/// Content types a client could send, and some no client should.
const CONTENT_TYPES: [&str; 12] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json;charset=\"UTF-8\"",
    "APPLICATION/JSON",
    "application/graphql-response+json",
    "application/graphql",
    "text/plain",
    "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded",
    "application/json; charset=latin1",
    "application/json; boundary",
    "*/*",
];

/// Bodies of real requests, for mutation.
const BODIES: [&str; 4] = [
    r#"{"query":"{ viewer { role tenant { slug } } }"}"#,
    r#"{"query":"query($n: Int) { graphNodes(first: $n) { nodes { id name } } }","variables":{"n":2}}"#,
    r#"{"query":"mutation($i: CreateNodeInput!) { createNode(input: $i) { id } }","variables":{"i":{"name":"X","nodeType":"METHOD"}}}"#,
    r#"{"query":"query A { papers { totalCount } } query B { viewer { role } }","operationName":"B"}"#,
];

/// A body: arbitrary bytes, arbitrary JSON, or a real request with bytes changed or cut off.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (
            prop::sample::select(&BODIES[..]),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            proptest::option::of(any::<prop::sample::Index>()),
        )
            .prop_map(|(body, changes, cut_at)| {
                let mut bytes = body.as_bytes().to_vec();
                for (at, byte) in changes {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
                if let Some(at) = cut_at {
                    bytes.truncate(at.index(bytes.len()));
                }
                bytes
            }),
    ]
}

/// A header value: a realistic one, printable ASCII, or any bytes a header may carry.
fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::weighted(
        0.9,
        prop_oneof![
            4 => prop::sample::select(&CONTENT_TYPES[..]).prop_map(|c| c.as_bytes().to_vec()),
            1 => "[ -~]{0,40}".prop_map(String::into_bytes),
            1 => prop::collection::vec(
                any::<u8>().prop_filter("a header byte", |b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)),
                0..30,
            ),
        ],
    )
}

/// (a) Arbitrary bytes as a POST body, with arbitrary and realistic content types.
#[test]
fn arbitrary_bodies_never_break_the_server() {
    check_property(
        (body(), content_type(), any::<bool>()),
        false,
        |cli, w, (body, content_type, graphql_response)| {
            Box::pin(async move {
                let mut request = w.as_a(cli.post("/graphql")).body(body);
                if let Some(content_type) = content_type {
                    request = request.header(
                        "content-type",
                        HeaderValue::from_bytes(&content_type).unwrap(),
                    );
                }
                if graphql_response {
                    request = request.header("accept", "application/graphql-response+json");
                }
                well_formed(&Reply::of(request.send().await).await)
            })
        },
    );
}

/// Queries with variables of every kind, for arbitrary variables to be coerced into.
const QUERIES: [&str; 10] = [
    "{ viewer { role } }",
    "query($id: ID!) { node(id: $id) { id __typename } }",
    "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
    "query($first: Int, $after: String, $filter: NodeFilter) { graphNodes(first: $first, after: $after, filter: $filter) { totalCount nodes { id name } pageInfo { endCursor } } }",
    "query($q: String!, $kinds: [SearchKind!]) { search(query: $q, kinds: $kinds) { nodes { kind title } } }",
    "query($id: UUID!) { pipelineJob(id: $id) { status } }",
    "query($f: PaperFilter, $o: PaperOrder, $last: Int, $before: String) { papers(filter: $f, orderBy: $o, last: $last, before: $before) { totalCount } }",
    "query($id: ID!, $depth: Int!, $limit: Int) { neighborhood(nodeId: $id, depth: $depth, limit: $limit) { nodes { node { id } } } }",
    "mutation($i: CreateNodeInput!) { createNode(input: $i) { id name } }",
    "mutation($i: TenantSettingsInput!) { updateTenantSettings(input: $i) { limitMode } }",
];

const VARIABLE_NAMES: [&str; 16] = [
    "id", "ids", "first", "after", "filter", "q", "kinds", "last", "before", "f", "o", "depth",
    "limit", "i", "name", "",
];

/// Any JSON value, with keys that are sometimes the schema's own names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        prop::sample::select(vec![
            i64::from(i32::MAX) + 1,
            -1,
            0,
            i64::MAX,
            i64::MIN,
            1 << 31,
        ])
        .prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "METHOD",
            "OWNER",
            "QUEUED",
            "graph",
            "\u{0}",
            "x\u{0}y",
            "00000000-0000-0000-0000-000000000000",
            "UGFwZXI6MA==",
            "2024-01-01T00:00:00Z",
            "NaN",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "nodeType",
            "text",
            "first",
            "id",
            "content",
            "format",
            "aliases",
            "query",
            "kinds",
            "limitMode",
            "nodeTypes",
            "paper",
            "yearFrom",
            "description",
        ])
        .prop_map(str::to_owned),
        ".{0,8}",
    ]
}

/// A field of the request: absent (None) or a JSON value.
fn field(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    proptest::option::weighted(0.8, value)
}

/// (b) Arbitrary JSON values in `query`, `variables`, `operationName` and `extensions`, as a
/// POST body or as GET parameters.
#[test]
fn arbitrary_request_fields_never_break_the_server() {
    let query = prop_oneof![
        4 => prop::sample::select(&QUERIES[..]).prop_map(Value::from),
        1 => json_value(),
    ];
    let variables = prop_oneof![
        3 => prop::collection::vec((prop::sample::select(&VARIABLE_NAMES[..]), json_value()), 0..4)
            .prop_map(|vars| Value::Object(vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => json_value(),
    ];
    let operation_name = prop_oneof![
        Just(Value::Null),
        Just(Value::from("A")),
        ".{0,8}".prop_map(Value::from),
        json_value(),
    ];
    check_property(
        (
            field(query),
            field(variables),
            field(operation_name),
            field(json_value()),
            any::<bool>(),
        ),
        false,
        |cli, w, (query, variables, operation_name, extensions, get)| {
            Box::pin(async move {
                let fields = [
                    ("query", query),
                    ("variables", variables),
                    ("operationName", operation_name),
                    ("extensions", extensions),
                ];
                let request = if get {
                    let mut request = cli.get("/graphql");
                    for (name, value) in fields {
                        match value {
                            Some(Value::String(text)) => request = request.query(name, &text),
                            Some(value) => request = request.query(name, &value.to_string()),
                            None => {}
                        }
                    }
                    request
                } else {
                    let body: serde_json::Map<String, Value> = fields
                        .into_iter()
                        .filter_map(|(name, value)| Some((name.to_owned(), value?)))
                        .collect();
                    cli.post("/graphql").body_json(&body)
                };
                well_formed(&Reply::of(w.as_a(request).send().await).await)
            })
        },
    );
}

// (c) Documents generated from a grammar over the schema's real field names.

/// A type reference of the schema: its named type, and whether it is a list.
#[derive(Clone, Debug)]
struct Ty {
    name: String,
    list: bool,
    /// The type as written (`[ID!]!`), for variable definitions.
    text: String,
    required: bool,
}

impl Ty {
    fn of(ty: &Type, has_default: bool) -> Ty {
        let mut base = &ty.base;
        let mut list = false;
        let name = loop {
            match base {
                BaseType::Named(name) => break name.to_string(),
                BaseType::List(inner) => {
                    list = true;
                    base = &inner.base;
                }
            }
        };
        Ty {
            name,
            list,
            text: ty.to_string(),
            required: !ty.nullable && !has_default,
        }
    }
}

struct FieldDef {
    name: String,
    args: Vec<(String, Ty)>,
    ty: Ty,
}

/// What the generator knows of the served schema.
struct Model {
    objects: HashMap<String, Vec<FieldDef>>,
    inputs: HashMap<String, Vec<(String, Ty)>>,
    enums: HashMap<String, Vec<String>>,
}

impl Model {
    fn load() -> Model {
        let doc = async_graphql::parser::parse_schema(sdl()).expect("the served schema parses");
        let mut model = Model {
            objects: HashMap::new(),
            inputs: HashMap::new(),
            enums: HashMap::new(),
        };
        let field = |f: &async_graphql::parser::types::FieldDefinition| FieldDef {
            name: f.name.node.to_string(),
            args: f
                .arguments
                .iter()
                .map(|a| {
                    let a = &a.node;
                    (
                        a.name.node.to_string(),
                        Ty::of(&a.ty.node, a.default_value.is_some()),
                    )
                })
                .collect(),
            ty: Ty::of(&f.ty.node, false),
        };
        for definition in doc.definitions {
            let TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let name = ty.node.name.node.to_string();
            match &ty.node.kind {
                TypeKind::Object(o) => {
                    model
                        .objects
                        .insert(name, o.fields.iter().map(|f| field(&f.node)).collect());
                }
                TypeKind::Interface(i) => {
                    model
                        .objects
                        .insert(name, i.fields.iter().map(|f| field(&f.node)).collect());
                }
                TypeKind::InputObject(i) => {
                    let fields = i
                        .fields
                        .iter()
                        .map(|f| {
                            (
                                f.node.name.node.to_string(),
                                Ty::of(&f.node.ty.node, f.node.default_value.is_some()),
                            )
                        })
                        .collect();
                    model.inputs.insert(name, fields);
                }
                TypeKind::Enum(e) => {
                    let values = e
                        .values
                        .iter()
                        .map(|v| v.node.value.node.to_string())
                        .collect();
                    model.enums.insert(name, values);
                }
                TypeKind::Scalar | TypeKind::Union(_) => {}
            }
        }
        model
    }
}

/// A literal value.
#[derive(Clone, Debug)]
enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Enum(String),
    List(Vec<Lit>),
    Object(Vec<(String, Lit)>),
}

impl Lit {
    fn render(&self, out: &mut String) {
        match self {
            Lit::Int(n) => out.push_str(&n.to_string()),
            Lit::Float(f) => out.push_str(&format!("{f:?}")),
            Lit::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Lit::Bool(b) => out.push_str(&b.to_string()),
            Lit::Null => out.push_str("null"),
            Lit::Enum(e) => out.push_str(e),
            Lit::List(items) => {
                out.push('[');
                for item in items {
                    item.render(out);
                    out.push(' ');
                }
                out.push(']');
            }
            Lit::Object(fields) => {
                out.push('{');
                for (name, value) in fields {
                    out.push_str(name);
                    out.push_str(": ");
                    value.render(out);
                    out.push(' ');
                }
                out.push('}');
            }
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Lit::Int(n) => json!(n),
            Lit::Float(f) => json!(f),
            Lit::Str(s) | Lit::Enum(s) => json!(s),
            Lit::Bool(b) => json!(b),
            Lit::Null => Value::Null,
            Lit::List(items) => Value::Array(items.iter().map(Lit::to_json).collect()),
            Lit::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

fn literal() -> impl Strategy<Value = Lit> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Lit::Int),
        prop::sample::select(vec![-1i64, 0, 1, 100, 1 << 31, i64::MAX]).prop_map(Lit::Int),
        any::<f64>().prop_map(Lit::Float),
        Just(Lit::Float(1e308)),
        ".{0,16}".prop_map(Lit::Str),
        Just(Lit::Str("a\u{0}b".into())),
        any::<bool>().prop_map(Lit::Bool),
        Just(Lit::Null),
        prop::sample::select(vec!["METHOD", "OWNER", "ASC", "nope", "true", "null"])
            .prop_map(|e| Lit::Enum(e.into())),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Lit::List),
            prop::collection::vec(("[a-z][a-zA-Z]{0,8}", inner), 0..4).prop_map(Lit::Object),
        ]
    })
}

/// An argument's value: one that fits its type (chosen by the number), any literal, or a
/// variable.
#[derive(Clone, Debug)]
enum Arg {
    Fit(u8),
    Lit(Lit),
    Var(u8),
}

fn arg() -> impl Strategy<Value = Arg> {
    prop_oneof![
        8 => any::<u8>().prop_map(Arg::Fit),
        1 => literal().prop_map(Arg::Lit),
        10 => any::<u8>().prop_map(Arg::Fit),
        2 => (0u8..4).prop_map(Arg::Var),
    ]
}

#[derive(Clone, Debug)]
enum Directive {
    Skip(Arg),
    Include(Arg),
    Deprecated,
    Unknown,
}

/// A selection; a field's name and arguments are picked among the real ones by number.
#[derive(Clone, Debug)]
enum Sel {
    Field {
        pick: u16,
        alias: Option<u8>,
        args: Vec<(u16, Arg)>,
        directive: Option<Directive>,
        children: Vec<Sel>,
    },
    Inline(Vec<Sel>),
    Spread(u8),
    Typename,
    Introspection(bool),
    Unknown(u8),
}

fn selections() -> impl Strategy<Value = Vec<Sel>> {
    let directive = prop_oneof![
        9 => arg().prop_map(Directive::Skip),
        9 => arg().prop_map(Directive::Include),
        1 => Just(Directive::Deprecated),
        1 => Just(Directive::Unknown),
    ];
    let field = (
        any::<u16>(),
        proptest::option::of(0u8..16),
        prop::collection::vec((any::<u16>(), arg()), 0..3),
        proptest::option::weighted(0.1, directive),
    )
        .boxed();
    let leaf = prop_oneof![
        12 => field.clone().prop_map(|(pick, alias, args, directive)| Sel::Field {
            pick,
            alias,
            args,
            directive,
            children: Vec::new(),
        }),
        1 => Just(Sel::Typename),
        1 => any::<bool>().prop_map(Sel::Introspection),
        1 => (0u8..4).prop_map(Sel::Spread),
        1 => any::<u8>().prop_map(Sel::Unknown),
    ];
    let selection = leaf.prop_recursive(4, 24, 3, move |inner| {
        prop_oneof![
            5 => (field.clone(), prop::collection::vec(inner.clone(), 1..4)).prop_map(
                |((pick, alias, args, directive), children)| Sel::Field {
                    pick,
                    alias,
                    args,
                    directive,
                    children,
                }
            ),
            1 => prop::collection::vec(inner, 1..3).prop_map(Sel::Inline),
        ]
    });
    prop::collection::vec(selection, 1..4)
}

/// A generated document.
#[derive(Clone, Debug)]
struct Doc {
    /// Shorthand, query, mutation or subscription.
    kind: u8,
    name: Option<u8>,
    root: Vec<Sel>,
    /// Fragments on Query; they may spread each other (cycles included).
    fragments: Vec<Vec<Sel>>,
    /// Variable values: one that fits (None) or any JSON value.
    values: Vec<(u8, Option<Value>)>,
    /// None, the operation's own name, another name, an empty one.
    operation_name: u8,
    /// A second operation in the document.
    second: bool,
    graphql_response: bool,
}

fn document() -> impl Strategy<Value = Doc> {
    (
        prop::sample::select(vec![0u8, 0, 0, 1, 1, 1, 2, 2, 3]),
        proptest::option::of(0u8..3),
        selections(),
        prop::collection::vec(selections(), 0..3),
        prop::collection::vec(
            (0u8..4, proptest::option::weighted(0.1, json_value())),
            0..4,
        ),
        prop::sample::select(vec![0u8, 0, 0, 0, 0, 0, 1, 1, 1, 2, 3]),
        proptest::bool::weighted(0.05),
        any::<bool>(),
    )
        .prop_map(
            |(kind, name, root, fragments, values, operation_name, second, graphql_response)| Doc {
                kind,
                name,
                root,
                fragments,
                values,
                operation_name,
                second,
                graphql_response,
            },
        )
}

/// Renders a [`Doc`] against the [`Model`].
struct Render<'a> {
    model: &'a Model,
    ids: &'a [String],
    fragments: usize,
    /// The operation's type, which fragments are on.
    root: &'static str,
    /// The fragment being rendered.
    current: Option<usize>,
    /// Aliases given so far.
    aliases: usize,
    /// Variables used, with the type of their first use.
    variables: BTreeMap<String, (u8, Ty)>,
    out: String,
}

impl Render<'_> {
    fn selection_set(&mut self, selections: &[Sel], ty: &str) {
        self.out.push_str("{ ");
        for selection in selections {
            self.selection(selection, ty);
            self.out.push(' ');
        }
        self.out.push('}');
    }

    fn selection(&mut self, selection: &Sel, ty: &str) {
        match selection {
            Sel::Typename => self.out.push_str("__typename"),
            Sel::Introspection(_) if ty != "Query" => self.out.push_str("__typename"),
            Sel::Introspection(schema) => self.out.push_str(if *schema {
                "__schema { queryType { name fields { name args { name type { name } } } } }"
            } else {
                "__type(name: \"GraphNode\") { name fields { name } }"
            }),
            // One in four is a field that does not exist; the rest ask for the type's name.
            Sel::Unknown(n) if n % 4 == 0 => self.out.push_str(&format!("nope{n}")),
            Sel::Unknown(_) => self.out.push_str("__typename"),
            // Fragments are on the root type: spread elsewhere, a name instead.
            Sel::Spread(_) if ty != self.root => self.out.push_str("__typename"),
            Sel::Spread(n) => {
                let n = usize::from(*n);
                // Mostly a later fragment (no cycle); one in four is any fragment, or none.
                let target = match self.current {
                    Some(i) if n != 3 && i + 1 < self.fragments => {
                        i + 1 + n % (self.fragments - i - 1)
                    }
                    Some(_) if n != 3 => self.fragments,
                    _ => n % (self.fragments + 1),
                };
                if target == self.fragments && n != 3 {
                    self.out.push_str("__typename");
                } else {
                    self.out.push_str(&format!("...F{target}"));
                }
            }
            Sel::Inline(children) => {
                self.out.push_str(&format!("... on {ty} "));
                self.selection_set(children, ty);
            }
            Sel::Field {
                pick,
                alias,
                args,
                directive,
                children,
            } => {
                let model = self.model;
                let fields = model
                    .objects
                    .get(ty)
                    .or_else(|| model.objects.get("Query"))
                    .unwrap();
                let field = &fields[usize::from(*pick) % fields.len()];
                // Alias 0 may clash with another; the others are unique, and so is the name of
                // every field with arguments (the same field with other arguments conflicts).
                match alias {
                    Some(0) => self.out.push_str("a0: "),
                    None if field.args.is_empty() => {}
                    _ => {
                        self.aliases += 1;
                        self.out.push_str(&format!("a{}: ", self.aliases));
                    }
                }
                self.out.push_str(&field.name);
                // Required arguments always, with the generated values in order (one that fits
                // when none is left); the other generated values go to optional arguments, and
                // now and then to one that does not exist.
                let required: Vec<&(String, Ty)> =
                    field.args.iter().filter(|(_, ty)| ty.required).collect();
                let optional: Vec<&(String, Ty)> =
                    field.args.iter().filter(|(_, ty)| !ty.required).collect();
                let mut rendered: Vec<(String, Ty, Arg)> = Vec::new();
                for (k, (name, ty)) in required.iter().enumerate() {
                    let value = args
                        .get(k)
                        .map(|(_, value)| value.clone())
                        .unwrap_or(Arg::Fit(*pick as u8));
                    rendered.push((name.clone(), ty.clone(), value));
                }
                for (pick, value) in args.iter().skip(required.len()) {
                    if pick % 50 == 49 {
                        let ty = Ty {
                            name: "String".into(),
                            list: false,
                            text: "String".into(),
                            required: false,
                        };
                        rendered.push((format!("x{pick}"), ty, value.clone()));
                    } else if !optional.is_empty() {
                        let (name, ty) = optional[usize::from(*pick) % optional.len()];
                        rendered.push((name.clone(), ty.clone(), value.clone()));
                    }
                }
                if !rendered.is_empty() {
                    self.out.push('(');
                    for (name, ty, value) in &rendered {
                        self.out.push_str(&format!("{name}: "));
                        self.value(value, ty);
                        self.out.push(' ');
                    }
                    self.out.push(')');
                }
                match directive {
                    Some(Directive::Skip(value)) | Some(Directive::Include(value)) => {
                        let name = if matches!(directive, Some(Directive::Skip(_))) {
                            "skip"
                        } else {
                            "include"
                        };
                        self.out.push_str(&format!(" @{name}(if: "));
                        let boolean = Ty {
                            name: "Boolean".into(),
                            list: false,
                            text: "Boolean!".into(),
                            required: true,
                        };
                        self.value(value, &boolean);
                        self.out.push(')');
                    }
                    Some(Directive::Deprecated) => self.out.push_str(" @deprecated"),
                    Some(Directive::Unknown) => self.out.push_str(" @nope"),
                    None => {}
                }
                if model.objects.contains_key(&field.ty.name) {
                    self.out.push(' ');
                    if children.is_empty() {
                        self.out.push_str("{ __typename }");
                    } else {
                        let ty = field.ty.name.clone();
                        self.selection_set(children, &ty);
                    }
                }
            }
        }
    }

    fn value(&mut self, value: &Arg, ty: &Ty) {
        match value {
            Arg::Fit(n) => fit(self.model, self.ids, ty, *n, 0).render(&mut self.out),
            Arg::Lit(lit) => lit.render(&mut self.out),
            Arg::Var(n) => {
                // A variable per type; `$v3` takes the type of its first use, and may not
                // fit the next.
                let name = if *n == 3 {
                    "v3".to_owned()
                } else {
                    let ty: String = ty
                        .text
                        .chars()
                        .filter(char::is_ascii_alphanumeric)
                        .collect();
                    format!("v{n}_{ty}")
                };
                self.out.push_str(&format!("${name}"));
                self.variables
                    .entry(name)
                    .or_insert_with(|| (*n, ty.clone()));
            }
        }
    }
}

/// A value that fits `ty` (more or less: ids may be of the wrong kind, or another tenant's).
fn fit(model: &Model, ids: &[String], ty: &Ty, n: u8, depth: u8) -> Lit {
    let i = usize::from(n);
    let one = match ty.name.as_str() {
        "Int" => Lit::Int([1, 0, 5, 100, -1, 2][i % 6]),
        "Float" => Lit::Float([0.5, 0.0, 1.0][i % 3]),
        "String" => Lit::Str(["graph", "GraphNet", "", "link prediction", "a-slug"][i % 5].into()),
        "Boolean" => Lit::Bool(n.is_multiple_of(2)),
        "ID" | "UUID" => Lit::Str(ids[i % ids.len()].clone()),
        "DateTime" => Lit::Str("2024-01-01T00:00:00Z".into()),
        "NaiveDate" => Lit::Str("2024-01-01".into()),
        "Usd" => Lit::Str("1.50".into()),
        name => {
            if let Some(values) = model.enums.get(name) {
                Lit::Enum(values[i % values.len()].clone())
            } else if let (Some(fields), true) = (model.inputs.get(name), depth < 3) {
                Lit::Object(
                    fields
                        .iter()
                        .enumerate()
                        .filter(|(k, (_, f))| f.required || (i >> (k % 8)) & 1 == 1)
                        .map(|(k, (name, f))| {
                            let n = n.wrapping_mul(31).wrapping_add(k as u8);
                            (name.clone(), fit(model, ids, f, n, depth + 1))
                        })
                        .collect(),
                )
            } else {
                Lit::Null
            }
        }
    };
    if ty.list {
        Lit::List(vec![one])
    } else {
        one
    }
}

/// The document as a request body.
fn render(model: &Model, ids: &[String], doc: &Doc) -> Value {
    let mut r = Render {
        model,
        ids,
        fragments: doc.fragments.len(),
        root: "Query",
        current: None,
        aliases: 0,
        variables: BTreeMap::new(),
        out: String::new(),
    };
    let root = ["Query", "Query", "Mutation", "Subscription"][usize::from(doc.kind % 4)];
    r.root = root;
    // Every fragment is spread at the root, so none is unused.
    let mut selections = doc.root.clone();
    selections.extend((0..doc.fragments.len()).map(|i| Sel::Spread(i as u8)));
    r.selection_set(&selections, root);
    let body = std::mem::take(&mut r.out);
    for (i, fragment) in doc.fragments.iter().enumerate() {
        r.out.push_str(&format!(" fragment F{i} on {root} "));
        r.current = Some(i);
        r.selection_set(fragment, root);
    }
    let fragments = std::mem::take(&mut r.out);
    let name = doc.name.map(|n| format!("Op{n}"));
    let mut query = if doc.kind == 0 && r.variables.is_empty() {
        body
    } else {
        let keyword = ["query", "query", "mutation", "subscription"][usize::from(doc.kind % 4)];
        let name = if doc.kind == 0 { None } else { name.clone() };
        let variables: Vec<String> = r
            .variables
            .iter()
            .map(|(name, (_, ty))| format!("${name}: {}", ty.text))
            .collect();
        let variables = if variables.is_empty() {
            String::new()
        } else {
            format!("({})", variables.join(", "))
        };
        format!("{keyword} {}{variables} {body}", name.unwrap_or_default())
    };
    query.push_str(&fragments);
    if doc.second {
        query.push_str(" query Second { __typename }");
    }
    // Every variable gets a value that fits, unless the document's values give another;
    // values for variables not defined are sent too.
    let mut variables = serde_json::Map::new();
    for (name, (n, ty)) in &r.variables {
        let value = match doc.values.iter().find(|(m, _)| m == n) {
            Some((_, Some(value))) => value.clone(),
            _ => fit(model, ids, ty, *n, 0).to_json(),
        };
        variables.insert(name.clone(), value);
    }
    for (n, value) in &doc.values {
        if let (Some(value), false) = (value, r.variables.values().any(|(m, _)| m == n)) {
            variables.insert(format!("extra{n}"), value.clone());
        }
    }
    let operation_name = match doc.operation_name {
        1 => name.map(Value::from).unwrap_or(Value::Null),
        2 => Value::from("Elsewhere"),
        3 => Value::from(""),
        _ => Value::Null,
    };
    json!({ "query": query, "variables": variables, "operationName": operation_name })
}

/// (c) Documents from a grammar: nested selections of real fields, aliases, fragments (cycles
/// too), arguments that fit their type or not, variables, directives.
#[test]
fn generated_documents_never_break_the_server() {
    let model = Arc::new(Model::load());
    let rendered = Arc::new(AtomicUsize::new(0));
    let executed = Arc::new(AtomicUsize::new(0));
    check_property(document(), true, |cli, w, doc| {
        let model = Arc::clone(&model);
        let (rendered, executed) = (Arc::clone(&rendered), Arc::clone(&executed));
        Box::pin(async move {
            let ids = w.ids();
            let body = render(&model, &ids, &doc);
            let mut request = w.as_a(cli.post("/graphql")).body_json(&body);
            if doc.graphql_response {
                request = request.header("accept", "application/graphql-response+json");
            }
            let reply = Reply::of(request.send().await).await;
            rendered.fetch_add(1, Ordering::Relaxed);
            if reply.json().get("data").is_some_and(|d| !d.is_null()) {
                executed.fetch_add(1, Ordering::Relaxed);
            }
            well_formed(&reply).map_err(|e| format!("{e}\nrequest: {body}"))
        })
    });
    let (rendered, executed) = (
        rendered.load(Ordering::Relaxed),
        executed.load(Ordering::Relaxed),
    );
    eprintln!("{executed} of {rendered} generated documents (shrinking included) ran");
    // The grammar must reach execution, not only validation errors.
    assert!(executed * 5 >= rendered, "{executed} of {rendered}");
}

// ---------------------------------------------------------------------------------------------
// The corpus.

/// The resident set of this process, in bytes (VmRSS in /proc/self/status).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

const MIB: usize = 1024 * 1024;

/// Runs named cases and records every mismatch, so one run shows them all.
struct Corpus<'a> {
    cli: &'a Client,
    w: &'a World,
    cases: usize,
    failures: Vec<String>,
}

impl<'a> Corpus<'a> {
    fn new(cli: &'a Client, w: &'a World) -> Corpus<'a> {
        Corpus {
            cli,
            w,
            cases: 0,
            failures: Vec::new(),
        }
    }

    /// Sends `request`: its status and first error code must be the expected ones (`None`:
    /// data and no errors), and the server must still answer afterwards.
    async fn send(&mut self, name: &str, request: Builder<'_>, status: u16, code: Option<&str>) {
        let started = Instant::now();
        let reply = Reply::of(request.send().await).await;
        self.judge(name, &reply, status, code, started);
    }

    fn judge(
        &mut self,
        name: &str,
        reply: &Reply,
        status: u16,
        code: Option<&str>,
        started: Instant,
    ) {
        self.cases += 1;
        let elapsed = started.elapsed();
        if let Err(e) = well_formed(reply) {
            self.failures.push(format!("{name}: {e}"));
            return;
        }
        let errors = reply.json().get("errors").is_some();
        let got = reply.code();
        if reply.status != status || got.as_deref() != code || (code.is_none() && errors) {
            self.failures.push(format!(
                "{name}: expected HTTP {status} {code:?}, got HTTP {} {got:?}: {}",
                reply.status,
                reply.short()
            ));
        }
        // Hostile input is refused quickly (debug build; the slowest are parsed 1 MiB bodies).
        if elapsed > Duration::from_secs(10) {
            self.failures.push(format!("{name}: took {elapsed:?}"));
        }
    }

    /// POSTs `body` (JSON) as tenant `a`'s owner.
    async fn post(&mut self, name: &str, body: Value, status: u16, code: Option<&str>) {
        let request = self.w.as_a(self.cli.post("/graphql")).body_json(&body);
        self.send(name, request, status, code).await;
    }

    /// POSTs `query` as tenant `a`'s owner.
    async fn query(&mut self, name: &str, query: &str, status: u16, code: Option<&str>) {
        self.post(name, json!({ "query": query }), status, code)
            .await;
    }

    /// POSTs raw bytes as `application/json`, as tenant `a`'s owner.
    async fn raw(&mut self, name: &str, body: Vec<u8>, status: u16, code: Option<&str>) {
        let request = self
            .w
            .as_a(self.cli.post("/graphql"))
            .content_type("application/json")
            .body(body);
        self.send(name, request, status, code).await;
    }

    async fn check_still_answers(&mut self, name: &str) {
        if let Err(e) = still_answers(self.cli, self.w).await {
            self.failures.push(format!("after {name}: {e}"));
        }
    }

    fn finish(self, what: &str) -> usize {
        assert!(
            self.failures.is_empty(),
            "{} of {} {what} cases failed:\n{}",
            self.failures.len(),
            self.cases,
            self.failures.join("\n")
        );
        self.cases
    }
}

/// A body of `{"query": …}` padded with a string literal to exactly `len` bytes.
fn padded_query(len: usize) -> Vec<u8> {
    let head = r#"{"query":"{ search(query: \""#;
    let tail = r#"\") { totalCount } }"}"#;
    let mut body = head.as_bytes().to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

/// A body whose variable `q` pads it to exactly `len` bytes.
fn padded_variable(len: usize) -> Vec<u8> {
    let head = r#"{"query":"query($q: String!) { papers(filter: { text: $q }) { totalCount } }","variables":{"q":""#;
    let tail = r#""}}"#;
    let mut body = head.as_bytes().to_vec();
    while body.len() < len - tail.len() {
        body.extend_from_slice(b"graph ");
    }
    body.truncate(len - tail.len());
    body.extend_from_slice(tail.as_bytes());
    body
}

/// A body stream of `chunk`-byte chunks, without end, counting what is pulled from it.
fn endless(chunk: usize, pulled: Arc<AtomicUsize>) -> poem::Body {
    let stream = futures_util::stream::repeat_with(move || {
        pulled.fetch_add(chunk, Ordering::Relaxed);
        Ok::<_, std::io::Error>(vec![b' '; chunk])
    });
    poem::Body::from_bytes_stream(stream)
}

#[tokio::test]
async fn a_corpus_of_hostile_requests_is_refused_in_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let w = World::new().await;
    let cli = client(state(&w.t.db, false, None));
    // Warm up (connections, caches, the schema's first run), then measure.
    still_answers(&cli, &w).await.unwrap();
    let mut c = Corpus::new(&cli, &w);
    c.raw(
        "warm-up: a body at the cap",
        padded_query(CAP),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    let before = rss();
    let started = Instant::now();

    // Depth.
    let n = 10_000;
    c.query(
        "depth 10k: nested selections (the parser's stack guard: a syntax error)",
        &format!("{}role{}", "{ viewer ".repeat(n), " }".repeat(n)),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "depth 10k: nested inline fragments (the parser's stack guard)",
        &format!(
            "{{ {}__typename{} }}",
            "... on Query { ".repeat(n),
            " }".repeat(n)
        ),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "depth 10k: nested list literal",
        &format!(
            "{{ nodes(ids: {}\"x\"{}) {{ id }} }}",
            "[".repeat(n),
            "]".repeat(n)
        ),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "depth 10k: nested object literal",
        &format!(
            "{{ graphNodes(filter: {}1{}) {{ totalCount }} }}",
            "{a: ".repeat(n),
            "}".repeat(n)
        ),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    let nested = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    c.raw(
        "depth 10k: nested JSON variable",
        format!(r#"{{"query":"query($ids: [ID!]!) {{ nodes(ids: $ids) {{ id }} }}","variables":{{"ids":{nested}}}}}"#).into_bytes(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;

    // Breadth.
    let aliases: String = (0..10_000)
        .map(|i| format!("a{i}: graphNodes(first: 100) {{ nodes {{ id name }} }} "))
        .collect();
    c.query(
        "10k aliases of an expensive field",
        &format!("{{ {aliases} }}"),
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    c.query(
        "a field repeated 100k times",
        &format!("{{ viewer {{ {} }} }}", "role ".repeat(100_000)),
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    c.query(
        "__typename repeated 90k times",
        &format!("{{ {} }}", "__typename ".repeat(90_000)),
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    let arguments: String = (0..50_000).map(|i| format!("a{i}: 1 ")).collect();
    c.query(
        "50k arguments on one field",
        &format!("{{ graphNodes({arguments}) {{ totalCount }} }}"),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    let ids: Vec<String> = (0..60_000).map(|i| format!("{i}")).collect();
    c.post(
        "60k ids in a list variable",
        json!({ "query": "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", "variables": { "ids": ids } }),
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    let directives = "@include(if: true) ".repeat(20_000);
    c.query(
        "20k directives on one field",
        &format!("{{ viewer {directives} {{ role }} }}"),
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;

    // Size.
    c.raw(
        "a string literal just under the cap",
        padded_query(CAP - 1),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "a string literal just over the cap",
        padded_query(CAP + 1),
        413,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    c.raw(
        "a full-text filter of many words just under the cap",
        padded_variable(CAP),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "a variable just over the cap",
        padded_variable(CAP + 1),
        413,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    c.post(
        "a full-text filter of 500 characters",
        json!({ "query": "query($q: String!) { papers(filter: { text: $q }) { totalCount } }", "variables": { "q": "graph ".repeat(84)[..500] } }),
        200,
        None,
    )
    .await;
    let long_word = "x".repeat(CAP - 200);
    c.post(
        "one word of almost 1 MiB in a full-text filter",
        json!({ "query": "query($q: String!) { papers(filter: { text: $q }) { totalCount } }", "variables": { "q": long_word } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a node name of almost 1 MiB",
        json!({ "query": "mutation($i: CreateNodeInput!) { createNode(input: $i) { id } }",
                "variables": { "i": { "name": long_word, "nodeType": "METHOD" } } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a text filter of almost 1 MiB on nodes",
        json!({ "query": "query($q: String!) { graphNodes(filter: { text: $q }) { totalCount } }", "variables": { "q": long_word } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    drop(long_word);

    // Encoding.
    let mut invalid = br#"{"query":"{ viewer { role } }","p":""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid.extend_from_slice(br#""}"#);
    c.raw(
        "invalid UTF-8 in the body",
        invalid,
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "a UTF-16 body",
        r#"{"query":"{ viewer { role } }"}"#.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "a byte-order mark before the JSON",
        [
            &[0xef, 0xbb, 0xbf][..],
            br#"{"query":"{ viewer { role } }"}"#,
        ]
        .concat(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.send(
        "invalid UTF-8 in the query string (percent-encoded)",
        w.as_a(cli.get("/graphql?query=%7B%20viewer%20%7B%20role%20%FF%FE%20%7D%20%7D")),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.send(
        "invalid UTF-8 in the variables parameter",
        w.as_a(cli.get("/graphql?query=%7B%20viewer%20%7B%20role%20%7D%20%7D&variables=%7B%22a%22%3A%22%FF%22%7D")),
        200,
        None,
    )
    .await;
    c.send(
        "invalid UTF-8 in the authorization header",
        cli.post("/graphql")
            .header(
                "authorization",
                HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
            )
            .body_json(&json!({ "query": "{ viewer { role } }" })),
        401,
        Some("UNAUTHENTICATED"),
    )
    .await;
    c.send(
        "invalid UTF-8 in x-tenant-id",
        cli.post("/graphql")
            .header("authorization", format!("Bearer {}", w.a_token))
            .header("x-tenant-id", HeaderValue::from_bytes(b"\xff\xfe").unwrap())
            .body_json(&json!({ "query": "{ viewer { role } }" })),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.send(
        "invalid UTF-8 in the content type",
        w.as_a(cli.post("/graphql"))
            .header(
                "content-type",
                HeaderValue::from_bytes(b"application/json\xff").unwrap(),
            )
            .body(r#"{"query":"{ viewer { role } }"}"#),
        415,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.send(
        "invalid UTF-8 in the accept header",
        w.as_a(cli.post("/graphql"))
            .header(
                "accept",
                HeaderValue::from_bytes(b"application/\xffjson").unwrap(),
            )
            .body_json(&json!({ "query": "{ viewer { role } }" })),
        200,
        None,
    )
    .await;

    // NUL bytes.
    c.raw(
        "a raw NUL byte in the JSON body",
        b"{\"query\":\"{ viewer { role } }\0\"}".to_vec(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "a NUL character in the document",
        "{ viewer { role \u{0} } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a NUL character in a search",
        json!({ "query": "query($q: String!) { search(query: $q) { totalCount } }", "variables": { "q": "graph\u{0}net" } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a NUL character in a full-text filter",
        json!({ "query": "query($q: String!) { papers(filter: { text: $q }) { totalCount } }", "variables": { "q": "\u{0}" } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a NUL character in a node name",
        json!({ "query": "mutation($i: CreateNodeInput!) { createNode(input: $i) { id } }",
                "variables": { "i": { "name": "Graph\u{0}Net", "nodeType": "METHOD" } } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a NUL character in a paper",
        json!({ "query": "mutation($i: IngestPaperInput!) { ingestPaper(input: $i) { paper { id } } }",
                "variables": { "i": { "content": "# A title\n\nSome \u{0} text about graphs.", "format": "MARKDOWN" } } }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "a NUL character in a tenant's name",
        json!({ "query": "mutation { createTenant(name: \"A\\u0000B\", slug: \"nul-tenant\") { role } }" }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;

    // Content types.
    let query = r#"{"query":"{ viewer { role } }"}"#;
    for (name, content_type, body) in [
        ("text/plain", Some("text/plain"), query.to_owned()),
        (
            "multipart with an operations part",
            Some("multipart/form-data; boundary=X"),
            format!("--X\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{query}\r\n--X--\r\n"),
        ),
        (
            "form-urlencoded with a query",
            Some("application/x-www-form-urlencoded"),
            "query=%7B%20viewer%20%7B%20role%20%7D%20%7D".to_owned(),
        ),
        (
            "form-urlencoded without a query",
            Some("application/x-www-form-urlencoded"),
            "a=1&b=2".to_owned(),
        ),
        ("no content type", None, query.to_owned()),
        ("an empty content type", Some(""), query.to_owned()),
        ("application/json with junk parameters", Some("application/json; charset=utf-8; charset=latin1"), query.to_owned()),
    ] {
        let mut request = w.as_a(cli.post("/graphql")).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        c.send(&format!("content type: {name}"), request, 415, Some("BAD_USER_INPUT"))
            .await;
    }

    // JSON shapes.
    c.raw(
        "a JSON array body (batch)",
        format!("[{query},{query}]").into_bytes(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "duplicate query keys",
        br#"{"query":"{ viewer { role } }","query":"{ tenant { slug } }"}"#.to_vec(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "duplicate variables keys",
        br#"{"query":"{ viewer { role } }","variables":{},"variables":{}}"#.to_vec(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "Int 2^63 in a variable",
        br#"{"query":"query($n: Int) { graphNodes(first: $n) { totalCount } }","variables":{"n":9223372036854775808}}"#.to_vec(),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.raw(
        "1e309 in a variable",
        br#"{"query":"query($n: Int) { graphNodes(first: $n) { totalCount } }","variables":{"n":1e309}}"#.to_vec(),
        400,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "Int 2^63 as a literal",
        "{ graphNodes(first: 9223372036854775808) { totalCount } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "1e309 as a Float literal",
        "{ graphEdges(filter: { minConfidence: 1e309 }) { totalCount } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "a 400-digit Int literal",
        &format!(
            "{{ graphNodes(first: {}) {{ totalCount }} }}",
            "9".repeat(400)
        ),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;

    // Fragments and operations.
    c.query(
        "circular fragments",
        "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A viewer { role } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "a self-spreading fragment",
        "{ ...A } fragment A on Query { viewer { role } ...A }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "a fragment spreading itself in a nested selection",
        "{ viewer { ...V } } fragment V on Viewer { tenant { slug } ...V }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "an unused circular fragment",
        "{ viewer { role } } fragment A on Query { ...A }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.post(
        "an unknown operation name",
        json!({ "query": "query A { viewer { role } }", "operationName": "B" }),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "several anonymous operations",
        "{ viewer { role } } { tenant { slug } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "named operations without an operation name",
        "query A { viewer { role } } query B { tenant { slug } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "a subscription over POST",
        &format!(
            "subscription {{ jobProgress(jobId: \"{}\") {{ status }} }}",
            w.a.job
        ),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.send(
        "a subscription over GET",
        w.as_a(cli.get("/graphql").query(
            "query",
            &format!(
                "subscription {{ jobProgress(jobId: \"{}\") {{ status }} }}",
                w.a.job
            ),
        )),
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.send(
        "a mutation over GET",
        w.as_a(cli.get("/graphql").query(
            "query",
            &"mutation { createNode(input: { name: \"X\", nodeType: METHOD }) { id } }",
        )),
        405,
        Some("BAD_USER_INPUT"),
    )
    .await;

    // Introspection (off here).
    for (name, query) in [
        ("__schema", "{ __schema { types { name } } }"),
        ("__type", "{ __type(name: \"Query\") { fields { name } } }"),
        (
            "__schema behind a fragment",
            "{ ...I } fragment I on Query { __schema { queryType { name } } }",
        ),
        (
            "__schema under an alias",
            "{ s: __schema { queryType { name } } }",
        ),
    ] {
        c.query(
            &format!("introspection off: {name}"),
            query,
            200,
            Some("BAD_USER_INPUT"),
        )
        .await;
    }
    c.query("__typename at the root", "{ __typename }", 200, None)
        .await;
    c.query(
        "__typename in a mutation",
        "mutation { __typename }",
        200,
        None,
    )
    .await;
    c.query(
        "__typename with an argument",
        "{ __typename(x: 1) }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "__typename with a selection",
        "{ __typename { name } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "an alias named __typename on another field",
        "{ __typename: viewer { role } }",
        200,
        None,
    )
    .await;
    c.query(
        "__typename on an interface of another tenant's node",
        &format!(
            "{{ node(id: \"{}\") {{ __typename }} }}",
            global_id(Kind::Paper, w.b.paper).0
        ),
        200,
        None,
    )
    .await;

    // Arguments.
    for (name, query) in [
        (
            "an invalid cursor",
            "{ graphNodes(after: \"garbage\") { totalCount } }",
        ),
        (
            "a cursor of base64 garbage",
            "{ papers(before: \"eyJub3BlIjp0cnVlfQ==\") { totalCount } }",
        ),
        (
            "an invalid global ID",
            "{ node(id: \"!!not-an-id!!\") { id } }",
        ),
        (
            "a global ID of base64 garbage",
            "{ node(id: \"UGFwZXI6bm9wZQ==\") { id } }",
        ),
        (
            "an invalid UUID in an ID argument",
            "{ paper(id: \"not-a-uuid\") { id } }",
        ),
        ("first: -1", "{ graphNodes(first: -1) { totalCount } }"),
        ("last: -1", "{ graphNodes(last: -1) { totalCount } }"),
        (
            "first and last",
            "{ graphNodes(first: 1, last: 1) { totalCount } }",
        ),
        (
            "101 ids",
            &format!(
                "{{ nodes(ids: [{}]) {{ id }} }}",
                vec!["\"x\""; 101].join(",")
            ),
        ),
    ] {
        let code = if name == "101 ids" {
            "LIMIT_EXCEEDED"
        } else {
            "BAD_USER_INPUT"
        };
        c.query(name, query, 200, Some(code)).await;
    }
    c.query(
        "an invalid UUID in a UUID argument",
        "{ pipelineJob(id: \"not-a-uuid\") { status } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "first: 2^31",
        "{ graphNodes(first: 2147483648) { totalCount } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "first: 2^31 - 1 (complexity counts the page asked for)",
        "{ graphNodes(first: 2147483647) { totalCount } }",
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    c.query(
        "first: 1000 (clamped to 100)",
        "{ graphNodes(first: 1000) { totalCount } }",
        200,
        None,
    )
    .await;
    c.query(
        "neighborhood depth 2^31 - 1",
        &format!("{{ neighborhood(nodeId: \"{}\", depth: 2147483647, limit: 2147483647) {{ nodes {{ node {{ id }} }} }} }}", w.a.source_node),
        200,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    // Found by the generated documents.
    c.query(
        "an Int where an input object is expected",
        "{ pipelineJobs(filter: 0) { totalCount } }",
        200,
        Some("BAD_USER_INPUT"),
    )
    .await;
    c.query(
        "a mutation whose first field the database refuses",
        &format!(
            "mutation {{ a: createEdge(input: {{ relationType: USED_FOR, source: \"{}\", \
             target: \"{}\" }}) {{ id }} b: createNode(input: {{ name: \"X\", nodeType: METHOD }}) \
             {{ id }} }}",
            w.a.paper, w.a.section
        ),
        200,
        Some("NOT_FOUND"),
    )
    .await;
    c.query(
        "another tenant's id",
        &format!("{{ paper(id: \"{}\") {{ id }} }}", w.b.paper),
        200,
        None,
    )
    .await;

    // Bodies that never end, or claim to be huge.
    let pulled = Arc::new(AtomicUsize::new(0));
    c.send(
        "a chunked body growing past the cap",
        w.as_a(cli.post("/graphql"))
            .content_type("application/json")
            .body(endless(64 * 1024, Arc::clone(&pulled))),
        413,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    let read = pulled.load(Ordering::Relaxed);
    if read > CAP + 64 * 1024 {
        c.failures
            .push(format!("the endless body: {read} bytes read past the cap"));
    }
    let pulled = Arc::new(AtomicUsize::new(0));
    c.send(
        "Content-Length: 50 MB with a small body",
        w.as_a(cli.post("/graphql"))
            .content_type("application/json")
            .header("content-length", "50000000")
            .body(endless(64, Arc::clone(&pulled))),
        413,
        Some("LIMIT_EXCEEDED"),
    )
    .await;
    if pulled.load(Ordering::Relaxed) > 0 {
        c.failures
            .push("a 50 MB Content-Length: the body was read".to_owned());
    }
    c.send(
        "Content-Length that is not a number",
        w.as_a(cli.post("/graphql"))
            .content_type("application/json")
            .header("content-length", "lots")
            .body(query),
        200,
        None,
    )
    .await;

    c.check_still_answers("the corpus").await;
    let elapsed = started.elapsed();
    let after = rss();
    let cases = c.finish("HTTP");
    eprintln!(
        "{cases} HTTP cases in {elapsed:.1?}; resident set {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    // The largest body the server may hold is 1 MiB, with its JSON and the parsed document a
    // few times that, freed after each request. 64 MiB leaves room for the allocator keeping
    // what it freed; a body buffered whole (the endless one, had it not been cut) would not fit.
    assert!(
        after.saturating_sub(before) < 64 * MIB,
        "resident set grew from {} to {} MiB",
        before / MIB,
        after / MIB
    );
}

// ---------------------------------------------------------------------------------------------
// On the wire: what only a real socket shows.

/// Writes `request`, then reads the response head (and whatever follows, up to `max` bytes
/// or until the connection closes or 10 s pass).
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&response).contains("\r\n\r\n") || !complete(&response) {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// Whether a response with a Content-Length has all of its body.
fn complete(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    length.is_none_or(|n| body.len() >= n)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_requests_on_the_wire() {
    let _serial = SERIAL.lock().await;
    let w = World::new().await;
    let addr = listen(state(&w.t.db, false, None)).await;
    let cli = client(state(&w.t.db, false, None));
    let auth = format!(
        "Authorization: Bearer {}\r\nx-tenant-id: {}\r\n",
        w.a_token, w.a.tenant
    );
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut expect = |name: &str, response: &str, status: u16, code: Option<&str>| {
        cases += 1;
        let got = status_of(response);
        let ok = got == status && code.is_none_or(|code| response.contains(code));
        if !ok {
            failures.push(format!(
                "{name}: expected {status} {code:?}, got: {}",
                cut(response, 400)
            ));
        }
    };

    // A 50 MB Content-Length and a small body: the 413 comes at once, nothing else is sent.
    let started = Instant::now();
    let response = exchange(
        addr,
        format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 50000000\r\n\r\n{{\"query\":\"{{ viewer {{ role }} }}\"}}"
        )
        .as_bytes(),
    )
    .await;
    expect(
        "Content-Length: 50 MB, small body",
        &response,
        413,
        Some("LIMIT_EXCEEDED"),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A chunked body that keeps growing: the 413 arrives while it is still being sent.
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let sent = AtomicUsize::new(0);
    let write = async {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        // At most 256 MiB: far more than the server may read.
        for _ in 0..4096 {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
            sent.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        writer.write_all(b"0\r\n\r\n").await
    };
    let read = async {
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !complete(&response) {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    };
    // The response ends the exchange; the writer may still be blocked, or failing once the
    // server has closed the connection: then what was read so far is the response.
    let mut read = std::pin::pin!(read);
    let response = tokio::select! {
        biased;
        response = &mut read => response,
        _ = write => tokio::time::timeout(Duration::from_secs(5), read).await.unwrap_or_default(),
    };
    expect(
        "a chunked body growing past the cap",
        &response,
        413,
        Some("LIMIT_EXCEEDED"),
    );
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < 64 * MIB,
        "the 413 came only after {} MiB were sent ({:?})",
        sent / MIB,
        started.elapsed()
    );

    // Bytes that are not HTTP text: the HTTP layer refuses them (400, from hyper).
    let response = exchange(
        addr,
        b"GET /graphql?query=%7B\xff\xfe%7D HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    expect(
        "raw invalid UTF-8 in the query string",
        &response,
        400,
        None,
    );
    let response = exchange(
        addr,
        format!("POST /graphql HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nX-Junk: a\0b\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    )
    .await;
    expect("a NUL byte in a header value", &response, 400, None);
    let body = r#"{"query":"{ viewer { role } }"}"#;
    let request = [
        format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n",
            w.a_token
        )
        .as_bytes(),
        b"x-tenant-id: \xff\xfe\r\n",
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    ]
    .concat();
    let response = exchange(addr, &request).await;
    expect(
        "invalid UTF-8 in x-tenant-id (on the wire)",
        &response,
        400,
        Some("BAD_USER_INPUT"),
    );
    let response = exchange(
        addr,
        format!("POST /graphql HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n{{}}   ").as_bytes(),
    )
    .await;
    expect("two different Content-Lengths", &response, 400, None);
    let response = exchange(addr, b"GARBAGE\r\n\r\n").await;
    expect("not HTTP at all", &response, 400, None);

    if let Err(e) = still_answers(&cli, &w).await {
        failures.push(format!("after the wire cases: {e}"));
    }
    let healthz = exchange(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    if status_of(&healthz) != 200 {
        failures.push(format!("/healthz on the wire afterwards: {healthz}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {cases} wire cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{cases} wire cases");
}

// ---------------------------------------------------------------------------------------------
// GraphQL over WebSocket.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a WebSocket exchange ended, or the message it got.
#[derive(Debug, PartialEq)]
enum Got {
    /// A protocol message.
    Message(Value),
    /// A close frame with its code.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

async fn ws_connect(addr: std::net::SocketAddr, protocol: &str) -> Ws {
    let mut request = format!("ws://{addr}/graphql")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

/// The next message (pings answered and skipped), within `timeout`.
async fn ws_next<S>(ws: &mut S, timeout: Duration) -> Got
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let Ok(message) = tokio::time::timeout(timeout, ws.next()).await else {
            return Got::Message(json!({ "type": "(nothing within the timeout)" }));
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] == "ping" {
                    continue;
                }
                return Got::Message(value);
            }
            Some(Ok(Message::Close(frame))) => {
                return match frame {
                    Some(frame) => Got::Closed(u16::from(frame.code), frame.reason.to_string()),
                    None => Got::Closed(CloseCode::Status.into(), String::new()),
                }
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Got::Ended,
        }
    }
}

async fn ws_send(ws: &mut Ws, message: Value) {
    let _ = ws.send(Message::text(message.to_string())).await;
}

/// A connection initialised as tenant `a`'s owner.
async fn ws_ready(addr: std::net::SocketAddr, w: &World) -> Ws {
    let mut ws = ws_connect(addr, "graphql-transport-ws").await;
    ws_send(
        &mut ws,
        json!({ "type": "connection_init", "payload": {
            "Authorization": format!("Bearer {}", w.a_token), "x-tenant-id": w.a.tenant.to_string() } }),
    )
    .await;
    let ack = ws_next(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(ack, Got::Message(json!({ "type": "connection_ack" })));
    ws
}

const PROGRESS: &str = "subscription($id: UUID!) { jobProgress(jobId: $id) { status } }";

fn subscribe(id: &str, query: &str, variables: Value) -> Value {
    json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })
}

/// The code of the first error of a `next` message.
fn ws_code(got: &Got) -> Option<&str> {
    match got {
        Got::Message(m) => m["payload"]["errors"][0]["extensions"]["code"].as_str(),
        _ => None,
    }
}

/// Fragments that spread the next one twice, this many levels deep.
const BOMB_LEVELS: usize = 30;

// Several threads: a request stuck on a CPU must not stop the test from noticing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_graphql_over_websocket() {
    let _serial = SERIAL.lock().await;
    let w = World::new().await;
    let state = state(&w.t.db, false, Some(JobEvents::start(w.t.db.clone())));
    let addr = listen(Arc::clone(&state)).await;
    let cli = client(state);
    let before = rss();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut expect = |name: &str, got: &Got, ok: bool| {
        cases += 1;
        if !ok {
            failures.push(format!("{name}: got {got:?}"));
        }
    };
    let wait = Duration::from_secs(10);

    // Not a WebSocket upgrade the server speaks: a plain 400.
    let reply = Reply::of(
        cli.get("/graphql")
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .send()
            .await,
    )
    .await;
    expect(
        "an upgrade without a key or a protocol",
        &Got::Message(json!({ "status": reply.status, "code": reply.code() })),
        reply.status == 400 && reply.code().as_deref() == Some("BAD_USER_INPUT"),
    );

    // An idle connection that never initialises is closed (4408), while the cases below run.
    let mut idle = ws_connect(addr, "graphql-transport-ws").await;

    // One frame on a fresh connection, and the close code it must get.
    let text = |v: Value| Message::text(v.to_string());
    for (name, frame, code) in [
        (
            "a garbage text frame",
            Message::text("not json at all"),
            4400,
        ),
        (
            "a garbage binary frame",
            Message::binary(vec![0xff, 0x00, 0xfe, 0x01]),
            4400,
        ),
        (
            "an unknown message type",
            text(json!({ "type": "hello", "payload": {} })),
            4400,
        ),
        (
            "a subscribe before connection_init",
            text(subscribe("1", PROGRESS, json!({ "id": w.a.job }))),
            4401,
        ),
        (
            "connection_init without a token",
            text(json!({ "type": "connection_init", "payload": {} })),
            4403,
        ),
        (
            "connection_init with a payload that is not an object",
            text(json!({ "type": "connection_init", "payload": "not an object" })),
            4403,
        ),
    ] {
        let mut ws = ws_connect(addr, "graphql-transport-ws").await;
        ws.send(frame).await.unwrap();
        let got = ws_next(&mut ws, wait).await;
        expect(name, &got, matches!(got, Got::Closed(c, _) if c == code));
    }

    let mut ws = ws_ready(addr, &w).await;
    ws_send(&mut ws, json!({ "type": "connection_init", "payload": {} })).await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "a second connection_init",
        &got,
        matches!(got, Got::Closed(4429, _)),
    );

    // An oversized message: closed (1009). The client may still be writing when the close
    // comes, and see the connection end instead.
    let mut ws = ws_ready(addr, &w).await;
    let huge = format!(
        r#"{{"id":"1","type":"subscribe","payload":{{"query":"{}"}}}}"#,
        "x".repeat(2 * MIB)
    );
    let _ = ws.send(Message::text(huge)).await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "a 2 MiB message",
        &got,
        matches!(got, Got::Closed(1009, _) | Got::Ended),
    );
    // A frame that announces 1 GiB and sends 16 bytes of it: the close comes at once, so the
    // server refused it from its header, without waiting for (or buffering) the rest.
    let mut ws = ws_ready(addr, &w).await;
    let sent = Instant::now();
    let mut frame = vec![0x81, 0xff];
    frame.extend_from_slice(&(1u64 << 30).to_be_bytes());
    frame.extend_from_slice(&[0x12, 0x34, 0x56, 0x78]);
    frame.extend_from_slice(&[b'x'; 16]);
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
        tcp.write_all(&frame).await.unwrap();
    }
    let got = ws_next(&mut ws, wait).await;
    expect(
        "a frame header announcing 1 GiB",
        &got,
        matches!(got, Got::Closed(1009, _)) && sent.elapsed() < Duration::from_secs(5),
    );

    // Operations that are not subscriptions, and documents that are too big.
    let mut ws = ws_ready(addr, &w).await;
    for (name, id, query, code) in [
        (
            "a query over WebSocket",
            "q",
            "{ viewer { role } }",
            "BAD_USER_INPUT",
        ),
        (
            "a mutation over WebSocket",
            "m",
            "mutation { createNode(input: { name: \"X\", nodeType: METHOD }) { id } }",
            "BAD_USER_INPUT",
        ),
        (
            "a syntax error over WebSocket",
            "s",
            "subscription {",
            "BAD_USER_INPUT",
        ),
        (
            "an unknown field over WebSocket",
            "u",
            "subscription { nope }",
            "BAD_USER_INPUT",
        ),
        (
            "a missing variable over WebSocket",
            "v",
            PROGRESS,
            "BAD_USER_INPUT",
        ),
        (
            "introspection over WebSocket (off)",
            "i",
            "subscription { __schema { types { name } } }",
            "BAD_USER_INPUT",
        ),
    ] {
        ws_send(&mut ws, subscribe(id, query, json!({}))).await;
        let got = ws_next(&mut ws, wait).await;
        let complete = ws_next(&mut ws, wait).await;
        expect(
            name,
            &got,
            ws_code(&got) == Some(code)
                && complete == Got::Message(json!({ "type": "complete", "id": id })),
        );
    }
    let mut bomb = String::from("subscription { ...F0 } ");
    for i in 0..BOMB_LEVELS {
        bomb.push_str(&format!(
            "fragment F{i} on Subscription {{ ...F{n} ...F{n} }} ",
            n = i + 1
        ));
    }
    bomb.push_str(&format!(
        "fragment F{BOMB_LEVELS} on Subscription {{ jobProgress(jobId: \"{}\") {{ status }} }}",
        w.a.job
    ));
    let bomb_started = Instant::now();
    ws_send(&mut ws, subscribe("bomb", &bomb, json!({}))).await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "a fragment bomb over WebSocket",
        &got,
        ws_code(&got) == Some("LIMIT_EXCEEDED") && bomb_started.elapsed() < Duration::from_secs(5),
    );
    let _ = ws_next(&mut ws, wait).await;
    let cycle = "subscription { ...A } fragment A on Subscription { ...B } \
                 fragment B on Subscription { ...A }";
    ws_send(&mut ws, subscribe("cycle", cycle, json!({}))).await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "circular fragments over WebSocket",
        &got,
        ws_code(&got) == Some("BAD_USER_INPUT"),
    );
    let _ = ws_next(&mut ws, wait).await;
    // The connection is still usable.
    ws_send(&mut ws, subscribe("ok", PROGRESS, json!({ "id": w.a.job }))).await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "a subscription after the refusals",
        &got,
        matches!(&got, Got::Message(m) if m["payload"]["data"]["jobProgress"]["status"] == "QUEUED"),
    );

    // 1,000 subscribe messages on one connection: the first 32 run, the rest are refused.
    // Sent while the answers are read, so neither side waits on a full socket buffer.
    let ws = ws_ready(addr, &w).await;
    let (mut sink, mut stream) = ws.split();
    let send = async {
        for i in 0..1000 {
            let message = subscribe(&i.to_string(), PROGRESS, json!({ "id": w.a.job }));
            let _ = sink.send(Message::text(message.to_string())).await;
        }
    };
    let read = async {
        let (mut running, mut refused, mut completed, mut other) = (0, 0, 0, Vec::new());
        while running + refused + completed < 32 + 2 * 968 {
            match ws_next(&mut stream, wait).await {
                Got::Message(m)
                    if m["type"] == "next"
                        && m["payload"]["data"]["jobProgress"]["status"] == "QUEUED" =>
                {
                    running += 1
                }
                got @ Got::Message(_) if ws_code(&got) == Some("LIMIT_EXCEEDED") => refused += 1,
                Got::Message(m) if m["type"] == "complete" => completed += 1,
                got => {
                    other.push(got);
                    break;
                }
            }
        }
        (running, refused, completed, other)
    };
    let ((), (running, refused, completed, other)) = tokio::join!(send, read);
    let mut ws = sink.reunite(stream).unwrap();
    expect(
        "1,000 subscribe messages on one connection",
        &Got::Message(
            json!({ "running": running, "refused": refused, "completed": completed, "other": format!("{other:?}") }),
        ),
        running == 32 && refused == 968 && completed == 968 && other.is_empty(),
    );
    // Completing one frees its place.
    ws_send(&mut ws, json!({ "id": "0", "type": "complete" })).await;
    ws_send(
        &mut ws,
        subscribe("again", PROGRESS, json!({ "id": w.a.job })),
    )
    .await;
    let completed = ws_next(&mut ws, wait).await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "a subscription after one completed",
        &got,
        completed == Got::Message(json!({ "type": "complete", "id": "0" }))
            && matches!(&got, Got::Message(m) if m["id"] == "again" && m["payload"]["data"]["jobProgress"]["status"] == "QUEUED"),
    );
    drop(ws);

    // The legacy protocol gets the same limits.
    let mut ws = ws_connect(addr, "graphql-ws").await;
    ws_send(
        &mut ws,
        json!({ "id": "1", "type": "start", "payload": { "query": PROGRESS } }),
    )
    .await;
    let got = ws_next(&mut ws, wait).await;
    expect(
        "graphql-ws: a start before connection_init",
        &got,
        matches!(got, Got::Closed(4401, _)),
    );

    let got = ws_next(&mut idle, Duration::from_secs(15)).await;
    expect(
        "no connection_init",
        &got,
        matches!(got, Got::Closed(4408, _)),
    );

    if let Err(e) = still_answers(&cli, &w).await {
        failures.push(format!("after the WebSocket cases: {e}"));
    }
    let ws = ws_ready(addr, &w).await;
    drop(ws);
    let after = rss();
    assert!(
        failures.is_empty(),
        "{} of {cases} WebSocket cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "{cases} WebSocket cases in {:.1?}; resident set {} MiB before, {} MiB after",
        started.elapsed(),
        before / MIB,
        after / MIB
    );
    assert!(
        after.saturating_sub(before) < 64 * MIB,
        "resident set grew from {} to {} MiB",
        before / MIB,
        after / MIB
    );
}
