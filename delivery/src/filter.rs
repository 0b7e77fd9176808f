//! Which events a consumer receives: `crd::Filter` compiled once, applied per event.

use falconer_model::crd::Filter;
use falconer_store::{Event, Kind, Severity};
use std::collections::HashSet;

/// A consumer's filter, ready to test events. Every condition given must hold.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    minimum_severity: Option<Severity>,
    sources: HashSet<String>,
    kinds: HashSet<Kind>,
    rules: Vec<String>,
    include_namespaces: HashSet<String>,
    exclude_namespaces: HashSet<String>,
    clusters: HashSet<String>,
    tags: HashSet<String>,
}

impl Matcher {
    pub fn new(filter: &Filter) -> Matcher {
        Matcher {
            minimum_severity: filter.minimum_severity,
            sources: filter.sources.iter().cloned().collect(),
            kinds: filter.kinds.iter().copied().collect(),
            rules: filter.rules.clone(),
            include_namespaces: filter.namespaces.include.iter().cloned().collect(),
            exclude_namespaces: filter.namespaces.exclude.iter().cloned().collect(),
            clusters: filter.clusters.iter().cloned().collect(),
            tags: filter.tags.iter().cloned().collect(),
        }
    }

    pub fn matches(&self, e: &Event) -> bool {
        let namespace = e.namespace.as_deref();
        self.minimum_severity
            .is_none_or(|min| e.severity.rank() <= min.rank())
            && (self.sources.is_empty() || self.sources.contains(&e.source))
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && (self.rules.is_empty() || self.rules.iter().any(|g| glob(g, &e.rule)))
            && (self.include_namespaces.is_empty()
                || namespace.is_some_and(|n| self.include_namespaces.contains(n)))
            && !namespace.is_some_and(|n| self.exclude_namespaces.contains(n))
            && (self.clusters.is_empty() || self.clusters.contains(&e.cluster))
            && (self.tags.is_empty() || e.tags.iter().any(|t| self.tags.contains(t)))
    }
}

/// `*` matches any run of characters, `?` any one character; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much of the text it had taken: on a mismatch the star
    // takes one more character and matching resumes after it.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use falconer_model::crd::NamespaceFilter;

    fn event() -> Event {
        crate::fixtures::event("Terminal shell in container")
    }

    fn matches(filter: Filter) -> bool {
        Matcher::new(&filter).matches(&event())
    }

    #[test]
    fn an_empty_filter_passes_everything() {
        assert!(matches(Filter::default()));
    }

    #[test]
    fn each_condition_can_reject_an_event() {
        let cases: Vec<(Filter, bool)> = vec![
            (
                Filter {
                    minimum_severity: Some(Severity::Warning),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    minimum_severity: Some(Severity::Error),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    sources: vec!["falco".into()],
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    sources: vec!["trivy".into()],
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    kinds: vec![Kind::Audit],
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    rules: vec!["Terminal*".into()],
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    rules: vec!["*shell?in*".into()],
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    rules: vec!["Read*".into()],
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    clusters: vec!["dev".into()],
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    tags: vec!["shell".into(), "x".into()],
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    tags: vec!["network".into()],
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    namespaces: NamespaceFilter {
                        include: vec!["shop".into()],
                        exclude: vec![],
                    },
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    namespaces: NamespaceFilter {
                        include: vec!["shop".into()],
                        exclude: vec!["shop".into()],
                    },
                    ..Filter::default()
                },
                false,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(matches(filter.clone()), expected, "{filter:?}");
        }
    }

    #[test]
    fn an_include_list_rejects_events_without_a_namespace_and_exclude_does_not() {
        let mut e = event();
        e.namespace = None;
        let include = Filter {
            namespaces: NamespaceFilter {
                include: vec!["shop".into()],
                exclude: vec![],
            },
            ..Filter::default()
        };
        let exclude = Filter {
            namespaces: NamespaceFilter {
                include: vec![],
                exclude: vec!["shop".into()],
            },
            ..Filter::default()
        };
        assert!(!Matcher::new(&include).matches(&e));
        assert!(Matcher::new(&exclude).matches(&e));
    }

    #[test]
    fn globs_match_stars_and_question_marks() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*b*b*", "abcbd", true),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**a", "xxa", true),
            ("é*", "été", true),
        ] {
            assert_eq!(glob(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
