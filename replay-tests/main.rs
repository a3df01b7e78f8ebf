//! End-to-end tests: the real `mf` binary against real peers over 127.0.0.1.

mod cli;
mod common;
mod door;
mod faults;
mod grpc;
mod h2;
mod http1;
mod infer;
mod keylog;
mod lossy;
mod pcap;
mod pipeline;
mod tls;
mod websocket;
