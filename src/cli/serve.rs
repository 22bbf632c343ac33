//! `serve`: the API server, and what it says on the terminal.

use super::Ctx;
use crate::api::Notice;
use crate::core::error::Result;
use std::net::SocketAddr;

pub fn serve(ctx: &Ctx, addr: Option<SocketAddr>, allow_remote: bool) -> Result<u8> {
    crate::api::serve(ctx, addr, allow_remote, &say)?;
    Ok(0)
}

fn say(notice: Notice) {
    match notice {
        Notice::Listening {
            bound,
            login_url,
            token_file,
        } => {
            use std::io::Write;
            println!("ai-sessions API and dashboard on http://{bound}/");
            println!("open (once): {login_url}");
            println!("token for API clients: {}", token_file.display());
            let _ = std::io::stdout().flush();
        }
        Notice::Overdue(grace) => eprintln!(
            "requests still open after {}s; stopping anyway",
            grace.as_secs()
        ),
        Notice::Stopped => eprintln!("server stopped"),
    }
}
