//! Syntax: EQL text → [`ast::Query`], as Elasticsearch's `EqlParser` accepts it. Errors carry the
//! position of the offending character; nothing here knows about fields or their types.

pub mod ast;
pub mod error;
pub mod lexer;
pub mod parser;
