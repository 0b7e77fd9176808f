//! The `falconer` binary itself: subcommands, configuration errors, migrations.

use std::process::Command;

fn falconer() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_falconer"));
    // The developer's environment must not leak into these tests.
    for (key, _) in std::env::vars() {
        if key.starts_with("FALCONER__") {
            command.env_remove(key);
        }
    }
    command
}

fn run(command: &mut Command) -> (i32, String, String) {
    let output = command.output().expect("run falconer");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_subcommand() {
    let (code, out, _) = run(falconer().arg("--help"));
    assert_eq!(code, 0);
    for sub in [
        "standalone",
        "hub",
        "manager",
        "analyst",
        "migrate",
        "crdgen",
    ] {
        assert!(out.contains(sub), "{sub} missing from\n{out}");
    }
}

#[test]
fn the_analyst_subcommand_reads_the_analyst_section_and_refuses_bad_values_by_name() {
    let (code, out, err) = run(falconer().args(["analyst", "--print-config"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"half_life_hours\": 24.0"), "{out}");
    let (code, _, err) = run(falconer()
        .args(["analyst", "--print-config"])
        .env("FALCONER__ANALYST__INTERVAL_SECS", "0"));
    assert_eq!(code, 2);
    assert!(err.contains("analyst.interval_secs"), "{err}");
}

#[test]
fn print_config_layers_file_env_and_flags_and_masks_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("falconer.yaml");
    std::fs::write(
        &file,
        "cluster: from-file\nserver:\n  listen: 127.0.0.1:7000\nstore:\n  batch_max_events: 10\n",
    )
    .unwrap();
    let (code, out, err) = run(falconer()
        .args([
            "--config",
            file.to_str().unwrap(),
            "standalone",
            "--print-config",
        ])
        .args(["--database-url", "postgres://hub:s3cret@db:5432/falconer"])
        .env("FALCONER__STORE__BATCH_MAX_EVENTS", "20")
        .env("FALCONER__SERVER__LISTEN", "127.0.0.1:7001")
        .args(["--listen", "127.0.0.1:7002"]));
    assert_eq!(code, 0, "{err}");
    let config: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(config["cluster"], "from-file");
    assert_eq!(config["store"]["batch_max_events"], 20, "env beats file");
    assert_eq!(
        config["server"]["listen"], "127.0.0.1:7002",
        "flags beat env"
    );
    assert_eq!(
        config["store"]["database_url"],
        "postgres://hub:***@db:5432/falconer"
    );
    assert!(!out.contains("s3cret"));
}

#[test]
fn an_unknown_key_or_bad_value_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("falconer.yaml");
    std::fs::write(&file, "ingest:\n  max_body_byte: 10\n").unwrap();
    let (code, _, err) = run(falconer().args(["--config", file.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(err.contains("ingest.max_body_byte"), "{err}");

    let (code, _, err) = run(falconer().env("FALCONER__STORE__QUEUE_MAX_EVENTS", "lots"));
    assert_eq!(code, 2);
    assert!(err.contains("store.queue_max_events"), "{err}");

    let (code, _, err) = run(falconer().args(["--listen", "0.0.0.0:8080"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("server.listen") && err.contains("tokens"),
        "{err}"
    );

    let (code, _, err) = run(falconer().args(["--config", "/nonexistent.yaml"]));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.yaml"), "{err}");
}

#[test]
fn migrate_creates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        run(falconer().args(["migrate", "--data-dir", dir.path().to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("falconer.db").is_file());
    // Applying again is a no-op.
    let (code, _, err) =
        run(falconer().args(["migrate", "--data-dir", dir.path().to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn migrate_reports_an_unreachable_postgres_clearly() {
    let (code, _, err) = run(falconer()
        .args([
            "migrate",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .env("FALCONER__STORE__CONNECT_TIMEOUT_MS", "300"));
    assert_eq!(code, 1);
    assert!(err.contains("store unavailable"), "{err}");
}

#[test]
fn the_example_configuration_is_valid_and_shows_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/falconer.example.yaml");
    let (code, from_example, err) =
        run(falconer().args(["--config", example, "standalone", "--print-config"]));
    assert_eq!(code, 0, "{err}");
    let (_, defaults, _) = run(falconer().args(["standalone", "--print-config"]));
    assert_eq!(from_example, defaults);
}

#[test]
fn a_second_config_file_overrides_the_first_key_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("falconer.yaml");
    let auth = dir.path().join("auth.yaml");
    std::fs::write(&base, "cluster: prod\nauth:\n  ingest_token_sha256: []\n").unwrap();
    let hash = "a".repeat(64);
    std::fs::write(
        &auth,
        format!("auth:\n  tokens:\n    - {{name: falco, sha256: \"{hash}\", scopes: [ingest]}}\n"),
    )
    .unwrap();
    let (code, out, err) = run(falconer().args([
        "--config",
        base.to_str().unwrap(),
        "--config",
        auth.to_str().unwrap(),
        "hub",
        "--print-config",
    ]));
    assert_eq!(code, 0, "{err}");
    let config: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(config["cluster"], "prod", "kept from the first file");
    assert_eq!(
        config["auth"]["tokens"][0]["name"], "falco",
        "added by the second"
    );
}

/// `falconer --config <file> standalone --print-config`: exit code, stdout, stderr.
fn print_config_of(file: &std::path::Path) -> (i32, String, String) {
    run(falconer().args([
        "--config",
        file.to_str().unwrap(),
        "standalone",
        "--print-config",
    ]))
}

#[test]
fn a_consumer_sending_credentials_over_plain_http_is_refused_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("falconer.yaml");
    let consumer = "consumers:\n  - name: central\n    type: falconer\n    secretRef: {name: central}\n    falconer: {url: \"http://central.example:8443\"}\n";
    std::fs::write(&file, consumer).unwrap();
    let (code, _, err) = print_config_of(&file);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("consumers[0].falconer.url"), "{err}");
    assert!(err.contains("allowInsecureHttp"), "{err}");

    std::fs::write(&file, format!("{consumer}    allowInsecureHttp: true\n")).unwrap();
    let (code, _, err) = print_config_of(&file);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_dashboard_url_with_a_query_is_refused_at_start_naming_the_key() {
    let (code, _, err) = run(falconer()
        .args(["standalone", "--print-config"])
        .env("FALCONER__UI__EXTERNAL_URL", "https://falconer.example?x=1"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("ui.external_url"), "{err}");
    let (code, out, err) = run(falconer()
        .args(["standalone", "--print-config"])
        .env("FALCONER__UI__EXTERNAL_URL", "https://falconer.example/"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("https://falconer.example/"), "{out}");
}

#[test]
fn a_consumer_template_that_does_not_compile_stops_start_up_naming_the_consumer_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("falconer.yaml");
    let config = "consumers:\n  - name: chat\n    type: slack\n    slack: {url: \"http://127.0.0.1:9/hook\"}\n    template: \"{{ rule }}\\n{{ pood }}\"\n";
    std::fs::write(&file, config).unwrap();
    let (code, _, err) = print_config_of(&file);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("consumers[0].template: line 2: unknown variable `pood`"),
        "{err}"
    );
    let config = "consumers:\n  - name: files\n    type: stdout\n    aggregate: {window: 60s}\n";
    std::fs::write(&file, config).unwrap();
    let (code, _, err) = print_config_of(&file);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("consumers[0].aggregate: type stdout"), "{err}");
}
