//! Standard conditions (`Available`, `Progressing`, `Degraded`, `Ready`) with transition
//! times that only move when the status changes, as `kubectl wait` and GitOps tools expect.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const READY: &str = "Ready";

/// A condition to set: type, status, reason, message.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merges `desired` into `existing`: conditions whose status is unchanged keep their
/// transition time; conditions of other types are kept as they are.
pub fn merge(
    existing: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = existing
        .iter()
        .filter(|c| !desired.iter().any(|d| d.type_ == c.type_))
        .cloned()
        .collect();
    for d in desired {
        let status = if d.status { "True" } else { "False" }.to_string();
        let last_transition_time = existing
            .iter()
            .find(|c| c.type_ == d.type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        merged.push(Condition {
            type_: d.type_.to_string(),
            status,
            reason: d.reason.clone(),
            message: d.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
    }
    merged.sort_by(|a, b| a.type_.cmp(&b.type_));
    merged
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn unchanged_status_keeps_its_transition_time() {
        let first = merge(
            &[],
            &[Desired::new(AVAILABLE, false, "Progressing", "0/1")],
            Some(1),
            &at(10),
        );
        let second = merge(
            &first,
            &[Desired::new(AVAILABLE, false, "Progressing", "0/2")],
            Some(2),
            &at(20),
        );
        assert_eq!(second[0].last_transition_time, at(10));
        assert_eq!(second[0].message, "0/2");
        assert_eq!(second[0].observed_generation, Some(2));
    }

    #[test]
    fn a_flip_moves_the_transition_time() {
        let first = merge(
            &[],
            &[Desired::new(AVAILABLE, false, "Progressing", "")],
            None,
            &at(10),
        );
        let second = merge(
            &first,
            &[Desired::new(AVAILABLE, true, "Ready", "")],
            None,
            &at(20),
        );
        assert_eq!(second[0].status, "True");
        assert_eq!(second[0].last_transition_time, at(20));
        assert!(is_true(&second, AVAILABLE));
    }

    #[test]
    fn other_condition_types_are_kept() {
        let nfr = merge(
            &[],
            &[Desired::new("NfrObserved", true, "Observed", "")],
            None,
            &at(1),
        );
        let merged = merge(
            &nfr,
            &[Desired::new(DEGRADED, false, "AsExpected", "")],
            None,
            &at(2),
        );
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1].type_, "NfrObserved");
    }
}
