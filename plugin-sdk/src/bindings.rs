//! Bindings generated from `wit/tollgate.wit`, one module per stage world.
//!
//! The shared `types` and `host` interfaces are generated once (in `common`) and reused by every
//! stage world through `with`, so a `Usage` is the same Rust type whichever stage uses it. Each
//! stage's export macro is public and carries its own component-type section, so a plugin that
//! exports only `auth` produces a component that exports only `auth`.
//!
//! With the `wit-0-1-0` feature the SDK builds against the frozen `tollgate:plugin@0.1.0`
//! (`wit/versions/0.1.0/`) instead: the gateway's tests build its stock plugins that way to
//! prove the host still serves plugins built for 0.1.0. It has no guardrail stage and no
//! candidate region.

macro_rules! bindings {
    ($path:literal, $types:literal, $host:literal) => {
        pub mod common {
            wit_bindgen::generate!({
                path: $path,
                world: "sdk-common",
                generate_all,
                additional_derives: [PartialEq, Clone],
            });
        }

        macro_rules! stage_world {
            ($module:ident, $world:literal, $macro_name:literal) => {
                pub mod $module {
                    wit_bindgen::generate!({
                        path: $path,
                        world: $world,
                        with: {
                            $types: crate::bindings::common::tollgate::plugin::types,
                            $host: crate::bindings::common::tollgate::plugin::host,
                        },
                        additional_derives: [PartialEq, Clone],
                        pub_export_macro: true,
                        export_macro_name: $macro_name,
                    });
                }
            };
        }

        stage_world!(auth, "auth-plugin", "export_auth_world");
        stage_world!(routing, "routing-plugin", "export_routing_world");
        stage_world!(transform, "transform-plugin", "export_transform_world");
        stage_world!(billing, "billing-plugin", "export_billing_world");
        stage_world!(logging, "logging-plugin", "export_logging_world");
    };
}

#[cfg(not(feature = "wit-0-1-0"))]
bindings!(
    "../wit",
    "tollgate:plugin/types@0.2.0",
    "tollgate:plugin/host@0.2.0"
);
#[cfg(not(feature = "wit-0-1-0"))]
pub mod guardrail {
    wit_bindgen::generate!({
        path: "../wit",
        world: "guardrail-plugin",
        with: {
            "tollgate:plugin/types@0.2.0": crate::bindings::common::tollgate::plugin::types,
            "tollgate:plugin/host@0.2.0": crate::bindings::common::tollgate::plugin::host,
        },
        additional_derives: [PartialEq, Clone],
        pub_export_macro: true,
        export_macro_name: "export_guardrail_world",
    });
}

#[cfg(feature = "wit-0-1-0")]
bindings!(
    "../wit/versions/0.1.0",
    "tollgate:plugin/types@0.1.0",
    "tollgate:plugin/host@0.1.0"
);
