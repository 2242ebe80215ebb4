//! Availability-driven placement: how many (and which) clusters a class runs in.
//!
//! A class is available when a majority of its clusters is up (its object state needs a
//! quorum). With per-cluster availabilities p₁…pₙ the chance of that is a Poisson-binomial
//! tail, computed exactly by dynamic programming. For a given n the chance is highest with
//! the n most available clusters, so candidates are taken best-first and the plan is the
//! smallest n that meets the target — never worse than the seeds' worst-first order, and
//! usually fewer clusters. Strong consistency only considers odd n ≥ 3 (2f+1 with f ≥ 1).
//! Clusters named explicitly are always in the plan; selector matches are added as needed.

/// Assumed availability of a cluster whose CRM has not reported one yet.
pub const UNKNOWN_AVAILABILITY: f64 = 0.9;

/// Probability that a strict majority of clusters with these availabilities is up.
pub fn majority_availability(availabilities: &[f64]) -> f64 {
    if availabilities.is_empty() {
        return 0.0;
    }
    // up[k] = probability that exactly k clusters are up.
    let mut up = vec![1.0];
    for &p in availabilities {
        let mut next = vec![0.0; up.len() + 1];
        for (k, q) in up.iter().enumerate() {
            next[k] += q * (1.0 - p);
            next[k + 1] += q * p;
        }
        up = next;
    }
    let majority = availabilities.len() / 2 + 1;
    up[majority..].iter().sum()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    pub availability: Option<f64>,
    /// Named in the deployment's targetClusters (always used).
    pub explicit: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub clusters: Vec<String>,
    pub expected_availability: f64,
    pub reason: String,
}

pub fn place(candidates: &[Candidate], target: Option<f64>, strong: bool) -> Placement {
    let availability = |c: &Candidate| c.availability.unwrap_or(UNKNOWN_AVAILABILITY);
    let (mut chosen, mut optional): (Vec<&Candidate>, Vec<&Candidate>) =
        candidates.iter().partition(|c| c.explicit);
    optional.sort_by(|a, b| {
        availability(b)
            .total_cmp(&availability(a))
            .then_with(|| a.name.cmp(&b.name))
    });
    let names = |cs: &[&Candidate]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let expected = |cs: &[&Candidate]| {
        majority_availability(&cs.iter().map(|c| availability(c)).collect::<Vec<_>>())
    };
    let acceptable_size = |n: usize| !strong || (n >= 3 && n % 2 == 1);

    let Some(target) = target else {
        chosen.extend(optional);
        let p = expected(&chosen);
        return Placement {
            clusters: names(&chosen),
            expected_availability: p,
            reason: format!(
                "no availability target: all {} matching clusters",
                chosen.len()
            ),
        };
    };
    let mut rest = optional.into_iter();
    loop {
        let p = expected(&chosen);
        if !chosen.is_empty() && acceptable_size(chosen.len()) && p >= target {
            return Placement {
                clusters: names(&chosen),
                expected_availability: p,
                reason: format!(
                    "{} cluster(s) give {:.4} ≥ target {target}{}",
                    chosen.len(),
                    p,
                    if strong {
                        " with an odd quorum of at least 3 (strong consistency)"
                    } else {
                        ""
                    }
                ),
            };
        }
        match rest.next() {
            Some(next) => chosen.push(next),
            None => {
                return Placement {
                    clusters: names(&chosen),
                    expected_availability: p,
                    reason: format!(
                        "target {target} not reachable: all {} matching clusters give {:.4}{}",
                        chosen.len(),
                        p,
                        if strong && !acceptable_size(chosen.len()) {
                            " and strong consistency wants an odd quorum of at least 3"
                        } else {
                            ""
                        }
                    ),
                };
            }
        }
    }
}

/// The most replicas per function the planner asks of one cluster.
pub const MAX_PLANNED_REPLICAS: u32 = 5;

/// Replicas each function needs in a cluster to meet the availability `target` there.
///
/// Inside a cluster a function serves while one of its replicas does; replicas are spread
/// over nodes, and a node is up with probability `node_availability` (what the CRM reports:
/// ready/total nodes, or the OCluster's fixed availability). `r` replicas thus give
/// 1 − (1 − a)ʳ, and the rule is the smallest `r` that reaches the target. More replicas than
/// ready nodes would share nodes and add nothing, so the count stops there (and at
/// [`MAX_PLANNED_REPLICAS`]). Without a target one replica is enough.
pub fn replicas_per_cluster(
    target: Option<f64>,
    node_availability: f64,
    ready_nodes: Option<u32>,
) -> u32 {
    let Some(target) = target else {
        return 1;
    };
    let cap = ready_nodes
        .unwrap_or(MAX_PLANNED_REPLICAS)
        .clamp(1, MAX_PLANNED_REPLICAS);
    let down = (1.0 - node_availability).clamp(0.0, 1.0);
    (1..=cap)
        // The tolerance keeps 0.9 × 2 replicas at 0.99 despite binary fractions.
        .find(|&r| 1.0 - down.powi(r as i32) >= target - 1e-12)
        .unwrap_or(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk(name: &str, availability: f64, explicit: bool) -> Candidate {
        Candidate {
            name: name.into(),
            availability: Some(availability),
            explicit,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn three_clusters_at_ninety_percent_give_0_972() {
        assert!(close(majority_availability(&[0.9, 0.9, 0.9]), 0.972));
    }

    #[test]
    fn majority_edge_cases() {
        assert_eq!(majority_availability(&[]), 0.0);
        assert!(close(majority_availability(&[0.8]), 0.8));
        assert!(
            close(majority_availability(&[0.9, 0.9]), 0.81),
            "two need both"
        );
        assert!(close(majority_availability(&[1.0, 1.0, 0.0]), 1.0));
        let five = majority_availability(&[0.9; 5]);
        assert!(five > 0.99 && five < 1.0);
    }

    #[test]
    fn the_fewest_best_clusters_that_meet_the_target_are_chosen() {
        let candidates = [
            mk("a", 0.9, false),
            mk("b", 0.99, false),
            mk("c", 0.95, false),
        ];
        let one = place(&candidates, Some(0.98), false);
        assert_eq!(one.clusters, ["b"]);
        let three = place(&candidates, Some(0.993), false);
        assert_eq!(three.clusters, ["b", "c", "a"]);
        assert!(three.expected_availability >= 0.993, "{three:?}");
    }

    #[test]
    fn an_unreachable_target_uses_every_cluster_and_says_so() {
        let placement = place(
            &[mk("a", 0.5, false), mk("b", 0.5, false)],
            Some(0.999),
            false,
        );
        assert_eq!(placement.clusters.len(), 2);
        assert!(
            placement.reason.contains("not reachable"),
            "{}",
            placement.reason
        );
    }

    #[test]
    fn no_target_means_every_candidate() {
        let placement = place(&[mk("a", 0.5, false), mk("b", 0.9, true)], None, false);
        assert_eq!(placement.clusters, ["b", "a"]);
    }

    #[test]
    fn explicit_clusters_are_always_kept() {
        let placement = place(
            &[mk("named", 0.6, true), mk("best", 0.999, false)],
            Some(0.5),
            false,
        );
        assert_eq!(placement.clusters, ["named"]);
    }

    #[test]
    fn strong_consistency_wants_an_odd_quorum_of_at_least_three() {
        let candidates = [
            mk("a", 0.999, false),
            mk("b", 0.99, false),
            mk("c", 0.99, false),
            mk("d", 0.9, false),
        ];
        let placement = place(&candidates, Some(0.9), true);
        assert_eq!(placement.clusters.len(), 3);
        let too_few = place(&candidates[..2], Some(0.9), true);
        assert!(too_few.reason.contains("odd quorum"), "{}", too_few.reason);
    }

    #[test]
    fn unknown_availability_is_assumed() {
        let unknown = Candidate {
            name: "u".into(),
            availability: None,
            explicit: false,
        };
        let placement = place(&[unknown], Some(0.85), false);
        assert!(close(placement.expected_availability, UNKNOWN_AVAILABILITY));
    }

    #[test]
    fn replicas_are_the_fewest_that_meet_the_target_inside_a_cluster() {
        let cases = [
            // (target, node availability, ready nodes, replicas, why)
            (None, 0.5, Some(9), 1, "no target: one replica"),
            (Some(0.99), 1.0, Some(3), 1, "every node up: one is enough"),
            (Some(0.9), 0.9, Some(3), 1, "one node at 0.9 meets 0.9"),
            (Some(0.99), 0.9, Some(3), 2, "two at 0.9 give 0.99"),
            (Some(0.999), 0.9, Some(3), 3, "three at 0.9 give 0.999"),
            (
                Some(0.999),
                0.9,
                Some(2),
                2,
                "no more replicas than ready nodes",
            ),
            (Some(0.999_999_9), 0.5, None, MAX_PLANNED_REPLICAS, "capped"),
            (
                Some(0.99),
                0.9,
                Some(0),
                1,
                "no ready node still gets one replica",
            ),
        ];
        for (target, availability, nodes, expected, why) in cases {
            assert_eq!(
                replicas_per_cluster(target, availability, nodes),
                expected,
                "{why}"
            );
        }
    }
}
