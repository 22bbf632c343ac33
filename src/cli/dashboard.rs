//! `dashboard --json`: the seed's `generate_dashboard_data` shape.

use super::Ctx;
use crate::cli::output::print_json;
use crate::core::error::Result;

pub fn dashboard(ctx: &Ctx, json: bool) -> Result<u8> {
    let mut warnings = crate::core::warning::Warnings::new();
    let v = crate::service::dashboard::value(ctx, &mut warnings);
    crate::cli::output::warnings(warnings);
    let v = v?;
    if json {
        print_json(&v)?;
        return Ok(0);
    }
    let n = |k: &str| v["summary"][k].as_u64().unwrap_or(0);
    let load: Vec<String> = v["system"]["load"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_f64())
        .map(|x| format!("{x:.2}"))
        .collect();
    // Those that need you, counted as everywhere else (none: not said).
    let waiting = match n("needs_you") {
        0 => String::new(),
        w => format!(", {w} need you"),
    };
    println!(
        "instances: {} running, {} paused, {} stopped, {} error{waiting}",
        n("running"),
        n("paused"),
        n("stopped"),
        n("error")
    );
    println!(
        "host: load {}, memory free {}%",
        load.join(" "),
        v["system"]["memory_free_percent"]
    );
    let rows: Vec<Vec<String>> = v["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("-").to_owned();
            let cpu = i["cpu_percent"]
                .as_f64()
                .map(|c| format!("{c:.1}%"))
                .unwrap_or_else(|| "-".into());
            vec![s("instance"), s("status"), cpu, s("health")]
        })
        .collect();
    if !rows.is_empty() {
        println!();
        print!(
            "{}",
            crate::cli::output::table(&["ID", "STATUS", "CPU", "HEALTH"], rows, &[2])
        );
    }
    Ok(0)
}
