//! End-to-end tests: the real `mf` binary against real peers over 127.0.0.1.

mod cli;
mod common;
mod http1;
mod pcap;
