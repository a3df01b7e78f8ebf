//! Inference: exchanges in, a fixture set out — endpoint templates, schemas, profiles, noise,
//! sequence patterns, redaction. Pure functions over a stream: nothing here does I/O.
//!
//! Two passes over the recording: [`TemplateBuilder`] sees only `(method, target)` to cluster
//! paths into templates; [`Analyzer`] then sees whole exchanges one at a time and keeps
//! bounded per-template and per-session state, so memory does not grow with the recording.
//!
//! Files, one job each (imports between them point down this list, never back up):
//! - `analyzer`: the second pass and the fixture set built from it; uses all below.
//! - `endpoint`: what is kept per template and how it becomes one endpoint's fixture.
//! - `noise`: which request parts vary by construction (cache busters, timestamps).
//! - `openapi`: the OpenAPI document of the HTTP endpoints.
//! - `schema`: JSON body shapes merged over samples.
//! - `sequence`: session patterns (ordering, transitions, value flows, retries).
//! - `redact`: secrets out of everything written.
//! - `template`: the first pass, path clustering.
//!
//! Imports: `model`, `vocab`, `store` (the fixture file types and pattern rows).

mod analyzer;
mod endpoint;
mod noise;
mod openapi;
mod redact;
mod schema;
mod sequence;
pub mod template;
pub use analyzer::{Analyzer, InferConfig, InferError, Inferred};
pub use template::{path_of, TemplateBuilder, Templates};

#[cfg(test)]
mod tests;
