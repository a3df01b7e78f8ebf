//! End-to-end tests: the real `mf` binary against real peers over 127.0.0.1.

mod alpn;
mod capture_parity;
mod cli;
mod common;
mod diff;
mod door;
mod faults;
mod fidelity;
mod grpc;
mod h2;
mod http1;
mod infer;
mod keylog;
mod lossy;
mod pcap;
mod pcap_synthetic;
mod pipeline;
mod replay_to;
mod streaming;
mod tls;
mod websocket;
