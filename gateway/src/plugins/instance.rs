//! A plugin instance of any WIT version the host speaks, with one method per stage call in the
//! latest version's types. A call on an older plugin goes through that version's adapter
//! module (`bindings::v0_1_0`); [`super::loaded`] never sees a version.

use wasmtime::component::InstancePre;
use wasmtime::Store;

use super::bindings::*;
use super::state::HostState;
use super::Stage;

/// The message of a call that reached an instance of another stage (the stage is checked
/// before the call; this is a guard, not a path).
pub(crate) const OTHER_STAGE: &str = "the instance implements another stage";

type Res<T> = wasmtime::Result<Result<T, Reject>>;

fn other_stage<T>() -> wasmtime::Result<T> {
    Err(wasmtime::Error::msg(OTHER_STAGE))
}

/// The WIT package versions the host loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitVersion {
    /// `tollgate:plugin@0.1.x`, through the adapter.
    V0_1,
    /// `tollgate:plugin@0.2.x`, the latest.
    V0_2,
}

impl WitVersion {
    /// The version a plugin's exports name (`0.2.0`): same major, and for 0.x the same minor
    /// (semver: 0.x minor bumps are breaking).
    pub fn parse(version: &str) -> Option<WitVersion> {
        let mut it = version.split('.');
        let major: u64 = it.next()?.parse().ok()?;
        let minor: u64 = it.next()?.parse().ok()?;
        match (major, minor) {
            (0, 1) => Some(WitVersion::V0_1),
            (0, 2) => Some(WitVersion::V0_2),
            _ => None,
        }
    }
}

/// The `InstancePre` of a plugin, typed by its stage world and version.
#[derive(Clone)]
pub(crate) enum StagePre {
    Auth(AuthPluginPre<HostState>),
    Guardrail(GuardrailPluginPre<HostState>),
    Routing(RoutingPluginPre<HostState>),
    Transform(TransformPluginPre<HostState>),
    Billing(BillingPluginPre<HostState>),
    Logging(LoggingPluginPre<HostState>),
    V0_1(v0_1_0::Pre),
}

/// A plugin instance. Calls on an older version are boxed futures: the adapter nests one more
/// future in every stage call, which inside a stream's relay future is more stack than a debug
/// build's proxy thread has (measured: a stack overflow); boxing costs only the old versions
/// one allocation per call.
pub(crate) enum StageInstance {
    Auth(AuthPlugin),
    Guardrail(GuardrailPlugin),
    Routing(RoutingPlugin),
    Transform(TransformPlugin),
    Billing(BillingPlugin),
    Logging(LoggingPlugin),
    V0_1(v0_1_0::Instance),
}

impl StagePre {
    /// Types `pre` by the stage world of `version`; an error says the exports do not match.
    pub fn new(
        stage: Stage,
        version: WitVersion,
        pre: InstancePre<HostState>,
    ) -> wasmtime::Result<StagePre> {
        if version == WitVersion::V0_1 {
            return match v0_1_0::Pre::new(stage, pre) {
                Some(p) => p.map(StagePre::V0_1),
                None => Err(wasmtime::Error::msg(format!(
                    "the {stage} stage was added in {WIT_PACKAGE}@0.2.0; rebuild the plugin \
                     with the current SDK"
                ))),
            };
        }
        Ok(match stage {
            Stage::Auth => StagePre::Auth(AuthPluginPre::new(pre)?),
            Stage::Guardrail => StagePre::Guardrail(GuardrailPluginPre::new(pre)?),
            Stage::Routing => StagePre::Routing(RoutingPluginPre::new(pre)?),
            Stage::Transform => StagePre::Transform(TransformPluginPre::new(pre)?),
            Stage::Billing => StagePre::Billing(BillingPluginPre::new(pre)?),
            Stage::Logging => StagePre::Logging(LoggingPluginPre::new(pre)?),
        })
    }

    pub async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<StageInstance> {
        // One arm per stage world: each `InstancePre` is a different type.
        macro_rules! arms {
            ($($stage:ident),*) => {
                match self {
                    $(StagePre::$stage(p) => {
                        p.instantiate_async(store).await.map(StageInstance::$stage)
                    })*
                    StagePre::V0_1(p) => p.instantiate(store).await.map(StageInstance::V0_1),
                }
            };
        }
        arms!(Auth, Guardrail, Routing, Transform, Billing, Logging)
    }
}

const WIT_PACKAGE: &str = super::registry::WIT_PACKAGE;

impl StageInstance {
    pub async fn authenticate(
        &self,
        s: &mut Store<HostState>,
        head: &RequestHead,
    ) -> Res<Principal> {
        match self {
            StageInstance::Auth(p) => p.tollgate_plugin_auth().call_authenticate(s, head).await,
            StageInstance::V0_1(p) => Box::pin(p.authenticate(s, head)).await,
            _ => other_stage(),
        }
    }

    pub async fn check_prompt(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        prompt: &Prompt,
    ) -> Res<()> {
        match self {
            StageInstance::Guardrail(p) => {
                p.tollgate_plugin_guardrail()
                    .call_check_prompt(s, who, prompt)
                    .await
            }
            _ => other_stage(),
        }
    }

    pub async fn checks_output(&self, s: &mut Store<HostState>) -> wasmtime::Result<bool> {
        match self {
            StageInstance::Guardrail(p) => {
                p.tollgate_plugin_guardrail().call_checks_output(s).await
            }
            _ => other_stage(),
        }
    }

    pub async fn check_output(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        state: &[u8],
        output: &Output,
    ) -> Res<Vec<u8>> {
        match self {
            StageInstance::Guardrail(p) => {
                p.tollgate_plugin_guardrail()
                    .call_check_output(s, who, state, output)
                    .await
            }
            _ => other_stage(),
        }
    }

    pub async fn route(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        summary: &RequestSummary,
        candidates: &[Candidate],
    ) -> Res<Vec<Attempt>> {
        match self {
            StageInstance::Routing(p) => {
                p.tollgate_plugin_routing()
                    .call_route(s, who, summary, candidates)
                    .await
            }
            StageInstance::V0_1(p) => Box::pin(p.route(s, who, summary, candidates)).await,
            _ => other_stage(),
        }
    }

    pub async fn transform_request(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        body: &[u8],
    ) -> Res<UpstreamRequest> {
        match self {
            StageInstance::Transform(p) => {
                p.tollgate_plugin_transform()
                    .call_transform_request(s, ctx, body)
                    .await
            }
            StageInstance::V0_1(p) => Box::pin(p.transform_request(s, ctx, body)).await,
            _ => other_stage(),
        }
    }

    pub async fn transform_response(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        status: u16,
        body: &[u8],
    ) -> Res<ClientResponse> {
        match self {
            StageInstance::Transform(p) => {
                p.tollgate_plugin_transform()
                    .call_transform_response(s, ctx, status, body)
                    .await
            }
            StageInstance::V0_1(p) => Box::pin(p.transform_response(s, ctx, status, body)).await,
            _ => other_stage(),
        }
    }

    pub async fn transform_event(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        state: &[u8],
        event: &SseEvent,
    ) -> Res<StreamOutput> {
        match self {
            StageInstance::Transform(p) => {
                p.tollgate_plugin_transform()
                    .call_transform_event(s, ctx, state, event)
                    .await
            }
            StageInstance::V0_1(p) => Box::pin(p.transform_event(s, ctx, state, event)).await,
            _ => other_stage(),
        }
    }

    pub async fn end_of_stream(
        &self,
        s: &mut Store<HostState>,
        ctx: &TransformCtx,
        state: &[u8],
    ) -> Res<StreamOutput> {
        match self {
            StageInstance::Transform(p) => {
                p.tollgate_plugin_transform()
                    .call_end_of_stream(s, ctx, state)
                    .await
            }
            StageInstance::V0_1(p) => Box::pin(p.end_of_stream(s, ctx, state)).await,
            _ => other_stage(),
        }
    }

    pub async fn authorize(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        summary: &RequestSummary,
        provider: &str,
        price: Price,
    ) -> Res<Authorization> {
        match self {
            StageInstance::Billing(p) => {
                p.tollgate_plugin_billing()
                    .call_authorize(s, who, summary, provider, price)
                    .await
            }
            StageInstance::V0_1(p) => Box::pin(p.authorize(s, who, summary, provider, price)).await,
            _ => other_stage(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn settle(
        &self,
        s: &mut Store<HostState>,
        who: &Principal,
        provider: &str,
        price: Price,
        usage: Usage,
        byok: bool,
    ) -> wasmtime::Result<Charge> {
        match self {
            StageInstance::Billing(p) => {
                p.tollgate_plugin_billing()
                    .call_settle(s, who, provider, price, usage, byok)
                    .await
            }
            StageInstance::V0_1(p) => {
                Box::pin(p.settle(s, who, provider, price, usage, byok)).await
            }
            _ => other_stage(),
        }
    }

    pub async fn retain(
        &self,
        s: &mut Store<HostState>,
        record: &RequestRecord,
    ) -> wasmtime::Result<RetentionDecision> {
        match self {
            StageInstance::Logging(p) => p.tollgate_plugin_logging().call_retain(s, record).await,
            StageInstance::V0_1(p) => Box::pin(p.retain(s, record)).await,
            _ => other_stage(),
        }
    }
}
