//! Why a Spark pod cannot be built from its SparkApplication. Every message names the app
//! (`namespace/name`), the role and the field, so the webhook's denial is actionable as is.

use crate::labels::SparkRole;

/// A pod the rules refuse to build. The webhook denies the pod with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MutateError {
    #[error("SparkApplication {app}: the {role} pod has no Spark container: {reason}")]
    NoSparkContainer {
        app: String,
        role: SparkRole,
        reason: String,
    },

    #[error(
        "SparkApplication {app}: {field} names volume \"{volume}\" that is not in spec.volumes"
    )]
    UnknownVolume {
        app: String,
        role: SparkRole,
        field: String,
        volume: String,
    },

    #[error(
        "SparkApplication {app}: {field} mounts volume \"{volume}\" at {path}, but the {role} \
         container already mounts volume \"{existing}\" at that path"
    )]
    DuplicateMountPath {
        app: String,
        role: SparkRole,
        field: String,
        volume: String,
        path: String,
        existing: String,
    },

    #[error(
        "SparkApplication {app}: {field} adds volume \"{name}\" to the {role} pod, which already \
         has a different volume named \"{name}\""
    )]
    VolumeConflict {
        app: String,
        role: SparkRole,
        field: String,
        name: String,
    },

    #[error("SparkApplication {app}: {field} of the {role} is \"{value}\": {reason}")]
    InvalidQuantity {
        app: String,
        role: SparkRole,
        field: String,
        value: String,
        reason: String,
    },

    #[error("SparkApplication {app}: {field} is {quantity}; a GPU quantity cannot be negative")]
    NegativeGpu {
        app: String,
        role: SparkRole,
        field: String,
        quantity: i64,
    },

    #[error(
        "SparkApplication {app}: {role} port \"{name}\" is declared twice with different numbers: \
         {declarations}"
    )]
    PortDeclaredTwice {
        app: String,
        role: SparkRole,
        name: String,
        /// `field number/protocol` of both declarations.
        declarations: String,
    },

    #[error(
        "SparkApplication {app}: {field} declares port \"{name}\" as {wanted}, but the {role} \
         container already has port \"{name}\" as {existing}"
    )]
    PortConflict {
        app: String,
        role: SparkRole,
        field: String,
        name: String,
        wanted: String,
        existing: String,
    },

    #[error(
        "SparkApplication {app}: {field} adds container \"{name}\" (image {image}) to the {role} \
         pod, which already has a container \"{name}\" with image {existing}"
    )]
    ContainerConflict {
        app: String,
        role: SparkRole,
        field: String,
        name: String,
        image: String,
        existing: String,
    },

    #[error(
        "SparkApplication {app}: metadata.uid is not set, so the app cannot be recorded in \
         metadata.ownerReferences of its {role} pod"
    )]
    MissingUid { app: String, role: SparkRole },

    #[error(
        "SparkApplication {app}: the {role} pod's metadata.ownerReferences already names \
         controller {owner}; the SparkApplication must be the only controller"
    )]
    OwnerConflict {
        app: String,
        role: SparkRole,
        owner: String,
    },

    #[error("SparkApplication {app}: the {role} pod is not a valid Kubernetes Pod: {reason}")]
    InvalidPod {
        app: String,
        role: SparkRole,
        reason: String,
    },

    #[error("SparkApplication {app}: the mutated {role} pod cannot be serialised: {reason}")]
    Serialize {
        app: String,
        role: SparkRole,
        reason: String,
    },
}
