//! The step that posts scanner reports to the hub: a container running `sh` + `curl` over
//! the JSON files another step left in a shared directory.
//!
//! The token comes from the environment (filled from the Secret) and is handed to curl on
//! stdin (`-H @-`) by `printf`, a shell builtin, so it never appears in a process's argument
//! list, the pod spec or a log line.

use super::{TOKEN_ENV, hub_ca_file, ingest_url, mount, restricted};
use falconer_model::crd::Policy;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector};

/// Numeric user for unprivileged steps: `runAsNonRoot` cannot check a named image user.
pub const NOBODY: i64 = 65534;

/// `source` and `cluster` query of each report's POST.
pub fn query(source: &str, cluster: &str) -> String {
    format!("source={source}&cluster={cluster}")
}

/// The shell script posting every `*.json` of `dir`. With `require_one`, finding no report
/// is a failure (the scanner produced nothing).
pub fn script(policy: &Policy, dir: &str, require_one: bool) -> String {
    let mut tls = String::new();
    if let Some(ca) = hub_ca_file(policy) {
        tls.push_str(&format!(" --cacert {ca}"));
    }
    if policy.spec.hub_tls.insecure_skip_verify {
        tls.push_str(" --insecure");
    }
    let empty_check = if require_one {
        "[ $((sent + failed)) -gt 0 ] || { echo 'falconer: no report to post' >&2; exit 1; }\n"
    } else {
        ""
    };
    format!(
        r#"set -u
sent=0
failed=0
for report in {dir}/*.json; do
  [ -e "$report" ] || continue
  if printf 'Authorization: Bearer %s\n' "${TOKEN_ENV}" | curl --silent --show-error --fail-with-body --retry 5 --retry-all-errors --max-time 300{tls} -H @- -H 'Content-Type: application/json' --data-binary "@$report" "$FALCONER_INGEST_URL"; then
    sent=$((sent + 1))
  else
    echo "falconer: posting $report failed" >&2
    failed=$((failed + 1))
  fi
done
echo "falconer: posted $sent report(s), $failed failed"
{empty_check}[ "$failed" -eq 0 ]
"#
    )
}

/// The `upload` container: posts the reports under `dir` (volume `volume`) as `source`.
/// With `per_node`, the URL names the pod's node (`&node=`): kube-bench reports do not.
pub fn container(
    policy: &Policy,
    source: &str,
    cluster: &str,
    volume: &str,
    dir: &str,
    require_one: bool,
    per_node: bool,
) -> Container {
    let mut mounts = vec![mount(volume, dir, true)];
    if let Some((_, ca_mount)) = super::hub_ca(policy) {
        mounts.push(ca_mount);
    }
    Container {
        name: "upload".into(),
        image: Some(policy.spec.uploader_image.clone()),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            script(policy, dir, require_one),
        ]),
        env: Some({
            let mut query = query(source, cluster);
            let mut env = Vec::new();
            if per_node {
                // Kubernetes expands `$(NODE_NAME)` from the variable defined before it.
                query.push_str("&node=$(NODE_NAME)");
                env.push(EnvVar {
                    name: "NODE_NAME".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "spec.nodeName".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            env.push(EnvVar {
                name: "FALCONER_INGEST_URL".into(),
                value: Some(ingest_url(policy, &query)),
                ..Default::default()
            });
            env.push(super::token_env(policy, source));
            env
        }),
        volume_mounts: Some(mounts),
        security_context: Some(restricted(Some(NOBODY))),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objects::tests::policy;
    use falconer_model::crd::PolicySpec;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    /// A fresh directory for one test.
    pub fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("falconer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// Writes an executable `name` into `dir/bin` and returns that directory.
    pub fn stub(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("stub");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    }

    /// Runs `script` with `sh -c`, the stubs first on PATH.
    pub fn sh(script: &str, bin: &Path, env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PATH", path)
            .envs(env.iter().copied())
            .output()
            .expect("sh runs")
    }

    /// A stub curl that records its arguments and stdin, and fails for reports named `bad*`.
    fn curl(dir: &Path) -> PathBuf {
        stub(
            dir,
            "curl",
            &format!(
                r#"printf '%s\n' "$*" >> {log}/args
cat >> {log}/stdin
case "$*" in *bad*) exit 22;; esac
exit 0"#,
                log = dir.display()
            ),
        )
    }

    const ENV: &[(&str, &str)] = &[
        ("FALCONER_INGEST_TOKEN", "s3cret-token"),
        (
            "FALCONER_INGEST_URL",
            "https://hub/ingest?source=trivy&cluster=c",
        ),
    ];

    #[test]
    fn every_report_is_posted_with_the_token_on_stdin_and_never_in_the_arguments() {
        let dir = scratch("upload-ok");
        let reports = dir.join("reports");
        std::fs::create_dir_all(&reports).expect("reports");
        std::fs::write(reports.join("1.json"), "{}").expect("report");
        std::fs::write(reports.join("2.json"), "{}").expect("report");
        let bin = curl(&dir);
        let script = script(
            &policy(PolicySpec::default()),
            reports.to_str().expect("utf-8"),
            true,
        );
        let output = sh(&script, &bin, ENV);
        assert!(output.status.success(), "{output:?}");
        let args = std::fs::read_to_string(dir.join("args")).expect("args");
        let stdin = std::fs::read_to_string(dir.join("stdin")).expect("stdin");
        assert_eq!(args.lines().count(), 2);
        assert!(args.contains("1.json") && args.contains("2.json"));
        assert!(
            args.lines()
                .all(|a| a.ends_with("https://hub/ingest?source=trivy&cluster=c"))
        );
        assert!(
            !args.contains("s3cret-token"),
            "the token must not be an argument"
        );
        assert_eq!(
            stdin,
            "Authorization: Bearer s3cret-token\nAuthorization: Bearer s3cret-token\n"
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("posted 2 report(s), 0 failed"));
    }

    #[test]
    fn a_failed_post_fails_the_step_after_the_other_reports_were_posted() {
        let dir = scratch("upload-fail");
        let reports = dir.join("reports");
        std::fs::create_dir_all(&reports).expect("reports");
        std::fs::write(reports.join("a.json"), "{}").expect("report");
        std::fs::write(reports.join("bad.json"), "{}").expect("report");
        std::fs::write(reports.join("c.json"), "{}").expect("report");
        let bin = curl(&dir);
        let script = script(
            &policy(PolicySpec::default()),
            reports.to_str().expect("utf-8"),
            false,
        );
        let output = sh(&script, &bin, ENV);
        assert!(!output.status.success());
        let args = std::fs::read_to_string(dir.join("args")).expect("args");
        assert_eq!(
            args.lines().count(),
            3,
            "the reports after the failure are still posted"
        );
    }

    #[test]
    fn no_report_fails_only_when_one_is_required() {
        let dir = scratch("upload-none");
        let reports = dir.join("reports");
        std::fs::create_dir_all(&reports).expect("reports");
        let bin = curl(&dir);
        let p = policy(PolicySpec::default());
        let dir_str = reports.to_str().expect("utf-8");
        assert!(!sh(&script(&p, dir_str, true), &bin, ENV).status.success());
        assert!(sh(&script(&p, dir_str, false), &bin, ENV).status.success());
    }
}
