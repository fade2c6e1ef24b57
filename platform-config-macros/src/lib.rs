//! The `#[settings]` attribute of `platform-config`.
//!
//! Services use it as `#[platform_config::settings]`; its documentation and
//! examples are there, where they can be run against the real crate. This
//! crate only turns the attribute into the derives, serde attributes, and
//! `Default` and `Validate` impls a settings section needs; the code it
//! generates names `platform_config` and nothing else, so a service needs no
//! dependency on serde or schemars of its own.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attrs;
mod container;
mod errors;
mod expand;
mod field;

use proc_macro::TokenStream;

// Documented where platform-config re-exports it, where the examples can
// run; a doc comment here would be appended to that page.
#[allow(missing_docs)]
#[proc_macro_attribute]
pub fn settings(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::settings(args.into(), item.into()).into()
}
