//! A Claude subscription login (OAuth) through the broker: the box gets a
//! placeholder login file (a placeholder access token, no refresh token),
//! its calls reach the API with `Authorization: Bearer <real token>`, an
//! expired token is refreshed outside the box (by the host at the start,
//! by the broker on a 401) and the rotated pair lands in the shared login.

use crate::broker_support::{self, host_address, unique_secret, Auth};
use crate::common::{self, cname_in, Env};
use crate::docker_support::*;
use crate::fake_model::{FakeApi, Reply};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn config(env: &Env, image: &str, fake: &FakeApi) {
    let base = format!("http://{}:{}", host_address(), fake.port);
    env.write_config(&format!(
        "[global]\nruntime = \"docker\"\nstop_timeout = \"3s\"\n\n\
         [resources.memory]\nlimit = \"512Mi\"\n\n\
         [agents.claude]\nimage = \"{image}\"\nenv_passthrough = [\"ANTHROPIC_API_KEY\", \"ANTHROPIC_BASE_URL\", \"FAKE_AGENT_STAY\"]\n\n\
         [agents.claude.credentials]\nupstream = \"{base}\"\ntoken_url = \"{base}/v1/oauth/token\"\n"
    ));
}

/// Writes the shared login where `login` keeps it; its (access, refresh)
/// tokens, unique to this test.
fn write_login(env: &Env, expires_at_ms: i64) -> (String, String) {
    let tag = unique_secret("");
    let (access, refresh) = (format!("sk-ant-oat01-{tag}"), format!("sk-ant-ort01-{tag}"));
    let login = serde_json::json!({"claudeAiOauth": {
        "accessToken": access, "refreshToken": refresh, "expiresAt": expires_at_ms,
        "scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}});
    let f = env.state().join("states/claude/.credentials.json");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, login.to_string()).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    (access, refresh)
}

fn shared_login(env: &Env) -> serde_json::Value {
    let f = env.state().join("states/claude/.credentials.json");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600, "the shared login is not 0600");
    assert_eq!(m.uid(), my_uid(), "the shared login changed its owner");
    serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap()
}

fn my_uid() -> u32 {
    // The test's own uid, as the files it creates get.
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::metadata(t.path()).unwrap().uid()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn call_from_box(cid: &str) -> String {
    broker_support::call_from_box(cid, Auth::Login)
}

fn first_call(cid: &str) -> String {
    broker_support::first_call(cid, Auth::Login)
}

/// No secret of `secrets` in the box (see `broker_support`); and no key
/// variable unless `key_var` (a key would win over the login).
fn assert_box_holds_none(cid: &str, secrets: &[&str], key_var: bool) {
    let environ = broker_support::assert_box_holds_none(cid, secrets);
    assert!(
        key_var || !environ.contains("ANTHROPIC_API_KEY="),
        "a key variable would win over the login: {environ}"
    );
}

fn start(env: &Env, proj: &std::path::Path, args: &[&str]) {
    broker_support::start_with_key(env, proj, None, args);
}

#[test]
fn a_login_stays_outside_the_box_and_is_refreshed_there() {
    require_docker!();
    let fake = FakeApi::start();
    let env = Env::new();
    config(&env, common::test_image(), &fake);
    // Expired: the start refreshes it before handing it over.
    let (old_access, old_refresh) = write_login(&env, now_ms() - 60_000);
    let fresh = format!("{}-fresh", old_access);
    let rotated = format!("{old_refresh}-rotated");
    let name = env.unique("oauth");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    start(&env, &proj, &["--egress", "allowlist"]);
    let cid = cname_in(&env, &id);

    let refreshes: Vec<_> = fake
        .seen()
        .into_iter()
        .filter(|s| s.target == "/v1/oauth/token")
        .collect();
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    assert!(refreshes[0].body.contains(&old_refresh));
    let login = shared_login(&env);
    assert_eq!(login["claudeAiOauth"]["accessToken"], fresh.as_str());
    assert_eq!(login["claudeAiOauth"]["refreshToken"], rotated.as_str());
    assert!(login["claudeAiOauth"]["expiresAt"].as_i64().unwrap() > now_ms() + 3_600_000);
    assert_eq!(login["claudeAiOauth"]["subscriptionType"], "max");

    // The box's login: a placeholder, no refresh token, valid for long.
    let boxed: serde_json::Value = serde_json::from_str(&docker_ok(&[
        "exec",
        &cid,
        "cat",
        "/home/agent/.claude/.credentials.json",
    ]))
    .unwrap();
    let o = &boxed["claudeAiOauth"];
    let placeholder = o["accessToken"].as_str().unwrap().to_owned();
    assert!(
        placeholder.starts_with("sk-ant-oat01-aisessions-"),
        "{boxed}"
    );
    assert!(o.get("refreshToken").is_none(), "{boxed}");
    assert!(o["expiresAt"].as_i64().unwrap() >= 4_102_444_800_000);
    assert_eq!(o["scopes"][0], "user:inference");
    assert_eq!(o["subscriptionType"], "max");

    fake.clear();
    let reply = first_call(&cid);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {fresh}").as_str())
    );
    assert_eq!(seen[0].x_api_key, None);
    assert_box_holds_none(&cid, &[&old_access, &old_refresh, &fresh, &rotated], false);

    // Revoked meanwhile: the 401 reaches the agent, and the broker
    // refreshes before the next call, writing the rotated pair back.
    fake.set_reply(Reply {
        status: 401,
        ..Reply::default()
    });
    assert!(call_from_box(&cid).starts_with("HTTP/1.1 401"));
    fake.set_reply(Reply::default());
    fake.clear();
    assert!(call_from_box(&cid).starts_with("HTTP/1.1 200"));
    let fresh2 = format!("{}-fresh", rotated.replace("-ort01-", "-oat01-"));
    let rotated2 = format!("{rotated}-rotated");
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].target == "/v1/oauth/token" && seen[0].body.contains(&rotated));
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some(format!("Bearer {fresh2}").as_str())
    );
    let login = shared_login(&env);
    assert_eq!(login["claudeAiOauth"]["refreshToken"], rotated2.as_str());
    assert_eq!(login["claudeAiOauth"]["accessToken"], fresh2.as_str());
    assert_box_holds_none(&cid, &[&fresh2, &rotated2], false);

    // A restart keeps the placeholder and hands over the current token.
    env.ok(&["stop", &id]);
    start(&env, &proj, &["--egress", "open"]);
    let again = docker_ok(&["exec", &cid, "cat", "/home/agent/.claude/.credentials.json"]);
    assert!(again.contains(&placeholder), "a new placeholder: {again}");
    fake.clear();
    assert!(first_call(&cid).starts_with("HTTP/1.1 200"));
    assert_eq!(
        fake.seen()[0].authorization.as_deref(),
        Some(format!("Bearer {fresh2}").as_str())
    );

    // An API key wins (as with the CLI) and is brokered; the login still
    // stays out of the box, and its placeholder token is worth nothing.
    env.ok(&["stop", &id]);
    let key = format!("sk-ant-api03-REAL-{}", std::process::id());
    broker_support::start_with_key(&env, &proj, Some(&key), &[]);
    let boxed = docker_ok(&["exec", &cid, "cat", "/home/agent/.claude/.credentials.json"]);
    assert!(boxed.contains("sk-ant-oat01-aisessions-"), "{boxed}");
    fake.clear();
    let reply = broker_support::call_from_box(&cid, Auth::Key);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert_eq!(fake.seen()[0].x_api_key.as_deref(), Some(key.as_str()));
    assert_eq!(fake.seen()[0].authorization, None);
    assert!(call_from_box(&cid).starts_with("HTTP/1.1 401"));
    assert_box_holds_none(&cid, &[&key, &fresh2, &rotated2], true);
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn the_real_claude_code_completes_a_turn_with_a_brokered_login() {
    require_docker!();
    let Some(image) = real_image("claude") else {
        return;
    };
    let fake = FakeApi::with(Reply {
        text: "pong from the fake API".into(),
        ..Reply::default()
    });
    let env = Env::new();
    config(&env, &image, &fake);
    let (access, refresh) = write_login(&env, now_ms() + 8 * 3_600_000);
    let name = env.unique("oauth-claude");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    start(&env, &proj, &["--", "-p", "say pong"]);
    let logs = broker_support::output_once_ended(&env, &id, &fake);
    assert!(
        logs.contains("pong from the fake API"),
        "the reply is not shown: {logs}\nthe API saw {:?}",
        fake.seen()
    );
    let calls = broker_support::model_calls(&fake);
    assert!(!calls.is_empty());
    for c in &calls {
        assert_eq!(
            c.authorization.as_deref(),
            Some(format!("Bearer {access}").as_str()),
            "{c:?}"
        );
        assert!(!c.credentials().iter().any(|k| k.contains("aisessions")));
    }
    assert!(
        fake.seen().iter().all(|s| !s.body.contains(&refresh)),
        "the refresh token was sent though the login is valid"
    );
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn a_box_with_no_network_gets_a_placeholder_login_too() {
    require_docker!();
    let fake = FakeApi::start();
    let env = Env::new();
    config(&env, common::test_image(), &fake);
    let (access, refresh) = write_login(&env, now_ms() + 8 * 3_600_000);
    let name = env.unique("oauth-none");
    let proj = env.project(&name);
    let id = format!("{name}-claude");
    start(&env, &proj, &["--egress", "none"]);
    let cid = cname_in(&env, &id);
    let boxed = docker_ok(&["exec", &cid, "cat", "/home/agent/.claude/.credentials.json"]);
    assert!(boxed.contains("sk-ant-oat01-aisessions-"), "{boxed}");
    assert_box_holds_none(&cid, &[&access, &refresh], false);
    assert!(fake.seen().is_empty(), "{:?}", fake.seen());
    env.ok(&["rm", "-f", &id]);
}

#[test]
fn a_clone_box_gets_the_placeholder_login_not_the_token() {
    require_docker!();
    let fake = FakeApi::start();
    let env = Env::new();
    config(&env, common::test_image(), &fake);
    let (access, refresh) = write_login(&env, now_ms() + 8 * 3_600_000);
    let name = env.unique("oauth-clone");
    let proj = env.project(&name);
    common::git(&proj, &["init", "-q", "-b", "main"]);
    std::fs::write(proj.join("README"), "one\n").unwrap();
    common::git(&proj, &["add", "."]);
    common::git(&proj, &["commit", "-q", "-m", "init"]);
    let id = format!("{name}-claude");
    // A copy of the real login in the instance's own state dir here (as
    // an older shared state migrated into it leaves one): not sent either.
    let own = env.state().join(format!("states/{id}"));
    std::fs::create_dir_all(&own).unwrap();
    std::fs::copy(
        env.state().join("states/claude/.credentials.json"),
        own.join(".credentials.json"),
    )
    .unwrap();
    start(&env, &proj, &["--egress", "none", "--clone"]);
    let cid = cname_in(&env, &id);
    let mounts = docker_ok(&["inspect", "-f", "{{range .Mounts}}{{.Type}} {{end}}", &cid]);
    assert!(!mounts.contains("bind"), "{mounts}");
    let boxed = docker_ok(&["exec", &cid, "cat", "/home/agent/.claude/.credentials.json"]);
    assert!(boxed.contains("sk-ant-oat01-aisessions-"), "{boxed}");
    assert_box_holds_none(&cid, &[&access, &refresh], false);
    env.ok(&["rm", "-f", &id]);
}
