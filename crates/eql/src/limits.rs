//! Per-event work bounds of the engine: Elasticsearch fails a request that would cost too much
//! (`indices.query.bool.max_clause_count`, Painless's loop limit) rather than run for minutes; these are
//! the engine's equivalents. An event over a bound is left out of the stage and counted, never a panic.

/// Most join keys one event may contribute to one sequence stage (the cartesian product of its
/// multi-valued key fields). 1,024 is the classic default of Elasticsearch's
/// `indices.query.bool.max_clause_count`; real events have a handful. An event over it takes no part in
/// the stage and is counted in the run summary with the reason.
pub const MAX_JOIN_KEY_COMBINATIONS: usize = 1024;

/// Most value combinations one predicate may try on one event: a script-style predicate over several
/// multi-valued fields (`not endswith(string(source.ip), string(host.ip))`) loops over the product of
/// their values. 1,000,000 is Painless's default loop limit (`max_loop_counter`). An event over it is left
/// out of the stage (neither matching nor, through a surrounding `not`, matching by accident) and counted.
pub const MAX_PREDICATE_COMBINATIONS: usize = 1_000_000;
