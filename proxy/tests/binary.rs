//! The binary starts and knows its name. Being an integration test of this package, it
//! also makes `cargo test --workspace` build `target/debug/tollgate`, the binary the
//! black-box tests in `tests/` run (in the same build, with the same features).

#[test]
fn the_binary_prints_its_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--version")
        .output()
        .expect("run tollgate --version");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("tollgate "), "{text}");
}
