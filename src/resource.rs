//! `kube::Resource` for our compact stand-ins of API types.

/// Implements `kube::Resource` for `$ty` as the API type `$api` (same kind, group, version,
/// plural and scope) with `$ty`'s own `metadata` field: the compact stand-ins are watched,
/// fetched and cached as the type they stand for, holding only what we read of it.
macro_rules! resource_as {
    ($ty:ty, $api:ty) => {
        impl kube::Resource for $ty {
            type DynamicType = ();
            type Scope = <$api as kube::Resource>::Scope;

            fn kind(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::kind(dt)
            }

            fn group(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::group(dt)
            }

            fn version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::version(dt)
            }

            fn api_version(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::api_version(dt)
            }

            fn plural(dt: &()) -> std::borrow::Cow<'_, str> {
                <$api as kube::Resource>::plural(dt)
            }

            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }

            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use resource_as;
