//! Names other parties see: gRPC metadata, annotations, finalizers and server-side apply
//! field managers. Changing one is a compatibility change (finalizers and field managers
//! are stored on objects), so each is defined here once.

/// gRPC metadata and HTTP header carrying the id that ties a request's log lines together
/// across the hub and the spokes.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// Annotation on an OClassDeployment whose value, when set, is sent as the correlation id
/// instead of the object's uid; on a ClassRuntime, the correlation id of the Deploy that
/// wrote it.
pub const CORRELATION_ANNOTATION: &str = "oaas.io/correlation-id";

/// Field manager of the PM's controllers (status and finalizers on the hub).
pub const PM_FIELD_MANAGER: &str = "oaas-pm";
/// Field manager of the PM's REST facade (objects written on behalf of REST clients).
pub const PM_REST_FIELD_MANAGER: &str = "oaas-pm-rest";
/// Field manager of what the PM creates at start-up (OClusters from its environment).
pub const PM_BOOTSTRAP_FIELD_MANAGER: &str = "oaas-pm-bootstrap";
/// Field manager of the CRM (ClassRuntimes, their workloads and status on a spoke).
pub const CRM_FIELD_MANAGER: &str = "oaas-crm";

/// On an OClassDeployment: the class is removed from every spoke before the object goes.
pub const SPOKE_CLEANUP_FINALIZER: &str = "oaas.io/spoke-cleanup";
/// On an OPackage: kept while a class deployment uses the package.
pub const PACKAGE_IN_USE_FINALIZER: &str = "oaas.io/package-in-use";
/// On an OCluster: the PM drops its channel to the spoke before the object goes.
pub const CLUSTER_REGISTRY_FINALIZER: &str = "oaas.io/cluster-registry";
/// On a ClassRuntime: its workloads are removed before the object goes.
pub const CLASS_RUNTIME_CLEANUP_FINALIZER: &str = "oaas.io/class-runtime-cleanup";
