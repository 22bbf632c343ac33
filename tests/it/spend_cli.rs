//! The spend meter as a user sees it: ledgers written by hand into a state
//! home (the broker's on-disk contract: `meter/<id>/usage.jsonl`, a JSON
//! line per call) and what `spend`, `list`, the API and the budget alerts
//! make of them. No engine is needed: the instances are planted stopped.

use crate::api_support::{token, Serve};
use crate::common::*;
use serde_json::{json, Value};
use std::io::Write;

fn ago(minutes: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes)).to_rfc3339()
}

/// Stopped instances `ids` in the registry (no process, no container).
fn plant(env: &Env, ids: &[&str]) {
    let instances: serde_json::Map<String, Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let (name, mode) = id.rsplit_once('-').unwrap();
            let path = env.project(name).to_string_lossy().into_owned();
            let v = json!({
                "id": id, "project_path": path, "project_name": name, "mode": mode,
                "status": "stopped", "port": env.port_base + 1 + n as u16,
                "resources": {}, "timestamps": {"created": ago(600), "stopped": ago(60)},
                "config": {},
            });
            (id.to_string(), v)
        })
        .collect();
    std::fs::write(
        env.state().join("registry.json"),
        serde_json::to_vec_pretty(&json!({"version": 1, "instances": instances})).unwrap(),
    )
    .unwrap();
}

/// Appends calls to the ledger of `id`, as its broker does.
fn ledger(env: &Env, id: &str, records: &[Value]) {
    let dir = env.state().join("meter").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("usage.jsonl"))
        .unwrap();
    for r in records {
        writeln!(f, "{r}").unwrap();
    }
}

fn call(minutes_ago: i64, model: &str, tokens: Value) -> Value {
    let mut v = json!({"ts": ago(minutes_ago), "model": model, "status": 200});
    for (k, n) in tokens.as_object().unwrap() {
        v[k] = n.clone();
    }
    v
}

/// `api-claude`: $4.80 + $0.20 in the last hour and an unpriced call 5 h
/// ago; `api-gemini`: no call; `old-claude`, removed: $1.00 30 h ago.
fn world() -> Env {
    let env = Env::new();
    plant(&env, &["api-claude", "api-gemini"]);
    ledger(
        &env,
        "api-claude",
        &[
            call(
                300,
                "mystery-model",
                json!({"input_tokens": 7, "output_tokens": 3}),
            ),
            call(
                20,
                "claude-haiku-4-5-20251001",
                json!({"input_tokens": 200_000}),
            ),
            call(
                10,
                "claude-sonnet-4-5-20250929",
                json!({"input_tokens": 1_000_000, "output_tokens": 100_000,
                       "cache_read_input_tokens": 1_000_000, "cache_creation_input_tokens": 0}),
            ),
        ],
    );
    ledger(
        &env,
        "old-claude",
        &[call(
            30 * 60,
            "claude-opus-4-5",
            json!({"output_tokens": 40_000}),
        )],
    );
    env
}

/// Rows of a table: cells split on runs of 2+ spaces.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn usd(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn spend_without_calls_says_so_and_an_unknown_id_is_an_error() {
    let env = Env::new();
    plant(&env, &["api-claude"]);
    assert_eq!(env.ok(&["spend"]).trim(), "No brokered calls yet.");
    assert_eq!(
        env.ok(&["spend", "api-claude"]).trim(),
        "No brokered calls of api-claude yet."
    );
    let out = env.run(&["spend", "nope-claude"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no instance nope-claude"),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["spend", "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("today"), "{}", stderr(&out));
}

#[test]
fn spend_sums_each_ledger_and_the_total_with_removed_instances_marked() {
    let env = world();
    let out = env.ok(&["spend"]);
    let rows = table(&out);
    assert_eq!(
        rows[0],
        [
            "INSTANCE",
            "REQUESTS",
            "INPUT",
            "OUTPUT",
            "CACHE WRITE",
            "CACHE READ",
            "COST"
        ],
        "{out}"
    );
    assert_eq!(
        rows[1],
        [
            "api-claude",
            "3",
            "1200007",
            "100003",
            "0",
            "1000000",
            "$5.00+?"
        ],
        "{out}"
    );
    assert_eq!(
        rows[2],
        ["old-claude (removed)", "1", "0", "40000", "0", "0", "$1.00"],
        "{out}"
    );
    assert_eq!(
        rows[3],
        ["TOTAL", "4", "1200007", "140003", "0", "1000000", "$6.00+?"],
        "{out}"
    );
    assert!(out.contains("price unknown for \"mystery-model\""), "{out}");

    let v: Value = serde_json::from_str(&env.ok(&["spend", "--json"])).unwrap();
    let total = &v["total"];
    assert_eq!(total["requests"], 4, "{v:#}");
    assert_eq!(total["input_tokens"], 1_200_007, "{v:#}");
    assert_eq!(total["output_tokens"], 140_003, "{v:#}");
    assert_eq!(total["cache_creation_input_tokens"], 0, "{v:#}");
    assert_eq!(total["cache_read_input_tokens"], 1_000_000, "{v:#}");
    assert!(close(usd(&total["cost_usd"]), 6.0), "{v:#}");
    assert_eq!(total["unpriced_models"], json!(["mystery-model"]), "{v:#}");
    let inst = v["instances"].as_array().unwrap();
    assert_eq!(inst.len(), 2, "{v:#}");
    assert_eq!(inst[0]["instance"], "api-claude");
    assert!(inst[0].get("removed").is_none(), "{v:#}");
    assert_eq!(inst[1]["instance"], "old-claude");
    assert_eq!(inst[1]["removed"], true, "{v:#}");
    assert!(close(usd(&inst[1]["cost_usd"]), 1.0), "{v:#}");

    // One instance, and a window: the unpriced call (5 h) and the removed
    // one's (30 h) are older than an hour.
    let v: Value =
        serde_json::from_str(&env.ok(&["spend", "api-claude", "--since", "1h", "--json"])).unwrap();
    assert_eq!(v["instances"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["total"]["requests"], 2, "{v:#}");
    assert!(close(usd(&v["total"]["cost_usd"]), 5.0), "{v:#}");
    assert!(v["total"].get("unpriced_models").is_none(), "{v:#}");
    let out = env.ok(&["spend", "--since", "30m"]);
    assert!(
        table(&out).iter().any(|r| r[0] == "TOTAL" && r[1] == "2"),
        "{out}"
    );
    let v: Value = serde_json::from_str(&env.ok(&["spend", "--since", "today", "--json"])).unwrap();
    let old = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance"] == "old-claude")
        .unwrap();
    assert_eq!(old["requests"], 0, "yesterday's call is not today's: {v:#}");
    // The removed instance's ledger, by its id.
    let v: Value = serde_json::from_str(&env.ok(&["spend", "old-claude", "--json"])).unwrap();
    assert_eq!(v["total"]["requests"], 1, "{v:#}");
}

#[test]
fn list_shows_a_spend_column_and_a_spend_object() {
    let env = world();
    let out = env.ok(&["list"]);
    let rows = table(&out);
    assert_eq!(rows[0].last().unwrap(), "SPEND", "{out}");
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    assert_eq!(row("api-claude").last().unwrap(), "$5.00+?", "{out}");
    assert_eq!(row("api-gemini").last().unwrap(), "-", "{out}");
    assert!(!out.contains("old-claude"), "a removed one is not listed");

    let v: Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    let by = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()["spend"]
            .clone()
    };
    let s = by("api-claude");
    assert_eq!(s["requests"], 3, "{v:#}");
    assert_eq!(s["input_tokens"], 1_200_007, "{v:#}");
    assert_eq!(s["cache_read_input_tokens"], 1_000_000, "{v:#}");
    assert!(close(usd(&s["cost_usd"]), 5.0), "{v:#}");
    assert_eq!(s["unpriced_models"], json!(["mystery-model"]), "{v:#}");
    let s = by("api-gemini");
    assert_eq!(s["requests"], 0, "{v:#}");
    assert_eq!(s["cost_usd"], 0.0, "{v:#}");
    // `show` too.
    let out = env.ok(&["show", "api-claude"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("spend:") && l.ends_with("$5.00+?")),
        "{out}"
    );
    let v: Value = serde_json::from_str(&env.ok(&["show", "api-claude", "--json"])).unwrap();
    assert_eq!(v["spend"]["requests"], 3, "{v:#}");
}

#[test]
fn hostile_model_names_are_printed_escaped() {
    let env = Env::new();
    plant(&env, &["api-claude"]);
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\nFAKE ROW\u{202e}\u{9b}";
    ledger(
        &env,
        "api-claude",
        &[call(5, evil, json!({"input_tokens": 5}))],
    );
    for args in [
        &["spend"][..],
        &["spend", "--json"],
        &["list"],
        &["list", "--json"],
    ] {
        let out = env.run(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = format!("{}{}", stdout(&out), stderr(&out));
        for bad in ['\u{1b}', '\u{7}', '\u{202e}', '\u{9b}'] {
            assert!(
                !text.contains(bad),
                "{args:?} printed {bad:?} raw: {text:?}"
            );
        }
        assert!(
            !text.lines().any(|l| l.starts_with("FAKE ROW")),
            "{args:?}: a newline of the model name started a line: {text}"
        );
    }
    // Still said, escaped.
    let out = env.ok(&["spend"]);
    assert!(out.contains("pwned") && out.contains("FAKE ROW"), "{out}");
    let v: Value = serde_json::from_str(&env.ok(&["spend", "--json"])).unwrap();
    assert_eq!(v["total"]["unpriced_models"], json!([evil]), "round trip");
}

/// An executable `alerts.command` appending `KIND|LEVEL|INSTANCE|VALUE|
/// THRESHOLD` per run to `alerts.log`; returns the config lines for it.
fn alert_config(env: &Env, budget: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let log = env.projects.path().join("alerts.log");
    let script = env.projects.path().join("on-alert.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '%s|%s|%s|%s|%s\\n' \"$AI_ALERT_KIND\" \"$AI_ALERT_LEVEL\" \
             \"$AI_ALERT_INSTANCE\" \"$AI_ALERT_VALUE\" \"$AI_ALERT_THRESHOLD\" >>'{}'\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    env.write_config(&format!(
        "[alerts]\ncommand = [\"{}\"]\n\n[budget]\n{budget}\n",
        script.display()
    ));
    log
}

fn alert_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_instance_budget_alerts_once_at_80_percent_and_again_at_100() {
    let env = world();
    // $5.00 of $6.00: 83 %.
    let log = alert_config(&env, "instance_usd = 6.0");
    env.ok(&["spend"]);
    env.ok(&["spend", "--json"]);
    env.ok(&["list"]);
    env.ok(&["list", "--json"]);
    assert_eq!(
        alert_lines(&log),
        ["BUDGET|warning|api-claude|$5.00|$6.00"],
        "once per crossing"
    );
    assert_eq!(env.instance("api-claude")["alerts"]["BUDGET"], "warning");
    // A call more: $6.50, the budget is spent.
    ledger(
        &env,
        "api-claude",
        &[call(
            1,
            "claude-sonnet-4-5",
            json!({"output_tokens": 100_000}),
        )],
    );
    let out = env.run(&["spend"]);
    assert!(
        stderr(&out).contains("budget spent: api-claude")
            && stderr(&out).contains("config set api-claude budget.instance_usd"),
        "{}",
        stderr(&out)
    );
    env.ok(&["list"]);
    assert_eq!(
        alert_lines(&log),
        [
            "BUDGET|warning|api-claude|$5.00|$6.00",
            "BUDGET|critical|api-claude|$6.50|$6.00"
        ]
    );
    let events = std::fs::read_to_string(env.state().join("logs/session-manager.log")).unwrap();
    assert!(
        events.contains("budget spent: api-claude has spent $6.50 of its $6.00 budget"),
        "{events}"
    );
    // Raised well above: back to ok, no alert; re-armed.
    env.ok(&["config", "set", "--global", "budget.instance_usd", "100"]);
    env.ok(&["spend"]);
    assert_eq!(alert_lines(&log).len(), 2);
    assert_eq!(env.instance("api-claude")["alerts"]["BUDGET"], "ok");
}

#[test]
fn the_daily_budget_counts_every_ledger_of_today_and_alerts_once() {
    let env = Env::new();
    plant(&env, &["api-claude"]);
    // $4.50 today here, $1.00 today of a removed instance, $9 yesterday.
    ledger(
        &env,
        "api-claude",
        &[
            call(2, "claude-sonnet-4-5", json!({"output_tokens": 300_000})),
            call(
                26 * 60,
                "claude-sonnet-4-5",
                json!({"output_tokens": 600_000}),
            ),
        ],
    );
    ledger(
        &env,
        "gone-claude",
        &[call(3, "claude-opus-4-5", json!({"output_tokens": 40_000}))],
    );
    let log = alert_config(&env, "daily_usd = 6.5");
    env.ok(&["list"]);
    env.ok(&["spend"]);
    env.ok(&["list"]);
    assert_eq!(
        alert_lines(&log),
        ["DAILY_BUDGET|warning||$5.50|$6.50"],
        "85 % of the day's budget, once"
    );
    assert_eq!(env.registry()["daily_budget"]["level"], "warning");
}

#[test]
fn a_budget_change_reaches_every_broker_settings_file() {
    let env = world();
    let file = env.state().join("net/api-claude/broker.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({
            "instance": "api-claude", "api": "anthropic",
            "upstream": {"tls": true, "host": "api.anthropic.com", "port": 443, "base_path": ""},
            "placeholder": "sk-ant-api03-aisessions-0", "budget": {}, "prices": {},
        }))
        .unwrap(),
    )
    .unwrap();
    let out = env.run(&["config", "set", "--global", "budget.daily_usd", "12.5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(v["budget"]["daily_usd"], 12.5, "{v:#}");
    assert_eq!(v["placeholder"], "sk-ant-api03-aisessions-0", "{v:#}");
    assert!(v["prices"]["claude-sonnet-4-5"].is_object(), "{v:#}");
}

#[test]
fn the_api_serves_spend_and_each_instance_carries_its_own() {
    let env = world();
    let srv = Serve::start(&env);
    let tok = token(&env);
    let r = srv.req("GET", "/api/v1/spend").bearer(&tok).send();
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let cli: Value = serde_json::from_str(&env.ok(&["spend", "--json"])).unwrap();
    assert_eq!(
        v["instances"], cli["instances"],
        "the same data as spend --json"
    );
    assert_eq!(v["total"]["requests"], 4, "{v:#}");
    let r = srv.req("GET", "/api/v1/spend?since=1h").bearer(&tok).send();
    assert_eq!(r.json()["total"]["requests"], 2);
    let r = srv
        .req("GET", "/api/v1/spend?since=soon")
        .bearer(&tok)
        .send();
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_request"));
    let r = srv.req("GET", "/api/v1/spend").send();
    assert_eq!(r.status, 401, "a token is needed");

    let spend_of = |path: &str| -> Value {
        let r = srv.req("GET", path).bearer(&tok).send();
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        match v.as_array() {
            Some(list) => list.iter().find(|i| i["id"] == "api-claude").unwrap()["spend"].clone(),
            None => v["spend"].clone(),
        }
    };
    assert_eq!(spend_of("/api/v1/instances")["requests"], 3);
    assert_eq!(spend_of("/api/v1/instances/api-claude")["requests"], 3);
    // A new call shows at the next request (the registry did not change).
    ledger(
        &env,
        "api-claude",
        &[call(0, "claude-sonnet-4-5", json!({"output_tokens": 1}))],
    );
    assert_eq!(spend_of("/api/v1/instances")["requests"], 4);
    // The dashboard's data: per row, today and all time, 24 hours.
    let r = srv.req("GET", "/api/v1/resources").bearer(&tok).send();
    let v = r.json();
    assert_eq!(v["spend"]["all_time"]["requests"], 5, "{v:#}");
    assert_eq!(v["spend"]["hourly_usd"].as_array().unwrap().len(), 24);
    let row = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["instance"] == "api-claude")
        .unwrap();
    assert_eq!(row["spend"]["requests"], 4, "{v:#}");
}

#[test]
fn gc_removes_a_removed_instances_ledger_two_days_after_its_last_call() {
    let _strays = crate::common::gc_turn(); // it runs gc
    let env = Env::new();
    plant(&env, &["api-claude"]);
    let old = |id: &str| {
        ledger(
            &env,
            id,
            &[call(
                3 * 24 * 60,
                "claude-sonnet-4-5",
                json!({"input_tokens": 1}),
            )],
        )
    };
    // Registered: kept however old.
    old("api-claude");
    // Removed, last call 3 days ago: collected.
    old("gone-claude");
    // Removed, an old call and one a day ago: kept (the newest counts).
    old("recent-claude");
    ledger(
        &env,
        "recent-claude",
        &[call(
            24 * 60,
            "claude-sonnet-4-5",
            json!({"input_tokens": 1}),
        )],
    );
    let meter = env.state().join("meter");
    let out = env.ok(&["gc", "--dry-run"]);
    assert!(
        out.contains("would remove spend ledger of gone-claude"),
        "{out}"
    );
    assert!(
        meter.join("gone-claude").exists(),
        "a dry run removes nothing"
    );
    let out = env.ok(&["gc"]);
    assert!(out.contains("removed spend ledger of gone-claude"), "{out}");
    assert!(
        !out.contains("recent-claude") && !out.contains("api-claude"),
        "{out}"
    );
    assert!(!meter.join("gone-claude").exists());
    assert!(meter.join("recent-claude").exists());
    assert!(meter.join("api-claude").exists());
}

#[test]
fn health_watch_raises_a_budget_alert_once_without_any_command() {
    let env = Env::new();
    ledger(
        &env,
        "solo-claude",
        &[call(
            1,
            "claude-sonnet-4-5",
            json!({"output_tokens": 300_000}),
        )],
    );
    let log = alert_config(&env, "daily_usd = 5.0\n\n[health]\ncheck_interval = \"1s\"");
    let mut watch = env
        .cmd()
        .args(["health", "watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let raised = wait_until(std::time::Duration::from_secs(15), || {
        !alert_lines(&log).is_empty()
    });
    // A few more passes of the sampler.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    assert!(raised, "no alert: {}", stdout(&out));
    assert_eq!(
        alert_lines(&log),
        ["DAILY_BUDGET|warning||$4.50|$5.00"],
        "once, though the watch checked again"
    );
    assert!(
        stdout(&out).contains("alert: DAILY_BUDGET warning: $4.50 spent today, 90 %"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_instance_counts_its_calls_since_it_was_created() {
    let env = Env::new();
    plant(&env, &["api-claude"]);
    // Made again 10 minutes ago: the calls before were an earlier
    // instance's of the same id (rm, then a new start).
    let path = env.state().join("registry.json");
    let mut reg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    reg["instances"]["api-claude"]["timestamps"]["created"] = json!(ago(10));
    std::fs::write(&path, serde_json::to_vec(&reg).unwrap()).unwrap();
    ledger(
        &env,
        "api-claude",
        &[
            call(60, "claude-sonnet-4-5", json!({"output_tokens": 400_000})),
            call(5, "claude-sonnet-4-5", json!({"output_tokens": 100_000})),
        ],
    );
    let log = alert_config(&env, "instance_usd = 7.0");
    let v: Value = serde_json::from_str(&env.ok(&["list", "--json"])).unwrap();
    assert_eq!(v[0]["spend"]["requests"], 1, "{v:#}");
    assert!(close(usd(&v[0]["spend"]["cost_usd"]), 1.5), "{v:#}");
    let v: Value = serde_json::from_str(&env.ok(&["spend", "--json"])).unwrap();
    assert_eq!(v["total"]["requests"], 1, "{v:#}");
    // $7.50 in the ledger, $1.50 of it this instance's: under 80 % of $7.
    assert!(alert_lines(&log).is_empty(), "{:?}", alert_lines(&log));
}

/// A restart keeps the instance's spend (its ledger) and so how far it is
/// over its budget: no second alert for the same crossing.
#[test]
fn a_restarted_instance_is_not_alerted_again_for_the_same_crossing() {
    let env = Env::new();
    let log = alert_config(&env, "instance_usd = 5.0");
    let text = std::fs::read_to_string(env.state().join("config.toml")).unwrap();
    std::fs::write(
        env.state().join("config.toml"),
        format!("[global]\nruntime = \"host\"\n\n[agents.claude]\ncommand = [\"sleep\", \"300\"]\n\n{text}"),
    )
    .unwrap();
    let proj = env.project("again");
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_owned();
    ledger(
        &env,
        &id,
        &[call(
            0,
            "claude-sonnet-4-5",
            json!({"output_tokens": 300_000}),
        )],
    );
    env.ok(&["list"]);
    assert_eq!(alert_lines(&log).len(), 1, "{:?}", alert_lines(&log));
    env.ok(&["stop", &id]);
    let out = env.run_in(&proj, &["start", "--detach", "--mode", "claude"]);
    assert!(out.status.success(), "{}", stderr(&out));
    env.ok(&["list"]);
    env.ok(&["spend"]);
    let lines = alert_lines(&log);
    env.ok(&["stop", &id]);
    assert_eq!(lines.len(), 1, "alerted again after a restart: {lines:?}");
    assert_eq!(env.instance(&id)["alerts"]["BUDGET"], "warning");
}
