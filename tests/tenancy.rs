//! Tenancy through GraphQL: tenant resolution, single- and multi-tenant modes, tenant
//! management by role, settings, feature flags and the per-tenant settings cache.

mod common;

use common::http::{app, code, gql, token, AppOptions};
use common::{seed_tenant, TestDb};
use research_graph::auth::{Authenticator, JwtVerifier};
use research_graph::features::Features;
use research_graph::ids::{Role, UserId, DEFAULT_TENANT};
use serde_json::{json, Value};
use uuid::Uuid;

fn tenant_header(id: impl ToString) -> Vec<(&'static str, String)> {
    vec![("x-tenant-id", id.to_string())]
}

/// Runs `query` as `user` in the tenant named by `headers`; panics on a non-200 status.
async fn ok(
    cli: &common::http::Client,
    user: UserId,
    headers: &[(&str, String)],
    query: &str,
    vars: Value,
) -> Value {
    let (status, body) = gql(cli, "/graphql", Some(&token(user)), headers, query, vars).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

#[tokio::test]
async fn tenant_resolution_order() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    // A's owner joins B as a viewer.
    ok(
        &cli,
        b.owner,
        &tenant_header(b.tenant),
        "mutation($u: ID!) { addMember(userId: $u, role: VIEWER) { role } }",
        json!({ "u": a.owner.0.to_string() }),
    )
    .await;
    let slug = "{ tenant { slug } viewer { role } }";
    let me = a.owner;

    // No header, no path: the user's default tenant (their first created).
    let body = ok(&cli, me, &[], slug, json!({})).await;
    assert_eq!(body["data"]["tenant"]["slug"], "alpha");
    // setDefaultTenant changes it.
    ok(
        &cli,
        me,
        &[],
        "mutation($t: ID!) { setDefaultTenant(tenantId: $t) }",
        json!({ "t": b.tenant.to_string() }),
    )
    .await;
    let body = ok(&cli, me, &[], slug, json!({})).await;
    assert_eq!(
        body["data"],
        json!({ "tenant": { "slug": "beta" }, "viewer": { "role": "VIEWER" } })
    );
    // The path beats the default; the header beats the path.
    let (_, body) = gql(
        &cli,
        "/t/alpha/graphql",
        Some(&token(me)),
        &[],
        slug,
        json!({}),
    )
    .await;
    assert_eq!(body["data"]["tenant"]["slug"], "alpha");
    let (_, body) = gql(
        &cli,
        "/t/alpha/graphql",
        Some(&token(me)),
        &tenant_header(b.tenant),
        slug,
        json!({}),
    )
    .await;
    assert_eq!(body["data"]["tenant"]["slug"], "beta");
    // A default tenant one is no longer a member of is not used; neither can one be set.
    let stranger = UserId(Uuid::new_v4());
    let (status, body) = gql(
        &cli,
        "/graphql",
        Some(&token(stranger)),
        &[],
        slug,
        json!({}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (200, Some("FORBIDDEN")),
        "no tenant of their own: {body}"
    );
    assert!(
        body["data"]["tenant"].is_null() && body["data"]["viewer"].is_null(),
        "{body}"
    );
    let (status, body) = gql(
        &cli,
        "/graphql",
        Some(&token(me)),
        &[],
        "mutation($t: ID!) { setDefaultTenant(tenantId: $t) }",
        json!({ "t": Uuid::new_v4().to_string() }),
    )
    .await;
    assert_eq!((status, code(&body)), (200, Some("FORBIDDEN")));

    let body = ok(
        &cli,
        me,
        &[],
        "{ myTenants { slug role isDefault } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"]["myTenants"],
        json!([
            { "slug": "alpha", "role": "OWNER", "isDefault": false },
            { "slug": "beta", "role": "VIEWER", "isDefault": true },
        ])
    );
}

#[tokio::test]
async fn single_tenant_dev_mode_needs_no_token() {
    let t = TestDb::new().await;
    t.superuser()
        .await
        .execute(
            "INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
            &[&DEFAULT_TENANT.0, &research_graph::ids::LOCAL_USER.0],
        )
        .await
        .unwrap();
    let cli = app(
        &t.db,
        AppOptions {
            auth: Authenticator::Dev,
            features: Features::default(),
            join_role: None,
        },
    );
    let other = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    // No token; a tenant header is ignored in single-tenant mode.
    let (status, body) = gql(&cli, "/graphql", None, &tenant_header(other.tenant),
        "{ viewer { role tenant { id } } features { multiTenant usageTracking hostedQueue billing } }", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        json!({
            "viewer": { "role": "OWNER", "tenant": { "id": DEFAULT_TENANT.0.to_string() } },
            "features": { "multiTenant": false, "usageTracking": true, "hostedQueue": false, "billing": false },
        })
    );
    let (status, body) = gql(
        &cli,
        "/graphql",
        None,
        &[],
        "mutation { updateTenantSettings(input: { reasoningMaxDepth: 3 }) { reasoningMaxDepth } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (
            status,
            &body["data"]["updateTenantSettings"]["reasoningMaxDepth"]
        ),
        (200, &json!(3))
    );
    let (_, body) = gql(
        &cli,
        "/graphql",
        None,
        &[],
        "mutation { createTenant(name: \"x\", slug: \"xyz\") { slug } }",
        json!({}),
    )
    .await;
    assert_eq!(
        code(&body),
        Some("BAD_USER_INPUT"),
        "no tenants to create in single-tenant mode"
    );
}

#[tokio::test]
async fn single_tenant_mode_with_tokens_joins_new_users() {
    let t = TestDb::new().await;
    let verifier = || {
        Authenticator::Jwt(Box::new(
            JwtVerifier::new(common::http::hs256_settings()).unwrap(),
        ))
    };
    let joining = app(
        &t.db,
        AppOptions {
            auth: verifier(),
            features: Features::default(),
            join_role: Some(Role::Viewer),
        },
    );
    let closed = app(
        &t.db,
        AppOptions {
            auth: verifier(),
            features: Features::default(),
            join_role: None,
        },
    );
    let user = UserId(Uuid::new_v4());

    let (status, body) = gql(
        &closed,
        "/graphql",
        Some(&token(user)),
        &[],
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!((status, code(&body)), (403, Some("FORBIDDEN")));
    let (status, body) = gql(
        &joining,
        "/graphql",
        None,
        &[],
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (401, Some("UNAUTHENTICATED")),
        "tokens are still required"
    );
    let (status, body) = gql(
        &joining,
        "/graphql",
        Some(&token(user)),
        &[],
        "{ viewer { role tenant { slug } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["viewer"],
        json!({ "role": "VIEWER", "tenant": { "slug": "default" } })
    );
    // A viewer cannot write.
    let (_, body) = gql(
        &joining,
        "/graphql",
        Some(&token(user)),
        &[],
        "mutation { updateTenantSettings(input: { reasoningMaxDepth: 3 }) { reasoningMaxDepth } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"));
}

#[tokio::test]
async fn multi_tenant_mode_rejects_requests_without_a_token() {
    let t = TestDb::new().await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let (status, body) = gql(
        &cli,
        "/graphql",
        None,
        &[],
        "{ viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!((status, code(&body)), (401, Some("UNAUTHENTICATED")));
}

#[tokio::test]
async fn creating_tenants() {
    let t = TestDb::new().await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let alice = UserId(Uuid::new_v4());
    let bob = UserId(Uuid::new_v4());
    // A brand-new user has no tenant: they can see that, and create one, without naming any.
    let body = ok(
        &cli,
        alice,
        &[],
        "{ myTenants { slug } features { multiTenant } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"],
        json!({ "myTenants": [], "features": { "multiTenant": true } })
    );
    let create = "mutation($n: String!, $s: String!) { createTenant(name: $n, slug: $s) { tenantId slug name role isDefault } }";
    let body = ok(
        &cli,
        alice,
        &[],
        create,
        json!({ "n": "Alice's lab", "s": "alice-lab" }),
    )
    .await;
    assert_eq!(
        body["data"]["createTenant"]["isDefault"], true,
        "the first tenant becomes the default"
    );
    let body = ok(
        &cli,
        alice,
        &[],
        "{ tenant { slug } viewer { role } }",
        json!({}),
    )
    .await;
    assert_eq!(
        body["data"],
        json!({ "tenant": { "slug": "alice-lab" }, "viewer": { "role": "OWNER" } })
    );
    // Nothing else works for a user without a tenant: naming one is refused outright…
    let (status, body) = gql(
        &cli,
        "/graphql",
        Some(&token(bob)),
        &tenant_header(DEFAULT_TENANT.0),
        "{ myTenants { slug } }",
        json!({}),
    )
    .await;
    assert_eq!((status, code(&body)), (403, Some("FORBIDDEN")));
    // …and without naming one, every member-only field says so.
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(bob)),
        &[],
        "mutation { updateTenantSettings(input: { reasoningMaxDepth: 3 }) { reasoningMaxDepth } }",
        json!({}),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"));

    let first = research_graph::ids::TenantId(
        Uuid::parse_str(
            ok(&cli, alice, &[], "{ tenant { id } }", json!({})).await["data"]["tenant"]["id"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    );
    let body = ok(
        &cli,
        alice,
        &tenant_header(first),
        create,
        json!({ "n": "  Second lab ", "s": "second-lab" }),
    )
    .await;
    let created = &body["data"]["createTenant"];
    assert_eq!(created["slug"], "second-lab");
    assert_eq!(created["name"], "Second lab");
    assert_eq!(created["role"], "OWNER");
    assert_eq!(created["isDefault"], false, "Alice already had a default");

    for (slug, why) in [
        ("ab", "too short"),
        ("Bad_Slug", "characters"),
        ("-lead", "leading dash"),
        ("second-lab", "taken"),
    ] {
        let (status, body) = gql(
            &cli,
            "/graphql",
            Some(&token(alice)),
            &tenant_header(first),
            create,
            json!({ "n": "x", "s": slug }),
        )
        .await;
        assert_eq!(
            (status, code(&body)),
            (200, Some("BAD_USER_INPUT")),
            "{why}: {body}"
        );
    }
    // Another user may not reuse a taken slug either; the error says only that it is taken.
    let bobs = t.db.create_tenant(bob, "Bob's", "bobs").await.unwrap();
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(bob)),
        &tenant_header(bobs),
        create,
        json!({ "n": "x", "s": "second-lab" }),
    )
    .await;
    assert_eq!(body["errors"][0]["message"], "this slug is already taken");
    assert!(!body.to_string().contains(&alice.to_string()));
}

#[tokio::test]
async fn membership_is_managed_by_owners_and_keeps_an_owner() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = tenant_header(a.tenant);
    let add =
        "mutation($u: ID!, $r: Role!) { addMember(userId: $u, role: $r) { user { id } role } }";
    let update = "mutation($u: ID!, $r: Role!) { updateMemberRole(userId: $u, role: $r) { role } }";
    let remove = "mutation($u: ID!) { removeMember(userId: $u) }";
    let newcomer = Uuid::new_v4().to_string();

    for who in [member, viewer] {
        for (query, vars) in [
            (add, json!({ "u": newcomer, "r": "MEMBER" })),
            (update, json!({ "u": viewer.0.to_string(), "r": "OWNER" })),
            (remove, json!({ "u": a.owner.0.to_string() })),
        ] {
            let (_, body) = gql(&cli, "/graphql", Some(&token(who)), &h, query, vars).await;
            assert_eq!(code(&body), Some("FORBIDDEN"), "{query}: {body}");
        }
    }
    let body = ok(
        &cli,
        a.owner,
        &h,
        add,
        json!({ "u": newcomer, "r": "MEMBER" }),
    )
    .await;
    assert_eq!(body["data"]["addMember"]["role"], "MEMBER");
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &h,
        add,
        json!({ "u": newcomer, "r": "VIEWER" }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "already a member");
    let body = ok(
        &cli,
        a.owner,
        &h,
        update,
        json!({ "u": newcomer, "r": "VIEWER" }),
    )
    .await;
    assert_eq!(body["data"]["updateMemberRole"]["role"], "VIEWER");
    ok(&cli, a.owner, &h, remove, json!({ "u": newcomer })).await;
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &h,
        remove,
        json!({ "u": newcomer }),
    )
    .await;
    assert_eq!(code(&body), Some("NOT_FOUND"));

    // The last owner can neither leave nor be demoted…
    for (query, vars) in [
        (remove, json!({ "u": a.owner.0.to_string() })),
        (update, json!({ "u": a.owner.0.to_string(), "r": "MEMBER" })),
    ] {
        let (_, body) = gql(&cli, "/graphql", Some(&token(a.owner)), &h, query, vars).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert_eq!(
            body["errors"][0]["message"],
            "a tenant must keep at least one owner"
        );
    }
    // …until there is another owner.
    ok(
        &cli,
        a.owner,
        &h,
        update,
        json!({ "u": member.0.to_string(), "r": "OWNER" }),
    )
    .await;
    ok(
        &cli,
        a.owner,
        &h,
        remove,
        json!({ "u": a.owner.0.to_string() }),
    )
    .await;
    let body = ok(
        &cli,
        member,
        &h,
        "{ tenant { members { user { id } role } } }",
        json!({}),
    )
    .await;
    let members = body["data"]["tenant"]["members"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(members.len(), 2);
    assert!(members.contains(&json!({ "user": { "id": member.0.to_string() }, "role": "OWNER" })));
}

#[tokio::test]
async fn deleting_a_tenant_cascades() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = tenant_header(a.tenant);
    let delete = "mutation($s: String!) { deleteTenant(confirmSlug: $s) }";
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(member)),
        &h,
        delete,
        json!({ "s": "alpha" }),
    )
    .await;
    assert_eq!(code(&body), Some("FORBIDDEN"));
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &h,
        delete,
        json!({ "s": "beta" }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
    let body = ok(&cli, a.owner, &h, delete, json!({ "s": "alpha" })).await;
    assert_eq!(body["data"]["deleteTenant"], a.tenant.0.to_string());

    let su = t.superuser().await;
    for table in common::tenant_tables(&su).await {
        let col = common::tenant_column(&table);
        let left: i64 = su
            .query_one(
                &format!("SELECT count(*) FROM app.{table} WHERE {col} = $1"),
                &[&a.tenant.0],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{table} emptied for the deleted tenant");
        let kept: i64 = su
            .query_one(
                &format!("SELECT count(*) FROM app.{table} WHERE {col} = $1"),
                &[&b.tenant.0],
            )
            .await
            .unwrap()
            .get(0);
        assert!(kept > 0, "{table} of the other tenant kept");
    }
    // The default tenant cannot be deleted at all.
    su.execute(
        "INSERT INTO app.tenant_users VALUES ($1, $2, 'owner')",
        &[&DEFAULT_TENANT.0, &a.owner.0],
    )
    .await
    .unwrap();
    let (_, body) = gql(
        &cli,
        "/graphql",
        Some(&token(a.owner)),
        &tenant_header(DEFAULT_TENANT.0),
        delete,
        json!({ "s": "default" }),
    )
    .await;
    assert_eq!(code(&body), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn settings_are_read_by_members_and_changed_by_owners() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let member = t.add_member(a.tenant, a.owner, Role::Member).await;
    let viewer = t.add_member(a.tenant, a.owner, Role::Viewer).await;
    let cli = app(&t.db, AppOptions::multi_tenant());
    let h = tenant_header(a.tenant);
    let read = "{ tenant { settings { executionMode confidenceThreshold dailyCostLimit limitMode hasApiKey } } }";
    for who in [a.owner, member, viewer] {
        let body = ok(&cli, who, &h, read, json!({})).await;
        assert_eq!(
            body["data"]["tenant"]["settings"],
            json!({
                "executionMode": "HOSTED", "confidenceThreshold": 0.6, "dailyCostLimit": null,
                "limitMode": "SOFT", "hasApiKey": false,
            })
        );
    }
    let update = "mutation($i: TenantSettingsInput!) { updateTenantSettings(input: $i) { \
                  extractionModel confidenceThreshold reasoningMaxDepth dailyCostLimit monthlyTokenLimit limitMode executionMode } }";
    let change = json!({ "i": { "extractionModel": "gemini-2.5-flash", "confidenceThreshold": 0.75,
        "reasoningMaxDepth": 4, "dailyCostLimit": "12.5", "monthlyTokenLimit": 5000000, "limitMode": "HARD",
        "executionMode": "BYO_KEY" } });
    for who in [member, viewer] {
        let (_, body) = gql(
            &cli,
            "/graphql",
            Some(&token(who)),
            &h,
            update,
            change.clone(),
        )
        .await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
    }
    let body = ok(&cli, a.owner, &h, update, change).await;
    assert_eq!(
        body["data"]["updateTenantSettings"],
        json!({
            "extractionModel": "gemini-2.5-flash", "confidenceThreshold": 0.75, "reasoningMaxDepth": 4,
            "dailyCostLimit": "12.50", "monthlyTokenLimit": 5000000, "limitMode": "HARD", "executionMode": "BYO_KEY",
        })
    );
    let stored: i64 = t
        .superuser()
        .await
        .query_one(
            "SELECT daily_cost_limit_micros FROM app.tenant_settings WHERE tenant_id = $1",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 12_500_000, "exact micro-dollars");
    // Null clears, absent keeps.
    let body = ok(
        &cli,
        a.owner,
        &h,
        update,
        json!({ "i": { "dailyCostLimit": null, "extractionModel": null } }),
    )
    .await;
    assert_eq!(
        body["data"]["updateTenantSettings"]["dailyCostLimit"],
        Value::Null
    );
    assert_eq!(
        body["data"]["updateTenantSettings"]["extractionModel"],
        Value::Null
    );
    assert_eq!(body["data"]["updateTenantSettings"]["reasoningMaxDepth"], 4);
    for bad in [
        json!({ "confidenceThreshold": 1.5 }),
        json!({ "similarityThreshold": -0.1 }),
        json!({ "reasoningMaxDepth": 0 }),
        json!({ "reasoningMaxDepth": 7 }),
        json!({ "dailyCostLimit": "-1" }),
        json!({ "dailyCostLimit": "1.0000001" }),
        json!({ "monthlyTokenLimit": -5 }),
        json!({ "extractionModel": "" }),
        json!({ "limitMode": "STRICT" }),
    ] {
        let (_, body) = gql(
            &cli,
            "/graphql",
            Some(&token(a.owner)),
            &h,
            update,
            json!({ "i": bad.clone() }),
        )
        .await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{bad}: {body}");
    }
}

/// The settings cache is per process and keyed by tenant: after tenant A's settings are read
/// (and cached), tenant B's request gets B's own settings, never A's.
#[tokio::test]
async fn cached_settings_of_one_tenant_are_never_served_to_another() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let b = seed_tenant(&t, "beta", "10.1/b", "k").await;
    t.superuser()
        .await
        .execute(
            "UPDATE app.tenant_settings SET confidence_threshold = 0.9 WHERE tenant_id = $1",
            &[&a.tenant.0],
        )
        .await
        .unwrap();
    let cli = app(&t.db, AppOptions::multi_tenant());
    let read = "{ tenant { settings { confidenceThreshold } } }";
    for _ in 0..3 {
        let body = ok(&cli, a.owner, &tenant_header(a.tenant), read, json!({})).await;
        assert_eq!(
            body["data"]["tenant"]["settings"]["confidenceThreshold"],
            0.9
        );
        let body = ok(&cli, b.owner, &tenant_header(b.tenant), read, json!({})).await;
        assert_eq!(
            body["data"]["tenant"]["settings"]["confidenceThreshold"],
            0.6
        );
    }
}
