//! Reading the attributes of other derives, serde's and schemars', that the
//! struct carries beside `#[settings]`.

use proc_macro2::{Ident, TokenTree};
use syn::Attribute;

/// The argument names of every `#[name(...)]` among `attrs`: `default`,
/// `with` and `rename_all` of `#[serde(default, with = "m", rename_all = "x")]`.
pub(crate) fn argument_names(attrs: &[Attribute], name: &str) -> Vec<Ident> {
    let mut names = Vec::new();
    let lists = attrs
        .iter()
        .filter(|attr| attr.path().is_ident(name))
        .filter_map(|attr| attr.meta.require_list().ok());
    for list in lists {
        // Nested lists such as `bound(...)` are one group token, so only
        // top-level commas start an argument.
        let mut starts_argument = true;
        for token in list.tokens.clone() {
            match token {
                TokenTree::Ident(ident) if starts_argument => names.push(ident),
                TokenTree::Punct(punct) if punct.as_char() == ',' => {
                    starts_argument = true;
                    continue;
                }
                _ => {}
            }
            starts_argument = false;
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_top_level_arguments_are_names() {
        let attrs: Vec<Attribute> = syn::parse_quote! {
            #[serde(default, with = "a::b", bound(serialize = "T: X, U: Y"))]
            #[serde(rename = "x,y")]
            #[schemars(with = "String")]
            #[doc = "with"]
        };
        let names: Vec<String> = argument_names(&attrs, "serde")
            .iter()
            .map(Ident::to_string)
            .collect();
        assert_eq!(names, ["default", "with", "bound", "rename"]);
    }
}
