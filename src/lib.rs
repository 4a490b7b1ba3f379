//! The `fedssl` program's library: the `simulate` job (server + clients on loopback) and the
//! human-readable report. The command line lives in `main.rs`.

pub mod simulate;
