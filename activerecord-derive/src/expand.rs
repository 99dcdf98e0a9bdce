//! Code generation from a checked [`ModelDef`]: one `impl activerecord::Model`, wrapped in
//! `const _: () = { .. }` and written with fully qualified paths so that it depends on nothing
//! the user has in scope.

use crate::ast::ModelDef;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

pub fn expand(model: &ModelDef<'_>) -> TokenStream {
    let ident = model.ident;
    let table = &model.table;
    let database = match &model.database {
        Some(name) => quote!(::core::option::Option::Some(#name)),
        None => quote!(::core::option::Option::None),
    };
    let columns = model.stored().map(|f| &f.column);
    let key_field = model.key_field();
    let key_ident = key_field.ident;
    let key_index = model
        .stored()
        .position(|f| f.ident == key_ident)
        .expect("the key is stored");
    let key_generated = key_field.option_inner.is_some();
    let key_type = key_field.option_inner.unwrap_or(key_field.ty);

    // One `const` per stored column holds its read and bind functions. The `Value` bound is
    // checked there alone, spanned at the field's type, so that an unsupported type is reported
    // once, where it is written.
    let column_const = |i: usize| format_ident!("__COLUMN_{}", i);
    let column_consts = model.stored().enumerate().map(|(i, f)| {
        let ty = f.ty;
        let name = column_const(i);
        quote_spanned!(ty.span()=>
            const #name: ::activerecord::__private::ColumnFns<#ty> = ::activerecord::__private::column::<#ty>();
        )
    });

    let mut index = 0usize;
    let field_inits = model.fields.iter().map(|f| {
        let name = f.ident;
        if f.skip {
            quote!(#name: ::core::default::Default::default())
        } else {
            let i = index;
            index += 1;
            let column = column_const(i);
            quote!(#name: (#column.get)(row, #table, #i)?)
        }
    });

    let binds = model.stored().enumerate().map(|(i, f)| {
        let name = f.ident;
        let column = column_const(i);
        if f.ident == key_ident {
            quote!(if with_key { (#column.bind)(&self.#name, args)?; })
        } else {
            quote!((#column.bind)(&self.#name, args)?;)
        }
    });

    let column_types = (0..model.stored().count()).map(|i| {
        let column = column_const(i);
        quote!((#column.column_type)())
    });

    let (key_getter, key_setter, key_clearer) = if key_generated {
        (
            quote!(self.#key_ident.as_ref()),
            quote!(self.#key_ident = ::core::option::Option::Some(key);),
            quote!(self.#key_ident = ::core::option::Option::None;),
        )
    } else {
        // An application-assigned key stays: the record is what the application says it is.
        (
            quote!(::core::option::Option::Some(&self.#key_ident)),
            quote!(self.#key_ident = key;),
            quote!(),
        )
    };

    quote! {
        const _: () = {
            #(#column_consts)*

            impl ::activerecord::Model for #ident {
                type Key = #key_type;

                const META: ::activerecord::ModelMeta = ::activerecord::ModelMeta {
                    table: #table,
                    columns: &[#(#columns),*],
                    key_index: #key_index,
                    key_generated: #key_generated,
                    database: #database,
                };

                fn from_row(row: ::activerecord::RowRef<'_>) -> ::activerecord::Result<Self> {
                    ::core::result::Result::Ok(Self { #(#field_inits),* })
                }

                fn bind_columns(
                    &self,
                    args: &mut ::activerecord::Arguments,
                    with_key: bool,
                ) -> ::activerecord::Result<()> {
                    #(#binds)*
                    ::core::result::Result::Ok(())
                }

                fn key(&self) -> ::core::option::Option<&Self::Key> {
                    #key_getter
                }

                fn set_key(&mut self, key: Self::Key) {
                    #key_setter
                }

                fn clear_generated_key(&mut self) {
                    #key_clearer
                }

                fn column_types() -> ::std::vec::Vec<::activerecord::ColumnType> {
                    ::std::vec![#(#column_types),*]
                }

                fn statements(
                    backend: ::activerecord::Backend,
                ) -> &'static ::activerecord::__private::Statements {
                    static CACHE: ::activerecord::__private::StatementCache =
                        ::activerecord::__private::StatementCache::new();
                    CACHE.get(backend, &<Self as ::activerecord::Model>::META)
                }
            }
        };
    }
}
