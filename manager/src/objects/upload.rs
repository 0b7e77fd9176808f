//! The step that posts scanner reports to the hub: a container running `sh` + `curl` over
//! the JSON files another step left in a shared directory.
//!
//! The token comes from the environment (filled from the Secret) and is handed to curl on
//! stdin (`-H @-`) by `printf`, a shell builtin, so it never appears in a process's argument
//! list, the pod spec or a log line.

use super::{TOKEN_ENV, hub_ca_file, ingest_url, mount, restricted};
use falconer_store::crd::Policy;
use k8s_openapi::api::core::v1::{Container, EnvVar};

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
pub fn container(
    policy: &Policy,
    source: &str,
    cluster: &str,
    volume: &str,
    dir: &str,
    require_one: bool,
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
        env: Some(vec![
            EnvVar {
                name: "FALCONER_INGEST_URL".into(),
                value: Some(ingest_url(policy, &query(source, cluster))),
                ..Default::default()
            },
            super::token_env(policy),
        ]),
        volume_mounts: Some(mounts),
        security_context: Some(restricted(Some(NOBODY))),
        ..Default::default()
    }
}
