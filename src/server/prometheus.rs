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
        _ => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| SourceError::Malformed {
                system: SOURCE,
                detail: format!("sample value {s:?} is not a number"),
            }),
    }
}

/// Parses an instant-query answer body.
pub fn parse_instant(body: &[u8]) -> Result<Vec<Sample>, SourceError> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| SourceError::Malformed {
        system: SOURCE,
        detail: format!("not a Prometheus API answer ({e})"),
    })?;
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
    let data = env.data.ok_or_else(|| SourceError::Malformed {
        system: SOURCE,
        detail: "no data".into(),
    })?;
    let data: QueryData = serde_json::from_value(data).map_err(|e| SourceError::Malformed {
        system: SOURCE,
        detail: format!("unexpected result shape ({e})"),
    })?;
    match data {
        QueryData::Vector(items) => items
            .into_iter()
            .map(|i| {
                Ok(Sample {
                    labels: i.metric,
                    timestamp: i.value.0,
                    value: parse_value(&i.value.1)?,
                })
            })
            .collect(),
        QueryData::Scalar((t, v)) => Ok(vec![Sample {
            labels: Default::default(),
            timestamp: t,
            value: parse_value(&v)?,
        }]),
        QueryData::Matrix(_) | QueryData::String(_) => Err(SourceError::Malformed {
            system: SOURCE,
            detail: "expected an instant vector or scalar".into(),
        }),
    }
}

impl Prometheus {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, SourceError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| SourceError::Unreachable {
                system: SOURCE,
                detail: e.without_url().to_string(),
            })?;
        Ok(Prometheus {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// Runs an instant query at the server's current time.
    pub async fn instant(&self, query: &str) -> Result<Vec<Sample>, SourceError> {
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|e| SourceError::Unreachable {
                system: SOURCE,
                detail: reqwest_detail(e),
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| SourceError::Unreachable {
            system: SOURCE,
            detail: reqwest_detail(e),
        })?;
        // Prometheus answers 400/422/503 with the same JSON envelope, so parse before judging.
        match parse_instant(&body) {
            Err(SourceError::Malformed { .. }) if !status.is_success() => {
                Err(SourceError::Rejected {
                    system: SOURCE,
                    detail: format!("HTTP {status}"),
                })
            }
            other => other,
        }
    }

    /// A query expected to give exactly one number (e.g. a `sum(...)`). No series means no data.
    pub async fn scalar(&self, query: &str) -> Result<f64, SourceError> {
        let samples = self.instant(query).await?;
        match samples.as_slice() {
            [one] => Ok(one.value),
            [] => Err(SourceError::Missing {
                system: SOURCE,
                detail: format!(
                    "Prometheus has no samples for `{query}` (is the metric being scraped?)"
                ),
            }),
            many => Err(SourceError::Malformed {
                system: SOURCE,
                detail: format!(
                    "`{query}` gave {} series; expected one (wrap it in sum())",
                    many.len()
                ),
            }),
        }
    }
}

/// reqwest's message without the URL, which may carry credentials.
fn reqwest_detail(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let e = e.without_url();
    if timeout {
        "the request timed out".into()
    } else if connect {
        "connection refused or failed".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        match parse_instant(body) {
            Err(SourceError::Rejected { detail, .. }) => assert!(detail.contains("parse error")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        for body in [&b"<html>"[..], b"{}", br#"{"status":"success"}"#, br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#] {
            assert!(matches!(parse_instant(body), Err(SourceError::Malformed { .. })), "{:?}", String::from_utf8_lossy(body));
        }
    }
}
