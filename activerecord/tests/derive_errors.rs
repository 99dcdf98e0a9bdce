//! Every misuse of `#[derive(ActiveRecord)]` is a compile error at the right span that says how to
//! fix it. The expected messages are pinned in `ui/*.stderr`.

#[test]
fn derive_misuse_is_a_clear_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
