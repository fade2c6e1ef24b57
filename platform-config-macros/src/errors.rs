//! Errors found while reading the attribute, reported together.

use proc_macro2::TokenStream;

/// `a::b::c` as written, for messages.
pub(crate) fn path_text(path: &syn::Path) -> String {
    let names: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    names.join("::")
}

/// Every error found, reported together rather than the first alone.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value of `result`, or `None` with its error kept.
    pub(crate) fn push<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(error);
                None
            }
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.0.is_some()
    }

    /// The errors as `compile_error!`s, followed by `item`.
    pub(crate) fn emit(self, item: TokenStream) -> TokenStream {
        let errors = self.0.map(syn::Error::into_compile_error);
        quote::quote!(#errors #item)
    }

    pub(crate) fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}
