//! `tollgate demo --once`: the zero-setup tour runs every step against its own token
//! endpoint, upstream and proxy, and reports what each side saw.

use tollgate_tests::process::{command, run_to_end};

#[test]
fn demo_once_passes_every_step_and_prints_the_curl_line() {
    let mut cmd = command();
    cmd.arg("demo").arg("--once").env_remove("RUST_LOG");
    let out = run_to_end(cmd);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "{text}");
    for step in ["pass", "inject", "cache hit", "401 replay", "denied"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("ok") && l.contains(step))
            .unwrap_or_else(|| panic!("no ok line for {step:?}:\n{text}"));
        assert!(!line.contains("FAIL"), "{line}");
    }
    assert!(
        out.stdout.contains("upstream answered [401, 200]"),
        "the replay step must show the upstream's 401 then 200:\n{text}"
    );
    assert!(out.stdout.contains("curl -x http://127.0.0.1:"), "{text}");
    // The tour runs its proxy at RUST_LOG=warn: pingora's start-up chatter stays out of it.
    assert!(
        !out.stderr.contains("Bootstrap starting"),
        "pingora's info logs in the tour:\n{text}"
    );
    assert!(
        !text.contains("demo-secret"),
        "the demo's client secret leaked:\n{text}"
    );
}
