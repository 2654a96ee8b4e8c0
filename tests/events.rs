//! The audit trail's actions are one vocabulary (`Action` in `src/api/audit.rs`, issue 32): the
//! state database's CHECK names exactly the enum's actions and refuses any other; no other file in
//! `src/` spells an action or event name as a literal; and a receiver whose event filter matches no
//! event is refused at start.

use std::path::Path;

use rollout_dashboard::api::audit::{event_names, Action};
use rollout_dashboard::server::config::Config;
use sqlx::PgPool;

#[sqlx::test(migrations = "./migrations")]
async fn the_state_database_takes_exactly_the_actions_the_code_names(pool: PgPool) {
    let def: String = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'audit_log_action_known'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut in_database: Vec<String> = def.split('\'').skip(1).step_by(2).map(str::to_string).collect();
    in_database.sort();
    let mut in_code: Vec<String> = Action::ALL.iter().map(|a| a.as_str().to_string()).collect();
    in_code.sort();
    assert_eq!(in_database, in_code);
    for a in Action::ALL {
        assert_eq!(Action::parse(a.as_str()), Some(*a));
    }
    let made_up = sqlx::query(
        "INSERT INTO audit_log (actor, role, action, target, outcome) VALUES ('ana', 'operator', 'flag.sett', '', 'done')",
    )
    .execute(&pool)
    .await;
    assert!(made_up.is_err(), "an action outside the vocabulary is refused");
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_file_but_the_vocabulary_spells_an_action() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let vocabulary = root.join("src/api/audit.rs");
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    assert!(files.len() > 50, "{}", files.len());
    let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).chain(event_names()).collect();
    let mut found = Vec::new();
    for file in files.iter().filter(|f| **f != vocabulary) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for name in &names {
                if line.contains(&format!("\"{name}\"")) || line.contains(&format!("'{name}'")) {
                    found.push(format!("{}:{}: {name}", file.strip_prefix(root).unwrap().display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "spell these as Action::…: {found:#?}");
    // The check itself sees a spelled name.
    assert!("x(\"flag.kill\")".contains(&format!("\"{}\"", Action::FlagKill.as_str())));
}

fn receiver_with_events(events: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("settings.toml");
    std::fs::write(
        &file,
        format!("[[notify.receivers]]\nname = \"pager\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nevents = [{events}]\n"),
    )
    .unwrap();
    let path = file.display().to_string();
    Config::from_vars(|k| match k {
        "STATE_DATABASE_URL" => Some("postgres://127.0.0.1:5432/x".into()),
        "ROLLOUT_CONFIG" => Some(path.clone()),
        _ => None,
    })
    .map_err(|e| e.to_string())
}

#[test]
fn a_receiver_filter_that_matches_no_event_is_refused() {
    assert!(receiver_with_events("\"flag.kill\", \"autopilot.*\", \"rollback.needs_approval\"").is_ok());
    let typo = receiver_with_events("\"flag.kil\"").unwrap_err();
    assert!(typo.contains("\"flag.kil\" matches no event") && typo.contains("flag.kill_failed"), "{typo}");
    assert!(receiver_with_events("\"autopliot.*\"").is_err());
    assert!(receiver_with_events("\"deploy.record\"").is_err(), "an action that is no event");
}
