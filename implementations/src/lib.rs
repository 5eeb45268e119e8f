//! How the dual write is done: the pattern contract every implementation
//! follows ([`contract`]), the built-in patterns and their [`REGISTRY`] (the
//! names the CLI accepts; [`patterns`]), and the runtime they share, including
//! the application process that serves a pattern over the black-box HTTP
//! contract ([`runtime`], [`serve`]).
//!
//! Each built-in implementation runs as its own OS process
//! (`dualcheck app --impl NAME`): the harness starts, SIGKILLs and restarts it,
//! so relay death and crash-after-commit are real process deaths.
//!
//! Adding a pattern: one module in [`patterns`] exporting
//! `pub const INFO: PatternInfo`, plus its line in [`REGISTRY`].

pub mod contract;
pub mod expect;
pub mod patterns;
pub mod runtime;

pub use contract::{
    op_of_prepared_gid, prepared_gid, AppContext, Background, Backlog, MultiEvent, Op, OpAnswer, Pattern, PatternInfo,
    RelayKind, Scaling,
};
pub use expect::{Control, Expect, Expectation, When};
pub use patterns::{lookup, REGISTRY};
pub use runtime::business::{ORDERS_COMMITTED_SQL, ORDERS_DDL};
pub use runtime::config::{AppConfig, Knob, KnobDefault, Role, KNOBS};
pub use runtime::server::serve;
