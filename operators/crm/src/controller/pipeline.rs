//! One reconcile pass, in order: render → apply → orphans → observe → status (a loss of
//! availability is reported at the start, alongside the apply). The render context is built
//! once per pass (from the start-up settings, the cluster's Knative check and the NFR
//! enforcer's replicas) and handed to every step that needs it; the children steps go
//! through the [`Children`](super::children::Children) handle.
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use oaas_crds::ClassRuntime;
use oaas_crds::class_runtime::{ClassRuntimeStatus, ResourceRef};
use oaas_crds::common::Phase;
use oaas_crds::conditions;
use oaas_operator_common::publish_event;

use super::{Context, Error};
use crate::nfr::{self, ConditionChange, NfrStatus};
use crate::render::{self, RenderContext, Rendered};
use crate::state::{self, Outcome};

/// Brings the children in line with the runtime and writes its status.
pub(super) async fn apply(runtime: &ClassRuntime, ctx: &Context) -> Result<Action, Error> {
    let name = runtime.name_any();
    let ns = runtime.namespace().unwrap_or_default();
    let api = Api::<ClassRuntime>::namespaced(ctx.client.clone(), &ns);
    let status = ctx.status.current(runtime, runtime.status.as_ref());
    let spec_changed = status.observed_generation != runtime.metadata.generation;
    let mut written = status.clone();
    if spec_changed && status.phase.is_some() {
        let applying = ClassRuntimeStatus {
            phase: Some(Phase::Applying),
            ..status.clone()
        };
        ctx.status
            .write(&api, runtime, &written, applying.clone())
            .await?;
        written = applying;
    }

    // Render.
    let nfr = nfr::status_for(runtime, ctx.nfr.get(&nfr::key_of(runtime)));
    let enforced = nfr::enforced_replicas(&nfr.applied);
    let render_context = RenderContext {
        settings: &ctx.config.render,
        knative_installed: ctx.knative.installed(),
        enforced: &enforced,
        crm: ctx.namespaces.crm(),
    };
    let rendered = render::render(runtime, &render_context);
    // A loss is reported while it is repaired, not after: a runtime that was Available and
    // no longer is (a workload deleted or failing under it) writes that status at the same
    // time as the apply puts things back. The hub hears of it one API write sooner, and a
    // repair that hangs or fails cannot leave the loss unreported.
    let loss = if status.phase == Some(Phase::Available) && !spec_changed {
        let observed = ctx
            .children
            .observe(&ns, &rendered, &render_context)
            .await?;
        let outcome = state::derive(&rendered, &observed);
        (outcome.phase != Phase::Available)
            .then(|| next_status(runtime, &written, &rendered, &outcome, nfr.clone()))
    } else {
        None
    };
    // Apply; a failed child is reported in status, the others still converge.
    let (apply_error, reported) = tokio::join!(ctx.children.apply(&ns, &rendered), async {
        match &loss {
            Some(lost) => {
                ctx.status
                    .write(&api, runtime, &written, lost.clone())
                    .await
            }
            None => Ok(false),
        }
    });
    reported?;
    if let Some(lost) = loss {
        written = lost;
    }
    // Orphans.
    ctx.children
        .delete_orphans(&ns, &name, &rendered, &render_context)
        .await?;
    // Observe.
    let mut observed = ctx
        .children
        .observe(&ns, &rendered, &render_context)
        .await?;
    observed.apply_error = apply_error;
    // Status.
    let outcome = state::derive(&rendered, &observed);
    let new_status = next_status(runtime, &written, &rendered, &outcome, nfr);
    let not_available_for = since_transition(&new_status, conditions::AVAILABLE);
    ctx.status
        .write(&api, runtime, &written, new_status)
        .await?;

    // A spec update is worth an event; a first rollout shows in the status it just got
    // (an event per new runtime would cost a write per runtime at scale).
    let updated = spec_changed && status.phase.is_some();
    if updated && observed.apply_error.is_none() {
        let note = format!(
            "applied {} objects with the {} template",
            rendered.children.len(),
            rendered.template.as_str()
        );
        publish_event(&ctx.recorder, runtime, EventType::Normal, "Applied", note).await;
    }
    if outcome.phase == Phase::Degraded && status.phase != Some(Phase::Degraded) {
        publish_event(
            &ctx.recorder,
            runtime,
            EventType::Warning,
            "Degraded",
            outcome.message,
        )
        .await;
    }
    if outcome.phase == Phase::Available {
        // Its replacement serves now: the runtime it replaces can go.
        crate::retire::replaced(&ctx.client, ctx.namespaces.crm(), runtime).await?;
    }
    Ok(Action::requeue(match outcome.phase {
        Phase::Available => state::AVAILABLE_LOOK,
        _ => state::next_look(ctx.config.progress_requeue, not_available_for),
    }))
}

/// How long ago condition `type_` last changed (zero if it is not set).
fn since_transition(status: &ClassRuntimeStatus, type_: &str) -> Duration {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .and_then(|c| {
            Timestamp::now()
                .duration_since(c.last_transition_time.0)
                .try_into()
                .ok()
        })
        .unwrap_or_default()
}

/// The status this pass found: the outcome's phase and conditions merged into the stored
/// ones, the NFR analyzer's condition and recommendations, and what was rendered.
fn next_status(
    runtime: &ClassRuntime,
    status: &ClassRuntimeStatus,
    rendered: &Rendered,
    outcome: &Outcome,
    nfr: NfrStatus,
) -> ClassRuntimeStatus {
    let now = Time(Timestamp::now());
    let mut desired_conditions = outcome.conditions.clone();
    let existing_conditions: Vec<_> = match nfr.condition {
        ConditionChange::Set(observed) => {
            desired_conditions.push(observed);
            status.conditions.clone()
        }
        ConditionChange::Remove => status
            .conditions
            .iter()
            .filter(|c| c.type_ != nfr::NFR_OBSERVED)
            .cloned()
            .collect(),
        ConditionChange::Keep => status.conditions.clone(),
    };
    ClassRuntimeStatus {
        observed_generation: runtime.metadata.generation,
        phase: Some(outcome.phase),
        conditions: conditions::merge(
            &existing_conditions,
            &desired_conditions,
            runtime.metadata.generation,
            &now,
        ),
        message: Some(outcome.message.clone()),
        template: Some(rendered.template),
        functions_ready: Some(format!(
            "{}/{}",
            outcome.functions.iter().filter(|f| f.ready).count(),
            outcome.functions.len()
        )),
        functions: outcome.functions.clone(),
        resources: rendered
            .children
            .iter()
            .map(|c| ResourceRef {
                api_version: c.kind.api_resource().api_version,
                kind: c.kind.api_resource().kind,
                name: c.name.clone(),
            })
            .collect(),
        nfr_recommendations: nfr.recommendations,
        last_applied_recommendations: nfr.applied,
    }
}

/// Deletes every child, then lets the finalizer go once none is left.
pub(super) async fn cleanup(runtime: &ClassRuntime, ctx: &Context) -> Result<Action, Error> {
    let name = runtime.name_any();
    let ns = runtime.namespace().unwrap_or_default();
    let knative_installed = ctx.knative.installed();
    let recorded = runtime
        .status
        .as_ref()
        .map(|s| s.resources.as_slice())
        .unwrap_or_default();
    let remaining = ctx
        .children
        .delete_all(&ns, &name, recorded, knative_installed)
        .await?;
    if remaining > 0 {
        return Err(Error::ChildrenRemain(name));
    }
    publish_event(
        &ctx.recorder,
        runtime,
        EventType::Normal,
        "Deleted",
        format!("removed every child of {name}"),
    )
    .await;
    // Last: the event goes to the runtime's namespace, which this may remove.
    ctx.namespaces.release(&ns, &name, &ctx.runtimes).await?;
    Ok(Action::await_change())
}
