//! `tollgate completions SHELL` and `tollgate man`: generated from the clap definitions in
//! `cli.rs`, so they always match the binary.

use crate::cli::Cli;
use clap::CommandFactory;
use std::path::Path;

/// Print the completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> i32 {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "tollgate", &mut std::io::stdout());
    0
}

/// Print `tollgate.1` on stdout, or write `tollgate.1` and `tollgate-COMMAND.1` for each
/// command into `out_dir`.
pub fn man(out_dir: Option<&Path>) -> i32 {
    let cmd = Cli::command();
    let result = match out_dir {
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| clap_mangen::generate_to(cmd, dir))
            .map(|()| println!("wrote man pages to {}", dir.display())),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tollgate man: {e}");
            1
        }
    }
}
