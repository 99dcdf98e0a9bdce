//! The typed model of a `#[derive(ActiveRecord)]` input: the struct, its attributes and its
//! fields, parsed and checked. Every problem found is collected, not just the first, each at the
//! span of the code that causes it.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

/// A struct that derives `ActiveRecord`, checked.
pub struct ModelDef<'a> {
    pub ident: &'a Ident,
    pub table: String,
    pub database: Option<String>,
    /// Every field, stored or skipped, in declaration order.
    pub fields: Vec<FieldDef<'a>>,
    /// The index in `fields` of the primary key.
    pub key: usize,
}

pub struct FieldDef<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub column: String,
    pub skip: bool,
    /// For the key field: `Some(T)` when the field is `Option<T>` (a generated key).
    pub option_inner: Option<&'a Type>,
}

impl ModelDef<'_> {
    /// The stored fields, in column order.
    pub fn stored(&self) -> impl Iterator<Item = &FieldDef<'_>> {
        self.fields.iter().filter(|f| !f.skip)
    }

    pub fn key_field(&self) -> &FieldDef<'_> {
        &self.fields[self.key]
    }
}

/// Collects errors so that one compile shows all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }
}

/// Struct-level attributes.
#[derive(Default)]
struct StructAttrs {
    table: Option<LitStr>,
    database: Option<LitStr>,
}

/// Field-level attributes.
#[derive(Default)]
struct FieldAttrs {
    column: Option<LitStr>,
    skip: Option<Span>,
    primary_key: Option<Span>,
}

const STRUCT_KEYS: &str = "`table = \"...\"`, `database = \"...\"`";
const FIELD_KEYS: &str = "`column = \"...\"`, `primary_key`, `skip`";

impl<'a> ModelDef<'a> {
    pub fn parse(input: &'a DeriveInput) -> syn::Result<ModelDef<'a>> {
        let mut errors = Errors::default();

        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(named),
                Fields::Unnamed(fields) => {
                    errors.at(
                        fields.span(),
                        "ActiveRecord needs a struct with named fields: each field name is a column; \
                         write `struct Name { field: Type, .. }`",
                    );
                    None
                }
                Fields::Unit => {
                    errors.at(
                        input.ident.span(),
                        "ActiveRecord needs a struct with named fields, at least a primary key: \
                         write `struct Name { id: Option<i64>, .. }`",
                    );
                    None
                }
            },
            Data::Enum(data) => {
                errors.at(
                    data.enum_token.span,
                    "ActiveRecord can only be derived for structs with named fields, not enums",
                );
                None
            }
            Data::Union(data) => {
                errors.at(
                    data.union_token.span,
                    "ActiveRecord can only be derived for structs with named fields, not unions",
                );
                None
            }
        };

        if !input.generics.params.is_empty() {
            errors.at(
                input.generics.span(),
                "ActiveRecord cannot be derived for a generic struct: a model maps to one table with fixed column types",
            );
        }

        let attrs = parse_struct_attrs(input, &mut errors);
        let table = match &attrs.table {
            Some(lit) => non_empty(lit, "table", &mut errors),
            None => default_table_name(&input.ident.to_string()),
        };
        let database = attrs
            .database
            .as_ref()
            .map(|lit| non_empty(lit, "database", &mut errors));

        let mut fields = Vec::new();
        let mut explicit_keys = Vec::new();
        for field in named.into_iter().flat_map(|n| n.named.iter()) {
            let ident = field.ident.as_ref().expect("named fields have names");
            let attrs = parse_field_attrs(field, &mut errors);
            check_field_type(&field.ty, &mut errors);
            let column = match &attrs.column {
                Some(lit) => non_empty(lit, "column", &mut errors),
                None => ident.to_string().trim_start_matches("r#").to_owned(),
            };
            if let (Some(skip), Some(_)) = (attrs.skip, &attrs.column) {
                errors.at(skip, "a skipped field is not stored, so it cannot have a `column`");
            }
            if let Some(span) = attrs.primary_key {
                if let Some(skip) = attrs.skip {
                    errors.at(skip, "the primary key cannot be skipped");
                }
                explicit_keys.push((fields.len(), span));
            }
            fields.push(FieldDef {
                ident,
                ty: &field.ty,
                column,
                skip: attrs.skip.is_some(),
                option_inner: None,
            });
        }

        for (i, a) in fields.iter().enumerate() {
            if a.skip {
                continue;
            }
            if let Some(b) = fields[..i].iter().find(|b| !b.skip && b.column == a.column) {
                errors.at(
                    a.ident.span(),
                    format!(
                        "column `{}` is already used by field `{}`; rename one with #[activerecord(column = \"...\")]",
                        a.column, b.ident
                    ),
                );
            }
        }

        let key = match explicit_keys.as_slice() {
            [(index, _)] => Some(*index),
            [] => {
                let by_name = fields.iter().position(|f| f.ident == "id" && !f.skip);
                if by_name.is_none() && named.is_some() {
                    errors.at(
                        input.ident.span(),
                        format!(
                            "`{}` has no primary key: add a field named `id` (`id: Option<i64>` for a key the database generates) \
                             or mark the key field with #[activerecord(primary_key)]",
                            input.ident
                        ),
                    );
                }
                by_name
            }
            [_, rest @ ..] => {
                for (_, span) in rest {
                    errors.at(
                        *span,
                        "only one field can be the primary key (composite keys are not supported)",
                    );
                }
                None
            }
        };

        if let Some(error) = errors.0 {
            return Err(error);
        }
        let key = key.expect("a missing key was reported above");
        fields[key].option_inner = option_inner(fields[key].ty);
        Ok(ModelDef {
            ident: &input.ident,
            table,
            database,
            fields,
            key,
        })
    }
}

fn non_empty(lit: &LitStr, what: &str, errors: &mut Errors) -> String {
    let value = lit.value();
    if value.is_empty() {
        errors.at(lit.span(), format!("`{what}` cannot be empty"));
    }
    value
}

fn parse_struct_attrs(input: &DeriveInput, errors: &mut Errors) -> StructAttrs {
    let mut attrs = StructAttrs::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("activerecord")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let slot = if meta.path.is_ident("table") {
                &mut attrs.table
            } else if meta.path.is_ident("database") {
                &mut attrs.database
            } else {
                return unknown_key(&meta, "on a struct", STRUCT_KEYS, field_only(&meta.path), errors);
            };
            let lit: LitStr = meta.value()?.parse()?;
            set_once(slot, lit, &meta.path, errors);
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    attrs
}

fn parse_field_attrs(field: &syn::Field, errors: &mut Errors) -> FieldAttrs {
    let mut attrs = FieldAttrs::default();
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("activerecord")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("column") {
                let lit: LitStr = meta.value()?.parse()?;
                set_once(&mut attrs.column, lit, &meta.path, errors);
            } else if meta.path.is_ident("skip") {
                set_once(&mut attrs.skip, meta.path.span(), &meta.path, errors);
            } else if meta.path.is_ident("primary_key") {
                set_once(&mut attrs.primary_key, meta.path.span(), &meta.path, errors);
            } else {
                let hint = if meta.path.is_ident("table") || meta.path.is_ident("database") {
                    Some("it belongs on the struct, not on a field")
                } else {
                    None
                };
                return unknown_key(&meta, "on a field", FIELD_KEYS, hint, errors);
            }
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    attrs
}

fn field_only(path: &syn::Path) -> Option<&'static str> {
    ["column", "skip", "primary_key"]
        .iter()
        .any(|k| path.is_ident(k))
        .then_some("it belongs on a field, not on the struct")
}

/// Reports an unknown key and skips its value, so the keys after it are still checked.
fn unknown_key(
    meta: &syn::meta::ParseNestedMeta<'_>,
    place: &str,
    expected: &str,
    hint: Option<&str>,
    errors: &mut Errors,
) -> syn::Result<()> {
    let name = meta.path.get_ident().map_or_else(|| "?".to_owned(), Ident::to_string);
    let mut message = format!("unknown activerecord attribute `{name}` {place}; expected one of {expected}");
    if let Some(hint) = hint {
        message = format!("`{name}` is not allowed {place}: {hint}");
    }
    errors.at(meta.path.span(), message);
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, value: T, path: &syn::Path, errors: &mut Errors) {
    if slot.is_some() {
        let name = path.get_ident().map_or_else(String::new, Ident::to_string);
        errors.at(path.span(), format!("`{name}` is given more than once"));
    } else {
        *slot = Some(value);
    }
}

/// Rejects types that can never be a column, with a suggestion; other types are checked by the
/// `Value` trait bound in the generated code.
fn check_field_type(ty: &Type, errors: &mut Errors) {
    let message = match ty {
        Type::Reference(_) => "a model owns its values: use an owned type (`String` for `&str`, `Vec<u8>` for `&[u8]`)",
        Type::Tuple(_) => {
            "a tuple cannot be stored in one column: use one field per column, or `activerecord::Json<T>`"
        }
        Type::Array(_) | Type::Slice(_) => {
            "an array cannot be stored in a column: use `Vec<u8>` for bytes or `activerecord::Json<T>`"
        }
        Type::Ptr(_) | Type::BareFn(_) | Type::TraitObject(_) | Type::ImplTrait(_) | Type::Never(_) => {
            "this type cannot be stored in a column: mark the field #[activerecord(skip)] if it is not stored"
        }
        _ => return,
    };
    errors.push(syn::Error::new_spanned(
        ty,
        format!("unsupported field type: {message}"),
    ));
}

/// `T` when `ty` is written `Option<T>`.
fn option_inner(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(inner) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

/// `Account` → `accounts`, `UserProfile` → `user_profiles`, `Category` → `categories`,
/// `Address` → `addresses`.
pub fn default_table_name(struct_name: &str) -> String {
    let mut snake = String::new();
    for (i, c) in struct_name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.extend(c.to_lowercase());
        } else {
            snake.push(c);
        }
    }
    pluralize(&snake)
}

fn pluralize(word: &str) -> String {
    let consonant_y = word.ends_with('y') && !word[..word.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if consonant_y {
        format!("{}ies", &word[..word.len() - 1])
    } else if word.ends_with(['s', 'x', 'z']) || word.ends_with("ch") || word.ends_with("sh") {
        format!("{word}es")
    } else {
        format!("{word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::default_table_name;

    #[test]
    fn table_names_are_snake_case_plurals() {
        for (name, table) in [
            ("Account", "accounts"),
            ("UserProfile", "user_profiles"),
            ("Category", "categories"),
            ("Day", "days"),
            ("Address", "addresses"),
            ("Box", "boxes"),
            ("Match", "matches"),
        ] {
            assert_eq!(default_table_name(name), table);
        }
    }
}
