//! The credential broker: the agent's API key (or login) stays outside the
//! box. The box gets a placeholder key and a base URL pointing at the
//! broker, which listens in the egress sidecar (reached by name on the
//! instance's own network, never from the host). For each call it checks
//! the placeholder, puts the real key in its place, sends the call to the
//! configured upstream only, and meters the response's usage into the
//! instance's ledger, refusing calls once a budget is spent.
//!
//! The key reaches the sidecar on its standard input, once, after it
//! starts: never in an environment, a file or a mount the engine keeps.

pub mod oauth;
pub mod server;
pub mod settings;
pub mod tap;

pub use settings::BrokerFile;

/// The broker's name and port on the instance's network.
pub const BROKER_PORT: u16 = 3129;

/// The agent's keys at a start: the one the broker adds (if any), and the
/// variables kept out of the box's environment.
#[derive(Debug, Default)]
pub struct Keys {
    pub broker: Option<crate::launch::Credential>,
    pub withheld: Vec<String>,
    /// A subscription login kept out of a box that brokers nothing (no
    /// network): it gets a placeholder login file all the same, so that
    /// nothing it copies now leaves on a later start with a network.
    pub login: Option<crate::launch::OAuthLogin>,
}

/// Decides where the agent's key goes: `env` copies it into the box as
/// before; `none` passes no key; `broker` (the default) hands a key set in
/// the caller's environment to the broker, in a container with a network
/// (the host runtime has no box to keep it out of; with no network the
/// agent cannot call its API anyway, and gets no key).
pub fn keys(
    eff: &crate::state::config::Effective,
    container: bool,
    logins: &[(std::path::PathBuf, String)],
) -> crate::core::error::Result<Keys> {
    use crate::state::config::{CredentialMode, EgressPolicy};
    let agent = &eff.agent;
    let Some(api) = agent.api() else {
        return Ok(Keys::default());
    };
    // The API's key variables the agent takes from the caller (all of
    // them when `credentials.api` names the API).
    let explicit = agent.credentials.api != crate::state::config::ApiKind::Auto;
    let key_vars: Vec<String> = api
        .key_vars()
        .iter()
        .filter(|v| explicit || agent.env_passthrough.iter().any(|p| p == *v))
        .map(|v| v.to_string())
        .collect();
    let mode = agent.credentials.mode;
    if mode == CredentialMode::Env || (mode == CredentialMode::Broker && !container) {
        return Ok(Keys::default());
    }
    let found = key_vars
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|k| !k.is_empty()));
    let no_network = eff.settings.networking.egress == EgressPolicy::None;
    if mode != CredentialMode::Broker || no_network {
        return Ok(Keys {
            broker: None,
            withheld: key_vars,
            login: (mode == CredentialMode::Broker
                && api == crate::state::config::ApiKind::Anthropic)
                .then(|| unbrokered(logins))
                .flatten(),
        });
    }
    // No key: a subscription login (an API key wins, as with the CLI).
    let (key, oauth) = match found {
        // The login stays out of the box all the same.
        Some(key) => (crate::core::types::Secret::new(key), unbrokered(logins)),
        None => match oauth_login(eff, api, logins)? {
            Some(found) => found,
            None => {
                return Ok(Keys {
                    broker: None,
                    withheld: key_vars,
                    login: None,
                })
            }
        },
    };
    let base_var = api.base_url_var();
    let host_base = base_var.and_then(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
    let url = agent
        .credentials
        .upstream
        .clone()
        .or(host_base)
        .or(api.default_upstream().map(str::to_owned))
        .unwrap_or_default();
    let upstream = crate::core::types::Upstream::parse(&url).map_err(|why| {
        crate::core::error::Error::Invalid(format!(
            "the upstream of the credential broker: {why} (set agents.<agent>.credentials.upstream)"
        ))
    })?;
    let mut withheld = key_vars;
    withheld.extend(base_var.map(str::to_owned));
    Ok(Keys {
        broker: Some(crate::launch::Credential {
            api,
            key,
            upstream,
            oauth,
        }),
        withheld,
        login: None,
    })
}

/// The agent's subscription login, if it has one, to keep out of the box
/// though its tokens are not brokered.
fn unbrokered(logins: &[(std::path::PathBuf, String)]) -> Option<crate::launch::OAuthLogin> {
    let (file, inside, _) = find_login(logins)?;
    Some(crate::launch::OAuthLogin {
        file: file.clone(),
        inside: inside.clone(),
        token_url: oauth::token_url(None).ok()?,
        brokered: false,
    })
}

/// The first of the agent's shared login files that holds a Claude
/// subscription login.
fn find_login(
    logins: &[(std::path::PathBuf, String)],
) -> Option<(&std::path::PathBuf, &String, oauth::Login)> {
    logins
        .iter()
        .find_map(|(f, i)| oauth::Login::read(f).map(|l| (f, i, l)))
}

/// The first of the agent's shared login files (host path, path inside)
/// that holds a Claude subscription login, refreshed first when it expires
/// within minutes: the broker's line with its access token, and the login.
#[allow(clippy::type_complexity)]
fn oauth_login(
    eff: &crate::state::config::Effective,
    api: crate::state::config::ApiKind,
    logins: &[(std::path::PathBuf, String)],
) -> crate::core::error::Result<
    Option<(
        crate::core::types::Secret,
        Option<crate::launch::OAuthLogin>,
    )>,
> {
    if api != crate::state::config::ApiKind::Anthropic {
        return Ok(None);
    }
    let Some((file, inside, login)) = find_login(logins) else {
        return Ok(None);
    };
    let token_url = oauth::token_url(eff.agent.credentials.token_url.as_deref())?;
    let login = if login.expiring(oauth::now_ms()) {
        match oauth::refresh_file_blocking(file, &token_url, login.access.expose()) {
            Ok(l) => l,
            Err(e) => {
                crate::core::warning::report_warn(format!(
                    "ai-sessctl: warning: the subscription login in {} expires and could not be refreshed: {e}",
                    file.display()
                ));
                login
            }
        }
    } else {
        login
    };
    Ok(Some((
        login.stdin_line(),
        Some(crate::launch::OAuthLogin {
            file: file.clone(),
            inside: inside.clone(),
            token_url,
            brokered: true,
        }),
    )))
}

/// A placeholder key: the shape of the API's own keys (clients check it),
/// random per instance, worthless anywhere but at its broker.
pub fn placeholder(api: crate::state::config::ApiKind) -> String {
    let mut raw = [0u8; 24];
    // A failed random source leaves zeros: still a placeholder, and the
    // broker only ever adds the key for its own box's network.
    let _ = getrandom::fill(&mut raw);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    match api {
        crate::state::config::ApiKind::Anthropic => format!("sk-ant-api03-aisessions-{hex}"),
        crate::state::config::ApiKind::Gemini => format!("AIzaSy-aisessions-{hex}"),
        _ => format!("sk-aisessions-{hex}"),
    }
}
