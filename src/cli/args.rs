//! The command-line surface (DESIGN.md "CLI"), declared with clap derive.

use crate::core::types::{InstanceId, Mode, Port, Status};
use crate::state::config::{EgressPolicy, RuntimeChoice};
use crate::state::events::Level;
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ai-sessctl",
    version,
    about = "Run AI coding agents in isolated per-project instances",
    long_about = "Run AI coding agents (claude, gemini, …) in isolated per-project instances.\n\
                  State lives in $AI_SESSIONS_HOME (default ~/.ai-sessions).",
    after_help = "Examples:\n  ai-sessctl run claude            attach to (or start) this project's claude\n  ai-sessctl list                  what runs\n  ai-sessctl stop api-claude       stop one instance\n  eval \"$(ai-sessctl init zsh)\"    shell integration",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

fn id_candidates() -> Vec<CompletionCandidate> {
    crate::service::completion::ids()
        .into_iter()
        .map(|(id, help)| CompletionCandidate::new(id).help(Some(help.into())))
        .collect()
}

/// `config get|set [--global] [ID] KEY [VALUE]`: the words are one
/// positional list, so which one is being completed is read from the
/// command line the shell passed (`ai-sessctl -- ai-sessctl config get …`):
/// the id first (unless --global), then config keys, then nothing.
fn config_word_candidates() -> Vec<CompletionCandidate> {
    let args: Vec<String> = std::env::args().collect();
    let Some(sub) = args
        .iter()
        .rposition(|a| a == "get" || a == "set")
        .filter(|&i| i > 0 && args[i - 1] == "config")
    else {
        return id_candidates();
    };
    // Words before the one under the cursor (the last argument).
    let before = &args[sub + 1..args.len().saturating_sub(1)];
    let global = before.iter().any(|a| a == "--global");
    let positionals = before.iter().filter(|a| !a.starts_with('-')).count();
    let key_at = if global { 0 } else { 1 };
    if positionals < key_at {
        id_candidates()
    } else if positionals == key_at {
        crate::service::completion::config_keys()
            .into_iter()
            .map(CompletionCandidate::new)
            .collect()
    } else {
        Vec::new()
    }
}

fn worktree_candidates() -> Vec<CompletionCandidate> {
    crate::service::completion::worktrees()
        .into_iter()
        .map(|(name, branch)| CompletionCandidate::new(name).help(branch.map(Into::into)))
        .collect()
}

fn agent_candidates() -> Vec<CompletionCandidate> {
    crate::service::completion::agents()
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

// `run`: attach to this project's agent, starting it first if needed.
// Its options are read among the words before the agent's: the agent
// functions (`claude ARGS`) hand their words to `run` as they are, so this
// one definition is the list of options `claude` takes (see `run::RULE`).
#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(add = ArgValueCandidates::new(agent_candidates))]
    pub mode: Mode,
    /// The interactive shell that owns a started instance (what the agent
    /// functions pass: the words after `--` are then those typed after the
    /// agent's name, read by the same rule)
    #[arg(long, value_name = "PID")]
    pub shell_pid: Option<u32>,
    /// Run time: auto, docker or host
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeChoice>,
    /// Egress policy for a started instance: open, allowlist or none
    #[arg(long, value_enum)]
    pub egress: Option<EgressPolicy>,
    /// Run in the git worktree NAME (.claude/worktrees/NAME on branch
    /// worktree-NAME, or the branch NAME); without NAME, a new one with a
    /// made-up name
    #[arg(long, short = 'w', value_name = "NAME", num_args = 0..=1, add = ArgValueCandidates::new(worktree_candidates))]
    pub worktree: Option<Option<String>>,
    /// Send the project's repository (its history and its uncommitted
    /// state, as a commit on branch ai/ID) into a volume of the engine and
    /// run there, nothing of the host mounted; `ai-sessctl fetch ID`
    /// brings the work back (default: `project.mode`; always with an
    /// engine on another machine)
    #[arg(long, conflicts_with_all = ["mount", "worktree"])]
    pub clone: bool,
    /// Mount the project directory (what `project.mode = "mount"` does);
    /// only with a local engine
    #[arg(long)]
    pub mount: bool,
    /// Use this id for a started instance instead of the derived one (and
    /// attach to it when it runs)
    #[arg(long)]
    pub id: Option<InstanceId>,
    /// Port for a started instance
    #[arg(long)]
    pub port: Option<Port>,
    /// Start without attaching: print the id and return
    #[arg(long)]
    pub detach: bool,
    /// The project is the directory you are in, as it is (not the
    /// repository above it; a directory holding several is mounted whole)
    #[arg(long)]
    pub here: bool,
    /// The agent's arguments, untouched: every word from the first that
    /// is not an option of `run`, or after `--`
    #[arg(
        value_name = "AGENT_ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
}

// `start`: an instance for a project.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Project directory (default: the current directory's project)
    pub path: Option<PathBuf>,
    #[arg(long, short, add = ArgValueCandidates::new(agent_candidates))]
    pub mode: Mode,
    /// Use this id instead of the derived one
    #[arg(long)]
    pub id: Option<InstanceId>,
    #[arg(long)]
    pub port: Option<Port>,
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeChoice>,
    /// Egress policy: open, allowlist (networking.allow) or none
    #[arg(long, value_enum)]
    pub egress: Option<EgressPolicy>,
    /// Do not attach after starting
    #[arg(long, short)]
    pub detach: bool,
    /// Run in the git worktree NAME (.claude/worktrees/NAME on branch
    /// worktree-NAME, or the branch NAME); without NAME, a new one with a
    /// made-up name
    #[arg(long, short = 'w', value_name = "NAME", num_args = 0..=1, add = ArgValueCandidates::new(worktree_candidates))]
    pub worktree: Option<Option<String>>,
    /// Send the project's repository (its history and its uncommitted
    /// state, as a commit on branch ai/ID) into a volume of the engine and
    /// run there, nothing of the host mounted; `ai-sessctl fetch ID`
    /// brings the work back (default: `project.mode`; always with an
    /// engine on another machine)
    #[arg(long, conflicts_with_all = ["mount", "worktree"])]
    pub clone: bool,
    /// Mount the project directory (what `project.mode = "mount"` does);
    /// only with a local engine
    #[arg(long)]
    pub mount: bool,
    #[arg(last = true)]
    pub args: Vec<String>,
}

// `rm`: remove instances' entries and containers.
#[derive(Args, Debug)]
pub struct RmArgs {
    #[arg(add = ArgValueCandidates::new(id_candidates), required_unless_present = "all")]
    pub ids: Vec<InstanceId>,
    /// Every instance of this state home (and its containers the
    /// registry lost); other homes' and users' are never touched
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Stop it first if it runs
    #[arg(long, short)]
    pub force: bool,
    /// Also delete the instance's own state dir, states/<id>/ (the
    /// agent's shared login stays)
    #[arg(long)]
    pub state: bool,
    /// Also remove its git worktree (`--worktree NAME`) without asking;
    /// one with uncommitted changes or unpushed commits only with
    /// --force. Its branch is kept
    #[arg(long)]
    pub worktree: bool,
}

// `land`: bring a worktree's branch home.
#[derive(Args, Debug)]
pub struct LandArgs {
    #[arg(add = ArgValueCandidates::new(id_candidates))]
    pub id: InstanceId,
    /// A merge commit, the branch's commits kept (the default)
    #[arg(long, group = "strategy")]
    pub merge: bool,
    /// One commit holding the whole change, listing the branch's commits
    #[arg(long, group = "strategy")]
    pub squash: bool,
    /// Replay the branch onto the base in its worktree, then fast-forward
    #[arg(long, group = "strategy")]
    pub rebase: bool,
    /// Push the branch and open a pull request with gh instead (without
    /// gh, or not logged in: push nothing and print the commands)
    #[arg(long, conflicts_with = "strategy")]
    pub pr: bool,
    /// Commit everything in the worktree first (`git add -A`), as you
    #[arg(long, value_name = "MSG")]
    pub commit: Option<String>,
    /// Afterwards remove its worktree and the instance (the branch and the
    /// agent's state are kept)
    #[arg(long)]
    pub remove_worktree: bool,
    /// Afterwards stop the instance
    #[arg(long, conflicts_with = "remove_worktree")]
    pub stop: bool,
    /// Yes to the question after landing: remove the worktree and the
    /// instance
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// Instance id (see `ai-sessctl list`)
    #[arg(add = ArgValueCandidates::new(id_candidates))]
    pub id: InstanceId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    Running,
    Stopped,
    All,
}

pub use crate::service::shell::ShellKind;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Zsh,
    Bash,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to this project's agent, starting it first if needed
    #[command(
        after_help = "Options of `run` are read among the words before the agent's: from the first word that is not one of them, or after `--`, every word goes to the agent untouched. The agent functions of the shell integration (claude, gemini, …) read their words by the same rule: `claude --egress allowlist --model opus` is `ai-sessctl run claude --egress allowlist -- --model opus`; only -h and --help are the agent's there.\n\nExamples:\n  ai-sessctl run claude -- --model opus\n  ai-sessctl run claude --egress allowlist -w feat --model opus\n  ai-sessctl run claude --detach --id api-review-claude -- -p 'review the diff'"
    )]
    Run(RunArgs),
    /// Start an instance for a project
    #[command(after_help = "Example:\n  ai-sessctl start ~/src/api --mode claude --detach")]
    Start(StartArgs),
    /// Stop instances (gracefully, then by force after the timeout)
    #[command(after_help = "Examples:\n  ai-sessctl stop api-claude\n  ai-sessctl stop --all")]
    Stop {
        #[arg(add = ArgValueCandidates::new(id_candidates), required_unless_present = "all")]
        ids: Vec<InstanceId>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Kill at once, without the grace period
        #[arg(long, short)]
        force: bool,
    },
    /// Keep an instance running when the shell that started it exits
    /// (whatever on_shell_exit says)
    #[command(after_help = "Examples:\n  ai-sessctl keep api-claude")]
    Keep {
        /// Instance id; without one, the instance of the project or
        /// worktree you are in
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
    },
    /// Stop and start an instance again
    Restart(IdArg),
    /// Attach the terminal to a running instance (detach: ctrl-p ctrl-q)
    Attach(IdArg),
    /// Type a message into an instance's agent, as if typed there and
    /// Enter pressed (attached or not); only while it waits for input
    #[command(
        after_help = "Examples:\n  ai-sessctl send api-claude 'the tests in src/db fail; fix them'\n  git diff | ai-sessctl send api-claude -    # the message from stdin\n\nRefused while the agent works (or has not said it waits); --force types it anyway."
    )]
    Send {
        #[command(flatten)]
        id: IdArg,
        /// The message; `-` reads it from standard input
        #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
        text: Vec<String>,
        /// Type it even though the agent is not waiting for input
        #[arg(long, short)]
        force: bool,
    },
    /// Pause an instance's processes
    Pause(IdArg),
    /// Resume a paused instance; without an id, bring back every instance
    /// an engine restart or reboot ended
    #[command(
        after_help = "Examples:\n  ai-sessctl resume               after a reboot: start again what was running\n  ai-sessctl resume api-claude    unpause (or bring back) one"
    )]
    Resume {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
    },
    /// Remove an instance's entry and container (--state: its agent state too)
    #[command(
        after_help = "Examples:\n  ai-sessctl rm api-claude\n  ai-sessctl rm --all --force   # every instance of this state home"
    )]
    Rm(RmArgs),
    /// Bring an instance's worktree branch into its base branch in your
    /// main checkout (a merge commit by default), or open a pull request
    #[command(
        after_help = "Examples:\n  ai-sessctl land api-feat-claude\n  ai-sessctl land api-feat-claude --squash --commit \"finish the parser\" --yes\n  ai-sessctl land api-feat-claude --pr\n\nNothing is changed when it refuses (a dirty checkout, uncommitted work, a conflict).\nCommits are made as you (your git user.name and user.email); no hook of the repository runs."
    )]
    Land(LandArgs),
    /// Remove old stopped entries and containers the registry does not know
    Gc {
        /// Show what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// List instances
    #[command(
        after_help = "Examples:\n  ai-sessctl list --status all\n  ai-sessctl list --json | jq '.[].port'"
    )]
    List {
        #[arg(long, value_enum, default_value = "all")]
        status: StatusFilter,
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Print ids only
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show one instance
    Show {
        #[command(flatten)]
        id: IdArg,
        #[arg(long)]
        json: bool,
    },
    /// Find the instances of a project (a path or a project name)
    Find {
        project: String,
        #[arg(add = ArgValueCandidates::new(agent_candidates))]
        mode: Option<Mode>,
        #[arg(long)]
        json: bool,
    },
    /// Resource usage: CPU, memory, network and block I/O, pids
    #[command(
        after_help = "Examples:\n  ai-sessctl stats --watch\n  ai-sessctl stats api-claude --json"
    )]
    Stats {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        /// Redraw every two seconds, like `docker stats`
        #[arg(long, short)]
        watch: bool,
        #[arg(long, conflicts_with = "watch")]
        json: bool,
    },
    /// What brokered model calls cost: tokens and US dollars per instance
    #[command(
        after_help = "Examples:\n  ai-sessctl spend\n  ai-sessctl spend --since today\n  ai-sessctl spend api-claude --since 2h --json"
    )]
    Spend {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        /// Only calls newer than this (30m, 1h, 2d) or `today` (UTC)
        #[arg(long)]
        since: Option<crate::service::spend::Since>,
        #[arg(long)]
        json: bool,
    },
    /// Full-screen live view of all instances (q quits)
    Top,
    /// Health checks and the watcher that heals
    #[command(subcommand)]
    Health(HealthCmd),
    /// Restart an unhealthy instance now
    Heal(IdArg),
    /// Output of an instance (live, or saved after it was removed)
    Logs {
        /// Instance id; without one, the instance of the project or
        /// worktree you are in
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        #[arg(long, short)]
        follow: bool,
        /// The last N lines
        #[arg(long, short = 'n')]
        tail: Option<usize>,
        /// The agent's terminal stream itself (colours, cursor moves,
        /// queries to the terminal), not the text its screen showed
        #[arg(long)]
        raw: bool,
    },
    /// What an instance's agent changed against its base: committed,
    /// uncommitted and untracked (through your pager)
    #[command(
        after_help = "Without an id: the instance of the project or worktree you are in.\n\
                      A worktree instance is compared with the merge-base of its branch and its base branch;\n\
                      one on the main checkout shows its uncommitted changes against HEAD.\n\n\
                      Examples:\n  ai-sessctl diff\n  ai-sessctl diff api-feat-claude --stat\n  ai-sessctl diff api-feat-claude --json | jq '.files[].path'"
    )]
    Diff {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        /// Files and how many lines each gained and lost
        #[arg(long, conflicts_with = "json")]
        stat: bool,
        /// Files, hunks and lines as JSON (for scripts)
        #[arg(long)]
        json: bool,
        /// Print to stdout, not through the pager
        #[arg(long)]
        no_pager: bool,
    },
    /// Bring a clone instance's branch (ai/ID in its box) back into your
    /// repository, as the remote-tracking ref ai-sessions/ID
    #[command(
        after_help = "With --uncommitted, the box's uncommitted changes come back too, as a commit on\n\
                      top of its HEAD: ai-sessions/ID-uncommitted. Nothing in your work tree or\n\
                      branches changes. Then: `git log ai-sessions/ID`, `git merge ai-sessions/ID`,\n\
                      `ai-sessctl diff ID`.\n\n\
                      Examples:\n  ai-sessctl fetch api-claude\n  ai-sessctl fetch api-claude --uncommitted"
    )]
    Fetch {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        /// Also a commit of the changes the agent has not committed
        #[arg(long)]
        uncommitted: bool,
        /// What was fetched, as JSON
        #[arg(long)]
        json: bool,
    },
    /// The event log
    #[command(
        after_help = "Examples:\n  ai-sessctl events --since 1h --level warn\n  ai-sessctl events --follow"
    )]
    Events {
        #[arg(long, short)]
        follow: bool,
        #[arg(long)]
        json: bool,
        /// Only events newer than this (30s, 5m, 2h, 7d)
        #[arg(long)]
        since: Option<crate::state::config::units::Dur>,
        /// Minimum level
        #[arg(long, value_enum)]
        level: Option<Level>,
    },
    /// Read or change configuration
    #[command(
        after_help = "Examples:\n  ai-sessctl config get --global resources.memory.limit\n  ai-sessctl config set api-claude resources.cpu.limit 1\n  ai-sessctl config --global --edit"
    )]
    Config(ConfigArgs),
    /// Summary of instances and the host (--json for scripts)
    Dashboard {
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
    },
    /// Where an instance's port is reached from here (an ssh forward for an engine elsewhere); alloc/release reserve ports
    Port(PortArgs),
    /// Inspect or repair the registry
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// The git worktrees made by `--worktree NAME`
    #[command(subcommand)]
    Worktree(WorktreeCmd),
    /// Build an agent's image
    #[command(subcommand)]
    Image(ImageCmd),
    /// Log an agent in once for all its instances
    #[command(
        after_help = "Examples:\n  ai-sessctl login claude              the agent's own login flow, in a container\n  ai-sessctl login claude --from-host  copy this machine's Claude Code login"
    )]
    Login {
        #[arg(add = ArgValueCandidates::new(agent_candidates))]
        mode: Mode,
        /// Copy the login the agent keeps on this machine instead
        #[arg(long)]
        from_host: bool,
    },
    /// Egress policy: refused connections, allow a host on a running instance
    #[command(subcommand)]
    Net(NetCmd),
    /// Agent state kept in the state home
    #[command(subcommand)]
    State(StateCmd),
    /// Check the engine, images, agents and shell integration
    Doctor,
    /// Serve the REST API and web dashboard (loopback, token required)
    #[command(after_help = "Example:\n  ai-sessctl serve --addr 127.0.0.1:8787")]
    Serve {
        /// Address to listen on (default 127.0.0.1:8787)
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Allow a non-loopback address (the token is still required)
        #[arg(long)]
        allow_remote: bool,
    },
    /// Print the shell integration: eval "$(ai-sessctl init zsh)"
    Init { shell: ShellKind },
    /// Print a completion script
    Completions { shell: CompletionShell },
    /// Print the prompt segment for the current directory
    Prompt,
    /// Apply the on_shell_exit policy to the instances a shell owns
    #[command(hide = true)]
    ShellExit {
        pid: u32,
        /// Do the work here (the detached helper), not in the background
        #[arg(long, hide = true)]
        now: bool,
        /// Only say what the exit would stop (the shell's `exit` function
        /// asks this once): status 10 when it said something
        #[arg(long, hide = true, conflicts_with = "now")]
        warn: bool,
    },
    /// Follow the agents' activity and notify (started on demand)
    #[command(hide = true)]
    Notifier,
    /// Remove the containers and networks a batch of stops left (started by `stop`)
    #[command(hide = true)]
    ReapNetworks {
        /// A stopped container, its output kept (removed before the networks)
        #[arg(long = "container")]
        containers: Vec<String>,
        names: Vec<String>,
    },
    /// Make the state home's ready networks (started by `start`)
    #[command(hide = true)]
    FillNetworkPool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: Option<ConfigCmd>,
    #[command(flatten)]
    pub scope: ScopeArgs,
    /// Open the file in $VISUAL/$EDITOR; an invalid edit is not kept
    #[arg(long)]
    pub edit: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ScopeArgs {
    /// The instance whose configs/<id>.toml to use
    #[arg(add = ArgValueCandidates::new(id_candidates))]
    pub id: Option<InstanceId>,
    /// The global config.toml
    #[arg(long)]
    pub global: bool,
}

/// `get`/`set` take the scope as their first positional (`ID`) or as
/// `--global`; clap cannot put an optional positional before a required one,
/// so the words are split in `cmd::config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective value of a key
    #[command(override_usage = "ai-sessctl config get <ID|--global> <KEY>")]
    Get {
        /// The global config.toml
        #[arg(long)]
        global: bool,
        /// `ID KEY`, or `KEY` with --global
        #[arg(value_name = "ID", num_args = 1..=2, required = true,
              add = ArgValueCandidates::new(config_word_candidates))]
        words: Vec<String>,
    },
    /// Set a key in the scope's file (validated before writing)
    #[command(override_usage = "ai-sessctl config set <ID|--global> <KEY> <VALUE>")]
    Set {
        /// The global config.toml
        #[arg(long)]
        global: bool,
        /// `ID KEY VALUE`, or `KEY VALUE` with --global
        #[arg(value_name = "ID", num_args = 2..=3, required = true, allow_negative_numbers = true,
              add = ArgValueCandidates::new(config_word_candidates))]
        words: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HealthCmd {
    /// Check instances; exits 1 when any is unhealthy
    Check {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        #[arg(long)]
        json: bool,
    },
    /// Check every interval, follow engine events, alert and heal (ctrl-c stops)
    Watch,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PortArgs {
    #[command(subcommand)]
    pub cmd: Option<PortCmd>,
    /// Instance id (default: the instance of the project you are in)
    #[arg(value_name = "ID", add = ArgValueCandidates::new(id_candidates))]
    pub id: Option<InstanceId>,
    /// Stop the forward an earlier `port ID` started
    #[arg(long)]
    pub close: bool,
    /// Print how it is reached as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PortCmd {
    /// Reserve a free port and print it
    Alloc {
        #[arg(long)]
        preferred: Option<Port>,
        /// Record the reservation for this instance id
        #[arg(long = "for")]
        for_id: Option<InstanceId>,
    },
    /// Release a reserved port
    Release { port: Port },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Print the registry file's path
    Path,
    /// Validate the registry and explain any problem
    Check,
    /// Rebuild the registry from the engine's containers and live processes
    Repair,
}

#[derive(Debug, Subcommand)]
pub enum WorktreeCmd {
    /// Worktrees of this repository (all repositories outside one, or with
    /// --all): path, branch, instances, and what removing one would lose
    #[command(
        after_help = "Examples:\n  ai-sessctl worktree list\n  ai-sessctl worktree list --all --json"
    )]
    List {
        /// Every repository's, not just this one's
        #[arg(long)]
        all: bool,
        #[arg(long, conflicts_with = "quiet")]
        json: bool,
        /// Names only, one a line, of this repository's worktrees (what
        /// `--worktree NAME` takes; no status, quick enough for completion)
        #[arg(long, short, conflicts_with = "all")]
        quiet: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum NetCmd {
    /// Connections the egress policy refused (all instances, or one)
    #[command(
        after_help = "Examples:\n  ai-sessctl net log\n  ai-sessctl net log api-claude --follow"
    )]
    Log {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: Option<InstanceId>,
        #[arg(long, short)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Allow a host for an instance (kept in its config; applied at once
    /// when it runs)
    #[command(
        after_help = "Examples:\n  ai-sessctl net allow api-claude pypi.org\n  ai-sessctl net allow api-claude '*.pythonhosted.org'\n  ai-sessctl net allow api-claude db.internal:5432"
    )]
    Allow {
        #[arg(add = ArgValueCandidates::new(id_candidates))]
        id: InstanceId,
        /// `host`, `*.domain`, either with `:port` (default 443 and 80)
        host: String,
    },
    /// The allowlisting proxy (runs inside an instance's sidecar)
    #[command(hide = true)]
    Proxy {
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        events: PathBuf,
        /// HOST:PORT; a name is resolved (the proxy's alias on its network)
        #[arg(long)]
        listen: Option<String>,
        /// PORT=HOST:PORT
        #[arg(long)]
        forward: Vec<String>,
        #[arg(long)]
        watch: Option<String>,
        /// An address of the engine's machine: never a destination
        #[arg(long)]
        forbid: Vec<std::net::IpAddr>,
        /// The credential broker's settings (`broker.json`); its key is
        /// read from stdin
        #[arg(long, requires_all = ["broker_listen", "meter"])]
        broker_settings: Option<PathBuf>,
        /// HOST:PORT the broker listens on
        #[arg(long)]
        broker_listen: Option<String>,
        /// The instance's ledger directory
        #[arg(long)]
        meter: Option<PathBuf>,
        /// The home's ledger directories (for the daily budget)
        #[arg(long)]
        meter_all: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Copy an agent's old shared state into each of its instances'
    /// own (only the login stays shared)
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Build the image of an agent (default: every agent with a Dockerfile)
    Build {
        #[arg(add = ArgValueCandidates::new(agent_candidates))]
        mode: Option<Mode>,
        /// Build on this image instead of the Dockerfile's (Debian with
        /// Node.js and npm); default: `[images] base`
        #[arg(long, value_name = "IMAGE")]
        base: Option<String>,
        /// Network for the build's RUN steps (as `docker build --network`)
        #[arg(long, value_name = "MODE")]
        network: Option<String>,
        /// Rebuild every step (e.g. to get the agent's newest release)
        #[arg(long)]
        no_cache: bool,
    },
}

impl StatusFilter {
    pub fn matches(self, s: Status) -> bool {
        match self {
            StatusFilter::All => true,
            // Live: running, paused or starting (the prompt counts the same).
            StatusFilter::Running => s.is_live(),
            StatusFilter::Stopped => !s.is_live(),
        }
    }
}
