//! Sans-IO protocol decoders: bytes in, events out.
//!
//! Nothing here opens a socket, reads a clock or spawns a task, so the recording proxy, the
//! replay server, the pcap importer, the fuzzers and the benchmarks all drive the same code.
//!
//! Imports: `model` only.

pub mod grpc;
pub(crate) mod grpc_message;
pub mod h1;
pub mod h1_encode;
pub mod h2;
pub mod tcp;
pub mod tls;
pub mod ws;
pub(crate) mod ws_deflate;
