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

pub mod server;
pub mod settings;
pub mod tap;

pub use settings::BrokerFile;

/// The broker's name and port on the instance's network.
pub const BROKER_PORT: u16 = 3129;

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
