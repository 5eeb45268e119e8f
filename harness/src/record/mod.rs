//! The run record: what a run directory holds, typed both ways. Everything
//! that writes or reads a run's configuration, results or fault catalogue
//! goes through here, so a new field is stated once. This module is a leaf:
//! it imports nothing else of the harness.

pub mod config;
pub mod fault;
pub mod quote;
pub mod redact;
pub mod template_options;

pub use config::{EnvironmentRecord, RecordedApp, RecordedBackend, RecordedConfig, ReproFiles, Versions};
pub use fault::{Fault, FaultFamily};
pub use quote::{quote, quote_line};
pub use redact::redact;
pub use template_options::TemplateOptions;
