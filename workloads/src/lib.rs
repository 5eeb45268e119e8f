//! What happens in a dualcheck run: the business operations, the seeded
//! generator that produces them, and the fault schedule (proptest strategies
//! for both back this crate's tests).
//!
//! Everything here is a pure function of its configuration and seed: the same
//! seed gives the same operations on every worker and the same faults at the
//! same times, so a failing run can be replayed.

pub mod generator;
pub mod op;
pub mod schedule;
#[cfg(test)]
mod strategies;

pub use generator::{EventsPerOp, Skew, WorkerStream, Workload};
pub use op::{Op, OpEvent, WriteShape};
pub use schedule::{FaultPhase, FaultShape, Nest, Schedule, ScheduleConfig, ScheduleStep};
