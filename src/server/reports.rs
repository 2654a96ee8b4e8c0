//! Reports for BI: the rollout's charts and two daily views of `history_records`, each as SVG,
//! PNG and the CSV of exactly the numbers drawn, with a caption naming source, query, range and
//! time zone. The rendering rules are stated once, here, and the SQL and the worked examples on
//! the page both follow them (a test checks that they agree).
//!
//! The rules (the migration guide's: `dose` means the short dose):
//! - a row is in exactly one category: doubled (`dose` copied into both parts), both, short only,
//!   long only, legacy only (`dose` alone), empty;
//! - short units = `insulin_short` + the `dose` of legacy-only rows; long units = `insulin_long`;
//! - doubled rows add nothing to short or long: their `dose` is drawn as its own series;
//! - a row with `dose` and split parts that is not doubled counts by its split parts only.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::api::reports::{Caption, ReportChartView, ReportsView, RuleExample};
use crate::api::window::Window;

pub use super::categories::{classify, Category};
use super::charts::{self, reports as report_charts, Chart, TimeZoneOffset};
use super::error::{ApiError, SourceError};
pub use super::records::DayRow;
use super::records::{DiaryRecords, SchemaState};
use super::service;
use super::state::AppState;

pub const REPORT_SIZE: (u32, u32) = (960, 360);

/// What one row adds to (short units, long units, doubled units).
pub fn contribution(dose: Option<f64>, short: Option<f64>, long: Option<f64>) -> (f64, f64, f64) {
    match classify(dose, short, long) {
        Category::Doubled => (0.0, 0.0, dose.unwrap_or(0.0)),
        Category::LegacyOnly => (dose.unwrap_or(0.0), 0.0, 0.0),
        _ => (short.unwrap_or(0.0), long.unwrap_or(0.0), 0.0),
    }
}

#[derive(sqlx::FromRow)]
struct DbDay {
    day: chrono::NaiveDateTime,
    legacy_only: i64,
    short_only: i64,
    long_only: i64,
    both: i64,
    doubled: i64,
    empty: i64,
    short_units: f64,
    long_units: f64,
    doubled_units: f64,
}

/// The SQL of the daily report for this schema (`$1`, `$2`: the range; `$3`: the offset in seconds).
pub fn daily_sql(table: &str, schema: &SchemaState) -> String {
    let split = schema.has_split_columns();
    let (parts, note) = if split {
        ("insulin_short::float8 AS s, insulin_long::float8 AS l", "")
    } else {
        ("NULL::float8 AS s, NULL::float8 AS l", " -- without the split columns every row with a dose is legacy only")
    };
    let parts = format!("{parts},\n         {} AS cat", Category::case_sql(split));
    let case = note;
    format!(
        "WITH r AS (
  SELECT date_trunc('day', (created_at AT TIME ZONE 'UTC') + make_interval(secs => $3)) AS day,
         dose::float8 AS dose, {parts}
  FROM {table} WHERE created_at >= $1 AND created_at < $2){case}
SELECT day,
  count(*) FILTER (WHERE cat = 'legacy_only') AS legacy_only,
  count(*) FILTER (WHERE cat = 'short_only') AS short_only,
  count(*) FILTER (WHERE cat = 'long_only') AS long_only,
  count(*) FILTER (WHERE cat = 'both') AS both,
  count(*) FILTER (WHERE cat = 'doubled') AS doubled,
  count(*) FILTER (WHERE cat = 'empty') AS empty,
  coalesce(sum(s) FILTER (WHERE cat <> 'doubled'), 0) + coalesce(sum(dose) FILTER (WHERE cat = 'legacy_only'), 0) AS short_units,
  coalesce(sum(l) FILTER (WHERE cat <> 'doubled'), 0) AS long_units,
  coalesce(sum(dose) FILTER (WHERE cat = 'doubled'), 0) AS doubled_units
FROM r GROUP BY day ORDER BY day"
    )
}

/// Every local day from `start`'s to `end`'s, the days without rows as zeros.
pub async fn daily(
    diary: &DiaryRecords,
    schema: &SchemaState,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tz: TimeZoneOffset,
) -> Result<(Vec<DayRow>, String), SourceError> {
    let sql = daily_sql(diary.table(), schema);
    let rows: Vec<DbDay> = sqlx::query_as(&sql)
        .bind(start)
        .bind(end)
        .bind(f64::from(tz.seconds))
        .fetch_all(diary.pool())
        .await
        .map_err(|e| super::error::from_sqlx(super::error::Source::DiaryDatabase, &e))?;
    let local = |t: DateTime<Utc>| (t + Duration::seconds(i64::from(tz.seconds))).date_naive();
    let (first, last) = (local(start), local(end - Duration::microseconds(1)));
    let mut out = Vec::new();
    let mut day = first;
    let mut it = rows.into_iter().peekable();
    while day <= last {
        let row = match it.peek() {
            Some(r) if r.day.date() == day => {
                let r = it.next().expect("peeked");
                DayRow {
                    day: Some(day),
                    legacy_only: r.legacy_only,
                    short_only: r.short_only,
                    long_only: r.long_only,
                    both: r.both,
                    doubled: r.doubled,
                    empty: r.empty,
                    short_units: r.short_units,
                    long_units: r.long_units,
                    doubled_units: r.doubled_units,
                }
            }
            _ => DayRow { day: Some(day), ..Default::default() },
        };
        out.push(row);
        day = day.succ_opt().unwrap_or(day);
        if day == NaiveDate::MAX {
            break;
        }
    }
    Ok((out, sql))
}

/// The charts a report can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Usage,
    LegacyShare,
    RecordCategories,
    InsulinUnits,
    ClientVersions,
    Crossover,
    DoseTotals,
}

impl ReportKind {
    pub const ALL: [ReportKind; 7] = [
        ReportKind::Usage,
        ReportKind::LegacyShare,
        ReportKind::RecordCategories,
        ReportKind::InsulinUnits,
        ReportKind::ClientVersions,
        ReportKind::Crossover,
        ReportKind::DoseTotals,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            ReportKind::Usage => "usage",
            ReportKind::LegacyShare => "legacy-share",
            ReportKind::RecordCategories => "record-categories",
            ReportKind::InsulinUnits => "insulin-units",
            ReportKind::ClientVersions => "client-versions",
            ReportKind::Crossover => "crossover",
            ReportKind::DoseTotals => "dose-totals",
        }
    }

    pub fn parse(s: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.slug() == s)
    }

    pub fn title(self) -> &'static str {
        match self {
            ReportKind::Usage => "Split versus legacy doses saved",
            ReportKind::LegacyShare => "Legacy share of doses saved",
            ReportKind::RecordCategories => "history_records per day, by category",
            ReportKind::InsulinUnits => "Insulin units per day, by kind",
            ReportKind::ClientVersions => "Legacy doses by app version",
            ReportKind::Crossover => "Patients who cross over, per UTC day",
            ReportKind::DoseTotals => "Patients whose daily short total changed, by the day they moved",
        }
    }
}

/// A chart ready to draw, with its caption.
pub struct Report {
    pub chart: Chart,
    pub caption: Caption,
}

/// `t` in the reports' time zone, to the minute.
fn local_text(t: DateTime<Utc>, tz: TimeZoneOffset) -> String {
    tz.local(t.timestamp() as f64).map(|d| d.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

fn range_text(start: DateTime<Utc>, end: DateTime<Utc>, tz: TimeZoneOffset) -> String {
    format!("{} to {} ({})", local_text(start, tz), local_text(end, tz), tz.label())
}

fn caption_for(state: &AppState, kind: ReportKind, range: Window, tz: TimeZoneOffset) -> Caption {
    let end = Utc::now();
    let start = end - Duration::seconds(range.as_secs());
    let m = &state.settings.metrics;
    let prom_query = format!("{}\n{}", m.split_rate("<window>"), m.legacy_rate("<window>"));
    match kind {
        ReportKind::Usage | ReportKind::LegacyShare => Caption {
            source: "Prometheus (query_range), with the flag changes the dashboard observed as markers".into(),
            query: if kind == ReportKind::LegacyShare {
                format!("legacy / (split + legacy) of:\n{prom_query}")
            } else {
                prom_query
            },
            range: range_text(start, end, tz),
            time_zone: tz.label(),
        },
        ReportKind::ClientVersions => Caption {
            source: format!(
                "Prometheus (query_range), the counters by their {} label; the table of every version is \
                 /api/v1/adoption/versions.csv",
                state.settings.client_versions.label
            ),
            query: String::new(),
            range: range_text(start, end, tz),
            time_zone: tz.label(),
        },
        ReportKind::Crossover | ReportKind::DoseTotals => Caption {
            source: format!(
                "PostgreSQL, table {}, per patient and UTC day (each ended day counted once); {}",
                state.settings.schema.table,
                if kind == ReportKind::Crossover {
                    "the table is /api/v1/patients/crossover"
                } else {
                    "the distribution is /api/v1/patients/dose-totals.csv"
                }
            ),
            query: String::new(),
            range: range_text(start, end, tz),
            time_zone: tz.label(),
        },
        _ => Caption {
            source: format!("PostgreSQL, table {}, by created_at", state.settings.schema.table),
            query: String::new(),
            range: range_text(start, end, tz),
            time_zone: tz.label(),
        },
    }
}

/// Builds one report chart from the same services the overview uses.
pub async fn build(state: &AppState, kind: ReportKind, range: Window) -> Result<Report, SourceError> {
    let tz = state.settings.reports.tz();
    let mut caption = caption_for(state, kind, range, tz);
    let mut chart = match kind {
        ReportKind::Usage | ReportKind::LegacyShare => {
            let (adoption, history, events) = tokio::join!(
                service::adoption(state, range),
                service::flag_history(state, range),
                service::autopilot_events(state, range)
            );
            let a = adoption?;
            let (history, events) = (history.unwrap_or_default(), events.unwrap_or_default());
            if kind == ReportKind::Usage {
                charts::rollout::usage(&a, &history, &events, state.flags.version_field())
            } else {
                charts::rollout::legacy_share(&a, &history, &events, state.flags.version_field())
            }
        }
        ReportKind::ClientVersions => {
            let v = service::client_versions(state, range).await?;
            caption.query = v.queries.join("\n");
            charts::versions::legacy_by_version(&v)
        }
        ReportKind::Crossover | ReportKind::DoseTotals => patients_chart(state, kind, range, tz, &mut caption).await?,
        ReportKind::RecordCategories | ReportKind::InsulinUnits => {
            let (diary, schema) = service::diary_and_schema(state).await?;
            // Whole local days only: today is unfinished and would read as a cliff to near zero.
            let now = Utc::now();
            let end = local_day_start(now, tz);
            let start = local_day_start(now - Duration::seconds(range.as_secs()), tz).min(end - Duration::days(1));
            let (days, sql) = daily(diary, &schema, start, end, tz).await?;
            caption.query = sql;
            caption.range = format!(
                "{}; today, unfinished until {} ({}), is left out",
                range_text(start, end, tz),
                local_text(end + Duration::days(1), tz),
                tz.label()
            );
            let x_range = (start.timestamp() as f64, end.timestamp() as f64);
            if kind == ReportKind::RecordCategories {
                report_charts::record_categories(&days, tz, x_range)
            } else {
                report_charts::insulin_units(&days, tz, x_range)
            }
        }
    };
    chart.tz = tz;
    Ok(Report { chart, caption })
}

/// The patients' charts over whole UTC days: the patient days' own (the current one left out).
async fn patients_chart(
    state: &AppState,
    kind: ReportKind,
    range: Window,
    tz: TimeZoneOffset,
    caption: &mut Caption,
) -> Result<Chart, SourceError> {
    let now = Utc::now();
    let end = crate::server::patient_days::day_bounds(now.date_naive()).0;
    let start = crate::server::patient_days::day_bounds((now - Duration::seconds(range.as_secs())).date_naive()).0;
    let x_range = (start.timestamp() as f64, end.timestamp() as f64);
    caption.range = format!("{}; today (UTC), unfinished, is left out", range_text(start, end, tz));
    Ok(if kind == ReportKind::Crossover {
        let c = service::crossover(state, false).await?;
        caption.query = c.query.clone();
        charts::patients::crossover(&c, x_range, tz)
    } else {
        let t = service::dose_totals(state, false).await?;
        caption.query = t.query.clone();
        caption.source = format!(
            "{}; of {} patients who moved, {} had {} whole days on each side and were compared, {} changed",
            caption.source,
            crate::api::numbers::count(t.moved),
            crate::api::numbers::count(t.both_sides),
            t.min_days,
            crate::api::numbers::count(t.changed)
        );
        charts::patients::dose_totals(&t, x_range, tz)
    })
}

/// The start of the local day holding `t`.
fn local_day_start(t: DateTime<Utc>, tz: TimeZoneOffset) -> DateTime<Utc> {
    let off = Duration::seconds(i64::from(tz.seconds));
    let local_midnight = (t + off).date_naive().and_hms_opt(0, 0, 0).expect("midnight exists");
    local_midnight.and_utc() - off
}

/// The reports page: every chart (each failing on its own), and the rules with worked examples.
pub async fn view(state: &AppState, range: &str) -> Result<ReportsView, ApiError> {
    let w: Window =
        range.parse().map_err(|e: crate::api::window::BadWindow| ApiError::BadRequest(format!("range: {e}")))?;
    let tz = state.settings.reports.tz();
    let built = futures::future::join_all(ReportKind::ALL.map(|k| async move { (k, build(state, k, w).await) })).await;
    let charts = built
        .into_iter()
        .map(|(k, r)| match r {
            Ok(r) => {
                let d = charts::draw_svg(&r.chart, REPORT_SIZE);
                ReportChartView {
                    id: k.slug().into(),
                    title: k.title().into(),
                    svg: Some(d.svg),
                    points: d.points,
                    caption: r.caption,
                    error: None,
                }
            }
            Err(e) => ReportChartView {
                id: k.slug().into(),
                title: k.title().into(),
                svg: None,
                points: 0,
                caption: caption_for(state, k, w, tz),
                error: Some(e.to_string()),
            },
        })
        .collect();
    Ok(ReportsView { range: w.to_string(), time_zone: tz.label(), charts, rules: rules() })
}

/// The worked examples: one row per category, run through the same rules as the SQL.
pub fn rules() -> Vec<RuleExample> {
    /// dose, insulin_short, insulin_long, and why it counts as it does.
    type Example = (Option<f64>, Option<f64>, Option<f64>, &'static str);
    let examples: [Example; 7] = [
        (Some(6.0), None, None, "legacy only: dose is the short dose (the guide's rule), counted once, as short"),
        (None, Some(4.0), None, "short only: counted as short"),
        (None, None, Some(12.0), "long only: counted as long"),
        (None, Some(4.0), Some(12.0), "both parts: short and long, each once"),
        (
            Some(8.0),
            Some(8.0),
            Some(8.0),
            "doubled: dose copied into both parts, a defect; left out of short and long, drawn as its own series",
        ),
        (
            Some(4.0),
            Some(4.0),
            Some(12.0),
            "dose beside split parts, not doubled: counted by its split parts only, dose ignored",
        ),
        (None, None, None, "empty (a note without a dose): counted in the categories, adds no units"),
    ];
    examples
        .into_iter()
        .map(|(dose, s, l, why)| {
            let (su, lu, du) = contribution(dose, s, l);
            RuleExample {
                dose,
                insulin_short: s,
                insulin_long: l,
                category: classify(dose, s, l).as_str().into(),
                short_units: su,
                long_units: lu,
                doubled_units: du,
                explanation: why.into(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_counts_once() {
        assert_eq!(classify(Some(6.0), None, None), Category::LegacyOnly);
        assert_eq!(contribution(Some(6.0), None, None), (6.0, 0.0, 0.0));
        assert_eq!(contribution(Some(8.0), Some(8.0), Some(8.0)), (0.0, 0.0, 8.0));
        assert_eq!(contribution(Some(4.0), Some(4.0), Some(12.0)), (4.0, 12.0, 0.0));
        assert_eq!(classify(Some(8.0), Some(8.0), None), Category::ShortOnly, "dose = short only is not doubled");
        for r in rules() {
            let counted = [r.short_units, r.long_units, r.doubled_units].iter().filter(|u| **u > 0.0).count();
            assert!(r.category != "doubled" || counted == 1, "{r:?}");
        }
    }

    #[test]
    fn time_zones_are_fixed_offsets() {
        assert_eq!(TimeZoneOffset::parse("UTC"), Some(TimeZoneOffset::UTC));
        assert_eq!(TimeZoneOffset::parse("+03:00").map(|t| t.seconds), Some(3 * 3600));
        assert_eq!(TimeZoneOffset::parse("UTC-05:30").map(|t| t.label()), Some("UTC-05:30".into()));
        for bad in ["Europe/Moscow", "+3", "+15:00", "03:00", "+03:60", ""] {
            assert_eq!(TimeZoneOffset::parse(bad), None, "{bad}");
        }
        let t = Utc::now();
        let start = local_day_start(t, TimeZoneOffset { seconds: 3 * 3600 });
        assert_eq!((start + Duration::hours(3)).time(), chrono::NaiveTime::MIN);
    }
}
