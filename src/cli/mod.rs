//! The command line: one file per command, each returning an exit code.

mod actions;
mod plan;
mod schema;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{WardError, exit};
use crate::report::Style;

/// Runs declarative backup and restore playbooks.
#[derive(Debug, Parser)]
#[command(name = "ward", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check playbooks and report every problem with file:line:column.
    Validate(ValidateArgs),
    /// Show the DAG ward would run, after templating; nothing is executed.
    Plan(PlanArgs),
    /// Print the JSON Schema of the playbook format.
    Schema,
    /// List the built-in actions.
    Actions,
}

/// `--var name=value`, repeatable.
#[derive(Debug, clap::Args)]
struct VarArgs {
    /// Set a template variable, overriding `vars:` (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    vars: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    /// Playbook files.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    vars: VarArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    format: DiagnosticFormat,
    /// Print nothing for valid files.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DiagnosticFormat {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
struct PlanArgs {
    /// Playbook file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    vars: VarArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
    Dot,
    Mermaid,
}

/// Parses the command line, runs the command and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 for usage errors and 0 for --help/--version.
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Schema => schema::run(),
        Command::Actions => actions::run(),
    };
    match result {
        Ok(code) => code,
        Err(WardError::Invalid { .. }) => exit::USAGE,
        Err(e) => {
            // A closed pipe (e.g. `ward plan x | head`) is not worth a message.
            if let WardError::Output(io) = &e
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return exit::FAILED;
            }
            let style = Style::stderr();
            eprintln!("{}: {e}", style.error("error"));
            e.exit_code()
        }
    }
}
