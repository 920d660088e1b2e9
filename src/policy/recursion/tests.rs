//! Recursion is refused at load, with the cycle and `file:line`; what only looks like it is
//! not.

use super::check;
use crate::policy::{compiled::engine_for, LoadedPolicy, PolicySource};

/// Loads the modules (`file name`, text) and returns the recursion check's verdict.
fn verdict(modules: &[(&str, &str)]) -> Result<(), String> {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in modules {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    let src = PolicySource::read_dir(d.path()).unwrap();
    check(&mut engine_for(&src).unwrap())
}

const HEAD: &str =
    "package clawser\n\nimport rego.v1\n\ndefault decision := {\"outcome\": \"deny\"}\n\n";

#[test]
fn cycles_are_refused_with_the_cycle_and_its_place() {
    for (name, body, cycle) in [
        (
            "a function calling itself",
            "down(n) := 0 if n <= 0\n\ndown(n) := down(n - 1) + 1 if n > 0\n\ndecision := {\"outcome\": \"allow\"} if down(input.n) >= 0\n",
            "clawser.down -> clawser.down",
        ),
        (
            // The sixteenth review: `import rego.v1` binds `v1`, which both engines read as
            // `rego.v1`, here the rule `rego`.
            "a rule reading itself through an import's alias",
            "rego := {\"v1\": true} if v1\n\ndecision := {\"outcome\": \"allow\"} if rego.v1\n",
            "clawser.rego -> clawser.rego",
        ),
        (
            "a function calling itself from its else",
            "down(n) := 0 if n <= 0\n\nelse := down(n - 1)\n\ndecision := {\"outcome\": \"allow\"} if down(input.n) >= 0\n",
            "clawser.down -> clawser.down",
        ),
        (
            "two functions calling each other",
            "even(n) if n == 0\n\neven(n) if odd(n - 1)\n\nodd(n) if even(n - 1)\n\ndecision := {\"outcome\": \"allow\"} if even(input.n)\n",
            "clawser.even -> clawser.odd -> clawser.even",
        ),
        (
            "rules through a comprehension",
            "a contains x if {\n\tsome x in input.xs\n\tnot x in b\n}\n\nb := {y | some y in a}\n\ndecision := {\"outcome\": \"allow\"} if count(a) > 0\n",
            "clawser.a -> clawser.b -> clawser.a",
        ),
        (
            "a rule through a data path in every",
            "ok if {\n\tevery x in input.xs {\n\t\tdata.clawser.ok\n\t}\n}\n\ndecision := {\"outcome\": \"allow\"} if ok\n",
            "clawser.ok -> clawser.ok",
        ),
    ] {
        let err = verdict(&[("p.rego", &format!("{HEAD}{body}"))]).unwrap_err();
        assert!(err.contains(cycle), "{name}: {err}");
        assert!(err.contains("p.rego:"), "{name}: {err}");
        assert!(err.contains("Rego does not allow recursion"), "{name}: {err}");
    }
}

#[test]
fn a_cycle_across_packages_is_refused() {
    let a = "package clawser\n\nimport rego.v1\n\ndecision := {\"outcome\": \"allow\"} if data.lib.f(1)\n\ng(x) if data.lib.f(x)\n";
    let b = "package lib\n\nimport rego.v1\n\nf(x) if data.clawser.g(x)\n";
    let err = verdict(&[("a.rego", a), ("b.rego", b)]).unwrap_err();
    assert!(err.contains("lib.f -> clawser.g -> lib.f"), "{err}");
    assert!(err.contains("b.rego:5"), "{err}");
}

#[test]
fn locals_named_like_rules_are_not_references() {
    for (name, body) in [
        (
            "a parameter named like another function",
            "f(g) := g + 1\n\ng(x) := f(x)\n\ndecision := {\"outcome\": \"allow\"} if g(1) == 2\n",
        ),
        (
            "a some variable named like the rule",
            "hosts contains hosts_item if {\n\tsome hosts_item in input.hosts\n}\n\nxs contains x if {\n\tsome xs in input.lists\n\tsome x in xs\n}\n\ndecision := {\"outcome\": \"allow\"} if count(xs) > 0\n",
        ),
        (
            // A rule wins over the import alias of the same name (`v1` from `rego.v1`).
            "a rule named like an import's alias",
            "v1 := true\n\nrego := {\"on\": true} if v1\n\ndecision := {\"outcome\": \"allow\"} if rego.on\n",
        ),
        (
            "an assigned local named like the rule",
            "limit := 10\n\nbig if {\n\tlimit := input.limit\n\tlimit > 5\n}\n\ndecision := {\"outcome\": \"allow\"} if big\n",
        ),
    ] {
        let got = verdict(&[("p.rego", &format!("{HEAD}{body}"))]);
        assert!(got.is_ok(), "{name}: {got:?}");
    }
}

/// The shipped pack has no cycle, and a revision with one does not load.
#[test]
fn the_shipped_pack_loads_and_a_recursive_revision_does_not() {
    let d = tempfile::tempdir().unwrap();
    crate::policy::pack::install_if_missing(d.path()).unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    assert!(check(&mut engine_for(&src).unwrap()).is_ok());
    std::fs::write(
        d.path().join("loop.rego"),
        "package clawser.authz\n\nimport rego.v1\n\nloop(n) := loop(n)\n",
    )
    .unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    let err = LoadedPolicy::compile(&src).err().unwrap().to_string();
    assert!(err.contains("loop.rego:5"), "{err}");
    assert!(
        err.contains("clawser.authz.loop -> clawser.authz.loop"),
        "{err}"
    );
}
