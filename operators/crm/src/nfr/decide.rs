//! The NFR decisions, as pure functions: what the observed use recommends for a function,
//! and whether the enforcer applies a replica recommendation now, with its safeguards
//! (stability window, cooldown, bounded step, scale bounds).
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// At most this much change per apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Replicas(u32),
    /// Percent of the current replicas, rounded up; at least one replica.
    Percent(u32),
}

impl Step {
    pub fn parse(text: &str) -> Option<Step> {
        let text = text.trim();
        let (number, percent) = match text.strip_suffix('%') {
            Some(number) => (number, true),
            None => (text, false),
        };
        let n: u32 = number.trim().parse().ok().filter(|n| *n > 0)?;
        Some(if percent {
            Step::Percent(n)
        } else {
            Step::Replicas(n)
        })
    }

    fn of(self, current: u32) -> u32 {
        match self {
            Step::Replicas(n) => n,
            Step::Percent(p) => (u64::from(current) * u64::from(p)).div_ceil(100) as u32,
        }
        .max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Safeguards {
    /// The same target must be recommended this long before it is applied.
    pub stability: Duration,
    /// No apply this soon after the previous one.
    pub cooldown: Duration,
    pub max_step: Step,
}

/// A target the enforcer has seen, and since when.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pending {
    pub target: u32,
    pub since: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnforceInput {
    pub recommended: u32,
    /// Replicas in force now: the last applied value, else the function's floor.
    pub current: u32,
    pub min: u32,
    pub max: u32,
    pub pending: Option<Pending>,
    pub last_applied_at: Option<Timestamp>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do: the replicas in force are the target.
    AtTarget,
    /// A different target, not applied yet; `reason` says what it waits for.
    Wait { pending: Pending, reason: String },
    /// Apply `replicas` now (one bounded step toward the target).
    Apply {
        replicas: u32,
        pending: Pending,
        reason: String,
    },
}

fn seconds(d: Duration) -> u64 {
    d.as_secs()
}

/// Whether and how far to move the replicas in force toward the recommendation.
pub fn enforce(input: EnforceInput, guards: &Safeguards) -> Decision {
    let floor = input.min.max(1);
    let target = input.recommended.clamp(floor, input.max.max(floor));
    if target == input.current {
        return Decision::AtTarget;
    }
    let pending = match input.pending {
        Some(p) if p.target == target => p,
        _ => Pending {
            target,
            since: input.now,
        },
    };
    let held = elapsed(pending.since, input.now);
    if held < guards.stability {
        return Decision::Wait {
            pending,
            reason: format!(
                "{target} replicas recommended for {}s of the {}s stability window",
                seconds(held),
                seconds(guards.stability)
            ),
        };
    }
    if let Some(applied) = input.last_applied_at {
        let since = elapsed(applied, input.now);
        if since < guards.cooldown {
            return Decision::Wait {
                pending,
                reason: format!(
                    "cooling down: {}s of {}s since the last change",
                    seconds(since),
                    seconds(guards.cooldown)
                ),
            };
        }
    }
    let step = guards.max_step.of(input.current);
    let replicas = if target > input.current {
        input.current + step.min(target - input.current)
    } else {
        input.current - step.min(input.current - target)
    };
    Decision::Apply {
        replicas,
        pending,
        reason: format!(
            "{} → {replicas} replicas toward {target} (recommended {}, at most {step} per change)",
            input.current, input.recommended
        ),
    }
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::from_millis(to.duration_since(from).as_millis().max(0) as u64)
}

/// What the observed use of one function suggests.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// CPU cores used by all replicas together, averaged over the window.
    pub cpu_cores: f64,
    /// Memory working set of all replicas together, in bytes.
    pub memory_bytes: Option<f64>,
    /// Replicas that produced that use.
    pub replicas: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// Within min..max.
    pub replicas: u32,
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub reason: String,
}

/// Replicas that put the observed CPU use at `target_percent` of the requests (the
/// autoscaler's rule), clamped to the bounds; per-replica CPU and memory requests that fit
/// the observed use (observe only).
pub fn recommend(
    usage: &Usage,
    cpu_request_cores: Option<f64>,
    target_percent: f64,
    min: u32,
    max: u32,
) -> Recommendation {
    let floor = min.max(1);
    let replicas_now = usage.replicas.max(1);
    let target = target_percent / 100.0;
    let per_replica_cpu = usage.cpu_cores / f64::from(replicas_now);
    let cpu_request = Some(cpu_quantity(per_replica_cpu / target));
    let memory_request = usage
        .memory_bytes
        .map(|bytes| memory_quantity(bytes / f64::from(replicas_now) * 1.2));
    let Some(request) = cpu_request_cores.filter(|r| *r > 0.0) else {
        return Recommendation {
            replicas: replicas_now.clamp(floor, max.max(floor)),
            cpu_request,
            memory_request,
            reason: "no CPU request to measure utilization against: set provisionConfig.cpuRequest"
                .into(),
        };
    };
    let wanted = (usage.cpu_cores / (request * target)).ceil().max(1.0) as u32;
    let replicas = wanted.clamp(floor, max.max(floor));
    let bounded = if replicas != wanted {
        format!(
            ", bounded by minScale..maxScale {floor}..{}",
            max.max(floor)
        )
    } else {
        String::new()
    };
    Recommendation {
        replicas,
        cpu_request,
        memory_request,
        reason: format!(
            "CPU {:.3} cores over {replicas_now} replica(s) is {:.0}% of {}m requested each; \
             {wanted} replica(s) bring it to the {:.0}% target{bounded}",
            usage.cpu_cores,
            usage.cpu_cores / (request * f64::from(replicas_now)) * 100.0,
            (request * 1000.0).round(),
            target_percent
        ),
    }
}

/// Millicores, rounded up: `250m`.
fn cpu_quantity(cores: f64) -> String {
    format!("{}m", (cores * 1000.0).ceil().max(1.0) as u64)
}

/// Mebibytes, rounded up: `192Mi`.
fn memory_quantity(bytes: f64) -> String {
    format!("{}Mi", (bytes / (1024.0 * 1024.0)).ceil().max(1.0) as u64)
}

/// CPU cores of a Kubernetes quantity (`250m`, `0.5`, `2`); None when it is not one.
pub fn parse_cpu(quantity: &str) -> Option<f64> {
    let quantity = quantity.trim();
    match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().ok().map(|m| m / 1000.0),
        None => quantity.parse().ok(),
    }
    .filter(|c: &f64| c.is_finite() && *c >= 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + seconds).unwrap()
    }

    fn guards(step: Step) -> Safeguards {
        Safeguards {
            stability: Duration::from_secs(60),
            cooldown: Duration::from_secs(120),
            max_step: step,
        }
    }

    fn input(recommended: u32, current: u32) -> EnforceInput {
        EnforceInput {
            recommended,
            current,
            min: 1,
            max: 10,
            pending: None,
            last_applied_at: None,
            now: at(1000),
        }
    }

    fn pending(target: u32, since: i64) -> Option<Pending> {
        Some(Pending {
            target,
            since: at(since),
        })
    }

    #[test]
    fn every_branch_of_the_enforcer() {
        struct Case {
            name: &'static str,
            input: EnforceInput,
            step: Step,
            expect: Result<u32, Option<&'static str>>,
        }
        let cases = [
            Case {
                name: "already at the recommendation",
                input: input(3, 3),
                step: Step::Replicas(1),
                expect: Err(None),
            },
            Case {
                name: "a recommendation above max is clamped, and max is in force",
                input: EnforceInput {
                    max: 4,
                    ..input(9, 4)
                },
                step: Step::Replicas(1),
                expect: Err(None),
            },
            Case {
                name: "a new target starts the stability window",
                input: input(5, 2),
                step: Step::Replicas(1),
                expect: Err(Some("0s of the 60s stability window")),
            },
            Case {
                name: "still inside the stability window",
                input: EnforceInput {
                    pending: pending(5, 970),
                    ..input(5, 2)
                },
                step: Step::Replicas(1),
                expect: Err(Some("30s of the 60s stability window")),
            },
            Case {
                name: "a changed target restarts the window",
                input: EnforceInput {
                    pending: pending(6, 0),
                    ..input(5, 2)
                },
                step: Step::Replicas(1),
                expect: Err(Some("0s of the 60s")),
            },
            Case {
                name: "stable but cooling down after the last change",
                input: EnforceInput {
                    pending: pending(5, 0),
                    last_applied_at: Some(at(950)),
                    ..input(5, 2)
                },
                step: Step::Replicas(1),
                expect: Err(Some("cooling down: 50s of 120s")),
            },
            Case {
                name: "stable and cooled down: one bounded step up",
                input: EnforceInput {
                    pending: pending(5, 0),
                    last_applied_at: Some(at(800)),
                    ..input(5, 2)
                },
                step: Step::Replicas(1),
                expect: Ok(3),
            },
            Case {
                name: "a step larger than the distance stops at the target",
                input: EnforceInput {
                    pending: pending(5, 0),
                    ..input(5, 4)
                },
                step: Step::Replicas(3),
                expect: Ok(5),
            },
            Case {
                name: "down by a percentage of the current replicas, rounded up",
                input: EnforceInput {
                    pending: pending(1, 0),
                    ..input(1, 10)
                },
                step: Step::Percent(25),
                expect: Ok(7),
            },
            Case {
                name: "a small percentage still moves one replica",
                input: EnforceInput {
                    pending: pending(3, 0),
                    ..input(3, 2)
                },
                step: Step::Percent(10),
                expect: Ok(3),
            },
            Case {
                name: "a recommendation below min is raised to min",
                input: EnforceInput {
                    min: 2,
                    pending: pending(2, 0),
                    ..input(0, 4)
                },
                step: Step::Replicas(5),
                expect: Ok(2),
            },
        ];
        for case in cases {
            let decision = enforce(case.input, &guards(case.step));
            match (&decision, case.expect) {
                (Decision::AtTarget, Err(None)) => {}
                (Decision::Wait { reason, .. }, Err(Some(expected))) => {
                    assert!(reason.contains(expected), "{}: {reason}", case.name)
                }
                (Decision::Apply { replicas, .. }, Ok(expected)) => {
                    assert_eq!(*replicas, expected, "{}", case.name)
                }
                (other, expected) => panic!("{}: got {other:?}, expected {expected:?}", case.name),
            }
        }
    }

    #[test]
    fn the_pending_target_keeps_its_start_while_it_holds() {
        let first = enforce(input(5, 2), &guards(Step::Replicas(1)));
        let Decision::Wait { pending, .. } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            pending,
            Pending {
                target: 5,
                since: at(1000)
            }
        );
        let later = EnforceInput {
            pending: Some(pending),
            now: at(1030),
            ..input(5, 2)
        };
        let Decision::Wait { pending: kept, .. } = enforce(later, &guards(Step::Replicas(1)))
        else {
            panic!()
        };
        assert_eq!(kept.since, at(1000));
    }

    #[test]
    fn steps_parse_as_replicas_or_percent() {
        assert_eq!(Step::parse("2"), Some(Step::Replicas(2)));
        assert_eq!(Step::parse("50%"), Some(Step::Percent(50)));
        assert_eq!(Step::parse(" 10 % "), Some(Step::Percent(10)));
        for bad in ["0", "0%", "-1", "x", "", "%"] {
            assert_eq!(Step::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn recommendations_follow_the_autoscaler_rule() {
        let usage = Usage {
            cpu_cores: 0.3,
            memory_bytes: Some(100.0 * 1024.0 * 1024.0),
            replicas: 1,
        };
        let r = recommend(&usage, Some(0.1), 50.0, 1, 10);
        assert_eq!(r.replicas, 6, "{}", r.reason);
        assert_eq!(r.cpu_request.as_deref(), Some("600m"));
        assert_eq!(r.memory_request.as_deref(), Some("120Mi"));
        assert!(r.reason.contains("300% of 100m"), "{}", r.reason);

        let bounded = recommend(&usage, Some(0.1), 50.0, 1, 5);
        assert_eq!(bounded.replicas, 5);
        assert!(
            bounded
                .reason
                .contains("bounded by minScale..maxScale 1..5"),
            "{}",
            bounded.reason
        );

        let idle = Usage {
            cpu_cores: 0.0,
            memory_bytes: None,
            replicas: 3,
        };
        let r = recommend(&idle, Some(0.1), 80.0, 2, 5);
        assert_eq!(r.replicas, 2, "never below min");
        assert_eq!(r.memory_request, None);

        let unknown = recommend(&usage, None, 50.0, 1, 5);
        assert_eq!(unknown.replicas, 1, "keeps the current replicas");
        assert!(unknown.reason.contains("set provisionConfig.cpuRequest"));
    }

    #[test]
    fn cpu_quantities_parse() {
        assert_eq!(parse_cpu("250m"), Some(0.25));
        assert_eq!(parse_cpu("2"), Some(2.0));
        assert_eq!(parse_cpu("0.5"), Some(0.5));
        assert_eq!(parse_cpu("lots"), None);
        assert_eq!(parse_cpu("-1"), None);
    }
}
