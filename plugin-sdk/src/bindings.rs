//! Bindings generated from `wit/tollgate.wit`, one module per stage world.
//!
//! The shared `types` and `host` interfaces are generated once (in `common`) and reused by every
//! stage world through `with`, so a `Usage` is the same Rust type whichever stage uses it. Each
//! stage's export macro is public and carries its own component-type section, so a plugin that
//! exports only `auth` produces a component that exports only `auth`.

pub mod common {
    wit_bindgen::generate!({
        path: "../wit",
        world: "sdk-common",
        generate_all,
        additional_derives: [PartialEq, Clone],
    });
}

macro_rules! stage_world {
    ($module:ident, $world:literal, $macro_name:literal) => {
        pub mod $module {
            wit_bindgen::generate!({
                path: "../wit",
                world: $world,
                with: {
                    "tollgate:plugin/types@0.1.0": crate::bindings::common::tollgate::plugin::types,
                    "tollgate:plugin/host@0.1.0": crate::bindings::common::tollgate::plugin::host,
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
