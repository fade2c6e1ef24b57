//! `#[settings(...)]`: options of the whole struct.

use proc_macro2::TokenStream;
use syn::parse::Parser;

/// What the attribute's arguments ask for.
#[derive(Default)]
pub(crate) struct ContainerOptions {
    /// `validate_with = path`: a `fn(&Self, &mut Validation)` that `Validate` calls.
    pub(crate) validate_with: Option<syn::Path>,
}

impl ContainerOptions {
    pub(crate) fn parse(args: TokenStream) -> syn::Result<ContainerOptions> {
        let mut options = ContainerOptions::default();
        let parser = syn::meta::parser(|meta| {
            if meta.path.is_ident("validate_with") {
                if options.validate_with.is_some() {
                    return Err(meta.error("`validate_with` is given twice"));
                }
                options.validate_with = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown #[settings] argument `{}`; the only one is `validate_with = path::to::fn`",
                    crate::errors::path_text(&meta.path),
                )))
            }
        });
        parser.parse2(args)?;
        Ok(options)
    }
}
