use clap::{CommandFactory, Parser};
use std::process::ExitCode;

fn main() -> ExitCode {
    ai_sessions::cli::output::quiet_on_closed_output();
    // Answers shell completion requests (`COMPLETE=zsh ai-sessctl …`).
    clap_complete::CompleteEnv::with_factory(ai_sessions::cli::Cli::command).complete();
    let cli = match ai_sessions::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return ExitCode::from(ai_sessions::cli::usage_error(e)),
    };
    match ai_sessions::cli::dispatch(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = ai_sessions::cli::report(&e);
            ExitCode::from(code)
        }
    }
}
