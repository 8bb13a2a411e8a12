//! Which Spark version's spark-submit native submission writes like. The objects spark-submit
//! creates change with its version (recorded in tests/fixtures/spark-submit-*): 3.3 to 4.0
//! create the same SparkPi driver pod, Service and ConfigMap; 4.1 adds a `spark-connect` port,
//! 4.2 its `appProtocol`, 4.3 the driver's `allowPrivilegeEscalation: false`. The
//! version is the app's `spec.sparkVersion`, else the tag of its driver image (`spark:4.0.5`,
//! `apache/spark:4.1.0-scala2.13-java17-ubuntu`, `v3.5.3`), else that of kubeflow v2.5.2's own
//! spark-submit (4.0.4), which kubeflow uses for every app whatever its version.

use super::conf::{Conf, invalid};
use super::ctx::Ctx;
use super::error::SubmissionError;
use super::keys::*;

/// Spark's default Spark Connect gRPC port (`spark.connect.grpc.binding.port`).
const DEFAULT_CONNECT_PORT: i32 = 15002;

/// A Spark release, `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SparkVersion(u32, u32, u32);

impl SparkVersion {
    /// The spark-submit in kubeflow v2.5.2's image (its Dockerfile's `apache/spark:4.0.4`).
    const KUBEFLOW: Self = Self(4, 0, 4);

    /// `major.minor[.patch]` at the start of `s` (after an optional `v`), whatever follows
    /// (`-preview2`, `-scala2.13-java17-ubuntu`); None when `s` does not start so.
    fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let end = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let mut parts = s[..end].split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self(major, minor, patch))
    }

    /// The tag of an image reference (`registry:5000/spark:4.0.5@sha256:…` → `4.0.5`).
    fn of_image(image: &str) -> Option<Self> {
        let image = image.split('@').next().unwrap_or(image);
        let (_, tag) = image.rsplit_once(':')?;
        if tag.contains('/') {
            return None; // a registry port, not a tag
        }
        Self::parse(tag)
    }

    /// The version of the app being submitted (see the module doc); `conf` is assembled.
    pub(crate) fn of(ctx: &Ctx<'_>, conf: &Conf) -> Self {
        Self::parse(&ctx.app.spec.spark_version)
            .or_else(|| {
                conf.get(DRIVER_IMAGE)
                    .or_else(|| conf.get(CONTAINER_IMAGE))
                    .and_then(|image| Self::of_image(image))
            })
            .unwrap_or(Self::KUBEFLOW)
    }

    /// Spark >= 4.1 (SPARK-52193): a `spark-connect` port on the driver container and Service.
    fn has_connect_port(self) -> bool {
        self >= Self(4, 1, 0)
    }

    /// The driver's `spark-connect` port (`spark.connect.grpc.binding.port`, default 15002) where
    /// this version declares one.
    pub(crate) fn connect_port(
        self,
        ctx: &Ctx<'_>,
        conf: &Conf,
    ) -> Result<Option<i32>, SubmissionError> {
        if !self.has_connect_port() {
            return Ok(None);
        }
        conf.port(ctx, CONNECT_PORT, DEFAULT_CONNECT_PORT).map(Some)
    }

    /// Spark >= 4.2 (SPARK-56275): the Service's `spark-connect` port says `appProtocol: grpc`.
    pub(crate) fn connect_app_protocol(self) -> Option<&'static str> {
        (self >= Self(4, 2, 0)).then_some("grpc")
    }

    /// Spark >= 4.3 (SPARK-57493): the driver container's `allowPrivilegeEscalation`, from
    /// `spark.kubernetes.driver.securityContext.allowPrivilegeEscalation`, else
    /// `spark.kubernetes.securityContext.allowPrivilegeEscalation`, else false. None before 4.3.
    pub(crate) fn allow_privilege_escalation(
        self,
        ctx: &Ctx<'_>,
        conf: &Conf,
    ) -> Result<Option<bool>, SubmissionError> {
        if self < Self(4, 3, 0) {
            return Ok(None);
        }
        for key in [
            DRIVER_ALLOW_PRIVILEGE_ESCALATION,
            ALLOW_PRIVILEGE_ESCALATION,
        ] {
            if let Some(value) = conf.get(key) {
                return match value.trim().to_ascii_lowercase().as_str() {
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(invalid(ctx, key, value, "is not a boolean (true or false)")),
                };
            }
        }
        Ok(Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::SparkVersion;

    #[test]
    fn versions_parse_from_spark_version_strings_and_image_tags() {
        let v = SparkVersion::parse;
        assert_eq!(v("4.0.5"), Some(SparkVersion(4, 0, 5)));
        assert_eq!(v("v3.5.3"), Some(SparkVersion(3, 5, 3)));
        assert_eq!(v("4.1"), Some(SparkVersion(4, 1, 0)));
        assert_eq!(v("4.0.0-preview2"), Some(SparkVersion(4, 0, 0)));
        assert_eq!(v("latest"), None);
        assert_eq!(v(""), None);
        assert_eq!(v("4"), None);
        let i = SparkVersion::of_image;
        assert_eq!(i("spark:4.3.0"), Some(SparkVersion(4, 3, 0)));
        assert_eq!(
            i("docker.io/apache/spark:4.1.0-scala2.13-java17-python3-ubuntu"),
            Some(SparkVersion(4, 1, 0))
        );
        assert_eq!(
            i("registry:5000/spark:3.5.3@sha256:94ad"),
            Some(SparkVersion(3, 5, 3))
        );
        assert_eq!(i("registry:5000/spark"), None);
        assert_eq!(i("spark"), None);
        assert_eq!(i("spark:latest"), None);
    }

    #[test]
    fn what_each_version_adds() {
        let v = |s| SparkVersion::parse(s).expect("version");
        assert!(!v("4.0.5").has_connect_port());
        assert!(v("4.1.0").has_connect_port());
        assert_eq!(v("4.1.4").connect_app_protocol(), None);
        assert_eq!(v("4.2.0").connect_app_protocol(), Some("grpc"));
        assert!(SparkVersion::KUBEFLOW < v("4.1.0"));
    }
}
