//! `load_str` on arbitrary bytes (as UTF-8, lossily): it must never panic, and every
//! error it returns must be non-empty, sorted and located inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate_rules::{load_str, ConfigErrors, RequestFacts, Router};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Some variables are set, so `${A}` substitutes and `${B}` is "unset".
    let env = |name: &str| (name == "A").then(|| "a.example.com".to_owned());
    match load_str("fuzz.yaml", &text, &env) {
        Ok(config) => {
            // Whatever validates must also compile into a router that answers.
            let router = Router::new(&config);
            let facts = RequestFacts {
                host: "a.example.com",
                port: 443,
                scheme: tollgate_rules::Scheme::Https,
                path: "/",
                method: "GET",
                client: None,
                caller: None,
            };
            let _ = router.decide(&config, &facts);
        }
        Err(ConfigErrors(problems)) => {
            assert!(!problems.is_empty());
            // YAML also breaks lines at a lone `\r` (and libyaml at U+0085, U+2028, U+2029).
            let lines = 1 + text
                .chars()
                .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
                .count();
            for p in &problems {
                assert!(p.line >= 1 && p.column >= 1, "{p}");
                assert!(p.line <= lines + 1, "{p}: beyond the text's {lines} lines");
            }
            assert!(problems
                .windows(2)
                .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
        }
    }
});
