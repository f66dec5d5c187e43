//! tollgate-benches: the load harness behind `tollgate-bench` (the criterion micro
//! benches are in `benches/`, see `benches/README.md`).
//!
//! Start reading at [`harness::run`] (`tollgate-bench run`): it starts the processes
//! ([`peers`], [`procs`]) and the built-in servers ([`servers`]), drives each target
//! with the load generator ([`gen`], which opens its connections with [`tunnel`]) and
//! wrk ([`wrk`]), and reports medians and ratios ([`report`]); [`callers`] makes the
//! credentials of the callers rows; [`scenarios`] holds the cold-cache storm, the 401
//! storm and the idle connections; [`target`] is `tollgate-bench target` against any
//! running proxy; [`soak`] is `tollgate-bench soak`, the long mixed-traffic run with
//! injected faults.

pub mod callers;
pub mod gen;
pub mod harness;
pub mod paired;
pub mod peers;
pub mod probe;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod soak;
pub mod store_bench;
pub mod target;
pub mod tunnel;
pub mod wrk;
