#!/usr/bin/env bash
# The soak (issue 11): builds release tollgate and the harness, then runs
# `tollgate-bench soak` (10 minutes by default) on 127.0.0.1 and prints its samples and
# verdict. Long-running: not part of scripts/test. Extra arguments go to the soak, e.g.
#   benches/soak.sh --duration 2m --keep-dir
# `tollgate-bench soak --help` lists them. Exits non-zero on growth, an unexplained
# failure or a proxy that died.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p tollgate -p tollgate-benches --bin tollgate --bin tollgate-bench
exec ./target/release/tollgate-bench soak "$@"
