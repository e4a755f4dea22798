//! `veil completion bash|zsh|fish`: print a shell completion script.

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::{CliResult, GlobalArgs};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ShellName {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to complete in
    pub shell: ShellName,
}

pub fn run(args: CompletionArgs, _global: &GlobalArgs, invoked_as_sops: bool) -> CliResult {
    let shell = match args.shell {
        ShellName::Bash => Shell::Bash,
        ShellName::Zsh => Shell::Zsh,
        ShellName::Fish => Shell::Fish,
    };
    let name = if invoked_as_sops { "sops" } else { "veil" };
    let mut command = super::Cli::command();
    clap_complete::generate(shell, &mut command, name, &mut std::io::stdout());
    Ok(())
}
