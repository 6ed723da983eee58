//! `KongConsumer` (namespaced), KIC's `configuration.konghq.com/v1` CRD for one Kong consumer:
//! `username`, `custom_id` (one of them required, KIC's CEL rule), `credentials` (names of
//! Secrets in its namespace labelled `konghq.com/credential: key-auth|basic-auth|jwt|acl`),
//! `consumerGroups` and `spec` (`tags`, `controlPlaneRef`). Like KongPlugin its fields sit next
//! to `metadata`, so the root type implements [`kube::Resource`] and [`CustomResourceExt`] by
//! hand. `translate::consumers` turns these into Kong consumers with their credentials.

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionNames, CustomResourceDefinitionSpec,
    CustomResourceDefinitionVersion, CustomResourceValidation,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::crd::v1::CustomResourceExt;
use kube::core::NamespaceResourceScope;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kong_plugins::{GROUP, VERSION};

/// The label that marks a Secret as a consumer credential, and names its type.
pub(crate) const CREDENTIAL_LABEL: &str = "konghq.com/credential";

/// KIC's CEL rule, as `(rule, message)`.
const CEL_RULES: &[(&str, &str)] =
    &[("has(self.username) || has(self.custom_id)", "Need to provide either username or custom_id")];

/// `spec` of a KongConsumer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerSpec {
    /// Tags of the Kong consumer (added to sluice's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Kong's operator's control plane reference: not supported by sluice (an Event says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_json")]
    pub control_plane_ref: Option<serde_json::Value>,
}

/// A Kong consumer.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct KongConsumer {
    #[schemars(skip)]
    pub metadata: ObjectMeta,
    /// The consumer's unique username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The consumer's unique id in another system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_id: Option<String>,
    /// Secrets in this namespace holding the consumer's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Vec<String>>,
    /// Kong Enterprise consumer groups: not supported by sluice (an Event says so).
    #[serde(default, rename = "consumerGroups", skip_serializing_if = "Option::is_none")]
    pub consumer_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<ConsumerSpec>,
}

fn free_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

impl Serialize for KongConsumer {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(rename = "apiVersion")]
            api_version: &'a str,
            kind: &'a str,
            metadata: &'a ObjectMeta,
            #[serde(skip_serializing_if = "Option::is_none")]
            username: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            custom_id: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            credentials: &'a Option<Vec<String>>,
            #[serde(rename = "consumerGroups", skip_serializing_if = "Option::is_none")]
            consumer_groups: &'a Option<Vec<String>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            spec: &'a Option<ConsumerSpec>,
        }
        let api_version = format!("{GROUP}/{VERSION}");
        Out {
            api_version: &api_version,
            kind: "KongConsumer",
            metadata: &self.metadata,
            username: &self.username,
            custom_id: &self.custom_id,
            credentials: &self.credentials,
            consumer_groups: &self.consumer_groups,
            spec: &self.spec,
        }
        .serialize(ser)
    }
}

impl kube::Resource for KongConsumer {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "KongConsumer".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "kongconsumers".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CustomResourceExt for KongConsumer {
    fn crd() -> CustomResourceDefinition {
        let schema = crate::kong_plugins::crd_schema::<KongConsumer>(CEL_RULES);
        CustomResourceDefinition {
            metadata: ObjectMeta { name: Some(Self::crd_name().into()), ..Default::default() },
            spec: CustomResourceDefinitionSpec {
                group: GROUP.into(),
                names: CustomResourceDefinitionNames {
                    kind: "KongConsumer".into(),
                    plural: "kongconsumers".into(),
                    short_names: Some(vec!["kc".into()]),
                    singular: Some("kongconsumer".into()),
                    categories: Some(vec!["kong-ingress-controller".into()]),
                    ..Default::default()
                },
                scope: "Namespaced".into(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: VERSION.into(),
                    schema: Some(CustomResourceValidation { open_api_v3_schema: schema }),
                    served: true,
                    storage: true,
                    ..Default::default()
                }],
                ..Default::default()
            },
            ..Default::default()
        }
    }
    fn crd_name() -> &'static str {
        "kongconsumers.configuration.konghq.com"
    }
    fn api_resource() -> kube::core::dynamic::ApiResource {
        kube::core::dynamic::ApiResource::erase::<Self>(&())
    }
    fn shortnames() -> &'static [&'static str] {
        &["kc"]
    }
}
