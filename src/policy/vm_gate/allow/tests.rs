//! The allow-list, construct by construct: each policy either runs on the VM or names the
//! construct that keeps it off.

use regorus::Engine;

/// An engine with `rules` in package clawser; more modules follow a line `----`, each with
/// its own package line.
fn engine_of(rules: &str) -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    for (i, module) in rules.split("\n----\n").enumerate() {
        let text = if i == 0 {
            format!("package clawser\n\nimport rego.v1\n\n{module}\n")
        } else {
            format!("{module}\n")
        };
        engine
            .add_policy(format!("p{i}.rego"), text)
            .unwrap_or_else(|e| panic!("{rules}: {e}"));
    }
    engine
}

/// Why the VM may not run `rules` (every check), `None` when it may.
fn reason(rules: &str) -> Option<String> {
    super::super::vm_unsupported(&mut engine_of(rules), true)
}

/// Why the allow-list alone keeps `rules` off the VM.
fn listed_reason(rules: &str) -> Option<String> {
    let mut engine = engine_of(rules);
    let packages = engine.get_policy_package_components().unwrap();
    let modules = engine.get_modules();
    let names = super::super::names::Names::of(modules, &packages);
    modules
        .iter()
        .zip(&packages)
        .find_map(|(m, p)| super::outside(m, &names, &p.components))
}

/// Policies made only of listed constructs: they run on the VM.
const LISTED: &[&str] = &[
    "allow if input.method == \"GET\"",
    "allow if { input.n >= 1; input.n < 10; input.n != 5; input.n <= 9; input.n > 0 }",
    "default allow := false\nallow if input.ok == true",
    "names := {\"a\", \"b\"}\nallow if input.name in names",
    "deny contains {\"code\": \"c\", \"message\": sprintf(\"%v\", [input.x])} if input.x",
    "deny contains r if { some r in input.rules; startswith(r, \"x\") }",
    "f(x) := lower(x) if is_string(x)\nallow if f(input.s) == \"a\"",
    "f(x, _) if x == 1\nallow if f(input.a, input.b)",
    "ids := {g.id | some g in input.grants; g.ok}\nallow if count(ids) > 0",
    "xs := [x | some x in input.xs; x != \"\"]\nallow if count(xs) == 2",
    "all := input.a | {\"b\"}\nallow if count(all) > 0",
    "n := 0 - count(input.xs)\nallow if n + 1 < 0",
    "allow if every x in input.xs { x != \"prod\" }",
    "allow if not input.x in {\"a\"}",
    "v := 1 if input.a\nelse := 2 if input.b\nelse := 3",
    "allow if { x := object.get(input, \"k\", {}); object.keys(x) == set() }",
    "allow if regex.match(`^a+$`, trim_space(input.s))",
    "allow if input.headers[\"x-a\"][0] == \"b\"",
    "allow if data.clawser.helper(input.x)\nhelper(x) if x",
    // A field after a rule named through `data`.
    "allow if data.clawser.hosts.a\nhosts := {\"a\": true}",
    // Several packages, none named like a builtin.
    "allow if data.clawser.lib.ok(input.x)\n----\npackage clawser.lib\n\nok(x) if x == 1",
    // A test rule is not checked: `with`, `=` and `some k, v` are fine there.
    "allow if input.a\ntest_a if { some k, v in {\"a\": 1}; x = k; allow with input as {\"a\": v} }",
];

/// Policies with one construct the list leaves out, and what the reason names.
const UNLISTED: &[(&str, &str)] = &[
    // The fifteenth review: a call could spell its `data` path with `["..."]`, and a rule
    // could be named `_` (both engines agreed; the list is about spellings all the same).
    (
        "f(x) := x\nallow if data[\"clawser\"].f(input.a)",
        "a `data` path to a rule spelled with [...]",
    ),
    ("_ := 0\nallow if input.a == _", "a rule named `_`"),
    (
        "import data.lib\nallow if lib.x",
        "an import other than rego.v1",
    ),
    ("allow if { x = input.a; x == 1 }", "unification `=`"),
    (
        "m := {k: v | some k in input.ks; v := 1}\nallow if m.a",
        "an object comprehension",
    ),
    (
        "allow if { some k, v in input.m; k == v }",
        "`some k, v in`",
    ),
    (
        "allow if every k, v in input.m { k != v }",
        "`every k, v in`",
    ),
    ("allow if -input.n < 0", "unary minus"),
    ("allow if input.n * 2 > 4", "`*`, `/` or `%`"),
    ("allow if input.n / 2 > 4", "`*`, `/` or `%`"),
    ("allow if input.n % 2 == 0", "`*`, `/` or `%`"),
    ("allow if count(input.a & input.b) > 0", "set intersection"),
    ("allow if \"a\", \"b\" in input.m", "`k, v in collection`"),
    (
        "f(1) := true\nallow if f(input.n)",
        "a function parameter that is not a name",
    ),
    (
        "allow if base64.decode(input.s) == \"x\"",
        "a call of `base64.decode`",
    ),
    ("allow if time.now_ns() > 0", "a call of `time.now_ns`"),
    ("allow if print(input.x)", "a call of `print`"),
    (
        "allow if json.unmarshal(input.s).a",
        "a call of `json.unmarshal`",
    ),
    (
        "lower(x) := x\nallow if lower(input.s) == \"A\"",
        "named like a builtin",
    ),
    ("object := {}\nallow if input.a", "named like a builtin"),
    (
        "__builtin_host_await(a, b) if a == \"m\"\nallow if not __builtin_host_await(input.agent, 1)",
        "named like a builtin",
    ),
    (
        "allow if { x := input.a with input as {\"a\": true}; x }",
        "`with` outside a test_ rule",
    ),
    (
        "test_x := true\nallow if test_x",
        "a reference to a test_ rule",
    ),
    (
        "test_x := true\nallow if data.clawser.test_x",
        "a reference to a test_ rule",
    ),
    (
        "test_x := true\nm := {}\nallow if data.clawser.m[\"test_x\"]",
        "a reference to a test_ rule",
    ),
    ("allow = true if input.a", "assigned with `=`"),
    (
        "default f(x) := 1\nallow if f(input.a)",
        "a default function",
    ),
    // The twelfth review: a raw-string index is a computed one in both engines, and the
    // interpreter then evaluates the whole prefix.
    (
        "allow if data.clawser[`lib`].ok\n----\npackage clawser.lib\n\nok := true",
        "a `data` path to a rule spelled with [...]",
    ),
    (
        "allow if data.clawser[\"lib\"].ok\n----\npackage clawser.lib\n\nok := true",
        "a `data` path to a rule spelled with [...]",
    ),
    (
        "allow if input.a\n----\npackage clawser[\"lib\"]\n\nok := true",
        "a package name spelled with [...]",
    ),
    (
        "allow if { concat(\"/\", input.parts, p); p == \"a/b\" }",
        "a call with an output argument",
    ),
    (
        "f(x, y) := x\nallow if f(input.a) == 1",
        "a call with an output argument, or with fewer",
    ),
];

/// Listed constructs that the name checks or the combination gate keep off the VM.
const GATED: &[(&str, &str)] = &[
    // A package named like a builtin namespace redirects the builtin (the tenth review: the
    // VM called the rule `match`, ignoring its arguments, and allowed).
    (
        "allow if regex.match(\"^admin$\", input.s)\n----\npackage clawser.regex\n\nmatch := true",
        "a package named like a builtin (`regex`)",
    ),
    (
        "allow if object.get(input, \"a\", 0) == 5\n----\npackage clawser.object\n\nget(x) := 5",
        "a package named like a builtin (`object`)",
    ),
    (
        "allow if input.a\n----\npackage clawser.count\n\nx := 1",
        "named like a builtin (`count`)",
    ),
    // The thirteenth review: the interpreter tries a number index on a `data` path as a
    // string key, the VM does not.
    (
        "ports := {\"22\": true}\nallow if data.clawser.ports[input.port]",
        "a computed or number index on a `data` path",
    ),
    (
        "ports := {\"22\": true}\nallow if data.clawser.ports[22]",
        "a computed or number index on a `data` path",
    ),
];

#[test]
fn listed_constructs_run_on_the_vm() {
    let wrong: Vec<String> = LISTED
        .iter()
        .filter_map(|rules| reason(rules).map(|why| format!("{rules}\n  -> {why}")))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_other_construct_keeps_the_revision_on_the_interpreter() {
    let mut wrong = Vec::new();
    // The allow-list alone refuses these (the combination gates may refuse some as well).
    for (rules, names) in UNLISTED {
        match listed_reason(rules) {
            Some(why)
                if why.contains(names)
                    && why.contains(".rego:")
                    && why.contains("not on the VM's list") => {}
            other => wrong.push(format!("{rules}\n  expected {names:?}, got {other:?}")),
        }
    }
    for (rules, names) in GATED {
        assert!(listed_reason(rules).is_none(), "{rules}: on the list");
        match reason(rules) {
            Some(why) if why.contains(names) && why.contains(".rego:") => {}
            other => wrong.push(format!("{rules}\n  expected {names:?}, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_listed_builtins_exist() {
    for b in super::BUILTINS {
        assert!(
            regorus::unstable::BUILTINS.contains_key(b),
            "{b} is not a regorus builtin"
        );
    }
}
