//! Tests of `definitions.rs`: second defaults and functions split across files.

use super::*;

fn check_files(files: &[(&str, &str)]) -> Result<(), String> {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    for (name, text) in files {
        engine
            .add_policy(name.to_string(), text.to_string())
            .unwrap();
    }
    check(&mut engine)
}

#[test]
fn two_defaults_for_one_rule_are_refused_with_both_places() {
    let err = check_files(&[
        (
            "a.rego",
            "package clawser.authz\n\ndefault allow := false\n",
        ),
        (
            "b.rego",
            "package clawser.authz\n\n\ndefault allow := true\n",
        ),
    ])
    .unwrap_err();
    assert!(
        err.starts_with("b.rego:4: `clawser.authz.allow` has a second default"),
        "{err}"
    );
    assert!(err.contains("the first is at a.rego:3"), "{err}");
    // In one file, and with the same value, too.
    let one = "package p\n\ndefault x := 1\n\ndefault x := 1\n";
    assert!(check_files(&[("p.rego", one)]).is_err());
}

#[test]
fn one_default_per_rule_loads() {
    check_files(&[
        (
            "a.rego",
            "package clawser.authz\n\ndefault allow := false\n\nallow if input.ok\n",
        ),
        (
            "b.rego",
            "package clawser.release\n\ndefault allow := false\n",
        ),
    ])
    .unwrap();
}

#[test]
fn a_function_defined_in_two_files_is_refused_with_both_places() {
    let err = check_files(&[
        (
            "a.rego",
            "package clawser.authz\n\nok(a, b) if a == 1\n\nallow if ok(2, 1)\n",
        ),
        ("b.rego", "package clawser.authz\n\n\nok(b, a) if b == 1\n"),
    ])
    .unwrap_err();
    assert!(
        err.starts_with("b.rego:4: function `clawser.authz.ok` is also defined in a.rego:3"),
        "{err}"
    );
}

#[test]
fn several_definitions_in_one_file_and_like_names_in_other_packages_load() {
    check_files(&[
        (
            "a.rego",
            "package clawser.authz\n\nok(a) if a == 1\n\nok(a) if a == 2\n\nallow if ok(2)\n",
        ),
        ("b.rego", "package clawser.release\n\nok(a) if a == 3\n"),
        // A plain rule with the same name in another file is `names.rs`'s business.
        ("c.rego", "package clawser.lib\n\nx := 1\n"),
    ])
    .unwrap();
}
