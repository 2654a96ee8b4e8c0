//! Prometheus HTTP API client: instant queries, parsed strictly. Values arrive as strings
//! ("1.9", "NaN", "+Inf"); errors as `{"status":"error","errorType":..,"error":..}`.

use std::time::Duration;

use serde::Deserialize;

use super::error::{Source, SourceError};

const SOURCE: Source = Source::Prometheus;

#[derive(Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: String,
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: std::collections::BTreeMap<String, String>,
    pub timestamp: f64,
    pub value: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    data: Option<serde_json::Value>,
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<VectorItem>),
    Scalar((f64, String)),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct MatrixItem {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// One series of a range query: (unix seconds, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: std::collections::BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

/// Most points Prometheus returns per series before refusing the query.
pub const MAX_POINTS: i64 = 11_000;

/// An alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromAlert {
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    pub state: String,
    pub active_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Deserialize)]
struct AlertsData {
    alerts: Vec<PromAlert>,
}

#[derive(Deserialize)]
struct VectorItem {
    metric: std::collections::BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses a Prometheus sample value, which the API sends as a string.
pub fn parse_value(s: &str) -> Result<f64, SourceError> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| SourceError::Malformed {
            system: SOURCE,
            detail: format!("sample value {s:?} is not a number"),
        }),
    }
}

/// The `data` member of a successful answer, or the error Prometheus gave.
fn envelope_data(body: &[u8]) -> Result<serde_json::Value, SourceError> {
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| SourceError::Malformed { system: SOURCE, detail: format!("not a Prometheus API answer ({e})") })?;
    if env.status != "success" {
        return Err(SourceError::Rejected {
            system: SOURCE,
            detail: format!(
                "{}: {}",
                env.error_type.as_deref().unwrap_or("error"),
                env.error.as_deref().unwrap_or("no reason given")
            ),
        });
    }
    env.data.ok_or_else(|| SourceError::Malformed { system: SOURCE, detail: "no data".into() })
}

/// Parses a range-query answer body. NaN and infinite points are dropped (gaps in a chart).
pub fn parse_range(body: &[u8]) -> Result<Vec<RangeSeries>, SourceError> {
    let data = envelope_data(body)?;
    if data.get("resultType").and_then(|t| t.as_str()) != Some("matrix") {
        return Err(SourceError::Malformed { system: SOURCE, detail: "expected a range matrix".into() });
    }
    let items: Vec<MatrixItem> = serde_json::from_value(data.get("result").cloned().unwrap_or_default())
        .map_err(|e| SourceError::Malformed { system: SOURCE, detail: format!("unexpected matrix shape ({e})") })?;
    items
        .into_iter()
        .map(|m| {
            let mut points = Vec::with_capacity(m.values.len());
            for (t, v) in m.values {
                let v = parse_value(&v)?;
                if v.is_finite() {
                    points.push((t, v));
                }
            }
            Ok(RangeSeries { labels: m.metric, points })
        })
        .collect()
}

/// Parses an `/api/v1/alerts` answer body.
pub fn parse_alerts(body: &[u8]) -> Result<Vec<PromAlert>, SourceError> {
    let data = envelope_data(body)?;
    let data: AlertsData = serde_json::from_value(data)
        .map_err(|e| SourceError::Malformed { system: SOURCE, detail: format!("unexpected alerts shape ({e})") })?;
    Ok(data.alerts)
}

/// Parses an instant-query answer body.
pub fn parse_instant(body: &[u8]) -> Result<Vec<Sample>, SourceError> {
    let data = envelope_data(body)?;
    let data: QueryData = serde_json::from_value(data)
        .map_err(|e| SourceError::Malformed { system: SOURCE, detail: format!("unexpected result shape ({e})") })?;
    match data {
        QueryData::Vector(items) => items
            .into_iter()
            .map(|i| Ok(Sample { labels: i.metric, timestamp: i.value.0, value: parse_value(&i.value.1)? }))
            .collect(),
        QueryData::Scalar((t, v)) => {
            Ok(vec![Sample { labels: Default::default(), timestamp: t, value: parse_value(&v)? }])
        }
        QueryData::Matrix(_) | QueryData::String(_) => {
            Err(SourceError::Malformed { system: SOURCE, detail: "expected an instant vector or scalar".into() })
        }
    }
}

impl Prometheus {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, SourceError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: super::redact::outside_error(e) })?;
        Ok(Prometheus { http, base: base.trim_end_matches('/').to_string() })
    }

    /// GETs an API path and parses the body with `parse`. Prometheus answers 400/422/503 with
    /// the same JSON envelope as successes, so the body is parsed before the status is judged.
    async fn get<T>(
        &self,
        path: &str,
        params: &[(&str, String)],
        parse: impl FnOnce(&[u8]) -> Result<T, SourceError>,
    ) -> Result<T, SourceError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: super::redact::outside_error(e) })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| SourceError::Unreachable { system: SOURCE, detail: super::redact::outside_error(e) })?;
        match parse(&body) {
            Err(SourceError::Malformed { .. }) if !status.is_success() => {
                Err(SourceError::Rejected { system: SOURCE, detail: format!("HTTP {status}") })
            }
            other => other,
        }
    }

    /// Runs an instant query at the server's current time.
    pub async fn instant(&self, query: &str) -> Result<Vec<Sample>, SourceError> {
        self.get("/api/v1/query", &[("query", query.to_string())], parse_instant).await
    }

    /// Runs an instant query at an explicit time (one clock: the caller's, not Prometheus's).
    pub async fn instant_at(&self, query: &str, at: chrono::DateTime<chrono::Utc>) -> Result<Vec<Sample>, SourceError> {
        let time = format!("{:.3}", at.timestamp_millis() as f64 / 1000.0);
        self.get("/api/v1/query", &[("query", query.to_string()), ("time", time)], parse_instant).await
    }

    /// Runs a range query; `step` is raised so that no series exceeds Prometheus's point limit.
    pub async fn range(&self, query: &str, start: f64, end: f64, step: f64) -> Result<Vec<RangeSeries>, SourceError> {
        let step = step.max((end - start) / (MAX_POINTS - 1) as f64).max(1.0);
        let params = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{step:.3}")),
        ];
        self.get("/api/v1/query_range", &params, parse_range).await
    }

    /// Firing and pending alerts.
    pub async fn alerts(&self) -> Result<Vec<PromAlert>, SourceError> {
        self.get("/api/v1/alerts", &[], parse_alerts).await
    }

    /// A query expected to give exactly one number (e.g. a `sum(...)`). No series means no data.
    pub async fn scalar(&self, query: &str) -> Result<f64, SourceError> {
        one_number(query, self.instant(query).await?)
    }

    /// `scalar` at an explicit time.
    pub async fn scalar_at(&self, query: &str, at: chrono::DateTime<chrono::Utc>) -> Result<f64, SourceError> {
        one_number(query, self.instant_at(query, at).await?)
    }
}

fn one_number(query: &str, samples: Vec<Sample>) -> Result<f64, SourceError> {
    match samples.as_slice() {
        [one] if one.value.is_finite() => Ok(one.value),
        // NaN (0/0, no samples in the rate window) and ±Inf are not numbers a panel can show.
        [one] => Err(SourceError::Missing {
            system: SOURCE,
            detail: format!("Prometheus answered {} for `{query}`: no usable data in its window", one.value),
        }),
        [] => Err(SourceError::Missing {
            system: SOURCE,
            detail: format!("Prometheus has no samples for `{query}` (is the metric being scraped?)"),
        }),
        many => Err(SourceError::Malformed {
            system: SOURCE,
            detail: format!("`{query}` gave {} series; expected one (wrap it in sum())", many.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_matrix_and_leaves_gaps_for_nan() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{},"values":[[1700000000,"1"],[1700000060,"NaN"],[1700000120,"+Inf"],[1700000180,"2.5"]]}]}}"#;
        let s = parse_range(body).unwrap();
        assert_eq!(s[0].points, vec![(1700000000.0, 1.0), (1700000180.0, 2.5)]);
        assert!(matches!(
            parse_range(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Err(SourceError::Malformed { .. })
        ));
    }

    #[test]
    fn parses_alerts() {
        let body =
            br#"{"status":"success","data":{"alerts":[{"labels":{"alertname":"X","rollout":"insulin_dose_split"},
            "annotations":{"summary":"s"},"state":"firing","activeAt":"2026-11-25T10:00:00.123Z","value":"1e+00"}]}}"#;
        let a = parse_alerts(body).unwrap();
        assert_eq!(a[0].state, "firing");
        assert_eq!(a[0].labels["alertname"], "X");
        assert!(parse_alerts(br#"{"status":"success","data":{}}"#).is_err());
    }

    #[test]
    fn parses_vector_and_specials() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"job":"a"},"value":[1700000000.5,"1.9"]},
            {"metric":{},"value":[1700000000.5,"NaN"]},
            {"metric":{},"value":[1700000000.5,"+Inf"]}]}}"#;
        let s = parse_instant(body).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].value, 1.9);
        assert_eq!(s[0].labels["job"], "a");
        assert!(s[1].value.is_nan());
        assert_eq!(s[2].value, f64::INFINITY);
    }

    #[test]
    fn error_envelope_becomes_rejected() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        assert!(matches!(parse_range(body), Err(SourceError::Rejected { .. })));
        match parse_instant(body) {
            Err(SourceError::Rejected { detail, .. }) => assert!(detail.contains("parse error")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for body in [
            &b"<html>"[..],
            b"{}",
            br#"{"status":"success"}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#,
        ] {
            assert!(
                matches!(parse_instant(body), Err(SourceError::Malformed { .. })),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
