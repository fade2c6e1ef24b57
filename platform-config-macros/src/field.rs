//! `#[setting(...)]` on a field, and the serde and schemars attributes its
//! type calls for.

use proc_macro2::{Span, TokenStream};
use quote::quote_spanned;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Field, Lit, Type, parse_quote_spanned};

use crate::attrs::argument_names;
use crate::errors::{Errors, path_text};

/// What a field's `#[setting(...)]` attributes say.
#[derive(Default)]
pub(crate) struct FieldOptions {
    /// `default = <expression>`.
    pub(crate) default: Option<Expr>,
    /// Where `size` was written, when it was.
    pub(crate) size: Option<Span>,
}

impl FieldOptions {
    /// Takes the `#[setting(...)]` attributes out of `attrs` (the compiler does
    /// not know them) and reads them; the other attributes stay in place.
    pub(crate) fn take(attrs: &mut Vec<Attribute>) -> syn::Result<FieldOptions> {
        let mut options = FieldOptions::default();
        let mut errors = Errors::default();
        let mut kept = Vec::with_capacity(attrs.len());
        for attr in attrs.drain(..) {
            if attr.path().is_ident("setting") {
                errors.push(options.read(&attr));
            } else if attr.path().is_ident("settings") {
                errors.add(syn::Error::new_spanned(
                    attr.path(),
                    "options of a field are written `#[setting(...)]`; `#[settings(...)]` is for the whole struct",
                ));
            } else {
                kept.push(attr);
            }
        }
        *attrs = kept;
        errors.finish(options)
    }

    fn read(&mut self, attr: &Attribute) -> syn::Result<()> {
        attr.parse_nested_meta(|meta| {
            let has_value = meta.input.peek(syn::Token![=]);
            if meta.path.is_ident("default") {
                if !has_value {
                    return Err(
                        meta.error("`default` needs a value: `#[setting(default = <expression>)]`")
                    );
                }
                if self.default.is_some() {
                    return Err(meta.error("`default` is given twice"));
                }
                self.default = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("size") {
                if has_value {
                    return Err(meta.error("`size` takes no value: `#[setting(size)]`"));
                }
                if self.size.is_some() {
                    return Err(meta.error("`size` is given twice"));
                }
                self.size = Some(meta.path.span());
                Ok(())
            } else {
                Err(meta.error(format_args!(
                    "unknown #[setting] key `{}`; expected `default = <expression>` or `size`",
                    path_text(&meta.path),
                )))
            }
        })
    }

    /// The field's value in the generated `Default`.
    pub(crate) fn default_value(&self, ty: &Type) -> TokenStream {
        match &self.default {
            // A bare number has no type of its own; `Into::into(64 * 1024)`
            // would make it an i32 and then find no `From<i32>` for u64.
            Some(expr) if is_bare_number(expr) => quote_spanned! {expr.span()=> #expr },
            Some(expr) => quote_spanned! {expr.span()=> ::core::convert::Into::into(#expr) },
            // Spanned at the type, so a type without Default is an error at the field.
            None => quote_spanned! {ty.span()=>
                <#ty as ::platform_config::__private::FieldDefault>::field_default()
            },
        }
    }
}

/// How a field is written in config files.
pub(crate) enum Format {
    /// `std::time::Duration` as `250ms`, `1m30s`.
    Duration,
    /// `Option<Duration>`, the same or nothing.
    OptionalDuration,
    /// A `u64` byte count as `64KiB`, `10MiB` (`#[setting(size)]`).
    Size,
    /// As serde writes the type, or as the field's own attributes say.
    AsWritten,
}

impl Format {
    /// Decides from the field's type, its `#[setting(size)]` and its own serde attributes.
    pub(crate) fn of(field: &Field, options: &FieldOptions) -> syn::Result<Format> {
        let own_serde = names_a_key(
            &field.attrs,
            "serde",
            &["with", "serialize_with", "deserialize_with"],
        );
        if let Some(size) = options.size {
            if own_serde {
                return Err(syn::Error::new(
                    size,
                    "`#[setting(size)]` and the field's own `#[serde(with = ...)]` both say how to read it; keep one",
                ));
            }
            if is_duration(&field.ty) || option_of(&field.ty).is_some_and(is_duration) {
                return Err(syn::Error::new(
                    size,
                    "`#[setting(size)]` is for byte counts; a Duration field is read as a duration without it",
                ));
            }
            if option_of(&field.ty).is_some() || is_other_integer(&field.ty) {
                return Err(syn::Error::new(
                    size,
                    "`#[setting(size)]` reads and writes a `u64`; make the field a `u64`",
                ));
            }
            return Ok(Format::Size);
        }
        Ok(if own_serde {
            Format::AsWritten
        } else if is_duration(&field.ty) {
            Format::Duration
        } else if option_of(&field.ty).is_some_and(is_duration) {
            Format::OptionalDuration
        } else {
            Format::AsWritten
        })
    }

    /// The serde and schemars attributes to add to the field; the schema part
    /// only where the field does not name its own schema.
    pub(crate) fn attributes(&self, field: &Field) -> Vec<Attribute> {
        let (with, schema) = match self {
            Format::Duration => ("::platform_config::duration", "String"),
            Format::OptionalDuration => ("::platform_config::duration::option", "Option<String>"),
            Format::Size => ("::platform_config::size", "String"),
            Format::AsWritten => return Vec::new(),
        };
        // Spanned at the type, so a mismatch is reported at the field.
        let span = field.ty.span();
        let mut added = vec![parse_quote_spanned! {span=> #[serde(with = #with)] }];
        if !names_a_key(&field.attrs, "schemars", &["with", "schema_with"]) {
            // Tells the schema (so the printed defaults and the environment
            // mapping) that the value is written as text.
            added.push(parse_quote_spanned! {span=> #[schemars(with = #schema)] });
        }
        added
    }
}

/// Whether the field's own `#[name(...)]` attributes give one of `keys`.
fn names_a_key(attrs: &[Attribute], name: &str, keys: &[&str]) -> bool {
    argument_names(attrs, name)
        .iter()
        .any(|ident| keys.iter().any(|key| ident == key))
}

/// `Duration`, `std::time::Duration` or `core::time::Duration`.
fn is_duration(ty: &Type) -> bool {
    let names = path_names(ty);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    matches!(
        names.as_slice(),
        ["Duration"] | ["std" | "core", "time", "Duration"]
    )
}

/// `T` of `Option<T>` (also spelt `std::option::Option<T>`).
fn option_of(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    let names: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    if path.qself.is_some()
        || !matches!(
            names.as_slice(),
            ["Option"] | ["std" | "core", "option", "Option"]
        )
    {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &path.path.segments.last()?.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// An integer type other than `u64`, which `platform_config::size` cannot fill.
fn is_other_integer(ty: &Type) -> bool {
    let names = path_names(ty);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    matches!(
        names.as_slice(),
        [
            "u8" | "u16"
                | "u32"
                | "u128"
                | "usize"
                | "i8"
                | "i16"
                | "i32"
                | "i64"
                | "i128"
                | "isize"
        ]
    )
}

/// The segments of a path type without generic arguments, e.g. `["std",
/// "time", "Duration"]`; empty for any other type.
fn path_names(ty: &Type) -> Vec<String> {
    match ungroup(ty) {
        Type::Path(path)
            if path.qself.is_none() && path.path.segments.iter().all(|s| s.arguments.is_none()) =>
        {
            path.path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect()
        }
        _ => Vec::new(),
    }
}

/// The type inside the invisible group a `macro_rules!` expansion may wrap it in.
fn ungroup(ty: &Type) -> &Type {
    match ty {
        Type::Group(group) => ungroup(&group.elem),
        Type::Paren(paren) => ungroup(&paren.elem),
        other => other,
    }
}

/// A number literal without a suffix, or arithmetic on such: it takes the
/// field's type as it is, where `Into::into` would leave it an i32 or f64.
fn is_bare_number(expr: &Expr) -> bool {
    use syn::BinOp::*;
    match expr {
        Expr::Lit(lit) => match &lit.lit {
            Lit::Int(int) => int.suffix().is_empty(),
            Lit::Float(float) => float.suffix().is_empty(),
            _ => false,
        },
        Expr::Unary(unary) => matches!(unary.op, syn::UnOp::Neg(_)) && is_bare_number(&unary.expr),
        Expr::Binary(binary) => match binary.op {
            Add(_) | Sub(_) | Mul(_) | Div(_) | Rem(_) | BitAnd(_) | BitOr(_) | BitXor(_) => {
                is_bare_number(&binary.left) && is_bare_number(&binary.right)
            }
            // The shift amount may have any integer type; the result has the left side's.
            Shl(_) | Shr(_) => is_bare_number(&binary.left),
            _ => false,
        },
        Expr::Paren(paren) => is_bare_number(&paren.expr),
        Expr::Group(group) => is_bare_number(&group.expr),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(text: &str) -> Type {
        syn::parse_str(text).unwrap()
    }

    #[test]
    fn durations_are_known_by_their_paths() {
        for text in [
            "Duration",
            "std::time::Duration",
            "core::time::Duration",
            "::std::time::Duration",
        ] {
            assert!(is_duration(&ty(text)), "{text}");
            let option = ty(&format!("Option<{text}>"));
            assert!(option_of(&option).is_some_and(is_duration), "{text}");
        }
        for text in ["my::Duration", "Duration<u8>", "Vec<Duration>", "u64"] {
            assert!(!is_duration(&ty(text)), "{text}");
        }
        assert!(option_of(&ty("std::option::Option<u64>")).is_some());
        assert!(option_of(&ty("Result<Duration, ()>")).is_none());
    }

    #[test]
    fn only_numbers_without_a_suffix_skip_into() {
        for text in ["5", "0.5", "-1", "64 * 1024", "1 << 20", "(2 + 3) * 4"] {
            assert!(is_bare_number(&syn::parse_str(text).unwrap()), "{text}");
        }
        for text in [
            "5u8",
            "x * 2",
            "\"hello\"",
            "Duration::from_secs(5)",
            "1 < 2",
        ] {
            assert!(!is_bare_number(&syn::parse_str(text).unwrap()), "{text}");
        }
    }
}
