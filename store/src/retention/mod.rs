//! Retention (DESIGN.md §4): events received before a cutoff are removed, whole days at a
//! time on PostgreSQL (a partition dropped) and in chunks on SQLite, but never an event that
//! a running consumer has not delivered yet: retention waits for it.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

mod postgres;
mod sqlite;

/// What one retention run did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionRun {
    /// Events removed.
    pub removed: u64,
    /// PostgreSQL partitions (days) dropped; 0 on SQLite.
    pub days_dropped: u64,
    /// The consumer whose cursor still needs events older than the cutoff, if one does: they
    /// are kept until it has delivered them.
    pub held_by: Option<String>,
    /// Alert groups forgotten: none of their events is left and none was seen since the
    /// cutoff (with their history).
    pub groups_removed: u64,
    /// Suppressions that expired before the cutoff, removed.
    pub suppressions_removed: u64,
}

/// How long events are kept: `<n>h`, `<n>d` or `<n>w` (a `Setting`'s `spec.retention`), or
/// `forever`. `None` is forever.
pub fn parse_age(text: &str) -> Result<Option<TimeDelta>, String> {
    if text == "forever" {
        return Ok(None);
    }
    let unit = text.chars().last().unwrap_or(' ');
    let hours = match unit {
        'h' => 1,
        'd' => 24,
        'w' => 24 * 7,
        _ => return Err(format!("`{text}`: expected <n>h, <n>d, <n>w or forever")),
    };
    let digits = &text[..text.len() - 1];
    let n: i64 = digits
        .parse()
        .ok()
        .filter(|n| *n > 0 && !digits.starts_with(['+', '0']))
        .ok_or_else(|| {
            format!("`{text}`: expected a whole number greater than 0 before `{unit}`")
        })?;
    // A hundred years is beyond any retention and far from overflow.
    if n.saturating_mul(hours) > 100 * 366 * 24 {
        return Err(format!("`{text}`: at most 100 years"));
    }
    Ok(Some(TimeDelta::hours(n * hours)))
}

/// The UTC day an event received at `time` is stored under (its PostgreSQL partition).
pub(crate) fn day_of(time: DateTime<Utc>) -> NaiveDate {
    time.date_naive()
}

/// The partition of `day`, as the migration's `falconer_events_partition` names it.
pub(crate) fn partition_name(day: NaiveDate) -> String {
    format!("events_{}", day.format("%Y%m%d"))
}

/// The day of a partition named by [`partition_name`], or `None` for any other table.
pub(crate) fn partition_day(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("events_")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// Days for which partitions are made ahead of need: yesterday (a clock a little behind)
/// to a week ahead, so a hub that cannot run retention for days still writes.
pub(crate) fn days_around(today: NaiveDate) -> impl Iterator<Item = NaiveDate> {
    (-1..=7).filter_map(move |n| today.checked_add_signed(TimeDelta::days(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_hours_days_or_weeks_and_forever_keeps_everything() {
        assert_eq!(parse_age("12h"), Ok(Some(TimeDelta::hours(12))));
        assert_eq!(parse_age("30d"), Ok(Some(TimeDelta::days(30))));
        assert_eq!(parse_age("2w"), Ok(Some(TimeDelta::days(14))));
        assert_eq!(parse_age("forever"), Ok(None));
    }

    #[test]
    fn a_bad_age_is_refused_saying_what_is_expected() {
        for bad in [
            "", "30", "d", "0d", "-1d", "+1d", "01d", "1.5d", "30 d", "1y", "999999w",
        ] {
            let error = parse_age(bad).expect_err(bad);
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
    }

    #[test]
    fn partition_names_and_days_round_trip_and_other_tables_are_not_partitions() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        assert_eq!(partition_name(day), "events_20261103");
        assert_eq!(partition_day("events_20261103"), Some(day));
        for other in [
            "events",
            "events_tx_id",
            "events_2026110",
            "events_20261341",
        ] {
            assert_eq!(partition_day(other), None, "{other}");
        }
    }

    #[test]
    fn partitions_are_made_from_yesterday_to_a_week_ahead() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 30).unwrap();
        let days: Vec<NaiveDate> = days_around(today).collect();
        assert_eq!(days.len(), 9);
        assert_eq!(days[0], NaiveDate::from_ymd_opt(2026, 12, 29).unwrap());
        assert_eq!(days[8], NaiveDate::from_ymd_opt(2027, 1, 6).unwrap());
    }
}
