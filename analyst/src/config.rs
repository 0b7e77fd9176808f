//! The `analyst` section: when to compute, how far back to look, and the model's weights
//! (docs/risk-model.md explains each default).

use falconer_store::Severity;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalystConfig {
    /// Compute periodically inside `standalone` and `hub` (`falconer analyst` always does).
    pub enabled: bool,
    /// Seconds between computations.
    pub interval_secs: u64,
    /// Hours after which a runtime alert counts half as much.
    pub half_life_hours: f64,
    /// Runtime alerts older than this many days are not read at all (after 7 half-lives of
    /// 24 h an alert weighs under 1%).
    pub lookback_days: u64,
    /// Days of score history kept.
    pub history_retention_days: u64,
    /// Namespaces exported as Prometheus gauges: the N highest scores (bounded labels).
    pub top_n: usize,
    pub weights: Weights,
}

impl Default for AnalystConfig {
    fn default() -> Self {
        AnalystConfig {
            enabled: true,
            interval_secs: 60,
            half_life_hours: 24.0,
            lookback_days: 7,
            history_retention_days: 14,
            top_n: 20,
            weights: Weights::default(),
        }
    }
}

/// Points per input before the saturating curve; see docs/risk-model.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// `k` of score = 100·(1 − e^(−raw/k)): raw points that make a score of 63.
    pub saturation: f64,
    /// Per runtime alert (one rule, new), by severity.
    pub runtime: SeverityWeights,
    /// Per open vulnerability of an image the workload runs, by severity.
    pub vulnerability: SeverityWeights,
    /// A vulnerability with a fixed version counts this many times.
    pub fixable: f64,
    /// Per failed configuration check on the workload's nodes or namespace, by severity.
    pub misconfiguration: SeverityWeights,
    /// Per workload reported exposed outside the cluster.
    pub exposure: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            saturation: 50.0,
            runtime: SeverityWeights {
                emergency: 40.0,
                alert: 30.0,
                critical: 25.0,
                error: 12.0,
                warning: 6.0,
                notice: 2.0,
                informational: 0.5,
                debug: 0.0,
            },
            vulnerability: SeverityWeights {
                emergency: 6.0,
                alert: 6.0,
                critical: 6.0,
                error: 3.0,
                warning: 1.0,
                notice: 0.25,
                informational: 0.0,
                debug: 0.0,
            },
            fixable: 1.5,
            misconfiguration: SeverityWeights {
                emergency: 4.0,
                alert: 4.0,
                critical: 4.0,
                error: 2.0,
                warning: 0.5,
                notice: 0.1,
                informational: 0.0,
                debug: 0.0,
            },
            exposure: 10.0,
        }
    }
}

/// A weight per severity of Falconer's scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityWeights {
    pub emergency: f64,
    pub alert: f64,
    pub critical: f64,
    pub error: f64,
    pub warning: f64,
    pub notice: f64,
    pub informational: f64,
    pub debug: f64,
}

impl SeverityWeights {
    pub fn of(&self, severity: Severity) -> f64 {
        match severity {
            Severity::Emergency => self.emergency,
            Severity::Alert => self.alert,
            Severity::Critical => self.critical,
            Severity::Error => self.error,
            Severity::Warning => self.warning,
            Severity::Notice => self.notice,
            Severity::Informational => self.informational,
            Severity::Debug => self.debug,
        }
    }

    fn all(&self) -> Vec<f64> {
        Severity::ALL.iter().map(|s| self.of(*s)).collect()
    }
}

impl AnalystConfig {
    /// Checks what serde cannot; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 {
            return Err("analyst.interval_secs: must be greater than 0".into());
        }
        if !(self.half_life_hours.is_finite() && self.half_life_hours > 0.0) {
            return Err("analyst.half_life_hours: must be a number greater than 0".into());
        }
        if self.lookback_days == 0 || self.lookback_days > 3650 {
            return Err("analyst.lookback_days: must be from 1 to 3650".into());
        }
        if self.history_retention_days == 0 || self.history_retention_days > 3650 {
            return Err("analyst.history_retention_days: must be from 1 to 3650".into());
        }
        if self.top_n > 1000 {
            return Err("analyst.top_n: must be at most 1000".into());
        }
        let w = &self.weights;
        if !(w.saturation.is_finite() && w.saturation > 0.0) {
            return Err("analyst.weights.saturation: must be a number greater than 0".into());
        }
        if !(w.fixable.is_finite() && w.fixable >= 1.0) {
            return Err("analyst.weights.fixable: must be a number of at least 1".into());
        }
        if !(w.exposure.is_finite() && w.exposure >= 0.0) {
            return Err("analyst.weights.exposure: must be a number of at least 0".into());
        }
        for (name, weights) in [
            ("runtime", &w.runtime),
            ("vulnerability", &w.vulnerability),
            ("misconfiguration", &w.misconfiguration),
        ] {
            if weights.all().iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(format!(
                    "analyst.weights.{name}: every weight must be a number of at least 0"
                ));
            }
        }
        Ok(())
    }

    pub fn half_life_secs(&self) -> f64 {
        self.half_life_hours * 3600.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(AnalystConfig::default().validate(), Ok(()));
        let mut config = AnalystConfig {
            half_life_hours: 0.0,
            ..AnalystConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("analyst.half_life_hours")
        );
        config.half_life_hours = 24.0;
        config.weights.runtime.notice = -1.0;
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("analyst.weights.runtime")
        );
    }
}
