//! `credvault completions SHELL` and `credvault man [DIR]`: generated from the clap definitions,
//! so they cannot drift from the commands. Neither talks to a server.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::Cli;

/// Print the completion script for `shell` on standard output.
pub fn completions(shell: Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout());
    Ok(())
}

/// Write one man page per command and subcommand into `dir`, or print the top page.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let cmd = Cli::command();
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            clap_mangen::generate_to(cmd, d)
                .with_context(|| format!("writing man pages to {}", d.display()))?;
            eprintln!("man pages written to {}", d.display());
        }
        None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?,
    }
    Ok(())
}
