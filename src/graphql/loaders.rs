//! Per-request DataLoaders: every nested level of a query becomes one `= ANY($ids)` statement per
//! type, so a three-level explorer query costs a handful of statements, not one per node.
//!
//! The loader is created per request by [`super::with_request_data`] and holds a weak reference
//! to that request's tenant session: it can neither batch nor cache across requests or tenants,
//! and it never keeps a session alive past its request.
//!
//! Three kinds of keys:
//! - [`Id<T>`]: rows of one type by id;
//! - [`Child<L>`]: one page of a listing per parent (a node's outgoing edges, a paper's
//!   sections, …), all parents of a level in one `unnest($1) CROSS JOIN LATERAL` statement that
//!   reads `first + 1` index entries per parent;
//! - [`ChildCount<L>`]: the `totalCount` of such pages, batched the same way.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Result};
use uuid::Uuid;

use super::pagination::{Connection, Counter, Cursor, Page, Sort, Sql, Window};
use super::{db_error, error, session, ErrorCode};
use crate::db::TenantSession;

/// The request's loader.
pub type RequestLoader = DataLoader<SqlLoader>;

/// The request's DataLoader, from the context.
pub fn loader<'a>(ctx: &Context<'a>) -> Result<&'a RequestLoader> {
    ctx.data::<RequestLoader>()
}

/// Creates the loader of one request.
///
/// No batching delay: async-graphql's default waits 1 ms (on a timer thread of its own) before
/// each batch, which made every nested level of every request at least a millisecond slower
/// and left the processor idle under load. The keys of one level are all registered in one
/// poll of the request (sibling fields and list items are polled together), and tokio runs a
/// task spawned from a worker on that worker once the current task yields, so the fetch sees
/// the whole level. (Another worker may steal it earlier when a level spawns several fetches;
/// a batch is then split in two statements, never wrong.)
pub fn request_loader(session: &Arc<TenantSession>) -> RequestLoader {
    DataLoader::new(
        SqlLoader {
            session: Arc::downgrade(session),
        },
        tokio::spawn,
    )
    .delay(std::time::Duration::ZERO)
}

/// Runs batched statements on the request's tenant session.
pub struct SqlLoader {
    session: Weak<TenantSession>,
}

impl SqlLoader {
    fn session(&self) -> Result<Arc<TenantSession>> {
        self.session
            .upgrade()
            .ok_or_else(|| error(ErrorCode::Internal, "request already finished"))
    }
}

/// A row type that can be loaded by id and listed.
pub trait Row: Clone + Send + Sync + 'static {
    /// The type's columns, qualified by its table alias, id first; [`Row::from_row`] reads them
    /// in this order.
    const COLUMNS: &'static str;
    /// `FROM app.table alias`.
    const FROM: &'static str;
    /// The qualified id column.
    const ID: &'static str;
    /// Builds the value from `row`, whose columns start at `offset`.
    fn from_row(row: &tokio_postgres::Row, offset: usize) -> Self;
    /// The row's id.
    fn row_id(&self) -> Uuid;
}

/// Key: the row of type `T` with this id.
pub struct Id<T>(pub Uuid, PhantomData<fn() -> T>);

impl<T> Id<T> {
    /// The key of row `id`.
    pub fn new(id: Uuid) -> Self {
        Id(id, PhantomData)
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        Id(self.0, PhantomData)
    }
}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<T> Eq for Id<T> {}
impl<T> Hash for Id<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl<T: Row> Loader<Id<T>> for SqlLoader {
    type Value = T;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Id<T>]) -> Result<HashMap<Id<T>, T>> {
        let session = self.session()?;
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let mut sql = Sql::new("SELECT ");
        sql.push(T::COLUMNS)
            .push(" ")
            .push(T::FROM)
            .push(" WHERE ")
            .push(T::ID)
            .push(" = ANY(")
            .bind(ids)
            .push(")");
        let rows = session
            .query(&sql.text, &sql.params())
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let item = T::from_row(r, 0);
                (Id::new(item.row_id()), item)
            })
            .collect())
    }
}

/// How to list rows of one type, at the root (filters only) or per parent.
pub trait Listing: Clone + PartialEq + Eq + Hash + Send + Sync + 'static {
    /// The rows listed.
    type Item: Row;
    /// `FROM … WHERE …` of a root listing (no parent).
    fn root_from(&self) -> &'static str;
    /// `FROM … WHERE …` of a per-parent listing, tying rows to `k.parent`.
    fn child_from(&self) -> &'static str;
    /// Appends ` AND …` conditions (values bound).
    fn filters(&self, sql: &mut Sql);
    /// The order.
    fn sort(&self) -> Sort;
    /// The page asked for.
    fn window(&self) -> &Window;
}

/// Appends the listing's head: its columns and the sort value as text (the cursor).
fn select_head<L: Listing>(sql: &mut Sql, sort: &Sort) {
    sql.push(<L::Item as Row>::COLUMNS)
        .push(", (")
        .push(sort.column)
        .push(")::text ");
}

fn to_page<T: Row>(
    rows: &[&tokio_postgres::Row],
    offset: usize,
    sort: &Sort,
    window: &Window,
) -> Page<T> {
    let scanned = rows
        .iter()
        .map(|r| {
            let item = T::from_row(r, offset);
            let cursor = Cursor {
                order: sort.name.to_owned(),
                value: r.get::<_, String>(r.len() - 1),
                id: item.row_id(),
            };
            (cursor, item)
        })
        .collect();
    Page::from_scan(scanned, window)
}

/// One page of a root listing.
pub async fn root_page<L: Listing>(ctx: &Context<'_>, listing: &L) -> Result<Page<L::Item>> {
    let sort = listing.sort();
    listing.window().check(&sort)?;
    let mut sql = Sql::new("SELECT ");
    select_head::<L>(&mut sql, &sort);
    sql.push(listing.root_from());
    listing.filters(&mut sql);
    sql.keyset(&sort, listing.window());
    let rows = session(ctx)?
        .query(&sql.text, &sql.params())
        .await
        .map_err(db_error)?;
    let rows: Vec<&tokio_postgres::Row> = rows.iter().collect();
    Ok(to_page(&rows, 0, &sort, listing.window()))
}

/// The connection of a root listing: its page, and its count when `totalCount` is asked for.
pub async fn root_connection<L: Listing>(
    ctx: &Context<'_>,
    listing: L,
) -> Result<Connection<L::Item>>
where
    L::Item: async_graphql::OutputType,
{
    let page = root_page(ctx, &listing).await?;
    Ok(Connection::new(page, RootCount(listing)))
}

/// Counts a root listing when `totalCount` is asked for.
pub struct RootCount<L>(pub L);

impl<L: Listing> Counter for RootCount<L> {
    fn count<'a>(
        &'a self,
        ctx: &'a Context<'_>,
    ) -> Pin<Box<dyn Future<Output = Result<i64>> + Send + 'a>> {
        Box::pin(async move {
            let mut sql = Sql::new("SELECT count(*) ");
            sql.push(self.0.root_from());
            self.0.filters(&mut sql);
            let row = session(ctx)?
                .query_one(&sql.text, &sql.params())
                .await
                .map_err(db_error)?;
            Ok(row.get(0))
        })
    }
}

/// Key: one page of `listing` under `parent`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Child<L> {
    /// The parent row.
    pub parent: Uuid,
    /// What to list under it.
    pub listing: L,
}

impl<L: Listing> Loader<Child<L>> for SqlLoader {
    type Value = Page<L::Item>;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[Child<L>]) -> Result<HashMap<Child<L>, Page<L::Item>>> {
        let session = self.session()?;
        let mut groups: HashMap<&L, Vec<Uuid>> = HashMap::new();
        for key in keys {
            groups.entry(&key.listing).or_default().push(key.parent);
        }
        let mut out = HashMap::new();
        for (listing, parents) in groups {
            let sort = listing.sort();
            listing.window().check(&sort)?;
            let sql = child_page_sql(listing, parents.clone());
            let rows = session
                .query(&sql.text, &sql.params())
                .await
                .map_err(db_error)?;
            let mut by_parent: HashMap<Uuid, Vec<&tokio_postgres::Row>> = HashMap::new();
            for row in &rows {
                by_parent.entry(row.get(0)).or_default().push(row);
            }
            for parent in parents {
                let rows = by_parent.remove(&parent).unwrap_or_default();
                out.insert(
                    Child {
                        parent,
                        listing: listing.clone(),
                    },
                    to_page(&rows, 1, &sort, listing.window()),
                );
            }
        }
        Ok(out)
    }
}

/// The statement that reads one page of `listing` under each of `parents`: one lateral index scan
/// per parent, `first + 1` rows each.
pub fn child_page_sql<L: Listing>(listing: &L, parents: Vec<Uuid>) -> Sql {
    let sort = listing.sort();
    let mut sql = Sql::new("SELECT k.parent, x.* FROM unnest(");
    sql.bind(parents)
        .push("::uuid[]) AS k (parent) CROSS JOIN LATERAL (SELECT ");
    select_head::<L>(&mut sql, &sort);
    sql.push(listing.child_from());
    listing.filters(&mut sql);
    sql.keyset(&sort, listing.window()).push(") x");
    sql
}

/// One page of `listing` under `parent`, batched with the other parents of the same level.
pub async fn child_page<L: Listing>(
    ctx: &Context<'_>,
    parent: Uuid,
    listing: L,
) -> Result<Page<L::Item>>
where
    SqlLoader: Loader<Child<L>, Value = Page<L::Item>, Error = async_graphql::Error>,
{
    let page = loader(ctx)?.load_one(Child { parent, listing }).await?;
    Ok(page.unwrap_or(Page {
        rows: Vec::new(),
        has_next: false,
        has_previous: false,
    }))
}

/// The connection of `listing` under `parent`: its page batched with the other parents of the
/// level, and its count (batched too) when `totalCount` is asked for.
pub async fn child_connection<L: Listing>(
    ctx: &Context<'_>,
    parent: Uuid,
    listing: L,
) -> Result<Connection<L::Item>>
where
    SqlLoader: Loader<Child<L>, Value = Page<L::Item>, Error = async_graphql::Error>,
{
    let page = child_page(ctx, parent, listing.clone()).await?;
    Ok(Connection::new(
        page,
        ChildCounter(Child { parent, listing }),
    ))
}

/// Key: the number of rows of `listing` under `parent` (its `totalCount`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChildCount<L>(pub Child<L>);

impl<L: Listing> Loader<ChildCount<L>> for SqlLoader {
    type Value = i64;
    type Error = async_graphql::Error;

    async fn load(&self, keys: &[ChildCount<L>]) -> Result<HashMap<ChildCount<L>, i64>> {
        let session = self.session()?;
        let mut groups: HashMap<&L, Vec<Uuid>> = HashMap::new();
        for key in keys {
            groups.entry(&key.0.listing).or_default().push(key.0.parent);
        }
        let mut out = HashMap::new();
        for (listing, parents) in groups {
            let mut sql = Sql::new("SELECT k.parent, (SELECT count(*) ");
            sql.push(listing.child_from());
            listing.filters(&mut sql);
            sql.push(") FROM unnest(")
                .bind(parents)
                .push("::uuid[]) AS k (parent)");
            let rows = session
                .query(&sql.text, &sql.params())
                .await
                .map_err(db_error)?;
            for row in rows {
                out.insert(
                    ChildCount(Child {
                        parent: row.get(0),
                        listing: listing.clone(),
                    }),
                    row.get(1),
                );
            }
        }
        Ok(out)
    }
}

/// Counts a per-parent listing when `totalCount` is asked for, batched per level.
pub struct ChildCounter<L>(pub Child<L>);

impl<L: Listing> Counter for ChildCounter<L> {
    fn count<'a>(
        &'a self,
        ctx: &'a Context<'_>,
    ) -> Pin<Box<dyn Future<Output = Result<i64>> + Send + 'a>> {
        Box::pin(async move {
            Ok(loader(ctx)?
                .load_one(ChildCount(self.0.clone()))
                .await?
                .unwrap_or(0))
        })
    }
}
