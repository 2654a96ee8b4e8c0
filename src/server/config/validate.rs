//! The checks a settings document must pass before the dashboard starts with it, by section.

use super::{ConfigError, DowngradeSettings, FlagBackend, Settings};
use crate::server::charts::TimeZoneOffset;
use crate::server::flags::{kubernetes, launchdarkly};

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

pub(super) fn settings(s: &Settings) -> Result<(), ConfigError> {
    if !(1..=3600).contains(&s.refresh_interval_secs) {
        return Err(invalid("refresh_interval_secs must be between 1 and 3600"));
    }
    if !(1..=120).contains(&s.source_timeout_secs) {
        return Err(invalid("source_timeout_secs must be between 1 and 120"));
    }
    if s.client_reads_per_s > 0 && s.client_read_burst < s.client_reads_per_s {
        return Err(invalid("client_read_burst must be at least client_reads_per_s"));
    }
    if !(7..=3650).contains(&s.retention_days) {
        return Err(invalid("retention_days must be between 7 and 3650"));
    }
    names(s)?;
    flag(s)?;
    if TimeZoneOffset::parse(&s.reports.time_zone).is_none() {
        return Err(invalid(format!(
            "reports.time_zone {:?} must be UTC or a fixed offset such as +03:00",
            s.reports.time_zone
        )));
    }
    rollback(s)?;
    auth(s)?;
    autopilot(s)?;
    notify(s)?;
    if !(0.0..=1.0).contains(&s.adoption.legacy_share_target) {
        return Err(invalid("adoption.legacy_share_target must be a fraction between 0 and 1"));
    }
    if s.metrics.split_rate_query.trim().is_empty() || s.metrics.legacy_rate_query.trim().is_empty() {
        return Err(invalid("metrics queries must not be empty"));
    }
    let c = &s.crossover;
    if !(1..=90).contains(&c.days) || !(0.0..=1.0).contains(&c.max_back_share) || c.min_patients < 1 {
        return Err(invalid("crossover: days 1 to 90, max_back_share a fraction, min_patients at least 1"));
    }
    let t = &s.dose_totals;
    if !(1..=30).contains(&t.days_each_side)
        || !(1..=t.days_each_side).contains(&t.min_days)
        || !(1.0..=100.0).contains(&t.factor)
        || t.factor == 1.0
        || !(0.0..=1.0).contains(&t.max_changed_share)
        || t.min_patients < 1
        || !(1.0..=1000.0).contains(&t.scale)
    {
        return Err(invalid(
            "dose_totals: days_each_side 1 to 30, min_days 1 to days_each_side, factor above 1 (at most 100), \
             max_changed_share a fraction, min_patients at least 1, scale 1 to 1000",
        ));
    }
    client_versions(s)
}

/// The counters' names and label are PromQL identifiers; the split-only requirement parses.
fn client_versions(s: &Settings) -> Result<(), ConfigError> {
    let v = &s.client_versions;
    // Metric names may hold `:`, label names may not.
    let name = |x: &str, colon: bool| {
        x.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && x.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    };
    let names = [
        ("label", &v.label, false),
        ("split_counter", &v.split_counter, true),
        ("legacy_counter", &v.legacy_counter, true),
    ];
    for (what, value, colon) in names {
        if !name(value, colon) {
            return Err(invalid(format!("client_versions.{what} {value:?} is not a Prometheus name")));
        }
    }
    selector(&v.selector).map_err(|e| invalid(format!("client_versions.selector {:?}: {e}", v.selector)))?;
    if let Some(req) = &v.split_only {
        super::SplitOnly::parse(req)
            .map_err(|e| invalid(format!("client_versions.split_only {req:?}: {e} (e.g. \">= 4.0.0\")")))?;
    }
    Ok(())
}

/// Label matchers without braces (`service="diary-api", env=~"prod.*"`): each a label name, an
/// operator and a quoted value, separated by commas; nothing else reaches the queries.
pub(super) fn selector(s: &str) -> Result<(), String> {
    let mut rest = s.trim();
    while !rest.is_empty() {
        let label: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if label.is_empty() || label.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("expected a label name at {rest:?}"));
        }
        rest = rest[label.len()..].trim_start();
        let op =
            ["=~", "!~", "!=", "="].into_iter().find(|op| rest.starts_with(op)).ok_or("expected =, !=, =~ or !~")?;
        rest = rest[op.len()..].trim_start();
        let body = rest.strip_prefix('"').ok_or("a value is written in double quotes")?;
        let end = closing_quote(body)?;
        rest = body[end + 1..].trim_start();
        if let Some(more) = rest.strip_prefix(',') {
            rest = more.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected a comma before {rest:?}"));
        }
    }
    Ok(())
}

/// Where the double-quoted value that `body` starts inside ends (backslash escapes).
fn closing_quote(body: &str) -> Result<usize, String> {
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '"') => return Ok(i),
            (false, '\n' | '\r') => return Err("a value holds no line break".into()),
            _ => {}
        }
    }
    Err("a quoted value is not closed".into())
}

/// Kubernetes names and the diary table.
fn names(s: &Settings) -> Result<(), ConfigError> {
    for (name, v) in [
        ("flag.namespace", &s.flag.namespace),
        ("flag.configmap", &s.flag.configmap),
        ("writer.namespace", &s.writer.namespace),
        ("writer.deployment", &s.writer.deployment),
    ] {
        if !is_dns_label(v) {
            return Err(invalid(format!("{name} {v:?} is not a valid Kubernetes name")));
        }
    }
    let table = &s.schema.table;
    if table.is_empty() || !table.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(invalid(format!("schema.table {table:?} must be a plain lower-case identifier")));
    }
    Ok(())
}

fn flag(s: &Settings) -> Result<(), ConfigError> {
    // The key is a ConfigMap key only where the flag lives in one (LaunchDarkly keys below).
    if s.flag.backend == FlagBackend::Kubernetes && !kubernetes::valid_key(&s.flag.key) {
        return Err(invalid(format!("flag.key {:?} is not a valid ConfigMap key", s.flag.key)));
    }
    let ld = &s.flag.launchdarkly;
    if !(ld.base_url.starts_with("http://") || ld.base_url.starts_with("https://")) {
        return Err(invalid(format!("flag.launchdarkly.base_url {:?} must be an http(s) URL", ld.base_url)));
    }
    for (name, v) in [
        ("flag.launchdarkly.project", ld.project.as_str()),
        ("flag.launchdarkly.environment", ld.environment.as_str()),
        ("flag.launchdarkly.flag_key", s.flag.launchdarkly_key()),
    ] {
        if !launchdarkly::valid_key(v) {
            return Err(invalid(format!("{name} {v:?} is not a valid LaunchDarkly key")));
        }
    }
    Ok(())
}

fn rollback(s: &Settings) -> Result<(), ConfigError> {
    let rb = &s.rollback;
    if !(1..=24 * 3600).contains(&rb.step_timeout_secs) {
        return Err(invalid("rollback.step_timeout_secs must be between 1 and 86400"));
    }
    if !(10..=60_000).contains(&rb.poll_interval_ms) {
        return Err(invalid("rollback.poll_interval_ms must be between 10 and 60000"));
    }
    let DowngradeSettings::Command { argv } = &rb.downgrade;
    if argv.is_empty() || rb.restore_argv.is_empty() {
        return Err(invalid("rollback commands must name a program"));
    }
    let rh = &rb.rehearsal;
    if rh.restore_argv.is_empty() || rh.upgrade_argv.is_empty() {
        return Err(invalid("rollback.rehearsal commands must name a program"));
    }
    if !(10..=24 * 3600).contains(&rh.timeout_secs) {
        return Err(invalid("rollback.rehearsal.timeout_secs must be between 10 and 86400"));
    }
    if let Some(r) = &s.autopilot.require_rehearsal {
        if r.above_percentage >= 100 || !(1..=24 * 365).contains(&r.max_age_hours) {
            return Err(invalid(
                "autopilot.require_rehearsal needs above_percentage below 100 and max_age_hours between 1 and 8760",
            ));
        }
    }
    if !(1..=100).contains(&rb.default_writer_replicas) {
        return Err(invalid("rollback.default_writer_replicas must be between 1 and 100"));
    }
    if !(0.0..=1.0).contains(&rb.smoke_fraction) {
        return Err(invalid("rollback.smoke_fraction must be between 0 and 1"));
    }
    if let Some(cj) = &rb.backup_cronjob {
        dns_name("rollback.backup_cronjob", cj)?;
    }
    if let Some(job) = &rb.job {
        if job.image.trim().is_empty() || job.image.chars().any(char::is_whitespace) {
            return Err(invalid("rollback.job.image must name an image (the diary service's, with its migrations)"));
        }
        dns_name("rollback.job.env_secret", &job.env_secret)?;
        for name in job.service_account.iter().chain(&job.backup_claim) {
            dns_name("rollback.job's service_account and backup_claim", name)?;
        }
        if !job.backup_mount.starts_with('/') {
            return Err(invalid("rollback.job.backup_mount must be an absolute path"));
        }
        if let Some(file) = &rb.backup_file {
            if job.backup_claim.is_none() || !file.starts_with(&job.backup_mount) {
                return Err(invalid(format!(
                    "with rollback.job the restore's Job reads the backup from its volume: set rollback.job.backup_claim \
                     and a rollback.backup_file under rollback.job.backup_mount ({})",
                    job.backup_mount
                )));
            }
        }
        if rb.backup_file.is_some() && rb.backup_cronjob.is_none() && rb.backup_status_argv.is_empty() {
            return Err(invalid(
                "with rollback.job the backup file is in the Jobs' volume, where the dashboard cannot see its age: \
                 set rollback.backup_cronjob (the CronJob that makes the backups)",
            ));
        }
    }
    Ok(())
}

/// A Kubernetes object name (RFC 1123 label: lower case, digits, '-', at most 63).
fn dns_name(what: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("{what}: {name:?} is not a Kubernetes object name (lower case, digits, '-')")))
    }
}

fn auth(s: &Settings) -> Result<(), ConfigError> {
    if !(1..=24 * 30).contains(&s.auth.session_hours) {
        return Err(invalid("auth.session_hours must be between 1 and 720"));
    }
    if !(1..=100).contains(&s.auth.login_attempts) {
        return Err(invalid("auth.login_attempts must be between 1 and 100"));
    }
    if let Some(o) = &s.auth.public_origin {
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
            return Err(invalid(format!("auth.public_origin {o:?} must look like https://host[:port]")));
        }
    }
    Ok(())
}

fn autopilot(s: &Settings) -> Result<(), ConfigError> {
    let a = &s.autopilot;
    super::super::autopilot::plan::check_steps(&a.steps).map_err(|e| invalid(format!("autopilot.steps: {e}")))?;
    if a.interval_secs.is_some_and(|i| !(1..=3600).contains(&i)) {
        return Err(invalid("autopilot.interval_secs must be between 1 and 3600"));
    }
    if !(a.sample_ratio_alpha > 0.0 && a.sample_ratio_alpha < 0.5) {
        return Err(invalid("autopilot.sample_ratio_alpha must be between 0 and 0.5"));
    }
    if !(0.0..=1.0).contains(&a.legacy_margin) {
        return Err(invalid("autopilot.legacy_margin must be a fraction between 0 and 1"));
    }
    if !(a.sample_ratio_concentration > 0.0 && a.sample_ratio_concentration.is_finite()) {
        return Err(invalid("autopilot.sample_ratio_concentration must be a positive number"));
    }
    if !(0.0..=50.0).contains(&a.sample_ratio_floor_points) {
        return Err(invalid("autopilot.sample_ratio_floor_points must be from 0 to 50 points"));
    }
    if a.blind_rounds == 0 {
        return Err(invalid("autopilot.blind_rounds must be at least 1"));
    }
    let built_in = super::super::autopilot::checks::names();
    super::super::autopilot::custom::check_settings(&a.custom, &built_in)
        .map_err(|e| invalid(format!("autopilot.custom: {e}")))?;
    for (name, action) in &a.actions {
        if !built_in.contains(&name.as_str()) {
            return Err(invalid(format!(
                "autopilot.actions names {name:?}, which is not a check ({})",
                built_in.join(", ")
            )));
        }
        if super::super::autopilot::decide::is_kill_class(name) && *action != crate::api::autopilot::CheckAction::Kill {
            return Err(invalid(format!(
                "autopilot.actions: {name} always kills (a doubled dose or a missing split column harms patients' \
                 records); it cannot be set to {}",
                action.as_str()
            )));
        }
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn notify(s: &Settings) -> Result<(), ConfigError> {
    let mut names = std::collections::BTreeSet::new();
    for r in &s.notify.receivers {
        let what = format!("notify.receivers {:?}", r.name);
        if r.name.is_empty()
            || !r.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
        {
            return Err(invalid(format!("{what}: the name takes lower-case letters, digits, - and _")));
        }
        if !names.insert(r.name.as_str()) {
            return Err(invalid(format!("{what}: two receivers have this name")));
        }
        match (&r.url, &r.url_env) {
            (Some(u), None) if u.starts_with("http://") || u.starts_with("https://") => {}
            (Some(u), None) => return Err(invalid(format!("{what}: url {u:?} must be an http(s) URL"))),
            (None, Some(_)) => {}
            _ => return Err(invalid(format!("{what}: give either url or url_env"))),
        }
        // A filter that matches no event is a typo that would silence the receiver.
        if let Some(p) = r.events.iter().find(|p| !crate::api::audit::event_names().any(|e| event_matches(p, e))) {
            let known: Vec<&str> = crate::api::audit::event_names().collect();
            return Err(invalid(format!("{what}: events {p:?} matches no event; the events are {}", known.join(", "))));
        }
        if r.timeout_secs.is_some_and(|t| t == 0 || t > 60) {
            return Err(invalid(format!("{what}: timeout_secs must be between 1 and 60")));
        }
    }
    let (min, max) = s.notify.retry_bounds();
    if min == 0 || max < min {
        return Err(invalid("notify.retry_min_secs must be at least 1 and at most notify.retry_max_secs"));
    }
    if s.hooks.alertmanager.rules.iter().any(|r| r.match_labels.is_empty()) {
        return Err(invalid("hooks.alertmanager.rules: every rule needs at least one label in match"));
    }
    Ok(())
}

/// Whether a receiver's event filter (`flag.kill`, or `autopilot.*`) takes `event`.
pub fn event_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => pattern == event,
    }
}
