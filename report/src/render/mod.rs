//! The rendering layer: how dualcheck shows what it found, in one place.
//!
//! - [`table`]: one [`Table`] type rendered as aligned text, Markdown and
//!   HTML, for every table dualcheck prints or shows (sweep, compare, merge,
//!   zoo, bench, the report's and serve's);
//! - [`page`]: the one HTML shell (title, shared style, body) of every page;
//! - [`phrases`]: the words the terminal summary and the report both say a
//!   check's facts in.
//!
//! It depends on results, never on the runner or the commands, so anything
//! that shows something can use it without an import circle.

pub mod page;
pub mod phrases;
pub mod table;

pub use table::{Align, Cell, Column, Row, Table};
