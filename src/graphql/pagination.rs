//! Relay cursor connections with keyset pagination (never OFFSET).
//!
//! A connection is ordered by one sort column plus the row id as a tie-breaker; the cursor of a
//! row holds the order's name, the sort value and the id, so the next page starts exactly after
//! it with `(column, id) > (value, id)`, which the tenant-prefixed index of that order serves
//! (`(tenant_id, column, id)`). `first`/`last` are clamped to the configured maximum.
//!
//! SQL text is assembled only from `&'static str` fragments chosen by enum values; every value
//! that comes from a client is a bind parameter ([`Sql::bind`]).

use std::future::Future;
use std::pin::Pin;

use async_graphql::{Object, OutputType, SimpleObject, TypeName};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{error, ErrorCode};

/// Page size when neither `first` nor `last` is given.
pub const DEFAULT_PAGE_SIZE: usize = 20;

/// Sorts and dedups a list filter (of enum values), so that equal filters make equal listings
/// and batch together in the loaders.
pub fn sorted<T: Ord + Copy>(values: Option<Vec<T>>) -> Option<Vec<T>> {
    values.map(|mut v| {
        v.sort();
        v.dedup();
        v
    })
}

/// Most characters of a text filter, as of a `search` query: a full-text query of a
/// megabyte's worth of words keeps a database connection busy until the statement timeout.
pub const MAX_FILTER_TEXT_CHARS: usize = 500;

/// A text filter: `None` when blank, refused when longer than [`MAX_FILTER_TEXT_CHARS`].
pub fn filter_text(text: Option<String>) -> Result<Option<String>, async_graphql::Error> {
    match text {
        Some(t) if t.chars().count() > MAX_FILTER_TEXT_CHARS => Err(error(
            ErrorCode::BadUserInput,
            format!("filter.text has at most {MAX_FILTER_TEXT_CHARS} characters"),
        )),
        Some(t) if t.trim().is_empty() => Ok(None),
        text => Ok(text),
    }
}

/// A keyset position: the order it belongs to, the sort value (as text, cast back in SQL) and
/// the row id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The order's name (a cursor of one order is refused by another).
    pub order: String,
    /// The sort column's value, as Postgres prints it.
    pub value: String,
    /// The row's id.
    pub id: Uuid,
}

impl Cursor {
    /// Encodes the cursor as an opaque string.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}\u{1f}{}\u{1f}{}",
            self.order, self.id, self.value
        ))
    }

    /// Decodes an opaque cursor string.
    pub fn decode(text: &str) -> Result<Cursor, async_graphql::Error> {
        let invalid = || error(ErrorCode::BadUserInput, "invalid cursor");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.splitn(3, '\u{1f}');
        let (Some(order), Some(id), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        Ok(Cursor {
            order: order.to_owned(),
            id: Uuid::parse_str(id).map_err(|_| invalid())?,
            value: value.to_owned(),
        })
    }
}

/// One way to order a listing: a sort column (with the SQL type to cast a cursor value back
/// to) and a direction; the id column breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sort {
    /// The name carried in cursors.
    pub name: &'static str,
    /// The qualified sort column, e.g. `p.created_at`.
    pub column: &'static str,
    /// The SQL type of the column, e.g. `timestamptz`.
    pub sql_type: &'static str,
    /// The qualified id column, e.g. `p.id`.
    pub id_column: &'static str,
    /// Descending order.
    pub desc: bool,
}

/// The page asked for, validated: how many rows, which way, between which cursors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// Rows to return.
    pub size: usize,
    /// Paginating backwards (`last`): scan in reverse, then flip.
    pub backward: bool,
    /// Rows strictly after this cursor.
    pub after: Option<Cursor>,
    /// Rows strictly before this cursor.
    pub before: Option<Cursor>,
}

impl Window {
    /// Validates Relay arguments; `max` clamps `first`/`last`.
    pub fn new(
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        max: usize,
    ) -> Result<Window, async_graphql::Error> {
        if first.is_some() && last.is_some() {
            return Err(error(
                ErrorCode::BadUserInput,
                "pass first or last, not both",
            ));
        }
        let count = |n: i32, name: &str| {
            if n < 0 {
                Err(error(
                    ErrorCode::BadUserInput,
                    format!("{name} must not be negative"),
                ))
            } else {
                Ok((n as usize).min(max))
            }
        };
        let (size, backward) = match (first, last) {
            (Some(n), _) => (count(n, "first")?, false),
            (_, Some(n)) => (count(n, "last")?, true),
            _ => (DEFAULT_PAGE_SIZE.min(max), false),
        };
        Ok(Window {
            size,
            backward,
            after: after.as_deref().map(Cursor::decode).transpose()?,
            before: before.as_deref().map(Cursor::decode).transpose()?,
        })
    }

    /// Checks that the cursors belong to `sort`.
    pub fn check(&self, sort: &Sort) -> Result<(), async_graphql::Error> {
        for cursor in [&self.after, &self.before].into_iter().flatten() {
            if cursor.order != sort.name {
                return Err(error(
                    ErrorCode::BadUserInput,
                    "cursor belongs to another order; restart pagination",
                ));
            }
        }
        Ok(())
    }
}

/// A SQL statement under construction: static fragments and bound parameters.
#[derive(Default)]
pub struct Sql {
    /// The statement text.
    pub text: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Sql {
    /// Starts with a static fragment.
    pub fn new(start: &'static str) -> Sql {
        Sql {
            text: start.to_owned(),
            params: Vec::new(),
        }
    }

    /// Appends a static fragment.
    pub fn push(&mut self, fragment: &'static str) -> &mut Sql {
        self.text.push_str(fragment);
        self
    }

    /// Binds a value and appends its placeholder (`$n`).
    pub fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> &mut Sql {
        self.params.push(Box::new(value));
        self.text.push_str(&format!("${}", self.params.len()));
        self
    }

    /// Binds a value as the next parameter without writing its placeholder, for statements whose
    /// static text already refers to it (e.g. `$1` used in several places).
    pub fn bind_only(&mut self, value: impl ToSql + Sync + Send + 'static) -> &mut Sql {
        self.params.push(Box::new(value));
        self
    }

    /// Binds a value and appends its placeholder cast to `sql_type` from text.
    fn bind_as(&mut self, value: String, sql_type: &'static str) -> &mut Sql {
        self.bind(value);
        self.text.push_str("::text::");
        self.text.push_str(sql_type);
        self
    }

    /// The parameters, as tokio-postgres takes them.
    pub fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect()
    }

    /// Appends ` AND (column, id) > (cursor)` (or `<`) for the window's bounds, then
    /// ` ORDER BY … LIMIT size + 1` in scan direction.
    pub fn keyset(&mut self, sort: &Sort, window: &Window) -> &mut Sql {
        for (cursor, after) in [(&window.after, true), (&window.before, false)] {
            let Some(cursor) = cursor else { continue };
            // "after" in an ascending order is ">", in a descending one "<"; "before" flips it.
            let greater = after != sort.desc;
            self.push(" AND (")
                .push(sort.column)
                .push(", ")
                .push(sort.id_column)
                .push(if greater { ") > (" } else { ") < (" });
            self.bind_as(cursor.value.clone(), sort.sql_type);
            self.push(", ").bind(cursor.id).push(")");
        }
        let descending = sort.desc != window.backward;
        let dir = if descending { " DESC" } else { " ASC" };
        self.push(" ORDER BY ")
            .push(sort.column)
            .push(dir)
            .push(", ")
            .push(sort.id_column)
            .push(dir)
            .push(" LIMIT ")
            .bind((window.size + 1) as i64);
        self
    }
}

/// Rows of one page, in display order, with whether more exist beyond each end.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The rows and their cursors.
    pub rows: Vec<(Cursor, T)>,
    /// More rows follow the last one.
    pub has_next: bool,
    /// More rows precede the first one.
    pub has_previous: bool,
}

impl<T> Page<T> {
    /// Turns `size + 1` rows fetched in scan direction into a page.
    pub fn from_scan(mut rows: Vec<(Cursor, T)>, window: &Window) -> Page<T> {
        let more = rows.len() > window.size;
        rows.truncate(window.size);
        if window.backward {
            rows.reverse();
            Page {
                rows,
                has_next: window.before.is_some(),
                has_previous: more,
            }
        } else {
            Page {
                rows,
                has_next: more,
                has_previous: window.after.is_some(),
            }
        }
    }
}

/// Pagination information, as Relay defines it.
#[derive(SimpleObject)]
#[graphql(name = "PageInfo")]
pub struct RelayPageInfo {
    /// More items follow.
    pub has_next_page: bool,
    /// More items precede.
    pub has_previous_page: bool,
    /// Cursor of the first item.
    pub start_cursor: Option<String>,
    /// Cursor of the last item.
    pub end_cursor: Option<String>,
}

/// Counts the items of a connection, only when `totalCount` is selected.
pub trait Counter: Send + Sync {
    /// The number of items matching the connection's filters (ignoring pagination).
    fn count<'a>(
        &'a self,
        ctx: &'a async_graphql::Context<'_>,
    ) -> Pin<Box<dyn Future<Output = async_graphql::Result<i64>> + Send + 'a>>;
}

/// A Relay connection of `T`. `totalCount` runs its query only when selected.
pub struct Connection<T> {
    page: Page<T>,
    counter: Box<dyn Counter>,
}

impl<T> Connection<T> {
    /// A connection over `page`, counted by `counter`.
    pub fn new(page: Page<T>, counter: impl Counter + 'static) -> Connection<T> {
        Connection {
            page,
            counter: Box::new(counter),
        }
    }
}

/// One item of a connection.
pub struct ConnectionEdge<T> {
    cursor: String,
    node: T,
}

#[Object(name_type)]
impl<T: OutputType + Clone> ConnectionEdge<T> {
    /// Where this item is, for `after`/`before`.
    async fn cursor(&self) -> &str {
        &self.cursor
    }

    /// The item.
    async fn node(&self) -> &T {
        &self.node
    }
}

impl<T: OutputType> TypeName for ConnectionEdge<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        format!("{}Edge", <T as OutputType>::type_name()).into()
    }
}

#[Object(name_type)]
impl<T: OutputType + Clone> Connection<T> {
    /// The items with their cursors.
    async fn edges(&self) -> Vec<ConnectionEdge<T>> {
        self.page
            .rows
            .iter()
            .map(|(c, n)| ConnectionEdge {
                cursor: c.encode(),
                node: n.clone(),
            })
            .collect()
    }

    /// The items alone.
    async fn nodes(&self) -> Vec<T> {
        self.page.rows.iter().map(|(_, n)| n.clone()).collect()
    }

    /// Where this page is.
    async fn page_info(&self) -> RelayPageInfo {
        RelayPageInfo {
            has_next_page: self.page.has_next,
            has_previous_page: self.page.has_previous,
            start_cursor: self.page.rows.first().map(|(c, _)| c.encode()),
            end_cursor: self.page.rows.last().map(|(c, _)| c.encode()),
        }
    }

    /// How many items match, over all pages (computed only when asked for).
    async fn total_count(&self, ctx: &async_graphql::Context<'_>) -> async_graphql::Result<i64> {
        self.counter.count(ctx).await
    }
}

impl<T: OutputType> TypeName for Connection<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        format!("{}Connection", <T as OutputType>::type_name()).into()
    }
}
