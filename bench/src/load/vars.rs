//! The variables the driver fills in (the contract with the query files, see bench/README.md)
//! and the request bodies it builds from them.

use anyhow::{bail, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{Days, NaiveDate};
use rand::Rng;
use uuid::Uuid;

use super::query::Operation;
use crate::{ids, vocabulary};

/// The server under test; decides how node ids are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// research-graph: Relay global ids (`GraphNode:<uuid>`, base64url without padding).
    Rg,
    /// PostGraphile: raw UUIDs.
    Postgraphile,
}

impl Target {
    /// The name on the command line, of the query directory and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Rg => "rg",
            Target::Postgraphile => "postgraphile",
        }
    }
}

/// A variable the driver can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    /// The tenant's UUID.
    TenantId,
    /// A node of the tenant, index uniform over all of them, in the target's id form.
    NodeId,
    /// The same node as a raw UUID, whatever the target.
    NodeUuid,
    /// A hub node (index uniform over the first tenth), in the target's id form.
    HubId,
    /// The same hub as a raw UUID, whatever the target.
    HubUuid,
    /// The first day of the last 30 days (UTC, `YYYY-MM-DD`).
    From,
    /// Today (UTC, `YYYY-MM-DD`).
    To,
    /// A search term from [`vocabulary::SEARCH_TERMS`].
    Term,
}

/// Every variable name the driver fills (`hubId` and `hubNodeId` are the same variable).
pub const VARIABLES: &[(&str, Variable)] = &[
    ("tenantId", Variable::TenantId),
    ("nodeId", Variable::NodeId),
    ("nodeUuid", Variable::NodeUuid),
    ("hubId", Variable::HubId),
    ("hubNodeId", Variable::HubId),
    ("hubUuid", Variable::HubUuid),
    ("from", Variable::From),
    ("to", Variable::To),
    ("term", Variable::Term),
];

impl Variable {
    /// The variable called `name`.
    pub fn by_name(name: &str) -> Option<Variable> {
        VARIABLES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// The global id research-graph gives row `id` of object type `kind`.
pub fn global_id(kind: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{id}"))
}

/// The last 30 days up to `today`, both ends included: (`today` − 29 days, `today`).
pub fn last_30_days(today: NaiveDate) -> (NaiveDate, NaiveDate) {
    (today - Days::new(29), today)
}

/// What the generated data looks like, as far as the driver addresses it.
#[derive(Clone, Debug)]
pub struct Universe {
    pub target: Target,
    pub tenants: u64,
    pub nodes_per_tenant: u64,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// The random choices behind one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    pub tenant: u64,
    pub node: u64,
    pub hub: u64,
    pub term: usize,
}

impl Universe {
    /// How many of a tenant's nodes are hubs: the first tenth, at least one.
    pub fn hubs(&self) -> u64 {
        (self.nodes_per_tenant / 10).max(1)
    }

    /// The choices for one request, each uniform.
    pub fn draw<R: Rng>(&self, rng: &mut R) -> Draw {
        Draw {
            tenant: rng.random_range(0..self.tenants),
            node: rng.random_range(0..self.nodes_per_tenant),
            hub: rng.random_range(0..self.hubs()),
            term: rng.random_range(0..vocabulary::SEARCH_TERMS.len()),
        }
    }

    fn node_id(&self, t: u64, i: u64) -> String {
        let id = ids::row("node", t, i);
        match self.target {
            Target::Rg => global_id("GraphNode", id),
            Target::Postgraphile => id.to_string(),
        }
    }

    /// The value of `variable` for `draw`.
    pub fn value(&self, variable: Variable, draw: &Draw) -> String {
        match variable {
            Variable::TenantId => ids::tenant(draw.tenant).to_string(),
            Variable::NodeId => self.node_id(draw.tenant, draw.node),
            Variable::NodeUuid => ids::row("node", draw.tenant, draw.node).to_string(),
            Variable::HubId => self.node_id(draw.tenant, draw.hub),
            Variable::HubUuid => ids::row("node", draw.tenant, draw.hub).to_string(),
            Variable::From => self.from.to_string(),
            Variable::To => self.to.to_string(),
            Variable::Term => vocabulary::SEARCH_TERMS[draw.term].to_owned(),
        }
    }
}

/// A query ready to send: its text and operation name serialised once, its variables resolved.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The query's name in the mix (`q1`, ...).
    pub name: String,
    /// The declared variables and what fills them.
    pub variables: Vec<(String, Variable)>,
    /// `{"query":…,"operationName":…,"variables":` (the operation name only when there is one).
    prefix: Vec<u8>,
}

impl Prepared {
    /// Prepares query `name` with text `text`; fails on a variable the driver cannot fill.
    pub fn new(name: &str, text: &str, operation: &Operation) -> Result<Prepared> {
        let mut variables = Vec::new();
        for v in &operation.variables {
            match Variable::by_name(v) {
                Some(variable) => variables.push((v.clone(), variable)),
                None => bail!(
                    "query {name} declares ${v}, which the driver does not fill (it fills {})",
                    VARIABLES
                        .iter()
                        .map(|(n, _)| format!("${n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        let mut prefix = b"{\"query\":".to_vec();
        serde_json::to_writer(&mut prefix, text)?;
        if let Some(op) = &operation.name {
            prefix.extend_from_slice(b",\"operationName\":");
            serde_json::to_writer(&mut prefix, op)?;
        }
        prefix.extend_from_slice(b",\"variables\":");
        Ok(Prepared {
            name: name.to_owned(),
            variables,
            prefix,
        })
    }

    /// The JSON body of a request for `draw`.
    pub fn body(&self, universe: &Universe, draw: &Draw) -> Bytes {
        let mut body = Vec::with_capacity(self.prefix.len() + 64 * self.variables.len() + 4);
        body.extend_from_slice(&self.prefix);
        body.push(b'{');
        for (i, (name, variable)) in self.variables.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, name).expect("write to a Vec");
            body.push(b':');
            serde_json::to_writer(&mut body, &universe.value(*variable, draw))
                .expect("write to a Vec");
        }
        body.extend_from_slice(b"}}");
        Bytes::from(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::query::operation;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::{json, Value};

    fn universe(target: Target, nodes: u64) -> Universe {
        Universe {
            target,
            tenants: 3,
            nodes_per_tenant: nodes,
            from: NaiveDate::from_ymd_opt(2026, 1, 3).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
        }
    }

    #[test]
    fn global_ids_are_base64url_of_type_and_uuid() {
        let id = Uuid::parse_str("a3410e8b-1b79-0c2c-bf7b-4b7c86a8d750").unwrap();
        let global = global_id("GraphNode", id);
        assert!(!global.contains('=') && !global.contains('+') && !global.contains('/'));
        let decoded = URL_SAFE_NO_PAD.decode(&global).unwrap();
        assert_eq!(
            decoded,
            b"GraphNode:a3410e8b-1b79-0c2c-bf7b-4b7c86a8d750".as_slice()
        );
    }

    #[test]
    fn the_last_30_days_include_today() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let (from, to) = last_30_days(today);
        assert_eq!(from.to_string(), "2026-01-31");
        assert_eq!(to.to_string(), "2026-03-01");
        assert_eq!((to - from).num_days() + 1, 30);
    }

    #[test]
    fn hubs_are_the_first_tenth_and_at_least_one() {
        assert_eq!(universe(Target::Rg, 1000).hubs(), 100);
        assert_eq!(universe(Target::Rg, 19).hubs(), 1);
        assert_eq!(universe(Target::Rg, 1).hubs(), 1);
        let u = universe(Target::Rg, 50);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let d = u.draw(&mut rng);
            assert!(d.tenant < 3 && d.node < 50 && d.hub < 5);
            assert!(d.term < vocabulary::SEARCH_TERMS.len());
        }
    }

    #[test]
    fn node_ids_follow_the_target() {
        let draw = Draw {
            tenant: 2,
            node: 7,
            hub: 1,
            term: 0,
        };
        let node = ids::row("node", 2, 7);
        let hub = ids::row("node", 2, 1);
        let rg = universe(Target::Rg, 100);
        assert_eq!(
            rg.value(Variable::NodeId, &draw),
            global_id("GraphNode", node)
        );
        assert_eq!(
            rg.value(Variable::HubId, &draw),
            global_id("GraphNode", hub)
        );
        assert_eq!(rg.value(Variable::NodeUuid, &draw), node.to_string());
        let pg = universe(Target::Postgraphile, 100);
        assert_eq!(pg.value(Variable::NodeId, &draw), node.to_string());
        assert_eq!(pg.value(Variable::HubId, &draw), hub.to_string());
        assert_eq!(pg.value(Variable::HubUuid, &draw), hub.to_string());
        assert_eq!(
            pg.value(Variable::TenantId, &draw),
            ids::tenant(2).to_string()
        );
        assert_eq!(pg.value(Variable::From, &draw), "2026-01-03");
        assert_eq!(pg.value(Variable::To, &draw), "2026-02-01");
        assert_eq!(pg.value(Variable::Term, &draw), vocabulary::SEARCH_TERMS[0]);
    }

    #[test]
    fn bodies_carry_only_the_declared_variables() {
        let text = "query Q2($hubNodeId: ID!, $tenantId: UUID!) {\n  x(id: $hubNodeId, t: $tenantId, n: $nodeId) { \"q\" }\n}";
        let prepared = Prepared::new("q2", text, &operation(text).unwrap()).unwrap();
        let u = universe(Target::Postgraphile, 100);
        let draw = Draw {
            tenant: 1,
            node: 50,
            hub: 3,
            term: 2,
        };
        let body: Value = serde_json::from_slice(&prepared.body(&u, &draw)).unwrap();
        assert_eq!(
            body,
            json!({
                "query": text,
                "operationName": "Q2",
                "variables": {
                    "hubNodeId": ids::row("node", 1, 3).to_string(),
                    "tenantId": ids::tenant(1).to_string(),
                },
            })
        );

        let anonymous = "{ papers(first: 20) { totalCount } }";
        let prepared = Prepared::new("q1", anonymous, &operation(anonymous).unwrap()).unwrap();
        let body: Value = serde_json::from_slice(&prepared.body(&u, &draw)).unwrap();
        assert_eq!(body, json!({ "query": anonymous, "variables": {} }));
    }

    #[test]
    fn an_unknown_variable_is_refused() {
        let text = "query Q($first: Int) { papers(first: $first) { totalCount } }";
        let err = Prepared::new("qx", text, &operation(text).unwrap()).unwrap_err();
        assert!(err.to_string().contains("$first"), "{err}");
    }
}
