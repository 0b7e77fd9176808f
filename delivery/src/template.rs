//! A consumer's message template (`template:` in a consumer, Jinja syntax through
//! minijinja): the text of each notification. Checked when the consumer is built — a
//! syntax error, an unknown filter or an unknown variable is refused naming the line — so a
//! broken template never reaches delivery; at delivery a render that still fails falls back
//! to the event's message, with the error appended, so no alert is lost to a template.

use crate::notify::{Summary, span};
use falconer_model::event::{Event, Workload};
use serde::Serialize;
use std::sync::Arc;

/// Longest template accepted.
pub const MAX_TEMPLATE: usize = 8192;
/// Longest text a template may render; the rest is cut.
const MAX_OUTPUT: usize = 16 * 1024;

/// The variables a template may use, besides the global functions of the language.
pub const VARIABLES: [&str; 21] = [
    "id",
    "time",
    "received_at",
    "source",
    "kind",
    "severity",
    "severity_raw",
    "rule",
    "message",
    "tags",
    "cluster",
    "namespace",
    "pod",
    "container",
    "image",
    "node",
    "workload",
    "fields",
    "group",
    "link",
    "output",
];
/// The members of `group`.
const GROUP_MEMBERS: [&str; 6] = [
    "id",
    "count",
    "summary",
    "first_seen",
    "last_seen",
    "window",
];
/// Global functions of the template language, not variables.
const GLOBALS: [&str; 6] = ["range", "dict", "debug", "cycler", "joiner", "lipsum"];

/// A compiled template.
#[derive(Clone)]
pub struct Template {
    env: Arc<minijinja::Environment<'static>>,
    uses_group: bool,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").finish_non_exhaustive()
    }
}

const NAME: &str = "template";

#[derive(Serialize)]
struct Group<'a> {
    id: &'a str,
    count: u64,
    summary: bool,
    first_seen: String,
    last_seen: String,
    window: String,
}

#[derive(Serialize)]
struct Context<'a> {
    id: String,
    time: String,
    received_at: String,
    source: &'a str,
    kind: &'a str,
    severity: &'a str,
    severity_raw: &'a str,
    rule: &'a str,
    message: &'a str,
    /// Falco's name for the message.
    output: &'a str,
    tags: &'a [String],
    cluster: &'a str,
    namespace: Option<&'a str>,
    pod: Option<&'a str>,
    container: Option<&'a str>,
    image: Option<&'a str>,
    node: Option<&'a str>,
    workload: Option<&'a Workload>,
    fields: serde_json::Value,
    group: Group<'a>,
    link: Option<&'a str>,
}

fn rfc3339(time: chrono::DateTime<chrono::Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The 1-based line of the first use of `name` in `source`.
fn line_of(source: &str, name: &str) -> usize {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    for (n, line) in source.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(name) {
            let before = rest[..at].chars().next_back();
            let after = rest[at + name.len()..].chars().next();
            if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
                return n + 1;
            }
            rest = &rest[at + name.len()..];
        }
    }
    1
}

fn located(e: &minijinja::Error) -> String {
    let what = e
        .detail()
        .map(String::from)
        .unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("line {line}: {what}"),
        None => what,
    }
}

impl Template {
    /// Compiles `source`, refusing syntax errors, unknown variables and a failing trial
    /// render; the error names the line.
    pub fn compile(source: &str) -> Result<Template, String> {
        if source.len() > MAX_TEMPLATE {
            return Err(format!("longer than {MAX_TEMPLATE} bytes"));
        }
        let mut env = minijinja::Environment::new();
        // `fields.proc.name` of an event without it renders empty instead of failing.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        // Plain text: the sink escapes for its service; `none` renders empty.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_formatter(|out, state, value| {
            if value.is_none() || value.is_undefined() {
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| located(&e))?;
        let template = env.get_template(NAME).map_err(|e| located(&e))?;
        let mut unknown: Vec<String> = template
            .undeclared_variables(true)
            .into_iter()
            .filter(|name| {
                let mut parts = name.split('.');
                let top = parts.next().unwrap_or_default();
                if GLOBALS.contains(&top) {
                    return false;
                }
                if !VARIABLES.contains(&top) {
                    return true;
                }
                top == "group" && parts.next().is_some_and(|m| !GROUP_MEMBERS.contains(&m))
            })
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            let last = name.rsplit('.').next().unwrap_or(name);
            return Err(format!(
                "line {}: unknown variable `{name}` (known: {}; group: {})",
                line_of(source, last),
                VARIABLES.join(", "),
                GROUP_MEMBERS.join(", ")
            ));
        }
        let uses_group = template.undeclared_variables(false).contains("group");
        let compiled = Template {
            env: Arc::new(env),
            uses_group,
        };
        // Unknown filters and tests show only when rendering.
        if let Some(sample) = sample() {
            compiled.try_render(&sample, "0", 1, None, None)?;
        }
        Ok(compiled)
    }

    /// Whether the template looks at the alert group.
    pub fn uses_group(&self) -> bool {
        self.uses_group
    }

    fn try_render(
        &self,
        event: &Event,
        group: &str,
        count: u64,
        summary: Option<&Summary>,
        link: Option<&str>,
    ) -> Result<String, String> {
        let (first, last) = summary.map_or((event.received_at, event.received_at), |s| {
            (s.first_seen, s.last_seen)
        });
        let context = Context {
            id: event.id.to_string(),
            time: rfc3339(event.time),
            received_at: rfc3339(event.received_at),
            source: &event.source,
            kind: event.kind.as_str(),
            severity: event.severity.as_str(),
            severity_raw: &event.severity_raw,
            rule: &event.rule,
            message: &event.message,
            output: &event.message,
            tags: &event.tags,
            cluster: &event.cluster,
            namespace: event.namespace.as_deref(),
            pod: event.pod.as_deref(),
            container: event.container.as_deref(),
            image: event.image.as_deref(),
            node: event.node.as_deref(),
            workload: event.workload.as_ref(),
            fields: serde_json::from_str(event.fields.get()).unwrap_or_default(),
            group: Group {
                id: group,
                count,
                summary: summary.is_some(),
                first_seen: rfc3339(first),
                last_seen: rfc3339(last),
                window: span(last - first),
            },
            link,
        };
        let template = self.env.get_template(NAME).map_err(|e| located(&e))?;
        let mut text = template.render(context).map_err(|e| located(&e))?;
        if text.len() > MAX_OUTPUT {
            let mut end = MAX_OUTPUT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        Ok(text)
    }

    /// The text for `event` (a summary's sample when `summary` is given). A render that
    /// fails gives the event's message and the error.
    pub fn render(
        &self,
        event: &Event,
        group: &str,
        count: u64,
        summary: Option<&Summary>,
        link: Option<&str>,
    ) -> String {
        self.try_render(event, group, count, summary, link)
            .unwrap_or_else(|e| {
                tracing::warn!(event = %event.id, error = %e, "Message template failed; sending the event's message");
                format!("{}\n(template failed: {e})", event.message)
            })
    }
}

/// The event a template is tried on when compiled (every optional field set, so that
/// filters in each branch run).
fn sample() -> Option<Event> {
    let json = serde_json::json!({
        "id": "00000000-0000-7000-8000-000000000000",
        "time": "2026-01-01T00:00:00Z",
        "received_at": "2026-01-01T00:00:00Z",
        "source": "falco",
        "kind": "runtime_alert",
        "severity": "warning",
        "severity_raw": "Warning",
        "rule": "Sample rule",
        "message": "Sample message",
        "tags": ["sample"],
        "cluster": "sample",
        "namespace": "default",
        "pod": "sample-0",
        "container": "sample",
        "image": "sample:1",
        "node": "node-0",
        "workload": {"kind": "Deployment", "name": "sample"},
        "fields": {"proc.name": "sh", "user.name": "root"},
    });
    serde_json::from_str(&json.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    #[test]
    fn a_template_renders_the_events_fields_group_and_link() {
        let t = Template::compile(
            "{{ severity | upper }} {{ rule }} in {{ namespace }}/{{ pod }}: {{ fields['proc.name'] }}\n\
             {% if group.summary %}{{ group.count }} in {{ group.window }}{% endif %}{{ link }}",
        )
        .unwrap();
        let mut e = event("Terminal shell in container");
        e.fields =
            serde_json::value::RawValue::from_string(r#"{"proc.name":"bash"}"#.into()).unwrap();
        assert_eq!(
            t.render(&e, "g", 1, None, Some("https://x/ui")),
            format!(
                "{} Terminal shell in container in shop/web-1: bash\nhttps://x/ui",
                e.severity.as_str().to_uppercase()
            )
        );
        assert!(t.uses_group());
    }

    #[test]
    fn a_missing_optional_field_renders_empty_not_none() {
        let t = Template::compile("[{{ container }}][{{ fields.nothing.deeper }}]").unwrap();
        let mut e = event("r");
        e.container = None;
        assert_eq!(t.render(&e, "g", 1, None, None), "[][]");
        assert!(!t.uses_group());
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = Template::compile("first line\n{{ rule }\nthird").unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
    }

    #[test]
    fn an_unknown_variable_is_refused_naming_it_and_its_line() {
        let err = Template::compile("{{ rule }}\n\n{{ pood }}").unwrap_err();
        assert!(err.starts_with("line 3: unknown variable `pood`"), "{err}");
        let err = Template::compile("{{ group.size }}").unwrap_err();
        assert!(err.contains("unknown variable `group.size`"), "{err}");
        // Loop variables and `set` are the template's own.
        Template::compile(
            "{% for t in tags %}{{ t }}{{ loop.index }}{% endfor %}{% set x = 1 %}{{ x }}",
        )
        .unwrap();
    }

    #[test]
    fn an_unknown_filter_is_refused_when_compiled() {
        let err = Template::compile("ok\n{{ rule | shout }}").unwrap_err();
        assert!(err.contains("line 2") && err.contains("shout"), "{err}");
    }

    #[test]
    fn a_template_longer_than_the_limit_is_refused() {
        assert!(Template::compile(&"x".repeat(MAX_TEMPLATE + 1)).is_err());
    }
}
