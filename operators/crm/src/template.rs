//! Which template renders a class: an explicit choice wins; otherwise every available
//! template is scored from the CRM's profile and the class's NFRs, the highest score wins,
//! and ties go to the lexically smallest name. Knative is available only when the feature
//! is on.
use oaas_crds::common::{NfrRequirements, Template};

use crate::render::Profile;

/// Latency below which cold starts (Knative scale-to-zero) are a poor fit.
const TIGHT_LATENCY_MS: u32 = 100;
/// Availability from which a single-replica template is a poor fit.
const HIGH_AVAILABILITY: f64 = 0.99;
/// Throughput from which an always-on, autoscaled Deployment pays off.
const HIGH_THROUGHPUT_RPS: u32 = 1000;

pub fn select(
    explicit: Option<Template>,
    profile: Profile,
    nfr: Option<&NfrRequirements>,
    knative_enabled: bool,
) -> Template {
    if let Some(template) = explicit {
        return template;
    }
    best(
        Template::ALL
            .into_iter()
            .filter(|t| *t != Template::Knative || knative_enabled)
            .map(|t| (score(t, profile, nfr), t)),
    )
    .unwrap_or(Template::Dev)
}

/// Highest score; on a tie the lexically smaller name.
fn best(scored: impl Iterator<Item = (i32, Template)>) -> Option<Template> {
    scored
        .max_by(|(a, ta), (b, tb)| a.cmp(b).then_with(|| tb.as_str().cmp(ta.as_str())))
        .map(|(_, t)| t)
}

pub fn score(template: Template, profile: Profile, nfr: Option<&NfrRequirements>) -> i32 {
    use Template::*;
    let mut score = match (profile, template) {
        (Profile::Dev, Dev) => 100,
        (Profile::Dev, K8sDeployment) => 50,
        (Profile::Dev, Edge) => 20,
        (Profile::Dev, Knative) => 10,
        (Profile::Edge, Edge) => 100,
        (Profile::Edge, K8sDeployment) => 50,
        (Profile::Edge, Dev) => 20,
        (Profile::Edge, Knative) => 10,
        (Profile::Full, K8sDeployment) => 100,
        (Profile::Full, Knative) => 80,
        (Profile::Full, Edge) => 20,
        (Profile::Full, Dev) => 10,
    };
    let Some(nfr) = nfr else { return score };
    if nfr.availability.is_some_and(|a| a >= HIGH_AVAILABILITY) {
        score += match template {
            K8sDeployment => 40,
            Knative => 10,
            Dev => -60,
            Edge => -20,
        };
    }
    if nfr.max_latency_ms.is_some_and(|ms| ms < TIGHT_LATENCY_MS) {
        score += match template {
            K8sDeployment => 20,
            Knative => -40,
            Dev | Edge => 0,
        };
    }
    if nfr
        .min_throughput_rps
        .is_some_and(|rps| rps >= HIGH_THROUGHPUT_RPS)
    {
        score += match template {
            K8sDeployment | Knative => 20,
            Dev => -40,
            Edge => -10,
        };
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_nfr(
        availability: Option<f64>,
        latency: Option<u32>,
        rps: Option<u32>,
    ) -> NfrRequirements {
        NfrRequirements {
            availability,
            max_latency_ms: latency,
            min_throughput_rps: rps,
            cpu_utilization_target: None,
        }
    }

    #[test]
    fn an_explicit_template_always_wins() {
        for t in Template::ALL {
            assert_eq!(select(Some(t), Profile::Dev, None, false), t);
        }
    }

    #[test]
    fn each_profile_prefers_its_own_template_without_nfrs() {
        assert_eq!(select(None, Profile::Dev, None, true), Template::Dev);
        assert_eq!(select(None, Profile::Edge, None, true), Template::Edge);
        assert_eq!(
            select(None, Profile::Full, None, true),
            Template::K8sDeployment
        );
    }

    #[test]
    fn high_availability_moves_a_dev_cluster_to_deployments() {
        let nfr = mk_nfr(Some(0.999), None, None);
        assert_eq!(
            select(None, Profile::Dev, Some(&nfr), false),
            Template::K8sDeployment
        );
    }

    #[test]
    fn knative_is_never_chosen_when_the_feature_is_off() {
        let no_latency_needs = mk_nfr(None, None, Some(5000));
        assert_ne!(
            select(None, Profile::Full, Some(&no_latency_needs), false),
            Template::Knative
        );
        assert_ne!(select(None, Profile::Full, None, false), Template::Knative);
    }

    #[test]
    fn tight_latency_penalises_knative_cold_starts() {
        let relaxed = score(Template::Knative, Profile::Full, None);
        let tight = score(
            Template::Knative,
            Profile::Full,
            Some(&mk_nfr(None, Some(20), None)),
        );
        assert!(tight < relaxed);
    }

    #[test]
    fn high_throughput_penalises_the_dev_template() {
        let nfr = mk_nfr(None, None, Some(5000));
        assert!(
            score(Template::Dev, Profile::Dev, Some(&nfr))
                < score(Template::Dev, Profile::Dev, None)
        );
    }

    #[test]
    fn ties_go_to_the_lexically_smallest_name() {
        let tied = [
            (5, Template::K8sDeployment),
            (5, Template::Edge),
            (5, Template::Knative),
        ];
        assert_eq!(best(tied.into_iter()), Some(Template::Edge));
        assert_eq!(
            best([(1, Template::Dev), (2, Template::Knative)].into_iter()),
            Some(Template::Knative)
        );
    }
}
