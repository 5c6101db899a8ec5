//! Query files: the one operation a file holds, its name and the variables it declares.
//!
//! The driver sends a query exactly the variables it declares (`query Q($nodeId: ID!)` gets
//! `nodeId` and nothing else), so it reads the operation's variable definitions with a small
//! GraphQL lexer: enough to skip comments, strings, block strings and fragments, not a parser
//! of the whole language.

use anyhow::{bail, Context, Result};

/// The operation of a query file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The operation's name, sent as `operationName` when present.
    pub name: Option<String>,
    /// The declared variables, without `$`, in declaration order.
    pub variables: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token<'a> {
    Name(&'a str),
    Punct(char),
    /// A string, block string, number or `...`: nothing the driver needs to look into.
    Other,
}

fn tokens(text: &str) -> Result<Vec<Token<'_>>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'"' if text[i..].starts_with("\"\"\"") => {
                i += 3;
                loop {
                    if i >= bytes.len() {
                        bail!("unterminated block string");
                    }
                    if text[i..].starts_with("\\\"\"\"") {
                        i += 4;
                    } else if text[i..].starts_with("\"\"\"") {
                        i += 3;
                        break;
                    } else {
                        i += 1;
                    }
                }
                out.push(Token::Other);
            }
            b'"' => {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') | Some(b'\r') => bail!("unterminated string"),
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                out.push(Token::Other);
            }
            b'.' if text[i..].starts_with("...") => {
                i += 3;
                out.push(Token::Other);
            }
            b'!' | b'$' | b'&' | b'(' | b')' | b':' | b'=' | b'@' | b'[' | b']' | b'{' | b'|'
            | b'}' => {
                i += 1;
                out.push(Token::Punct(c as char));
            }
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                let start = i;
                while i < bytes.len() && (bytes[i] == b'_' || bytes[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                out.push(Token::Name(&text[start..i]));
            }
            b'-' | b'0'..=b'9' => {
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'0'..=b'9' | b'e' | b'E')
                {
                    i += 1;
                }
                out.push(Token::Other);
            }
            // A byte-order mark, or any other character: only whitespace may be skipped.
            _ if text[i..].starts_with('\u{feff}') => i += '\u{feff}'.len_utf8(),
            _ => bail!(
                "unexpected character {:?} at byte {i}",
                text[i..].chars().next().unwrap_or('?')
            ),
        }
    }
    Ok(out)
}

/// The index just past the group that opens at `open` (`(`, `[` or `{`), nesting included.
fn skip_group(tokens: &[Token<'_>], open: usize) -> Result<usize> {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('(' | '[' | '{') => depth += 1,
            Token::Punct(')' | ']' | '}') => {
                depth = depth
                    .checked_sub(1)
                    .context("unbalanced brackets in the query")?;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
    }
    bail!("unbalanced brackets in the query")
}

/// The index just past the selection set that follows `from` (skipping directives and their
/// arguments).
fn skip_to_selection_end(tokens: &[Token<'_>], mut i: usize) -> Result<usize> {
    while i < tokens.len() {
        match tokens[i] {
            Token::Punct('{') => return skip_group(tokens, i),
            Token::Punct('(' | '[') => i = skip_group(tokens, i)?,
            _ => i += 1,
        }
    }
    bail!("a definition without a selection set")
}

/// Reads the operations of a GraphQL document; fails unless there is exactly one.
pub fn operation(text: &str) -> Result<Operation> {
    let tokens = tokens(text)?;
    let mut operations = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match tokens[i] {
            Token::Punct('{') => {
                operations.push(Operation {
                    name: None,
                    variables: Vec::new(),
                });
                i = skip_group(&tokens, i)?;
            }
            Token::Name("query" | "mutation" | "subscription") => {
                i += 1;
                let mut name = None;
                if let Some(Token::Name(n)) = tokens.get(i) {
                    name = Some((*n).to_owned());
                    i += 1;
                }
                let mut variables = Vec::new();
                if let Some(Token::Punct('(')) = tokens.get(i) {
                    let end = skip_group(&tokens, i)?;
                    let mut depth = 0usize;
                    for j in i..end {
                        match tokens[j] {
                            Token::Punct('(' | '[' | '{') => depth += 1,
                            Token::Punct(')' | ']' | '}') => depth -= 1,
                            Token::Punct('$') if depth == 1 => {
                                if let (Some(Token::Name(v)), Some(Token::Punct(':'))) =
                                    (tokens.get(j + 1), tokens.get(j + 2))
                                {
                                    variables.push((*v).to_owned());
                                }
                            }
                            _ => {}
                        }
                    }
                    i = end;
                }
                i = skip_to_selection_end(&tokens, i)?;
                operations.push(Operation { name, variables });
            }
            Token::Name("fragment") => i = skip_to_selection_end(&tokens, i)?,
            other => bail!("unexpected {other:?} at the top level of the query"),
        }
    }
    match operations.len() {
        1 => Ok(operations.pop().expect("one operation")),
        0 => bail!("no operation in the query"),
        n => bail!("{n} operations in the query; a query file holds exactly one"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<String> {
        operation(text).unwrap().variables
    }

    #[test]
    fn reads_the_declared_variables_in_order() {
        let op =
            operation("query Q2($hubId: ID!, $first: Int = 10) { graphNode(id: $hubId) { id } }")
                .unwrap();
        assert_eq!(op.name.as_deref(), Some("Q2"));
        assert_eq!(op.variables, ["hubId", "first"]);
    }

    #[test]
    fn an_anonymous_query_declares_nothing() {
        let op = operation("{ papers(first: 20) { totalCount } }").unwrap();
        assert_eq!(op.name, None);
        assert!(op.variables.is_empty());
        assert!(vars("query { viewer { userId } }").is_empty());
        assert!(vars("query Named { viewer { userId } }").is_empty());
    }

    #[test]
    fn uses_in_the_selection_are_not_declarations() {
        assert_eq!(
            vars("query Q($a: ID!) { x(id: $a, other: $b) { y(z: $c) } }"),
            ["a"]
        );
    }

    #[test]
    fn skips_comments_strings_defaults_and_directives() {
        let text = r#"
            # query Fake($nope: ID) { x }
            query Q(
              $from: NaiveDate! # $commented: Int
              $kinds: [SearchKind!] = [PAPER, NODE]
              $filter: Filter = { name: "$notAVar: x", nested: { list: [1, -2.5e3] } }
              $note: String = """a block $fake: Int with ) and { and \""" inside"""
              $to: NaiveDate! @deprecated(reason: "$no \" ) ")
            ) @live {
              ...F
              usage { stats(from: $from, to: $to) { model } }
            }
            fragment F on Query { viewer { userId } }
        "#;
        assert_eq!(vars(text), ["from", "kinds", "filter", "note", "to"]);
    }

    #[test]
    fn a_file_holds_exactly_one_operation() {
        assert!(operation("").is_err());
        assert!(operation("# only a comment").is_err());
        assert!(operation("fragment F on Query { viewer { userId } }").is_err());
        assert!(operation("query A { a } query B { b }").is_err());
        assert!(operation("{ a } { b }").is_err());
    }

    #[test]
    fn rejects_broken_text() {
        assert!(operation("query Q($a: ID!) { x(id: $a) ").is_err());
        assert!(operation("query Q { x(s: \"open) }").is_err());
        assert!(operation("query Q { x } }").is_err());
        assert!(operation("query Q { x % }").is_err());
    }
}
