//! The `fedssl` program's library: the `simulate` job (server + clients on loopback) with its
//! human-readable report, and the benchmarks. The command line lives in `main.rs`.

pub mod bench;
pub mod simulate;
