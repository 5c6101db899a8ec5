//! Relay global object identification: opaque global IDs ("Type:uuid", base64url) and the
//! `node(id:)` / `nodes(ids:)` root fields over the `Node` interface.

use async_graphql::{Context, Interface, Object, Result, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use super::{error, ErrorCode};
use crate::graph::{EntityMention, GraphEdge, GraphNode};
use crate::insights::Insight;
use crate::papers::{Paper, PaperSection};

/// The object types that have global IDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A paper.
    Paper,
    /// A section of a paper.
    PaperSection,
    /// An entity of the graph.
    GraphNode,
    /// A relation of the graph.
    GraphEdge,
    /// A mention of an entity in a section.
    EntityMention,
    /// An inferred insight.
    Insight,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Paper => "Paper",
            Kind::PaperSection => "PaperSection",
            Kind::GraphNode => "GraphNode",
            Kind::GraphEdge => "GraphEdge",
            Kind::EntityMention => "EntityMention",
            Kind::Insight => "Insight",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        [
            Kind::Paper,
            Kind::PaperSection,
            Kind::GraphNode,
            Kind::GraphEdge,
            Kind::EntityMention,
            Kind::Insight,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// The global ID of row `id` of `kind`.
pub fn global_id(kind: Kind, id: Uuid) -> ID {
    ID(URL_SAFE_NO_PAD.encode(format!("{}:{id}", kind.name())))
}

/// Decodes any global ID.
pub fn decode(id: &ID) -> Option<(Kind, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(id.as_str()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (kind, uuid) = text.split_once(':')?;
    Some((Kind::parse(kind)?, Uuid::parse_str(uuid).ok()?))
}

/// The row id behind `id`, which must be a global ID of `kind` or a plain UUID.
pub fn row_id(id: &ID, kind: Kind, argument: &str) -> Result<Uuid> {
    if let Ok(uuid) = Uuid::parse_str(id.as_str()) {
        return Ok(uuid);
    }
    match decode(id) {
        Some((k, uuid)) if k == kind => Ok(uuid),
        Some((k, _)) => Err(error(
            ErrorCode::BadUserInput,
            format!(
                "{argument} is the id of a {}, not of a {}",
                k.name(),
                kind.name()
            ),
        )),
        None => Err(error(
            ErrorCode::BadUserInput,
            format!("{argument} is not a valid id"),
        )),
    }
}

/// An object with a global ID.
#[derive(Interface)]
#[graphql(field(name = "id", ty = "ID", desc = "The global ID (for `node(id:)`)."))]
pub enum Node {
    /// A paper.
    Paper(Paper),
    /// A section of a paper.
    PaperSection(PaperSection),
    /// An entity.
    GraphNode(GraphNode),
    /// A relation.
    GraphEdge(GraphEdge),
    /// A mention.
    EntityMention(EntityMention),
    /// An insight.
    Insight(Insight),
}

/// `node` and `nodes`.
#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// Any object by global ID; null when it does not exist in this tenant.
    #[graphql(guard = "super::MemberGuard")]
    async fn node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Node>> {
        let Some((kind, uuid)) = decode(&id) else {
            return Err(error(ErrorCode::BadUserInput, "not a valid id"));
        };
        fetch(ctx, kind, uuid).await
    }

    /// Objects by global IDs, in the same order; null where one does not exist. At most 100.
    #[graphql(guard = "super::MemberGuard")]
    async fn nodes(&self, ctx: &Context<'_>, ids: Vec<ID>) -> Result<Vec<Option<Node>>> {
        if ids.len() > 100 {
            return Err(error(ErrorCode::LimitExceeded, "at most 100 ids"));
        }
        let mut out = Vec::with_capacity(ids.len());
        let futures = ids.iter().map(|id| async move {
            match decode(id) {
                Some((kind, uuid)) => fetch(ctx, kind, uuid).await,
                None => Err(error(ErrorCode::BadUserInput, "not a valid id")),
            }
        });
        for result in futures_join(futures).await {
            out.push(result?);
        }
        Ok(out)
    }
}

/// Loads one object through the request's loaders (so `nodes(ids:)` batches by type).
async fn fetch(ctx: &Context<'_>, kind: Kind, id: Uuid) -> Result<Option<Node>> {
    let loader = super::loaders::loader(ctx)?;
    Ok(match kind {
        Kind::Paper => loader
            .load_one(super::loaders::Id::<Paper>::new(id))
            .await?
            .map(Node::Paper),
        Kind::PaperSection => loader
            .load_one(super::loaders::Id::<PaperSection>::new(id))
            .await?
            .map(Node::PaperSection),
        Kind::GraphNode => loader
            .load_one(super::loaders::Id::<GraphNode>::new(id))
            .await?
            .map(Node::GraphNode),
        Kind::GraphEdge => loader
            .load_one(super::loaders::Id::<GraphEdge>::new(id))
            .await?
            .map(Node::GraphEdge),
        Kind::EntityMention => loader
            .load_one(super::loaders::Id::<EntityMention>::new(id))
            .await?
            .map(Node::EntityMention),
        Kind::Insight => loader
            .load_one(super::loaders::Id::<Insight>::new(id))
            .await?
            .map(Node::Insight),
    })
}

/// Runs futures concurrently (so their loads batch), keeping their order.
async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    async_graphql::futures_util::future::join_all(futures).await
}
