//! Authentication and authorization of REST requests by the hub itself: the bearer token is
//! checked with a TokenReview and each request with a SubjectAccessReview on the resource
//! and verb it touches, so the hub's RBAC governs REST exactly as it governs kubectl.
//! Off by default for local use (`OAAS_PM_REST_AUTH=kubernetes` turns it on).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;

use super::Rest;
use super::error::ApiError;
use super::extract::NamespaceParam;
use crate::document::mapping::deployment_name;

/// How long a reviewed token is trusted before it is reviewed again (the API server's own
/// webhook token authenticator caches for the same reason: one review per request is slow).
const TOKEN_TTL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Authenticator {
    reviewed: Mutex<HashMap<u64, (Instant, UserInfo)>>,
}

/// Who made a request that `authorize` let through (absent while auth is off), for handlers
/// whose second step needs a right of its own (an upsert that turns out to be an update).
#[derive(Clone)]
pub struct Caller(pub UserInfo);

/// The RBAC check a request needs.
#[derive(Debug, PartialEq)]
pub struct Access {
    pub resource: &'static str,
    pub verb: &'static str,
    /// None for cluster-scoped resources (OClusters).
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// What `method` on `route` does to which resource. `None`: the route is public (health,
/// the OpenAPI document). Every other route must appear here.
pub fn access_for(
    method: &Method,
    route: &str,
    name: Option<&str>,
    namespace: &str,
) -> Option<Result<Access, ()>> {
    let path = route.strip_prefix("/api/v1")?;
    // An id of the form <namespace>/<key> names its own namespace.
    let (namespace, key) = match name.and_then(|n| n.split_once('/')) {
        Some((ns, key)) if path.ends_with("{id}") => (ns, Some(key)),
        _ => (namespace, name),
    };
    let (resource, namespaced, name) = match path {
        "/openapi.json" | "/health" => return None,
        "/packages" | "/classes" | "/functions" => ("opackages", true, None),
        "/packages/{name}" => ("opackages", true, key.map(String::from)),
        "/deployments" | "/class-runtimes" | "/deployment-records" => {
            ("classdeployments", true, None)
        }
        "/deployments/{key}"
        | "/deployment-status/{id}"
        | "/class-runtimes/{id}"
        | "/deployment-records/{id}" => ("classdeployments", true, key.map(deployment_name)),
        "/clusters" | "/clusters/health" | "/envs" | "/envs/health" => ("oclusters", false, None),
        "/clusters/{name}/health" | "/envs/{name}/health" => {
            ("oclusters", false, key.map(String::from))
        }
        _ => return Some(Err(())),
    };
    let verb = match (method, name.is_some()) {
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, false) => "create",
        (&Method::POST | &Method::PUT, true) => "update",
        (&Method::DELETE, _) => "delete",
        _ => return Some(Err(())),
    };
    Some(Ok(Access {
        resource,
        verb,
        namespace: namespaced.then(|| namespace.to_string()),
        name,
    }))
}

pub async fn authorize(State(rest): State<Arc<Rest>>, req: Request, next: Next) -> Response {
    if !rest.settings.auth {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    // Every route has at most one path parameter: the object's name (or key, or id).
    let params = <RawPathParams as FromRequestParts<()>>::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|p| p.iter().next().map(|(_, v)| v.to_string()));
    let namespace = axum::extract::Query::<NamespaceParam>::try_from_uri(&parts.uri)
        .ok()
        .and_then(|q| q.0.namespace)
        .unwrap_or_else(|| rest.settings.default_namespace.clone());
    let access = match access_for(&parts.method, &route, params.as_deref(), &namespace) {
        None => return next.run(Request::from_parts(parts, body)).await,
        Some(Ok(access)) => access,
        Some(Err(())) => {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "this route is not open to REST clients",
            )
            .into_response();
        }
    };
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return unauthorized("send a Kubernetes bearer token: Authorization: Bearer <token>");
    };
    let user = match rest.authenticator.authenticate(&rest.client, token).await {
        Ok(user) => user,
        Err(error) => return error.into_response(),
    };
    match rest.authenticator.check(&rest.client, &user, &access).await {
        Ok(()) => {
            parts.extensions.insert(Caller(user));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) => error.into_response(),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
    response
}

impl Authenticator {
    /// Who the token belongs to, by TokenReview (cached for [`TOKEN_TTL`]).
    async fn authenticate(&self, client: &kube::Client, token: &str) -> Result<UserInfo, Response> {
        let key = oaas_crds::validation::fnv1a(token.as_bytes());
        if let Some((at, user)) = self.reviewed.lock().expect("token cache").get(&key)
            && at.elapsed() < TOKEN_TTL
        {
            return Ok(user.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        let status = reviewed.status.unwrap_or_default();
        match (status.authenticated, status.user) {
            (Some(true), Some(user)) => {
                let mut cache = self.reviewed.lock().expect("token cache");
                cache.retain(|_, (at, _)| at.elapsed() < TOKEN_TTL);
                cache.insert(key, (Instant::now(), user.clone()));
                Ok(user)
            }
            _ => Err(unauthorized(&format!(
                "the bearer token was not accepted by the hub{}",
                status.error.map(|e| format!(": {e}")).unwrap_or_default()
            ))),
        }
    }

    /// Whether the user may do `access`, by SubjectAccessReview.
    /// Whether the caller may also do `access` (always, while auth is off).
    pub async fn allows(
        &self,
        client: &kube::Client,
        caller: Option<&Caller>,
        access: &Access,
    ) -> Result<(), ApiError> {
        match caller {
            Some(Caller(user)) => self.check(client, user, access).await,
            None => Ok(()),
        }
    }

    async fn check(
        &self,
        client: &kube::Client,
        user: &UserInfo,
        access: &Access,
    ) -> Result<(), ApiError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                groups: user.groups.clone(),
                uid: user.uid.clone(),
                extra: user.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(oaas_crds::GROUP.into()),
                    resource: Some(access.resource.into()),
                    verb: Some(access.verb.into()),
                    namespace: access.namespace.clone(),
                    name: access.name.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        if reviewed.status.is_some_and(|s| s.allowed) {
            return Ok(());
        }
        let scope = access
            .namespace
            .as_ref()
            .map(|ns| format!(" in namespace {ns:?}"))
            .unwrap_or_default();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "user {:?} may not {} {}.{}{scope}; grant it with a Role/RoleBinding on the hub",
                user.username.as_deref().unwrap_or("?"),
                access.verb,
                access.resource,
                oaas_crds::GROUP
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(method: Method, route: &str, name: Option<&str>) -> Access {
        access_for(&method, route, name, "shop").unwrap().unwrap()
    }

    #[test]
    fn routes_map_to_the_resource_and_verb_they_touch() {
        let a = access(Method::GET, "/api/v1/packages", None);
        assert_eq!(
            (a.resource, a.verb, a.namespace.as_deref()),
            ("opackages", "list", Some("shop"))
        );
        let a = access(Method::POST, "/api/v1/packages", None);
        assert_eq!((a.resource, a.verb), ("opackages", "create"));
        let a = access(Method::POST, "/api/v1/packages/{name}", Some("cart"));
        assert_eq!((a.verb, a.name.as_deref()), ("update", Some("cart")));
        let a = access(Method::PUT, "/api/v1/packages/{name}", Some("cart"));
        assert_eq!(a.verb, "update");
        let a = access(Method::DELETE, "/api/v1/packages/{name}", Some("cart"));
        assert_eq!(a.verb, "delete");
        let a = access(Method::DELETE, "/api/v1/deployments/{key}", Some("Record"));
        assert_eq!(
            (a.resource, a.verb, a.name.as_deref()),
            ("classdeployments", "delete", Some("record"))
        );
        let a = access(
            Method::GET,
            "/api/v1/class-runtimes/{id}",
            Some("team-a/Record"),
        );
        assert_eq!((a.verb, a.name.as_deref()), ("get", Some("record")));
        assert_eq!(
            a.namespace.as_deref(),
            Some("team-a"),
            "the id names the namespace"
        );
        let a = access(Method::GET, "/api/v1/classes", None);
        assert_eq!((a.resource, a.verb), ("opackages", "list"));
        let a = access(Method::GET, "/api/v1/clusters/{name}/health", Some("eu"));
        assert_eq!(
            (a.resource, a.verb, a.namespace),
            ("oclusters", "get", None)
        );
    }

    #[test]
    fn health_and_the_api_document_are_public_and_unknown_routes_are_denied() {
        assert!(access_for(&Method::GET, "/api/v1/health", None, "ns").is_none());
        assert!(access_for(&Method::GET, "/api/v1/openapi.json", None, "ns").is_none());
        assert!(access_for(&Method::GET, "/health", None, "ns").is_none());
        assert_eq!(
            access_for(&Method::GET, "/api/v1/secret", None, "ns"),
            Some(Err(()))
        );
        assert_eq!(
            access_for(&Method::PATCH, "/api/v1/packages/{name}", Some("x"), "ns"),
            Some(Err(()))
        );
    }
}
