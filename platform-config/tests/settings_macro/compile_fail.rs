//! Misuse of the attribute is a compile error that names what is wrong; the
//! expected messages are the `.stderr` files beside each case in `ui/`.
//! After changing a message, `TRYBUILD=overwrite cargo test -p
//! platform-config --test settings_macro` rewrites them (review the diff).

#[test]
fn misuse_is_a_compile_error_naming_the_problem() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/settings_macro/ui/*.rs");
}
