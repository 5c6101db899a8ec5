//! Limits on what one GraphQL request may ask for, and the checks that run before a request
//! gets a tenant session, so that a hostile request costs no database work.
//!
//! async-graphql enforces depth, complexity, recursion depth and directives per field
//! ([`super::build_schema`] configures them). Two things it does not bound are checked here
//! first, on the parsed document ([`check_document`]): fragments that spread other fragments
//! several times (a "fragment bomb": 30 short lines that expand to a billion fields, which
//! async-graphql's own recursion check would walk one by one), and fragment cycles. Then
//! [`validate`] runs async-graphql's parsing and validation, with every limit, without
//! executing anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, Positioned, ServerError, Variables};
use clap::builder::RangedU64ValueParser;
use clap::Args;

use super::{error, AppSchema, ErrorCode};

/// What one GraphQL request may ask for. Read once at start-up; the schema holds a copy as
/// schema data, so resolvers read it with `ctx.data_unchecked::<Limits>()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Args)]
pub struct Limits {
    /// Deepest nesting of fields in a query (the root fields are depth 1).
    #[arg(long = "graphql-max-depth", env = "GRAPHQL_MAX_DEPTH", default_value_t = 15,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_depth: usize,

    /// Highest complexity of a query: each field counts 1 plus its children; list fields
    /// multiply their children by the page size asked for. Also caps the number of fields
    /// of the whole document once its fragments are expanded.
    #[arg(long = "graphql-max-complexity", env = "GRAPHQL_MAX_COMPLEXITY",
          default_value_t = 10_000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_complexity: usize,

    /// Deepest nesting of selection sets, fragment spreads and inline fragments together
    /// (at most 256: checks of this depth recurse).
    #[arg(long = "graphql-max-recursive-depth", env = "GRAPHQL_MAX_RECURSIVE_DEPTH",
          default_value_t = 32, value_parser = RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub max_recursive_depth: usize,

    /// Most directives on one field.
    #[arg(long = "graphql-max-directives", env = "GRAPHQL_MAX_DIRECTIVES", default_value_t = 5,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_directives: usize,

    /// Largest request body, in bytes (larger ones get HTTP 413, with or without a
    /// Content-Length).
    #[arg(long = "graphql-max-body-bytes", env = "GRAPHQL_MAX_BODY_BYTES",
          default_value_t = 1024 * 1024, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_body_bytes: usize,

    /// Largest page a connection returns: `first` and `last` are clamped to it, and it is the
    /// page size when neither is given.
    #[arg(long = "graphql-max-page-size", env = "GRAPHQL_MAX_PAGE_SIZE", default_value_t = 100,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_page_size: usize,

    /// Most subscriptions running at once on one WebSocket connection (more are refused with
    /// LIMIT_EXCEEDED until one ends).
    #[arg(long = "graphql-max-subscriptions", env = "GRAPHQL_MAX_SUBSCRIPTIONS",
          default_value_t = 32, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_subscriptions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 15,
            max_complexity: 10_000,
            max_recursive_depth: 32,
            max_directives: 5,
            max_body_bytes: 1024 * 1024,
            max_page_size: 100,
            max_subscriptions: 32,
        }
    }
}

impl Limits {
    /// The page size for a connection asked for `requested` items (`first` or `last`):
    /// at most [`Limits::max_page_size`], and that when nothing was asked.
    pub fn page_size(&self, requested: Option<usize>) -> usize {
        requested
            .unwrap_or(self.max_page_size)
            .min(self.max_page_size)
    }
}

/// Schema data marking a schema built without introspection.
pub(crate) struct IntrospectionOff;

/// Whether `message`, from an error async-graphql raised itself, reports one of its limits.
pub(crate) fn is_limit_message(message: &str) -> bool {
    message == "Query is too complex."
        || message == "Query is nested too deep."
        // The parser's own bound on nested selection sets.
        || message == "recursion limit exceeded."
        || message.starts_with("The recursion depth of the query cannot be greater than")
        || message.starts_with("The number of directives on the field")
}

/// What a walk learns about a selection set: the fields it expands to, and how many nested
/// selection sets (fields with selections, inline fragments, fragment spreads) lie below it.
#[derive(Clone, Copy, Default)]
struct Shape {
    fields: usize,
    height: usize,
}

/// Checks a parsed document, in time proportional to its size, before async-graphql walks it:
/// the fields of all its operations once fragments are expanded (at most the complexity
/// limit), the recursion depth, fragment cycles, and introspection when it is off.
pub(crate) fn check_document(
    doc: &ExecutableDocument,
    limits: &Limits,
    introspection: bool,
) -> Result<(), ServerError> {
    let mut walk = Walk {
        doc,
        limits,
        introspection,
        fields: 0,
        fragments: HashMap::new(),
        visiting: HashSet::new(),
    };
    for (_, operation) in doc.operations.iter() {
        walk.selection_set(&operation.node.selection_set, 0)?;
    }
    Ok(())
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    limits: &'a Limits,
    introspection: bool,
    /// Fields counted so far, over the whole document.
    fields: usize,
    /// Fragments already walked (each is walked once).
    fragments: HashMap<&'a str, Shape>,
    /// Fragments being walked (a spread of one of them is a cycle).
    visiting: HashSet<&'a str>,
}

impl<'a> Walk<'a> {
    /// Walks `set`, found at recursion depth `depth` (0 for an operation's selection set,
    /// counted the way async-graphql counts it).
    fn selection_set(
        &mut self,
        set: &'a Positioned<SelectionSet>,
        depth: usize,
    ) -> Result<Shape, ServerError> {
        if depth > self.limits.max_recursive_depth {
            return Err(self.too_deep(set.pos));
        }
        let mut shape = Shape::default();
        for item in &set.node.items {
            let (own, below) = match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    if !self.introspection && (name == "__schema" || name == "__type") {
                        return Err(error(
                            ErrorCode::BadUserInput,
                            "introspection is disabled on this server",
                        )
                        .into_server_error(field.pos));
                    }
                    // async-graphql answers `__typename` whatever follows it.
                    if name == "__typename"
                        && !(field.node.arguments.is_empty()
                            && field.node.selection_set.node.items.is_empty())
                    {
                        return Err(error(
                            ErrorCode::BadUserInput,
                            "__typename takes no arguments and has no fields",
                        )
                        .into_server_error(field.pos));
                    }
                    self.count_fields(1, field.pos)?;
                    let below = if field.node.selection_set.node.items.is_empty() {
                        None
                    } else {
                        Some(self.selection_set(&field.node.selection_set, depth + 1)?)
                    };
                    (1, below)
                }
                Selection::InlineFragment(inline) => (
                    0,
                    Some(self.selection_set(&inline.node.selection_set, depth + 1)?),
                ),
                Selection::FragmentSpread(spread) => {
                    let name = spread.node.fragment_name.node.as_str();
                    let inner = self.fragment(name, depth + 1, spread.pos)?;
                    self.count_fields(inner.fields, spread.pos)?;
                    (0, Some(inner))
                }
            };
            shape.fields = shape.fields.saturating_add(own);
            if let Some(below) = below {
                shape.fields = shape.fields.saturating_add(below.fields);
                shape.height = shape.height.max(below.height + 1);
            }
        }
        Ok(shape)
    }

    /// The shape of the fragment `name`, spread at recursion depth `depth`. Its own fields
    /// are counted by the caller, once per spread.
    fn fragment(&mut self, name: &'a str, depth: usize, pos: Pos) -> Result<Shape, ServerError> {
        if let Some(shape) = self.fragments.get(name) {
            if depth + shape.height > self.limits.max_recursive_depth {
                return Err(self.too_deep(pos));
            }
            return Ok(*shape);
        }
        // An unknown fragment: validation reports it.
        let Some(fragment) = self.doc.fragments.get(name) else {
            return Ok(Shape::default());
        };
        if !self.visiting.insert(name) {
            return Err(error(
                ErrorCode::BadUserInput,
                format!("Cannot spread fragment \"{name}\" within itself"),
            )
            .into_server_error(pos));
        }
        // Its fields are counted where it is spread, not while walking it.
        let counted = self.fields;
        let shape = self.selection_set(&fragment.node.selection_set, depth)?;
        self.fields = counted;
        self.visiting.remove(name);
        self.fragments.insert(name, shape);
        Ok(shape)
    }

    fn count_fields(&mut self, n: usize, pos: Pos) -> Result<(), ServerError> {
        self.fields = self.fields.saturating_add(n);
        if self.fields > self.limits.max_complexity {
            return Err(
                error(ErrorCode::LimitExceeded, "Query is too complex.").into_server_error(pos)
            );
        }
        Ok(())
    }

    fn too_deep(&self, pos: Pos) -> ServerError {
        error(
            ErrorCode::LimitExceeded,
            format!(
                "The recursion depth of the query cannot be greater than `{}`",
                self.limits.max_recursive_depth
            ),
        )
        .into_server_error(pos)
    }
}

/// Documents that parsed and passed [`check_document`], by their text. Applications send the
/// same few documents over and over with different variables; a repeated document skips
/// parsing and the shape checks, which both depend on the text alone (the limits and whether
/// introspection is served are fixed with the schema that holds this cache). Validation, which
/// depends on the variables, still runs for every request.
///
/// Bounded: at most [`DocumentCache::MAX_DOCUMENTS`] documents of at most
/// [`DocumentCache::MAX_TEXT_BYTES`] each; when full it starts again empty, so a client sending
/// ever new documents costs a parse each, as without the cache, and never memory.
#[derive(Default)]
pub(crate) struct DocumentCache {
    documents: std::sync::Mutex<HashMap<String, Arc<ExecutableDocument>>>,
}

impl DocumentCache {
    /// How many documents are kept.
    pub(crate) const MAX_DOCUMENTS: usize = 256;
    /// Longer documents are not kept.
    pub(crate) const MAX_TEXT_BYTES: usize = 16 * 1024;

    /// The checked document of `text`, if it was seen.
    pub(crate) fn get(&self, text: &str) -> Option<ExecutableDocument> {
        // The lock is held only to take a reference; the copy is made outside it.
        let document = self.lock().get(text).cloned()?;
        Some(ExecutableDocument::clone(&document))
    }

    /// Keeps the checked document of `text`.
    pub(crate) fn insert(&self, text: &str, document: &ExecutableDocument) {
        if text.len() > Self::MAX_TEXT_BYTES {
            return;
        }
        let mut documents = self.lock();
        if documents.len() >= Self::MAX_DOCUMENTS {
            documents.clear();
        }
        documents.insert(text.to_owned(), Arc::new(document.clone()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ExecutableDocument>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Request data marking a request to be parsed and validated but not executed.
struct ValidateOnly;

/// The schema extension that stops a [`ValidateOnly`] request after validation.
pub(crate) struct StopAfterValidation;

impl ExtensionFactory for StopAfterValidation {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StopAfterValidation)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for StopAfterValidation {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        if ctx.data_opt::<ValidateOnly>().is_some() {
            return async_graphql::Response::new(async_graphql::Value::Null);
        }
        next.run(ctx, operation_name).await
    }
}

/// Runs async-graphql's checks on a parsed document (recursion depth, directives, validation
/// with the depth and complexity limits, the choice of operation) without executing it.
pub(crate) async fn validate(
    schema: &AppSchema,
    doc: ExecutableDocument,
    variables: Variables,
    operation_name: Option<String>,
) -> Result<(), Vec<ServerError>> {
    // The document is already parsed; the query text is not needed again.
    let mut request = async_graphql::Request::new(String::new())
        .variables(variables)
        .data(ValidateOnly);
    request.operation_name = operation_name;
    request.set_parsed_query(doc);
    let response = schema.execute(request).await;
    if response.errors.is_empty() {
        Ok(())
    } else {
        Err(response.errors)
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;
    use clap::Parser;

    use super::*;

    fn check(query: &str, limits: &Limits) -> Result<(), String> {
        let doc = parse_query(query).expect("a valid document");
        check_document(&doc, limits, true).map_err(|e| e.message)
    }

    #[test]
    fn defaults_are_the_command_line_defaults() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            limits: Limits,
        }
        let parsed = Cli::try_parse_from(["research-graph"]).unwrap().limits;
        // Unless the environment running the tests sets some.
        if std::env::vars().all(|(k, _)| !k.starts_with("GRAPHQL_MAX_")) {
            assert_eq!(parsed, Limits::default());
        }
    }

    #[test]
    fn page_sizes_are_clamped() {
        let limits = Limits::default();
        assert_eq!(limits.page_size(None), 100);
        assert_eq!(limits.page_size(Some(10)), 10);
        assert_eq!(limits.page_size(Some(100_000)), 100);
    }

    #[test]
    fn fields_are_counted_with_fragments_expanded() {
        let limits = Limits {
            max_complexity: 6,
            ..Limits::default()
        };
        // 2 + 2 × 2 = 6 fields.
        let query = "{ a b ...F ...F } fragment F on Q { c { d } }";
        assert_eq!(check(query, &limits), Ok(()));
        let query = "{ a b ...F ...F x } fragment F on Q { c { d } }";
        assert_eq!(check(query, &limits), Err("Query is too complex.".into()));
    }

    #[test]
    fn a_fragment_spread_deeper_the_second_time_is_measured_again() {
        let limits = Limits {
            max_recursive_depth: 4,
            ..Limits::default()
        };
        // F's selection set is at depth 1, its inline fragment at 2.
        let shallow = "{ ...F } fragment F on Q { ... on Q { a } }";
        assert_eq!(check(shallow, &limits), Ok(()));
        // Spread again at depth 4: its inline fragment would be at 5.
        let deep = "{ ...F ... on Q { ... on Q { ... on Q { ...F } } } } \
                    fragment F on Q { ... on Q { a } }";
        assert!(check(deep, &limits)
            .unwrap_err()
            .contains("recursion depth"));
    }

    #[test]
    fn cycles_and_bombs_are_refused() {
        let limits = Limits::default();
        let cycle = "{ ...A } fragment A on Q { ...B } fragment B on Q { a ...A }";
        assert!(check(cycle, &limits).unwrap_err().contains("within itself"));
        let mut bomb = String::from("{ ...F0 }");
        for i in 0..60 {
            bomb.push_str(&format!(
                " fragment F{i} on Q {{ ...F{n} ...F{n} }}",
                n = i + 1
            ));
        }
        bomb.push_str(" fragment F60 on Q { a }");
        let limits = Limits {
            max_recursive_depth: 100,
            ..Limits::default()
        };
        assert_eq!(check(&bomb, &limits), Err("Query is too complex.".into()));
    }

    #[test]
    fn introspection_is_refused_when_off() {
        let doc =
            parse_query("{ a { __typename } ...F } fragment F on Q { __schema { b } }").unwrap();
        let err = check_document(&doc, &Limits::default(), false).unwrap_err();
        assert_eq!(err.message, "introspection is disabled on this server");
        assert!(check_document(&doc, &Limits::default(), true).is_ok());
    }

    #[test]
    fn typename_has_no_arguments_or_fields() {
        let limits = Limits::default();
        assert_eq!(check("{ __typename a { __typename } }", &limits), Ok(()));
        for query in [
            "{ __typename(x: 1) }",
            "{ a { __typename { b } } }",
            "{ ...F } fragment F on Q { __typename(if: true) }",
        ] {
            assert_eq!(
                check(query, &limits),
                Err("__typename takes no arguments and has no fields".into()),
                "{query}"
            );
        }
    }

    #[test]
    fn limit_messages_of_async_graphql_are_recognised() {
        assert!(is_limit_message("Query is nested too deep."));
        assert!(is_limit_message(
            "The number of directives on the field `a` cannot be greater than `5`"
        ));
        assert!(!is_limit_message("Unknown field \"a\" on type \"Query\"."));
    }

    #[test]
    fn the_document_cache_keeps_checked_documents_within_its_bounds() {
        let cache = DocumentCache::default();
        let doc = parse_query("{ a }").unwrap();
        assert!(cache.get("{ a }").is_none());
        cache.insert("{ a }", &doc);
        assert!(cache.get("{ a }").is_some());
        assert!(cache.get("{ b }").is_none());
        let long = format!("{{ a }}{}", " ".repeat(DocumentCache::MAX_TEXT_BYTES));
        cache.insert(&long, &doc);
        assert!(cache.get(&long).is_none(), "too long to keep");
        for i in 0..DocumentCache::MAX_DOCUMENTS + 1 {
            cache.insert(&format!("{{ a{i} }}"), &doc);
        }
        assert!(cache.lock().len() <= DocumentCache::MAX_DOCUMENTS);
    }
}
