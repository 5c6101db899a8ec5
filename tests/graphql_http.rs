//! GraphQL limits and GraphQL over HTTP (SECURITY_TESTS cases 13 and 14): hostile or malformed
//! requests get a precise status and `extensions.code`, never a 500, and are refused before
//! any database work; media types and methods follow the GraphQL-over-HTTP specification.
//!
//! Requests that must be refused before the database are sent to an app whose database cannot
//! be reached: had they got as far as the tenant session, they would answer UNAVAILABLE (503).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestDb;
use poem::test::TestClient;
use research_graph::auth::Authenticator;
use research_graph::db::{Database, PoolSettings};
use research_graph::features::Features;
use research_graph::graphql::{build_schema, Limits};
use research_graph::http::{router, AppState};
use research_graph::ids::{DEFAULT_TENANT, LOCAL_USER};
use research_graph::tenants::settings::{SettingsCache, SETTINGS_TTL};
use serde_json::{json, Value};

type Client = TestClient<poem::endpoint::BoxEndpoint<'static, poem::Response>>;

const JSON: &str = "application/json; charset=utf-8";
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const GRAPHQL_RESPONSE_UTF8: &str = "application/graphql-response+json; charset=utf-8";

fn state(db: Database, dev: bool, limits: Limits) -> Arc<AppState> {
    Arc::new(AppState {
        db,
        schema: build_schema(dev, &limits),
        graphiql: dev,
        auth: Authenticator::Dev,
        features: Features::default(),
        join_role: None,
        settings_cache: Arc::new(SettingsCache::new(SETTINGS_TTL, 100)),
        key_ring: None,
        events: None,
    })
}

/// The router in `--dev` mode (`dev`: GraphiQL and introspection on) over `db`.
fn app(db: Database, dev: bool, limits: Limits) -> Client {
    TestClient::new(poem::EndpointExt::boxed(
        poem::EndpointExt::map_to_response(router(state(db, dev, limits))),
    ))
}

/// A pool pointing at a socket directory where no server listens.
fn unreachable_db() -> Database {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-research-graph-socket-dir")
        .user("rg_app")
        .dbname("none");
    Database::new(
        config,
        &PoolSettings {
            max_size: 1,
            wait_timeout: Duration::from_secs(1),
            ..PoolSettings::default()
        },
    )
    .unwrap()
}

/// An app that can only refuse: anything reaching the database is UNAVAILABLE.
fn no_db(limits: Limits) -> Client {
    app(unreachable_db(), false, limits)
}

/// A test database where the local user owns the default tenant, and the dev app over it.
async fn with_db(dev: bool) -> (TestDb, Client) {
    let t = TestDb::new().await;
    let su = t.superuser().await;
    su.execute(
        "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
        &[&DEFAULT_TENANT.0, &LOCAL_USER.0],
    )
    .await
    .unwrap();
    let cli = app(t.db.clone(), dev, Limits::default());
    (t, cli)
}

/// What a response was.
#[derive(Debug)]
struct Reply {
    status: u16,
    content_type: String,
    headers: poem::http::HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `extensions.code` of the first error.
    fn code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {self:?}"))
    }

    /// The message of the first error.
    fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    /// Asserts the status and the first error's code.
    #[track_caller]
    fn refused(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code()), (status, code), "{self:?}");
    }

    /// Asserts a request error: no `data` at all, as for errors raised before execution.
    #[track_caller]
    fn no_data(&self) {
        assert!(self.body.get("data").is_none(), "{self:?}");
    }
}

/// Sends `request`; every response is asserted not to be a 500 and, when it says it is JSON,
/// to be GraphQL-shaped.
async fn send(request: poem::test::TestRequestBuilder<'_, impl poem::Endpoint>) -> Reply {
    let response = request.send().await.0;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.into_body().into_string().await.unwrap();
    assert_ne!(status, 500, "a server error: {text}");
    let body = if content_type.contains("json") {
        let body: Value = serde_json::from_str(&text).expect("a JSON body");
        assert!(
            body.get("data").is_some() || body["errors"][0]["message"].is_string(),
            "GraphQL-shaped: {body}"
        );
        body
    } else {
        Value::String(text)
    };
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

/// POSTs a GraphQL request as JSON.
async fn post(cli: &Client, query: &str, variables: Value) -> Reply {
    send(
        cli.post("/graphql")
            .body_json(&json!({ "query": query, "variables": variables })),
    )
    .await
}

/// POSTs a GraphQL request as JSON, accepting `application/graphql-response+json`.
async fn post_gr(cli: &Client, query: &str, variables: Value) -> Reply {
    send(
        cli.post("/graphql")
            .header("accept", GRAPHQL_RESPONSE)
            .body_json(&json!({ "query": query, "variables": variables })),
    )
    .await
}

/// POSTs `body` as `application/json`.
async fn post_raw(cli: &Client, body: impl Into<poem::Body>) -> Reply {
    send(
        cli.post("/graphql")
            .content_type("application/json")
            .body(body),
    )
    .await
}

#[tokio::test]
async fn a_query_over_the_depth_limit_is_refused_before_the_database() {
    let limits = Limits {
        max_depth: 4,
        ..Limits::default()
    };
    let deep = "{ viewer { tenant { members { user { id } } } } }"; // depth 5
    let cli = no_db(limits);
    let reply = post(&cli, deep, json!({})).await;
    reply.refused(200, "LIMIT_EXCEEDED");
    assert_eq!(reply.message(), "Query is nested too deep.");
    reply.no_data();
    post_gr(&cli, deep, json!({}))
        .await
        .refused(400, "LIMIT_EXCEEDED");
    // Fragments do not hide depth.
    let hidden = "{ ...V } fragment V on Query { viewer { tenant { ...M } } } \
                  fragment M on Tenant { members { user { id } } }";
    post(&cli, hidden, json!({}))
        .await
        .refused(200, "LIMIT_EXCEEDED");
    // At the limit, the request gets as far as the database (here unreachable).
    post(
        &cli,
        "{ viewer { tenant { members { role } } } }",
        json!({}),
    )
    .await
    .refused(503, "UNAVAILABLE");
}

#[tokio::test]
async fn depth_at_the_limit_runs() {
    let t = TestDb::new().await;
    let su = t.superuser().await;
    su.execute(
        "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
        &[&DEFAULT_TENANT.0, &LOCAL_USER.0],
    )
    .await
    .unwrap();
    let cli = app(
        t.db.clone(),
        false,
        Limits {
            max_depth: 5,
            ..Limits::default()
        },
    );
    let reply = post(
        &cli,
        "{ viewer { tenant { members { user { id } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body["data"]["viewer"]["tenant"]["members"][0]["user"]["id"],
        LOCAL_USER.0.to_string(),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_thousand_aliases_exceed_the_complexity_limit() {
    let cli = no_db(Limits::default());
    let fields = "tenant { id slug name createdAt members { role since user { id } } \
                  settings { limitMode executionMode } }";
    let query = format!(
        "{{ {} }}",
        (0..1000)
            .map(|i| format!("a{i}: viewer {{ {fields} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let reply = post(&cli, &query, json!({})).await;
    reply.refused(200, "LIMIT_EXCEEDED");
    assert_eq!(reply.message(), "Query is too complex.");
    post_gr(&cli, &query, json!({}))
        .await
        .refused(400, "LIMIT_EXCEEDED");
    // The same selection once is well under the limit.
    post(&cli, &format!("{{ viewer {{ {fields} }} }}"), json!({}))
        .await
        .refused(503, "UNAVAILABLE");
}

#[tokio::test]
async fn fragment_bombs_and_cycles_are_refused_quickly() {
    let cli = no_db(Limits::default());
    // Each fragment spreads the next twice: 2^25 copies of `viewer { role }` once expanded.
    let mut bomb = String::from("{ ...F0 }\n");
    for i in 0..25 {
        bomb.push_str(&format!(
            "fragment F{i} on Query {{ ...F{n} ...F{n} }}\n",
            n = i + 1
        ));
    }
    bomb.push_str("fragment F25 on Query { viewer { role } }\n");
    let started = Instant::now();
    let reply = post(&cli, &bomb, json!({})).await;
    reply.refused(200, "LIMIT_EXCEEDED");
    assert_eq!(reply.message(), "Query is too complex.");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused without expanding: {:?}",
        started.elapsed()
    );

    let cycle = "{ ...A } fragment A on Query { ...B viewer { role } } \
                 fragment B on Query { ...A ...A }";
    let reply = post(&cli, cycle, json!({})).await;
    reply.refused(200, "BAD_USER_INPUT");
    assert!(reply.message().contains("within itself"), "{reply:?}");
}

#[tokio::test]
async fn nesting_beyond_the_recursion_limits_is_refused() {
    let cli = no_db(Limits::default());
    // 40 nested inline fragments: over the recursion depth of 32.
    let query = format!(
        "{{ {} viewer {{ role }} {} }}",
        "... on Query { ".repeat(40),
        "}".repeat(40)
    );
    let reply = post(&cli, &query, json!({})).await;
    reply.refused(200, "LIMIT_EXCEEDED");
    assert!(reply.message().contains("recursion depth"), "{reply:?}");

    // 100 nested selection sets: the parser's own bound.
    let query = format!("{}role{}", "{ viewer ".repeat(100), "}".repeat(100));
    post(&cli, &query, json!({}))
        .await
        .refused(200, "LIMIT_EXCEEDED");

    // 200,000 nested braces in 400 KB: a syntax error, not a crash; the message stays short.
    let query = format!("{}role{}", "{a".repeat(200_000), "}".repeat(200_000));
    let reply = post(&cli, &query, json!({})).await;
    reply.refused(200, "BAD_USER_INPUT");
    assert!(reply.message().len() <= 1100, "{}", reply.message().len());
}

#[tokio::test]
async fn too_many_directives_on_a_field() {
    let cli = no_db(Limits {
        max_directives: 1,
        ..Limits::default()
    });
    let reply = post(
        &cli,
        "{ viewer @include(if: true) @skip(if: false) { role } }",
        json!({}),
    )
    .await;
    reply.refused(200, "LIMIT_EXCEEDED");
    assert!(reply.message().contains("directives"), "{reply:?}");
    post(&cli, "{ viewer @include(if: true) { role } }", json!({}))
        .await
        .refused(503, "UNAVAILABLE");
}

#[tokio::test]
async fn batches_are_refused() {
    let cli = no_db(Limits::default());
    let batch = json!([{ "query": "{ viewer { role } }" }, { "query": "{ viewer { role } }" }]);
    let reply = post_raw(&cli, batch.to_string()).await;
    reply.refused(400, "BAD_USER_INPUT");
    assert!(reply.message().contains("batch"), "{reply:?}");
    reply.no_data();
    post_raw(&cli, "[]").await.refused(400, "BAD_USER_INPUT");
}

#[tokio::test]
async fn oversized_bodies_are_413_with_or_without_a_content_length() {
    let limits = Limits {
        max_body_bytes: 200,
        ..Limits::default()
    };
    let cli = no_db(limits);
    let body = |len: usize| {
        let padding = len - r#"{"query":"{ viewer { role } }","p":""}"#.len();
        let text = format!(
            r#"{{"query":"{{ viewer {{ role }} }}","p":"{}"}}"#,
            "x".repeat(padding)
        );
        assert_eq!(text.len(), len);
        text
    };
    // At the limit: through to the database.
    post_raw(&cli, body(200)).await.refused(503, "UNAVAILABLE");
    // No Content-Length (the test client sends none): counted while reading.
    let reply = post_raw(&cli, body(201)).await;
    reply.refused(413, "LIMIT_EXCEEDED");
    reply.no_data();
    // A stream of chunks, as a chunked upload arrives.
    send(
        cli.post("/graphql")
            .content_type("application/json")
            .body(chunked(vec![vec![b' '; 150], vec![b' '; 150]])),
    )
    .await
    .refused(413, "LIMIT_EXCEEDED");
    // A Content-Length over the limit: refused without reading.
    send(
        cli.post("/graphql")
            .content_type("application/json")
            .header("content-length", "5000000")
            .body(body(201)),
    )
    .await
    .refused(413, "LIMIT_EXCEEDED");
}

/// A body that arrives as `chunks`, with no length known in advance.
fn chunked(chunks: Vec<Vec<u8>>) -> poem::Body {
    let stream =
        async_graphql::futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    poem::Body::from_bytes_stream(stream)
}

/// Through a real socket: a chunked upload (no Content-Length) larger than the limit.
#[tokio::test]
async fn a_chunked_upload_over_the_limit_is_413_on_the_wire() {
    use poem::listener::{Acceptor, Listener, TcpListener};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let server = tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(router(state(
        unreachable_db(),
        false,
        Limits::default(),
    ))));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let write = async {
        writer
            .write_all(
                b"POST /graphql HTTP/1.1\r\nHost: localhost\r\n\
                  Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            )
            .await?;
        // 2 MiB of whitespace in 64 KiB chunks.
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..32 {
            writer
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await
    };
    let read = async {
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        // Until the headers and the error body have arrived.
        while !String::from_utf8_lossy(&response).contains("LIMIT_EXCEEDED") {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&response).into_owned()
    };
    // The server may answer, and stop reading, before the upload ends.
    let (_, response) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(write, read) })
            .await
            .expect("an answer in time");
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("LIMIT_EXCEEDED"), "{response}");
    server.abort();
}

#[tokio::test]
async fn huge_strings_under_the_body_limit_are_input_errors_and_over_it_413() {
    let (_t, cli) = with_db(false).await;
    let update = "mutation($m: String) { updateTenantSettings(input: { extractionModel: $m }) \
                  { extractionModel } }";
    let reply = post(&cli, update, json!({ "m": "x".repeat(900 * 1024) })).await;
    reply.refused(200, "BAD_USER_INPUT");
    assert_eq!(reply.message(), "a model name has 1 to 200 characters");
    let reply = post(&cli, update, json!({ "m": "x".repeat(2 * 1024 * 1024) })).await;
    reply.refused(413, "LIMIT_EXCEEDED");
    // Nothing was stored.
    let reply = post(
        &cli,
        "{ tenant { settings { extractionModel } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        reply.body,
        json!({ "data": { "tenant": { "settings": { "extractionModel": null } } } })
    );
}

#[tokio::test]
async fn introspection_and_suggestions_are_off_outside_development() {
    let cli = no_db(Limits::default());
    for query in [
        "{ __schema { types { name } } }",
        r#"{ __type(name: "Query") { fields { name } } }"#,
        "{ viewer { role } ... on Query { __schema { queryType { name } } } }",
    ] {
        let reply = post(&cli, query, json!({})).await;
        reply.refused(200, "BAD_USER_INPUT");
        assert_eq!(
            reply.message(),
            "introspection is disabled on this server",
            "{query}"
        );
    }
    // No "did you mean" that would leak field names.
    let reply = post(&cli, "{ viewr { role } }", json!({})).await;
    reply.refused(200, "BAD_USER_INPUT");
    assert_eq!(reply.message(), r#"Unknown field "viewr" on type "Query"."#);
    // __typename is not introspection.
    post(&cli, "{ __typename }", json!({}))
        .await
        .refused(503, "UNAVAILABLE");
}

#[tokio::test]
async fn introspection_and_suggestions_are_on_in_development() {
    let (_t, cli) = with_db(true).await;
    let reply = post(&cli, "{ __schema { queryType { name } } }", json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        json!({ "data": { "__schema": { "queryType": { "name": "Query" } } } })
    );
    let reply = post(&cli, "{ viewr { role } }", json!({})).await;
    reply.refused(200, "BAD_USER_INPUT");
    assert!(
        reply.message().contains(r#"Did you mean "viewer"?"#),
        "{reply:?}"
    );
}

/// The introspection query GraphiQL and code generators send (graphql-js `getIntrospectionQuery`,
/// with descriptions, deprecations and `specifiedByURL`): the default limits must let it through.
const INTROSPECTION_QUERY: &str = "
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description isRepeatable locations args(includeDeprecated: true) { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description specifiedByURL
  fields(includeDeprecated: true) {
    name description args(includeDeprecated: true) { ...InputValue }
    type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields(includeDeprecated: true) { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description type { ...TypeRef } defaultValue isDeprecated deprecationReason
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}";

#[tokio::test]
async fn graphiql_introspection_fits_the_default_limits() {
    let (_t, cli) = with_db(true).await;
    let reply = post(&cli, INTROSPECTION_QUERY, json!({})).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.get("errors").is_none(), "{reply:?}");
    assert_eq!(reply.body["data"]["__schema"]["queryType"]["name"], "Query");
    // Off outside development, refused before the database.
    post(&no_db(Limits::default()), INTROSPECTION_QUERY, json!({}))
        .await
        .refused(200, "BAD_USER_INPUT");
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let cli = no_db(Limits::default());
    for (body, expected) in [
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        (r#""{ viewer { role } }""#, "JSON object"),
        ("42", "JSON object"),
        ("{}", "no query"),
        (r#"{"query":null}"#, "no query"),
        (r#"{"query":""}"#, "no query"),
        (r#"{"query":42}"#, "query must be a string"),
        (
            r#"{"query":"{ viewer { role } }","variables":"{}"}"#,
            "variables must be a JSON object",
        ),
        (
            r#"{"query":"{ viewer { role } }","variables":[1]}"#,
            "variables must be a JSON object",
        ),
        (
            r#"{"query":"{ viewer { role } }","operationName":1}"#,
            "operationName must be a string",
        ),
        (
            r#"{"query":"{ viewer { role } }","extensions":"x"}"#,
            "extensions must be a JSON object",
        ),
    ] {
        let reply = post_raw(&cli, body).await;
        reply.refused(400, "BAD_USER_INPUT");
        assert!(reply.message().contains(expected), "{body}: {reply:?}");
        reply.no_data();
    }
    // A JSON nesting bomb in the variables is refused by the JSON parser.
    let nested = format!(
        r#"{{"query":"{{ viewer {{ role }} }}","variables":{{"v":{}1{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    post_raw(&cli, nested).await.refused(400, "BAD_USER_INPUT");
    // A syntax error is a GraphQL request error: 200 with application/json...
    let reply = post(&cli, "{ viewer { role }", json!({})).await;
    reply.refused(200, "BAD_USER_INPUT");
    reply.no_data();
    // ... 400 with application/graphql-response+json.
    post_gr(&cli, "{ viewer { role }", json!({}))
        .await
        .refused(400, "BAD_USER_INPUT");
}

#[tokio::test]
async fn only_json_bodies_are_accepted() {
    let cli = no_db(Limits::default());
    let query = r#"{"query":"{ viewer { role } }"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/graphql"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
        None,
    ] {
        let mut request = cli.post("/graphql").body(query);
        if let Some(content_type) = content_type {
            request = request.content_type(content_type);
        }
        let reply = send(request).await;
        reply.refused(415, "BAD_USER_INPUT");
        assert!(
            reply.message().contains("application/json"),
            "{content_type:?}"
        );
    }
    for content_type in [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=\"UTF-8\"",
    ] {
        send(cli.post("/graphql").content_type(content_type).body(query))
            .await
            .refused(503, "UNAVAILABLE");
    }
}

#[tokio::test]
async fn errors_are_capped_and_short() {
    let cli = no_db(Limits::default());
    let query = format!(
        "{{ {} }}",
        (0..500)
            .map(|i| format!("f{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let reply = post(&cli, &query, json!({})).await;
    reply.refused(200, "BAD_USER_INPUT");
    assert_eq!(reply.body["errors"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn invalid_arguments_are_bad_user_input() {
    let (_t, cli) = with_db(false).await;
    // Not a UUID: refused by the resolver, during execution.
    let reply = post(
        &cli,
        r#"mutation { setDefaultTenant(tenantId: "nope") }"#,
        json!({}),
    )
    .await;
    reply.refused(200, "BAD_USER_INPUT");
    assert_eq!(reply.message(), "tenantId must be a UUID");
    let reply = post(
        &cli,
        "mutation($id: ID!) { removeMember(userId: $id) }",
        json!({ "id": "not-a-uuid" }),
    )
    .await;
    reply.refused(200, "BAD_USER_INPUT");
    // An unknown enum value, a null where none is allowed, a wrong type: validation errors.
    let user = "00000000-0000-0000-0000-0000000000aa";
    for (query, variables) in [
        (
            format!(r#"mutation {{ addMember(userId: "{user}", role: KING) {{ role }} }}"#),
            json!({}),
        ),
        (
            "mutation($r: Role!) { addMember(userId: \"x\", role: $r) { role } }".to_owned(),
            json!({ "r": "KING" }),
        ),
        (
            "mutation { addMember(userId: null, role: MEMBER) { role } }".to_owned(),
            json!({}),
        ),
        (
            "mutation($r: Role!) { addMember(userId: \"x\", role: $r) { role } }".to_owned(),
            json!({ "r": null }),
        ),
        (
            "mutation($r: Role!) { addMember(userId: \"x\", role: $r) { role } }".to_owned(),
            json!({}),
        ),
        (
            "mutation { updateTenantSettings(input: { reasoningMaxDepth: \"deep\" }) \
             { reasoningMaxDepth } }"
                .to_owned(),
            json!({}),
        ),
    ] {
        let reply = post(&cli, &query, variables.clone()).await;
        reply.refused(200, "BAD_USER_INPUT");
        reply.no_data();
        post_gr(&cli, &query, variables)
            .await
            .refused(400, "BAD_USER_INPUT");
    }
    // Nothing was added.
    let reply = post(&cli, "{ tenant { members { role } } }", json!({})).await;
    assert_eq!(
        reply.body["data"]["tenant"]["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn get_runs_queries_only() {
    let (_t, cli) = with_db(false).await;
    let reply = send(cli.get("/graphql").query("query", &"{ viewer { role } }")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, JSON);
    assert_eq!(
        reply.body,
        json!({ "data": { "viewer": { "role": "OWNER" } } })
    );

    // Variables and the operation name as parameters.
    let reply = send(
        cli.get("/graphql")
            .query(
                "query",
                &"query A($s: Boolean!) { viewer { role user @skip(if: $s) { id } } } \
                  mutation B { setDefaultTenant(tenantId: \"nope\") }",
            )
            .query("operationName", &"A")
            .query("variables", &r#"{"s":true}"#),
    )
    .await;
    assert_eq!(
        reply.body,
        json!({ "data": { "viewer": { "role": "OWNER" } } }),
        "{reply:?}"
    );

    // A mutation: 405, whatever else is wrong with it.
    for (query, operation) in [
        (
            r#"mutation { setDefaultTenant(tenantId: "00000000-0000-0000-0000-000000000000") }"#,
            None,
        ),
        (
            "query A { viewer { role } } mutation B { setDefaultTenant(tenantId: \"x\") }",
            Some("B"),
        ),
        ("mutation { nope }", None),
    ] {
        let mut request = cli.get("/graphql").query("query", &query);
        if let Some(operation) = operation {
            request = request.query("operationName", &operation);
        }
        let reply = send(request).await;
        reply.refused(405, "BAD_USER_INPUT");
        assert_eq!(reply.header("allow"), Some("POST"));
        reply.no_data();
    }
    // The same mutation over POST runs.
    let reply = post(
        &cli,
        r#"mutation { setDefaultTenant(tenantId: "00000000-0000-0000-0000-000000000000") }"#,
        json!({}),
    )
    .await;
    assert_eq!(reply.body, json!({ "data": { "setDefaultTenant": true } }));

    // Malformed parameters.
    send(
        cli.get("/graphql")
            .query("query", &"{ viewer { role } }")
            .query("variables", &"{nope"),
    )
    .await
    .refused(400, "BAD_USER_INPUT");
    send(
        cli.get("/graphql")
            .query("query", &"{ viewer { role } }")
            .query("query", &"{ viewer { role } }"),
    )
    .await
    .refused(400, "BAD_USER_INPUT");
    send(cli.get("/graphql").query("query", &""))
        .await
        .refused(400, "BAD_USER_INPUT");

    // Without a query: GraphiQL in development only.
    let reply = send(cli.get("/graphql")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    let dev = app(unreachable_db(), true, Limits::default());
    let reply = send(dev.get("/t/acme/graphql")).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.as_str().unwrap().contains("graphiql"));
}

#[tokio::test]
async fn graphql_response_json_status_codes() {
    let (_t, cli) = with_db(false).await;
    let accept = |accept: &'static str, query: &str| {
        cli.post("/graphql")
            .header("accept", accept)
            .body_json(&json!({ "query": query }))
    };
    // Success: 200, in the media type asked for.
    let reply = send(accept(GRAPHQL_RESPONSE, "{ viewer { role } }")).await;
    assert_eq!(
        (reply.status, reply.content_type.as_str()),
        (200, GRAPHQL_RESPONSE_UTF8)
    );
    assert_eq!(
        reply.body,
        json!({ "data": { "viewer": { "role": "OWNER" } } })
    );
    // Parse and validation errors: 400, no data.
    for query in ["{ viewer { role }", "{ viewer { nope } }", "{ viewer }"] {
        let reply = send(accept(GRAPHQL_RESPONSE, query)).await;
        reply.refused(400, "BAD_USER_INPUT");
        assert_eq!(reply.content_type, GRAPHQL_RESPONSE_UTF8);
        reply.no_data();
    }
    // An error during execution: 200, with data.
    let reply = send(accept(
        GRAPHQL_RESPONSE,
        r#"mutation { setDefaultTenant(tenantId: "nope") }"#,
    ))
    .await;
    reply.refused(200, "BAD_USER_INPUT");
    assert!(reply.body.get("data").is_some(), "{reply:?}");
    // Negotiation.
    for (header, expected) in [
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE_UTF8),
        (
            "application/graphql-response+json, application/json;q=0.9",
            GRAPHQL_RESPONSE_UTF8,
        ),
        (
            "application/json, application/graphql-response+json",
            GRAPHQL_RESPONSE_UTF8,
        ),
        (
            "application/json, application/graphql-response+json;q=0.5",
            JSON,
        ),
        ("application/graphql-response+json;q=0, */*", JSON),
        ("application/json", JSON),
        ("*/*", JSON),
        ("text/html", JSON),
    ] {
        let reply = send(accept(header, "{ viewer }")).await;
        assert_eq!(reply.content_type, expected, "{header}");
        let status = if expected == JSON { 200 } else { 400 };
        reply.refused(status, "BAD_USER_INPUT");
    }
    // No Accept header: application/json, as before.
    let reply = post(&cli, "{ viewer }", json!({})).await;
    assert_eq!(reply.content_type, JSON);
    reply.refused(200, "BAD_USER_INPUT");
    // Refusals before execution keep their status in either media type.
    let down = no_db(Limits::default());
    let reply = send(
        down.post("/graphql")
            .header("accept", GRAPHQL_RESPONSE)
            .body_json(&json!({ "query": "{ viewer { role } }" })),
    )
    .await;
    reply.refused(503, "UNAVAILABLE");
    assert_eq!(reply.content_type, GRAPHQL_RESPONSE_UTF8);
    send(
        down.post("/graphql")
            .header("accept", GRAPHQL_RESPONSE)
            .content_type("text/plain")
            .body("{ viewer { role } }"),
    )
    .await
    .refused(415, "BAD_USER_INPUT");
}

#[tokio::test]
async fn authentication_comes_before_reading_the_body() {
    let t = TestDb::new().await;
    let cli = common::http::app(&t.db, common::http::AppOptions::multi_tenant());
    // An oversized, malformed body without a token: 401, the body unread.
    let reply = send(
        cli.post("/graphql")
            .content_type("text/plain")
            .body(vec![b'x'; 2 * 1024 * 1024]),
    )
    .await;
    reply.refused(401, "UNAUTHENTICATED");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    // With a token, the same body is refused for what it is.
    let (_, owner) = t.create_tenant("acme").await;
    let token = common::http::token(owner);
    send(
        cli.post("/graphql")
            .header("authorization", format!("Bearer {token}"))
            .content_type("text/plain")
            .body(vec![b'x'; 2 * 1024 * 1024]),
    )
    .await
    .refused(415, "BAD_USER_INPUT");
    send(
        cli.post("/graphql")
            .header("authorization", format!("Bearer {token}"))
            .content_type("application/json")
            .body(vec![b' '; 2 * 1024 * 1024]),
    )
    .await
    .refused(413, "LIMIT_EXCEEDED");
}

/// A document seen before skips parsing and the shape checks, never validation: the same text
/// answers a wrong variable with the same request error, before and after it was cached, and a
/// document refused by the shape checks is refused every time.
#[tokio::test]
async fn a_repeated_document_is_validated_like_a_new_one() {
    let (_t, cli) = with_db(true).await;
    let query = "query($first: Int!) { papers(first: $first) { totalCount } }";
    let wrong = post_gr(&cli, query, json!({ "first": "ten" })).await;
    wrong.no_data();
    let right = post_gr(&cli, query, json!({ "first": 10 })).await;
    assert_eq!(right.status, 200, "{right:?}");
    assert_eq!(right.body["data"]["papers"]["totalCount"], 0);
    let again = post_gr(&cli, query, json!({ "first": "ten" })).await;
    again.no_data();
    assert_eq!(
        (again.status, again.code(), again.message()),
        (wrong.status, wrong.code(), wrong.message()),
        "the cached document answers as the new one did"
    );
    let missing = post_gr(&cli, query, json!({})).await;
    missing.refused(wrong.status, "BAD_USER_INPUT");

    let deep = format!(
        "{{ papers {{ {}totalCount{} }} }}",
        "nodes { sections { ".repeat(20),
        " } }".repeat(20)
    );
    let first = post_gr(&cli, &deep, json!({})).await;
    let second = post_gr(&cli, &deep, json!({})).await;
    assert_eq!(
        (first.status, first.code()),
        (second.status, second.code()),
        "{first:?}"
    );
    assert_ne!(first.status, 200);
}
