//! Where usage numbers come from: a [`MetricsProvider`], and its implementation over the
//! Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`).
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::Deserialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// No answer: not running, not reachable, too slow.
    #[error("{0}")]
    Unavailable(String),
    /// An answer, but an error: a bad query, or an overloaded server.
    #[error("{0}")]
    Rejected(String),
}

/// One series: its labels and its points (unix seconds, value), oldest first. An instant
/// query gives one point per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(f64, f64)>,
}

pub trait MetricsProvider: Send + Sync {
    /// Where the numbers come from, for messages.
    fn describe(&self) -> String;
    /// The query's value now.
    fn instant<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<Vec<Series>, ProviderError>>;
    /// The query's values over the last `window`, every `step`.
    fn range<'a>(
        &'a self,
        query: &'a str,
        window: Duration,
        step: Duration,
    ) -> BoxFuture<'a, Result<Vec<Series>, ProviderError>>;
}

pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    pub fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Series>, ProviderError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Unavailable(format!("{} did not answer: {e}", self.describe()))
            })?;
        let status = response.status();
        let body = response.text().await.map_err(|e| {
            ProviderError::Unavailable(format!("{}: reading the answer: {e}", self.describe()))
        })?;
        let answer: Answer = serde_json::from_str(&body).map_err(|_| {
            ProviderError::Rejected(format!(
                "{} answered {status} with something else than its API: {}",
                self.describe(),
                body.chars().take(200).collect::<String>()
            ))
        })?;
        if answer.status != "success" {
            return Err(ProviderError::Rejected(format!(
                "{} rejected the query ({}): {}",
                self.describe(),
                answer.error_type.unwrap_or_default(),
                answer.error.unwrap_or_default()
            )));
        }
        Ok(answer
            .data
            .map(|d| d.result)
            .unwrap_or_default()
            .into_iter()
            .map(Item::into_series)
            .collect())
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl MetricsProvider for Prometheus {
    fn describe(&self) -> String {
        format!("Prometheus at {}", self.base)
    }

    fn instant<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<Vec<Series>, ProviderError>> {
        let params = [("query", query.to_string())];
        Box::pin(async move { self.get("/api/v1/query", &params).await })
    }

    fn range<'a>(
        &'a self,
        query: &'a str,
        window: Duration,
        step: Duration,
    ) -> BoxFuture<'a, Result<Vec<Series>, ProviderError>> {
        let end = unix_seconds(SystemTime::now());
        let params = [
            ("query", query.to_string()),
            ("start", format!("{:.3}", end - window.as_secs_f64())),
            ("end", format!("{end:.3}")),
            ("step", format!("{}", step.as_secs_f64().max(0.001))),
        ];
        Box::pin(async move { self.get("/api/v1/query_range", &params).await })
    }
}

/// The Prometheus HTTP API's envelope.
#[derive(Deserialize)]
struct Answer {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    result: Vec<Item>,
}

/// A vector element (`value`) or a matrix row (`values`); values are strings ("0.25", "NaN").
#[derive(Deserialize)]
struct Item {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

impl Item {
    fn into_series(self) -> Series {
        let points = self
            .value
            .into_iter()
            .chain(self.values)
            .filter_map(|(at, v)| {
                v.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(|v| (at, v))
            })
            .collect();
        Series {
            labels: self.metric,
            points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_matrices_become_series_without_non_finite_points() {
        let vector: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[10.5,"0.25"]}]}}"#,
        )
        .unwrap();
        let series: Vec<Series> = vector
            .data
            .unwrap()
            .result
            .into_iter()
            .map(Item::into_series)
            .collect();
        assert_eq!(series[0].labels["pod"], "a");
        assert_eq!(series[0].points, [(10.5, 0.25)]);

        let matrix: Answer = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"],[2,"NaN"],[3,"+Inf"],[4,"3"]]}]}}"#,
        )
        .unwrap();
        let series: Vec<Series> = matrix
            .data
            .unwrap()
            .result
            .into_iter()
            .map(Item::into_series)
            .collect();
        assert_eq!(series[0].points, [(1.0, 1.0), (4.0, 3.0)]);
    }
}
