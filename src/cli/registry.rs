//! `registry path|check|repair`.

use super::Ctx;
use crate::cli::RegistryCmd;
use crate::core::error::Result;

pub fn registry(ctx: &Ctx, cmd: RegistryCmd) -> Result<u8> {
    match cmd {
        RegistryCmd::Path => println!("{}", ctx.dirs.registry().display()),
        RegistryCmd::Check => {
            let reg = ctx.store.load()?;
            let live = reg.live_count();
            println!(
                "{}: OK ({} instances, {live} live, format version {})",
                ctx.dirs.registry().display(),
                reg.instances.len(),
                reg.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "seed".into())
            );
        }
        RegistryCmd::Repair => {
            let mut warnings = crate::core::warning::Warnings::new();
            let found = crate::service::repair::repair(ctx, &mut warnings);
            super::output::warnings(warnings);
            println!(
                "registry repaired: {} instance(s) recovered from the engine and host processes",
                found?
            );
        }
    }
    Ok(0)
}
