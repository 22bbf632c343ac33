//! `spend [ID] [--since DURATION|today] [--json]`: what the brokers metered.

use super::Ctx;
use crate::cli::output::{print_json, shown, table};
use crate::core::error::Result;
use crate::core::types::InstanceId;
use crate::service::spend::{self, Report, Since};
use crate::state::spend::Spend;

pub fn spend(ctx: &Ctx, id: Option<InstanceId>, since: Option<Since>, json: bool) -> Result<u8> {
    let report = spend::report(ctx, id.as_ref(), since)?;
    // A look at the spend is a good moment to raise a budget alert the
    // watchers have not (the alert itself goes to the event log and
    // `alerts.command`; here it is said too).
    match spend::budget::check(ctx) {
        Ok(raised) => {
            for a in raised {
                eprintln!("ai-sessctl: {}", shown(&a.message));
            }
        }
        Err(e) => eprintln!("ai-sessctl: warning: budget alerts not checked: {e}"),
    }
    if json {
        print_json(&report)?;
        return Ok(0);
    }
    if report.total.requests == 0 {
        let whose = id.map(|i| format!(" of {i}")).unwrap_or_default();
        match since {
            Some(s) => println!("No brokered calls{whose} {}.", since_shown(s)),
            None => println!("No brokered calls{whose} yet."),
        }
        return Ok(0);
    }
    print!("{}", render(&report));
    Ok(0)
}

fn since_shown(s: Since) -> String {
    match s {
        Since::Today => "today (UTC)".to_owned(),
        Since::Ago(d) => format!("in the last {d}"),
    }
}

fn cells(name: String, s: &Spend) -> Vec<String> {
    let t = &s.tokens;
    vec![
        name,
        s.requests.to_string(),
        t.input_tokens.to_string(),
        t.output_tokens.to_string(),
        t.cache_creation_input_tokens.to_string(),
        t.cache_read_input_tokens.to_string(),
        s.cost_text(),
    ]
}

/// The table, a total row, and what is not priced or budgeted.
fn render(report: &Report) -> String {
    let header = [
        "INSTANCE",
        "REQUESTS",
        "INPUT",
        "OUTPUT",
        "CACHE WRITE",
        "CACHE READ",
        "COST",
    ];
    let mut rows: Vec<Vec<String>> = report
        .instances
        .iter()
        .map(|r| {
            let name = if r.removed {
                format!("{} (removed)", r.instance)
            } else {
                r.instance.clone()
            };
            cells(name, &r.spend)
        })
        .collect();
    rows.push(cells("TOTAL".into(), &report.total));
    // `table` makes every cell printable.
    let mut out = table(&header, rows, &[1, 2, 3, 4, 5, 6]);
    if !report.total.unpriced_models.is_empty() {
        let models: Vec<String> = report
            .total
            .unpriced_models
            .iter()
            .map(|m| {
                if m.is_empty() {
                    "(unnamed)".into()
                } else {
                    format!("{m:?}")
                }
            })
            .collect();
        out.push_str(&shown(&format!(
            "+? price unknown for {}: tokens counted, cost not (set [prices.\"<model>\"] in config)",
            models.join(", ")
        )));
        out.push('\n');
    }
    let b = &report.budget;
    if let Some(d) = b.daily_usd {
        out.push_str(&format!("daily budget: ${d:.2} (UTC day)\n"));
    }
    if let Some(i) = b.instance_usd {
        out.push_str(&format!("instance budget: ${i:.2} each\n"));
    }
    out
}
