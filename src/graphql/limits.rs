//! Limits on what one GraphQL request may ask for.
//!
//! async-graphql enforces depth, complexity, recursion depth and directives per field
//! ([`super::build_schema`] configures them).

use clap::builder::RangedU64ValueParser;
use clap::Args;

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

/// Whether `message`, from an error async-graphql raised itself, reports one of its limits.
pub(crate) fn is_limit_message(message: &str) -> bool {
    message == "Query is too complex."
        || message == "Query is nested too deep."
        // The parser's own bound on nested selection sets.
        || message == "recursion limit exceeded."
        || message.starts_with("The recursion depth of the query cannot be greater than")
        || message.starts_with("The number of directives on the field")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

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
    fn limit_messages_of_async_graphql_are_recognised() {
        assert!(is_limit_message("Query is nested too deep."));
        assert!(is_limit_message(
            "The number of directives on the field `a` cannot be greater than `5`"
        ));
        assert!(!is_limit_message("Unknown field \"a\" on type \"Query\"."));
    }
}
