//! From the struct as written to the struct with its derives, its serde
//! attributes, and its `Default` and `Validate` impls.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Item, ItemStruct, Token, parse_quote};

use crate::attrs::argument_names;
use crate::container::ContainerOptions;
use crate::errors::Errors;
use crate::field::{FieldOptions, Format};

/// What the attribute expands to: the struct and its impls, or, when the
/// attribute is misused, the errors and the struct as written (less
/// `#[setting]`), so that the errors are about the attribute and nothing else.
pub(crate) fn settings(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let options = errors
        .push(ContainerOptions::parse(args))
        .unwrap_or_default();
    let mut item = match syn::parse2::<Item>(item) {
        Ok(Item::Struct(item)) => item,
        Ok(other) => {
            errors.add(not_a_struct(&other));
            return errors.emit(quote!(#other));
        }
        Err(error) => return error.into_compile_error(),
    };
    errors.push(check_shape(&item));
    let fields = read_fields(&mut item, &mut errors);
    if errors.any() {
        without_derive_attributes(&mut item);
        return errors.emit(quote!(#item));
    }

    add_attributes(&mut item, &fields);
    let default = default_impl(&item, &fields);
    let validate = validate_impl(&item, &options);
    quote! {
        #item
        #default
        #validate
    }
}

fn not_a_struct(item: &Item) -> syn::Error {
    let (span, what) = match item {
        Item::Enum(item) => (item.enum_token.span(), "an enum"),
        Item::Union(item) => (item.union_token.span(), "a union"),
        other => (other.span(), "this item"),
    };
    syn::Error::new(
        span,
        format_args!(
            "#[settings] goes on a struct with named fields, not on {what}: a settings section is a table of named keys"
        ),
    )
}

/// Named fields, no generics, and no derive the attribute makes itself.
fn check_shape(item: &ItemStruct) -> syn::Result<()> {
    let mut errors = Errors::default();
    match &item.fields {
        Fields::Named(_) => {}
        Fields::Unnamed(fields) => errors.add(syn::Error::new(
            fields.span(),
            "#[settings] needs a struct with named fields, not a tuple struct: a settings section is a table of named keys",
        )),
        Fields::Unit => errors.add(syn::Error::new(
            item.ident.span(),
            "#[settings] needs a struct with named fields, not a unit struct; a section with no settings yet is written `struct Name {}`",
        )),
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.add(syn::Error::new(
            item.generics.span(),
            "#[settings] does not take generic parameters: its Default and Validate would need bounds it cannot guess; derive and implement them by hand",
        ));
    }
    for attr in &item.attrs {
        if attr.path().is_ident("setting") {
            errors.add(syn::Error::new_spanned(
                attr.path(),
                "`#[setting(...)]` goes on a field; options of the whole struct go in `#[settings(...)]`",
            ));
        } else if attr.path().is_ident("derive") {
            errors.push(check_derives(attr));
        }
    }
    for ident in argument_names(&item.attrs, "serde") {
        if ident == "default" || ident == "deny_unknown_fields" {
            errors.add(syn::Error::new(
                ident.span(),
                format_args!("#[settings] adds `#[serde(default, deny_unknown_fields)]` itself; remove `{ident}` here"),
            ));
        }
    }
    errors.finish(())
}

/// The derives `#[settings]` makes itself are an error to repeat: a second
/// `Default` or `Debug` would only be a conflicting impl further down.
fn check_derives(attr: &Attribute) -> syn::Result<()> {
    let paths = attr.parse_args_with(Punctuated::<syn::Path, Token![,]>::parse_terminated)?;
    let mut errors = Errors::default();
    for path in paths {
        let Some(last) = path.segments.last() else {
            continue;
        };
        let message = match last.ident.to_string().as_str() {
            "Default" => {
                "#[settings] implements Default from the fields' `#[setting(default = ...)]`; remove `Default` here"
            }
            "Debug" | "Clone" | "Serialize" | "Deserialize" | "JsonSchema" => {
                "#[settings] derives Debug, Clone, Serialize, Deserialize and JsonSchema itself; remove this one"
            }
            _ => continue,
        };
        errors.add(syn::Error::new_spanned(path, message));
    }
    errors.finish(())
}

/// Without the derives `#[serde(...)]` and `#[schemars(...)]` mean nothing
/// and would only add errors of their own.
fn without_derive_attributes(item: &mut ItemStruct) {
    let theirs =
        |attr: &Attribute| attr.path().is_ident("serde") || attr.path().is_ident("schemars");
    item.attrs.retain(|attr| !theirs(attr));
    for field in item.fields.iter_mut() {
        field.attrs.retain(|attr| !theirs(attr));
    }
}

/// Takes every field's `#[setting]` out and decides how it is written.
fn read_fields(item: &mut ItemStruct, errors: &mut Errors) -> Vec<(FieldOptions, Format)> {
    let mut read = Vec::new();
    for field in item.fields.iter_mut() {
        let Some(options) = errors.push(FieldOptions::take(&mut field.attrs)) else {
            continue;
        };
        if let Some(format) = errors.push(Format::of(field, &options)) {
            read.push((options, format));
        }
    }
    read
}

fn add_attributes(item: &mut ItemStruct, fields: &[(FieldOptions, Format)]) {
    let derives: Vec<Attribute> = parse_quote! {
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::platform_config::__private::serde::Serialize,
            ::platform_config::__private::serde::Deserialize,
            ::platform_config::__private::schemars::JsonSchema,
        )]
        #[serde(crate = "::platform_config::__private::serde", default, deny_unknown_fields)]
        #[schemars(crate = "::platform_config::__private::schemars")]
    };
    // First, so that the derive comes before every serde attribute it reads.
    item.attrs.splice(0..0, derives);
    for (field, (_, format)) in item.fields.iter_mut().zip(fields) {
        let added = format.attributes(field);
        field.attrs.extend(added);
    }
}

fn default_impl(item: &ItemStruct, fields: &[(FieldOptions, Format)]) -> TokenStream {
    let name = &item.ident;
    let values = item.fields.iter().zip(fields).map(|(field, (options, _))| {
        let ident = &field.ident;
        let value = options.default_value(&field.ty);
        quote!(#ident: #value)
    });
    quote! {
        impl ::core::default::Default for #name {
            // `Into::into` of a value that already has the field's type is
            // the price of accepting both "hello" and a String.
            #[allow(clippy::useless_conversion)]
            fn default() -> Self {
                Self { #(#values,)* }
            }
        }
    }
}

fn validate_impl(item: &ItemStruct, options: &ContainerOptions) -> TokenStream {
    let name = &item.ident;
    match &options.validate_with {
        Some(path) => {
            // Through a typed pointer and spanned at the path, so a function
            // of the wrong shape is an error at `validate_with` that shows
            // the shape expected.
            let rules = quote_spanned! {path.span()=>
                let rules: fn(&Self, &mut ::platform_config::Validation) = #path;
            };
            quote! {
                impl ::platform_config::Validate for #name {
                    fn validate(&self, v: &mut ::platform_config::Validation) {
                        #rules
                        rules(self, v)
                    }
                }
            }
        }
        None => quote! {
            impl ::platform_config::Validate for #name {}
        },
    }
}
