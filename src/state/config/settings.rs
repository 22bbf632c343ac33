//! The effective settings: every key of the seed's config with its default.
//! Every struct fills missing keys from `Default`, so a single file can be
//! checked on its own (giving file, line and key on error) and the merged
//! layers deserialize into the same types.

use super::units::{Bytes, Cpu, Dur};
use crate::core::types::Port;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub global: Global,
    pub resources: Resources,
    pub health: Health,
    pub networking: Networking,
    pub alerts: Alerts,
    pub api: Api,
    pub images: Images,
    pub logging: Logging,
    /// Per-agent model settings recorded on the instance (`model`,
    /// `max_tokens`, `temperature`, …), kept free-form as in the seed.
    pub ai_config: BTreeMap<String, toml::Table>,
    pub agents: BTreeMap<String, AgentSpec>,
    pub worktree: Worktree,
    /// `[project]`: how the project reaches the box.
    pub project: Project,
    /// Spending limits, enforced by the credential broker.
    pub budget: Budget,
    /// Prices per model (`[prices."<model>"]`), over the shipped table.
    pub prices: BTreeMap<String, Price>,
    /// The seed's per-instance `instance:` block; informational.
    pub instance: Option<toml::Table>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut ai_config = BTreeMap::new();
        ai_config.insert(
            "claude".to_owned(),
            toml::toml! { model = "claude-sonnet-4-5"
            max_tokens = 4096
            temperature = 0.7 },
        );
        ai_config.insert(
            "gemini".to_owned(),
            toml::toml! { model = "gemini-2.5-pro"
            max_output_tokens = 8192
            temperature = 0.9 },
        );
        Settings {
            global: Global::default(),
            resources: Resources::default(),
            health: Health::default(),
            networking: Networking::default(),
            alerts: Alerts::default(),
            api: Api::default(),
            images: Images::default(),
            logging: Logging::default(),
            ai_config,
            agents: AgentSpec::builtin(),
            worktree: Worktree::default(),
            project: Project::default(),
            budget: Budget::default(),
            prices: BTreeMap::new(),
            instance: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    Auto,
    Docker,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShellExitPolicy {
    Stop,
    Keep,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Global {
    pub max_instances: u32,
    pub auto_cleanup: bool,
    pub log_retention: Dur,
    pub runtime: RuntimeChoice,
    /// What happens to the instances a shell owns when it exits.
    pub on_shell_exit: ShellExitPolicy,
    /// `exit` in a shell that owns running agents (that its exit would
    /// stop) warns once, as zsh does for running jobs; the next goes ahead.
    pub warn_on_exit: bool,
    /// Grace period of `stop` before the agent is killed.
    pub stop_timeout: Dur,
    /// How long one change on the engine (create, start, stop or remove of
    /// a container or network) may take before it is reported as timed
    /// out. The engine makes networks one at a time, so with many starts
    /// at once the last one waits for the others: a queue, not an outage.
    pub engine_timeout: Dur,
    /// Key sequence that detaches from an instance (docker's syntax).
    pub detach_keys: String,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            max_instances: 10,
            auto_cleanup: true,
            log_retention: Dur(Duration::from_secs(7 * 86400)),
            runtime: RuntimeChoice::Auto,
            on_shell_exit: ShellExitPolicy::Stop,
            warn_on_exit: true,
            stop_timeout: Dur(Duration::from_secs(10)),
            engine_timeout: Dur(Duration::from_secs(300)),
            detach_keys: "ctrl-p,ctrl-q".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    pub memory: Memory,
    pub cpu: CpuLimits,
    pub pids: Pids,
    pub nofile: Nofile,
    /// The container's root file system read-only; `/tmp` and the agent's
    /// home are in-memory scratch, the project and state dir stay writable.
    pub read_only_root: bool,
}

/// Processes and threads in one instance (a fork bomb stops here).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pids {
    pub limit: u32,
}

impl Default for Pids {
    fn default() -> Self {
        Pids { limit: 1024 }
    }
}

/// Open files per process in an instance (soft and hard limit).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Nofile {
    pub limit: u32,
}

impl Default for Nofile {
    fn default() -> Self {
        Nofile { limit: 8192 }
    }
}

/// How much of an instance's output is kept: by the engine while it runs,
/// in `logs/<id>.log` after (the newest part: `max_size` x `max_files`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logging {
    pub max_size: Bytes,
    pub max_files: u32,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            max_size: Bytes(10 << 20),
            max_files: 3,
        }
    }
}

impl Logging {
    /// The most output kept on disk for one instance, in bytes.
    pub fn cap(&self) -> u64 {
        self.max_size
            .0
            .saturating_mul(u64::from(self.max_files.max(1)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Memory {
    pub limit: Bytes,
    pub warning_threshold: Option<Bytes>,
    pub critical_threshold: Option<Bytes>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory {
            limit: Bytes(1 << 30),
            // Relative to the limit (`alerts.memory_percent`): a lower
            // limit lowers them with it.
            warning_threshold: None,
            critical_threshold: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuLimits {
    pub limit: Cpu,
    pub warning_threshold: Option<Cpu>,
    pub critical_threshold: Option<Cpu>,
}

impl Default for CpuLimits {
    fn default() -> Self {
        CpuLimits {
            limit: Cpu(500),
            warning_threshold: None,
            critical_threshold: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Health {
    pub check_interval: Dur,
    pub timeout: Dur,
    pub max_retries: u32,
    pub retry_delay: Dur,
    /// `health watch` first brings back the instances that were running
    /// before an engine restart or reboot (as `ai-sessctl resume` does).
    pub restart_after_reboot: bool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            check_interval: Dur(Duration::from_secs(30)),
            timeout: Dur(Duration::from_secs(5)),
            max_retries: 3,
            retry_delay: Dur(Duration::from_secs(10)),
            restart_after_reboot: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn contains(self, p: Port) -> bool {
        (self.start..=self.end).contains(&p.get())
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.start, self.end].serialize(s)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v: Vec<i64> = Vec::deserialize(d)?;
        let ok = |n: i64| (i64::from(Port::MIN)..=65535).contains(&n);
        match v.as_slice() {
            [a, b] if ok(*a) && ok(*b) && a <= b => Ok(PortRange {
                start: *a as u16,
                end: *b as u16,
            }),
            _ => Err(serde::de::Error::custom(
                "port_range must be [first, last] with 1024 <= first <= last <= 65535",
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Networking {
    pub preferred_port: Option<Port>,
    pub port_range: PortRange,
    /// Address published ports bind to; loopback unless the user says so.
    pub bind: IpAddr,
    /// `isolated`: a network per instance (instances cannot reach each
    /// other); `shared`: the engine's default bridge, where they can. An
    /// egress policy other than `open` always gives an instance an
    /// internal network of its own.
    pub mode: NetworkMode,
    /// Where an instance may connect: anywhere, only `allow` (through the
    /// egress proxy), or nowhere.
    pub egress: EgressPolicy,
    /// Hosts reachable under `allowlist` (`host`, `*.domain`, `:port`;
    /// 443/80 unless given), added to the agent's `egress_allow`. Lists of
    /// every config layer add up.
    pub allow: Vec<String>,
    /// Hosts never reachable (any port unless given); they win over `allow`.
    pub deny: Vec<String>,
    /// Private networks (CIDR) an allowed name may resolve to under
    /// `allowlist`; others are refused, as are loopback, link-local and the
    /// engine's gateway always.
    pub allow_private: Vec<String>,
    /// The engine network the egress proxy reaches out through; empty: a
    /// network of its own, which no other container joins.
    pub proxy_network: String,
    /// Networks made ahead for `isolated` instances of this state home
    /// (egress `open`), so that a start does not wait for the engine to
    /// make one; a stop gives its network back. 0: each start makes its own.
    pub pool: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EgressPolicy {
    Open,
    Allowlist,
    None,
}

impl std::fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EgressPolicy::Open => "open",
            EgressPolicy::Allowlist => "allowlist",
            EgressPolicy::None => "none",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Isolated,
    Shared,
}

impl Default for Networking {
    fn default() -> Self {
        Networking {
            preferred_port: None,
            port_range: PortRange {
                start: 9000,
                end: 9999,
            },
            bind: IpAddr::from([127, 0, 0, 1]),
            mode: NetworkMode::Isolated,
            egress: EgressPolicy::Open,
            allow: Vec::new(),
            deny: Vec::new(),
            allow_private: Vec::new(),
            proxy_network: String::new(),
            pool: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alerts {
    /// The thresholds where no absolute one is set, in percent of the
    /// limit (0: none): warning, then critical.
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub cpu_critical_percent: f64,
    pub memory_critical_percent: f64,
    /// A resource alert fires once its value has stayed above the
    /// threshold this long (a burst of a turn is not an alert)...
    pub sustain: Dur,
    /// ...and not within this long of the instance's start.
    pub grace: Dur,
    /// A program run (without a shell) for each alert, with the alert in its
    /// environment and as JSON on stdin.
    pub command: Option<Vec<String>>,
    pub command_timeout: Dur,
    /// An instance that turns waiting/idle again within this long after a
    /// notification is not notified again.
    pub activity_debounce: Dur,
    /// Ring the bell and send a desktop notification (OSC 777 and OSC 9)
    /// to the terminal of the shell that owns the instance.
    pub terminal: bool,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            cpu_percent: 80.0,
            memory_percent: 85.0,
            cpu_critical_percent: 95.0,
            memory_critical_percent: 95.0,
            sustain: Dur(Duration::from_secs(30)),
            grace: Dur(Duration::from_secs(60)),
            command: None,
            command_timeout: Dur(Duration::from_secs(10)),
            activity_debounce: Dur(Duration::from_secs(10)),
            terminal: true,
        }
    }
}

/// `[budget]`: what brokered model calls may cost, in US dollars. At 80 %
/// an alert; at 100 % the broker refuses further calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Per instance, since it was created.
    pub instance_usd: Option<f64>,
    /// All instances of this state home, per calendar day (UTC).
    pub daily_usd: Option<f64>,
}

/// `[prices."<model>"]`: US dollars per million tokens. A model id matches
/// the longest entry it starts with (`claude-sonnet-4-5` prices
/// `claude-sonnet-4-5-20250929`). Cache writes default to 1.25 × input,
/// cache reads to 0.1 × input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_per_mtok: Option<f64>,
}

/// `serve`: how long a dashboard login lasts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// A session unused for this long ends.
    pub session_idle: Dur,
    /// A session ends this long after its login, used or not.
    pub session_max: Dur,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            session_idle: Dur(Duration::from_secs(12 * 3600)),
            session_max: Dur(Duration::from_secs(7 * 86400)),
        }
    }
}

/// `[images]`: how `image build` builds the shipped Dockerfiles.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Images {
    /// The image to build on instead of the Dockerfiles' `node:22-slim`
    /// (Debian-based, with Node.js and npm); `--base` overrides it.
    pub base: Option<String>,
    /// Extra CA certificates (PEM files) the shipped images trust, for
    /// system tools, node and npm: e.g. a TLS-intercepting proxy's.
    pub ca_certificates: Vec<String>,
}

/// `[agents.<mode>] state`: every instance has its own `states/<id>/`;
/// `agent` also mounts the agent's login file (`login_files`, kept in
/// `states/<mode>/`) read-only into each; `instance` shares nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateScope {
    #[default]
    Agent,
    Instance,
}

/// An agent is config, not code: `[agents.<mode>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSpec {
    /// The agent's command line (program and fixed arguments).
    pub command: Vec<String>,
    pub image: String,
    /// Where the agent keeps its state inside the container.
    pub state_dir: String,
    /// Names of variables copied from the caller's environment at start.
    pub env_passthrough: Vec<String>,
    /// Whether the agent listens on `$AI_PORT` (enables the port health check).
    pub listens: bool,
    /// A directory with a Dockerfile that `image build` uses instead of the
    /// shipped one (for agents of your own).
    pub build_context: Option<String>,
    /// Whether an instance mounts the agent's shared login read-only
    /// (`agent`: log in once) or shares nothing (`instance`); the rest of
    /// its state is always its own.
    pub state: StateScope,
    /// The files in `state_dir` that hold the agent's login: the only
    /// state its instances share (names, e.g. `.credentials.json`).
    pub login_files: Vec<String>,
    /// What `ai-sessctl login MODE` runs (default: the agent's command,
    /// which starts its own login flow when it is not logged in).
    pub login_command: Option<Vec<String>>,
    /// The hosts this agent needs under `networking.egress = "allowlist"`
    /// (its API, its login, npm, GitHub); `networking.allow` adds to them.
    pub egress_allow: Vec<String>,
    /// Per-agent overrides of the global sections.
    pub resources: Option<toml::Table>,
    pub health: Option<toml::Table>,
    pub networking: Option<toml::Table>,
    /// How the agent reports its activity: hooks in a generated settings
    /// file (`claude`, `gemini`), or `none` (activity stays unknown unless
    /// the agent writes `$AI_SESSION_STATUS_FILE` itself); `auto` picks by
    /// the command's program name.
    pub hooks: HookKind,
    /// The activities that notify (`alerts.command`, the terminal) when the
    /// instance turns to them with no terminal attached; `[]` = never.
    pub notify: Vec<crate::core::types::Activity>,
    /// Arguments that make the agent continue its last conversation, used
    /// when an instance comes back (`resume`) and its state dir holds one.
    pub resume_args: Vec<String>,
    /// How the agent's API key or login reaches its API.
    pub credentials: Credentials,
}

/// `[agents.<mode>.credentials]`: where the agent's key lives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Credentials {
    pub mode: CredentialMode,
    /// Where brokered calls go (`https://` or `http://`); default: the
    /// host's base-URL variable for the API when set, else the API itself.
    pub upstream: Option<String>,
    /// The API the agent speaks; `auto` picks by the key variables in
    /// `env_passthrough`.
    pub api: ApiKind,
    /// Where a subscription login's tokens are refreshed (an OAuth token
    /// endpoint); default: the API's own.
    pub token_url: Option<String>,
}

/// `broker`: the box holds a placeholder and the egress sidecar adds the
/// real key on the way out (and meters every call); `env`: the key is in
/// the box's environment; `none`: no key is passed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialMode {
    #[default]
    Broker,
    Env,
    None,
}

/// The model APIs the broker speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKind {
    #[default]
    Auto,
    Anthropic,
    Gemini,
    Openai,
}

impl ApiKind {
    /// The API a key variable is for.
    pub fn of_key_var(name: &str) -> Option<ApiKind> {
        match name {
            "ANTHROPIC_API_KEY" => Some(ApiKind::Anthropic),
            "GEMINI_API_KEY" | "GOOGLE_API_KEY" => Some(ApiKind::Gemini),
            "OPENAI_API_KEY" => Some(ApiKind::Openai),
            _ => None,
        }
    }

    /// The variables holding its key, in order of preference.
    pub fn key_vars(self) -> &'static [&'static str] {
        match self {
            ApiKind::Anthropic => &["ANTHROPIC_API_KEY"],
            ApiKind::Gemini => &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            ApiKind::Openai => &["OPENAI_API_KEY"],
            ApiKind::Auto => &[],
        }
    }

    /// The variable that points the agent's client at another base URL.
    pub fn base_url_var(self) -> Option<&'static str> {
        match self {
            ApiKind::Anthropic => Some("ANTHROPIC_BASE_URL"),
            ApiKind::Gemini => Some("GOOGLE_GEMINI_BASE_URL"),
            ApiKind::Openai => Some("OPENAI_BASE_URL"),
            ApiKind::Auto => None,
        }
    }

    pub fn default_upstream(self) -> Option<&'static str> {
        match self {
            ApiKind::Anthropic => Some("https://api.anthropic.com"),
            ApiKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ApiKind::Openai => Some("https://api.openai.com/v1"),
            ApiKind::Auto => None,
        }
    }
}

impl std::fmt::Display for ApiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApiKind::Auto => "auto",
            ApiKind::Anthropic => "anthropic",
            ApiKind::Gemini => "gemini",
            ApiKind::Openai => "openai",
        })
    }
}

impl AgentSpec {
    /// The API its credentials are for: `credentials.api`, else the first
    /// key variable it takes from the caller's environment.
    pub fn api(&self) -> Option<ApiKind> {
        match self.credentials.api {
            ApiKind::Auto => self
                .env_passthrough
                .iter()
                .find_map(|v| ApiKind::of_key_var(v)),
            k => Some(k),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Auto,
    Claude,
    Gemini,
    None,
}

/// `[worktree]`: instances started with `--worktree NAME`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Worktree {
    /// Where worktrees are made (`~` expanded, one directory per
    /// repository beneath); default: Claude Code's place,
    /// `<repo>/.claude/worktrees/NAME`.
    pub dir: Option<String>,
    /// What a new worktree's branch starts from: the repository's default
    /// remote branch (`origin/HEAD`, else `HEAD`), or `HEAD`.
    #[serde(alias = "baseRef")]
    pub base_ref: BaseRef,
    /// Untracked files copied from the repository into a new worktree.
    pub copy: Vec<String>,
    /// Commands run (`sh -c`, in the project dir) in the container before
    /// the agent, at every start of a worktree or clone instance (`worktree::setup`).
    pub setup: Vec<String>,
}

/// `[project]`: how an instance's box gets the project.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Project {
    pub mode: ProjectMode,
}

/// `project.mode`: the project mounted from the host, or a clone of its
/// repository in a volume of the engine (`--clone`; what an engine on
/// another machine always gets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectMode {
    #[default]
    Mount,
    Clone,
}

/// `worktree.base_ref`: where a new worktree's branch starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseRef {
    /// `origin/HEAD` (the default remote branch), else `HEAD`.
    #[default]
    Remote,
    /// The main checkout's `HEAD`.
    Head,
}

impl Default for AgentSpec {
    fn default() -> Self {
        AgentSpec {
            command: Vec::new(),
            image: String::new(),
            state_dir: "/home/agent/.state".to_owned(),
            env_passthrough: Vec::new(),
            listens: false,
            build_context: None,
            state: StateScope::Agent,
            login_files: Vec::new(),
            login_command: None,
            egress_allow: Vec::new(),
            resources: None,
            health: None,
            networking: None,
            hooks: HookKind::Auto,
            notify: vec![
                crate::core::types::Activity::Waiting,
                crate::core::types::Activity::Idle,
            ],
            resume_args: Vec::new(),
            credentials: Credentials::default(),
        }
    }
}

impl AgentSpec {
    /// The hooks this agent gets: `auto` means Claude Code's for a program
    /// named `claude`, Gemini CLI's for `gemini`, none for anything else
    /// (an agent's command replaced by another program gets no flags it
    /// would not understand).
    pub fn hook_kind(&self) -> HookKind {
        match self.hooks {
            HookKind::Auto => {
                let program = self.command.first().map(String::as_str).unwrap_or("");
                match std::path::Path::new(program)
                    .file_name()
                    .and_then(|n| n.to_str())
                {
                    Some("claude") => HookKind::Claude,
                    Some("gemini") => HookKind::Gemini,
                    _ => HookKind::None,
                }
            }
            k => k,
        }
    }

    fn builtin() -> BTreeMap<String, AgentSpec> {
        let mk = |cmd: &str, state: &str, env: &[&str]| AgentSpec {
            command: vec![cmd.to_owned()],
            image: format!("ai-sessions/{cmd}:latest"),
            state_dir: state.to_owned(),
            env_passthrough: env.iter().map(|s| s.to_string()).collect(),
            ..AgentSpec::default()
        };
        let hosts = |h: &[&str]| {
            let common = [
                "registry.npmjs.org",
                "github.com",
                "*.github.com",
                "*.githubusercontent.com",
            ];
            h.iter()
                .chain(common.iter())
                .map(|s| s.to_string())
                .collect()
        };
        let claude = AgentSpec {
            resume_args: vec!["--continue".to_owned()],
            login_files: vec![".credentials.json".to_owned()],
            egress_allow: hosts(&[
                "api.anthropic.com",
                "console.anthropic.com",
                "statsig.anthropic.com",
                "claude.ai",
                "*.claude.ai",
                "sentry.io",
                "*.sentry.io",
            ]),
            ..mk(
                "claude",
                "/home/agent/.claude",
                &["ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"],
            )
        };
        let gemini = AgentSpec {
            resume_args: vec!["--resume".to_owned(), "latest".to_owned()],
            login_files: vec!["oauth_creds.json".to_owned()],
            egress_allow: hosts(&[
                "generativelanguage.googleapis.com",
                "cloudcode-pa.googleapis.com",
                "oauth2.googleapis.com",
                "www.googleapis.com",
                "accounts.google.com",
                "play.googleapis.com",
            ]),
            ..mk(
                "gemini",
                "/home/agent/.gemini",
                &["GEMINI_API_KEY", "GOOGLE_API_KEY"],
            )
        };
        BTreeMap::from([("claude".to_owned(), claude), ("gemini".to_owned(), gemini)])
    }
}
