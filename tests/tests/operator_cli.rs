//! The operator's helpers, through the real binary: `tollgate version`, `completions`
//! (sourced into a real bash and asked to complete), `man` (rendered by groff) and
//! `probe` (against a running tollgate's admin listener).

use tollgate_tests::process::{command, run_to_end, CmdOutput};
use tollgate_tests::{tempdir, Tollgate};

fn tollgate(args: &[&str]) -> CmdOutput {
    let mut cmd = command();
    cmd.args(args);
    run_to_end(cmd)
}

#[test]
fn version_names_the_build() {
    let version = tollgate(&["version"]);
    version.assert_code(0);
    let text = &version.stdout;
    assert!(
        text.starts_with(&format!("tollgate {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    for key in ["commit:", "rustc:", "pingora:", "target:", "profile:"] {
        assert!(text.contains(key), "no {key} in:\n{text}");
    }
    assert!(text.contains("rustc 1."), "{text}");
    assert!(text.contains("pingora: 0.9"), "{text}");

    let out = tollgate(&["version", "--format", "json"]);
    out.assert_code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // Built from this git checkout: the commit is the short hash of a real commit.
    let commit = v["commit"].as_str().expect("commit");
    let git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", commit])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    assert!(
        git.status.success(),
        "commit {commit:?} is not in this repository"
    );

    // `--version` says the same.
    let long = tollgate(&["--version"]);
    long.assert_code(0);
    assert_eq!(&long.stdout, text);
}

/// Ask bash's programmable completion what it offers after `words` (a trailing space
/// completes a new, empty word).
fn complete(script: &std::path::Path, words: &str) -> Vec<String> {
    let line = format!("tollgate {words}");
    let n = line.split(' ').count() - 1;
    let probe = format!(
        "source {script}\nCOMP_LINE='{line}'\nCOMP_WORDS=({line})\nCOMP_CWORD={n}\n\
         _tollgate tollgate \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &probe])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn bash_completion_completes_commands_and_options() {
    let out = tollgate(&["completions", "bash"]);
    out.assert_code(0);
    let dir = tempdir();
    let script = dir.path().join("tollgate.bash");
    std::fs::write(&script, &out.stdout).expect("write");
    let commands = complete(&script, "c");
    for want in ["check", "completions"] {
        assert!(commands.contains(&want.to_owned()), "{commands:?}");
    }
    assert!(!commands.contains(&"run".to_owned()), "{commands:?}");
    let options = complete(&script, "check --f");
    assert_eq!(options, ["--format"], "{options:?}");
    let values = complete(&script, "check --format ");
    assert!(values.contains(&"json".to_owned()), "{values:?}");
    let shells = complete(&script, "completions z");
    assert_eq!(shells, ["zsh"], "{shells:?}");
    // The other shells' scripts are generated too.
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = tollgate(&["completions", shell]);
        out.assert_code(0);
        assert!(out.stdout.contains("tollgate"), "{shell}: {}", out.stdout);
    }
    tollgate(&["completions", "tcsh"]).assert_code(2);
}

#[test]
fn man_pages_render_without_warnings() {
    let out = tollgate(&["man"]);
    out.assert_code(0);
    assert!(
        out.stdout.starts_with(".ie"),
        "{}",
        &out.stdout[..80.min(out.stdout.len())]
    );
    let dir = tempdir();
    let out = tollgate(&["man", "--out-dir", &dir.path().display().to_string()]);
    out.assert_code(0);
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "tollgate.1",
        "tollgate-check.1",
        "tollgate-run.1",
        "tollgate-route.1",
        "tollgate-probe.1",
    ] {
        assert!(pages.contains(&want.to_owned()), "{pages:?}");
    }
    for page in &pages {
        let path = dir.path().join(page);
        let out = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww"])
            .arg(&path)
            .output()
            .expect("groff");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("tollgate"), "{page}");
    }
    let check = std::fs::read_to_string(dir.path().join("tollgate-check.1")).expect("read");
    assert!(check.contains("format"), "{check}");
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_reports_the_admin_listener() {
    let tg = Tollgate::start("routes: []\n").await;
    let admin = tg.admin;
    let probe = |url: String| tokio::task::spawn_blocking(move || tollgate(&["probe", &url]));
    let ready = probe(format!("http://{admin}/readyz"))
        .await
        .expect("probe");
    ready.assert_code(0);
    assert!(ready.stdout.contains("200 ready"), "{}", ready.stdout);
    let missing = probe(format!("http://{admin}/nope")).await.expect("probe");
    missing.assert_code(1);
    assert!(missing.stdout.contains("404"), "{}", missing.stdout);
    // Nothing listening: a clear error, exit 1.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let down = probe(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .expect("probe");
    down.assert_code(1);
    assert!(down.stderr.contains("cannot connect"), "{}", down.stderr);
    // Not a plain-HTTP URL: a usage error.
    let tls = probe(format!("https://{admin}/readyz"))
        .await
        .expect("probe");
    tls.assert_code(2);
    // Something that does not speak HTTP.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if let Ok((mut s, _)) = silent.accept().await {
            // Read the request first: closing with unread data would reset the
            // connection and lose the answer.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"SSH-2.0-nope\r\n").await;
            let _ = s.shutdown().await;
        }
    });
    let garbage = probe(format!("http://{addr}/")).await.expect("probe");
    garbage.assert_code(1);
    assert!(
        garbage.stderr.contains("not an HTTP answer"),
        "{}",
        garbage.stderr
    );
    server.abort();
}
