//! Tests of the scenario model: parsing, validation with positions, rack plans, hostile input.

use rack_lib::scenario::{
    Deploy, Endpoint, History, Instance, Lane, MAX_YAML_BYTES, PlannedWire, Pos, Scenario,
    Validated,
};

/// The YAML of a test, without the newline that follows the opening quote.
fn text(yaml: &str) -> &str {
    yaml.strip_prefix('\n').unwrap_or(yaml)
}

fn run(yaml: &str) -> Result<Validated, String> {
    let scenario = Scenario::parse(text(yaml)).map_err(|e| e.to_string())?;
    scenario
        .validate(&gears::Factory::builtin())
        .map_err(|e| e.to_string())
}

/// Parses and validates `yaml` and compares the error (one `line:col: message` per problem)
/// with `expect`. With `BLESS=1` in the environment it prints what it got instead (run with
/// `--nocapture`), to write new expectations.
#[track_caller]
fn check(yaml: &str, expect: &str) {
    match run(yaml) {
        Ok(_) => panic!("expected an error:\n{expect}\nbut the scenario is valid"),
        Err(got) => {
            if std::env::var("BLESS").is_ok() {
                println!("@@{}\n{got}\n@@END", std::panic::Location::caller().line());
                return;
            }
            assert_eq!(got, text(expect).trim_end(), "\n--- got:\n{got}\n");
        }
    }
}

#[track_caller]
fn valid(yaml: &str) -> Validated {
    match run(yaml) {
        Ok(v) => v,
        Err(e) => panic!("expected a valid scenario, got:\n{e}"),
    }
}

fn wire(from: (&str, &str, &str), to: (&str, &str, &str), lane: Lane) -> PlannedWire {
    let i = |(rack, gear, port): (&str, &str, &str)| Instance {
        rack: rack.to_owned(),
        gear: gear.to_owned(),
        port: port.to_owned(),
    };
    PlannedWire {
        from: i(from),
        to: i(to),
        lane,
        history: History::New,
    }
}

// ---------------------------------------------------------------------------------------------
// Valid scenarios.

const FULL: &str = r#"
meta: { name: payments, version: 1.2.0, description: three racks }
racks:
  - { name: east, labels: { region: east, role: edge } }
  - { name: west, labels: { region: west, role: edge } }
  - { name: core, labels: { region: east, role: core } }
gears:
  - name: traffic
    type: generate
    deploy: { labels: { role: edge } }
    config: { count: 10, template: { data: { pan: "4111${random_digits:12}" } } }
  - name: enrich
    type: transform
    config:
      steps:
        - { set: data.channel, value: pos }
  - name: switch
    type: route
    deploy: core
    config:
      rules:
        - when: { field: data.pan, prefix: "4" }
          to: out_visa
      default: out_other
  - { name: audit, type: log, deploy: { labels: { region: east, role: core } } }
  - { name: sink-visa, type: log, deploy: core }
  - { name: sink-other, type: log, deploy: west }
wires:
  - { from: traffic.out, to: enrich.in }
  - { from: enrich.out, to: switch.in }
  - { from: switch.out_visa, to: sink-visa.in }
  - { from: switch.out_visa, to: audit.in, lane: guaranteed }
  - { from: switch.out_other, to: sink-other.in }
  - { from: east.traffic.out, to: audit.in }
"#;

#[test]
fn full_scenario_plans_every_rack() {
    let v = valid(FULL);
    assert_eq!(v.racks(), ["east", "west", "core"]);
    let s = v.scenario();
    assert_eq!(s.meta.name, "payments");
    assert_eq!(s.meta.version, "1.2.0");
    assert_eq!(s.meta.description.as_deref(), Some("three racks"));
    assert_eq!(
        s.gears[0].deploy,
        Deploy::Labels([("role".into(), "edge".into())].into())
    );
    assert_eq!(s.gears[1].deploy, Deploy::Global);
    assert_eq!(s.gears[2].deploy, Deploy::Rack("core".into()));
    assert_eq!(s.gears[0].pos, Pos { line: 7, col: 5 });
    assert_eq!(
        s.wires[5].from,
        Endpoint {
            rack: Some("east".into()),
            gear: "traffic".into(),
            port: "out".into()
        }
    );
    assert_eq!(s.wires[5].from.to_string(), "east.traffic.out");

    let core = v.plan("core");
    let names: Vec<&str> = core.gears.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["enrich", "switch", "audit", "sink-visa"]);
    let switch = &core.gears[1];
    assert_eq!(switch.gear_type, "route");
    assert_eq!(switch.inputs, ["in"]);
    assert_eq!(switch.outputs, ["error", "out_visa", "out_other"]);
    assert_eq!(switch.config["default"], "out_other");
    use Lane::{Guaranteed, Hot};
    assert_eq!(
        core.wires,
        [
            // Fan-in: the enrich instances of the edge racks publish to the core's switch.
            wire(
                ("east", "enrich", "out"),
                ("core", "switch", "in"),
                Guaranteed
            ),
            wire(
                ("west", "enrich", "out"),
                ("core", "switch", "in"),
                Guaranteed
            ),
            wire(("core", "enrich", "out"), ("core", "switch", "in"), Hot),
            // Fan-out of out_visa: one hot, one guaranteed by request.
            wire(
                ("core", "switch", "out_visa"),
                ("core", "sink-visa", "in"),
                Hot
            ),
            wire(
                ("core", "switch", "out_visa"),
                ("core", "audit", "in"),
                Guaranteed
            ),
            wire(
                ("core", "switch", "out_other"),
                ("west", "sink-other", "in"),
                Guaranteed
            ),
            wire(
                ("east", "traffic", "out"),
                ("core", "audit", "in"),
                Guaranteed
            ),
        ]
    );

    let west = v.plan("west");
    let names: Vec<&str> = west.gears.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["traffic", "enrich", "sink-other"]);
    assert_eq!(
        west.wires,
        [
            wire(("west", "traffic", "out"), ("west", "enrich", "in"), Hot),
            wire(
                ("west", "enrich", "out"),
                ("core", "switch", "in"),
                Guaranteed
            ),
            wire(
                ("core", "switch", "out_other"),
                ("west", "sink-other", "in"),
                Guaranteed
            ),
        ]
    );
    assert_eq!(v.plan("nowhere").gears, []);
}

#[test]
fn without_racks_everything_runs_on_local() {
    let v = valid(
        r#"
meta: { name: demo, version: "1" }
gears:
  - { name: gen, type: generate, config: { count: 1 } }
  - { name: sink, type: log }
wires:
  - { from: gen.out, to: sink.in }
  - { from: local.gen.out, to: local.sink.in }
"#,
    );
    assert_eq!(v.racks(), ["local"]);
    let plan = v.plan("local");
    assert_eq!(plan.gears.len(), 2);
    assert_eq!(plan.gears[0].inputs, Vec::<String>::new());
    assert_eq!(plan.gears[1].config, serde_json::json!({}));
    let hot = wire(("local", "gen", "out"), ("local", "sink", "in"), Lane::Hot);
    assert_eq!(plan.wires, [hot.clone(), hot]);
}

#[test]
fn global_gears_are_wired_locally_on_every_rack() {
    let v = valid(
        r#"
meta: { name: demo, version: 1.0.0 }
racks: [ { name: a }, { name: b } ]
gears:
  - { name: gen, type: generate }
  - { name: sink, type: log }
  - { name: idle, type: log, deploy: a }
wires:
  - { from: gen.out, to: sink.in }
"#,
    );
    assert_eq!(v.racks(), ["a", "b"]);
    assert_eq!(
        v.plan("b").wires,
        [wire(("b", "gen", "out"), ("b", "sink", "in"), Lane::Hot)]
    );
    assert_eq!(v.plan("a").gears.len(), 3);
}

/// The reference's shape: meta extras, rack config, gear labels/doc/ports/id, wire ids,
/// `pipes` for `wires`, anchors and aliases, block and flow styles.
#[test]
fn reference_style_scenario() {
    let v = valid(
        r#"
meta:
  name: getting_started
  version: 0.1.0
  mixer_region: east
racks:
  - name: rack-east
    labels: { region: east }
    config: { log_level: debug }
  - name: rack-west
gears:
  - name: generator
    id: 3f1c9a52-0000-0000-0000-000000000000
    type: generate
    deploy: rack-east
    labels: { peer: terminals, peer_played_by: simulator }
    doc: Generates test traffic.
    ports: { inputs: [], outputs: [out] }
    config: &gen
      count: 5
      seed: 42
  - name: sink
    type: log
    deploy: rack-west
    doc: |
      Prints what arrives.
pipes:
  - id: 1
    from: generator.out
    to: sink.in
"#,
    );
    let s = v.scenario();
    assert_eq!(
        s.gears[0].config,
        serde_json::json!({ "count": 5, "seed": 42 })
    );
    assert_eq!(s.wires.len(), 1);
    assert_eq!(s.wires[0].lane, None);
    assert_eq!(
        v.plan("rack-west").wires,
        [wire(
            ("rack-east", "generator", "out"),
            ("rack-west", "sink", "in"),
            Lane::Guaranteed
        )]
    );
}

#[test]
fn config_values_become_json() {
    let v = valid(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - name: edit
    type: transform
    config:
      steps:
        - set: data.x
          value:
            int: -2
            big: 18446744073709551615
            hex: 0x1f
            oct: 0o17
            float: 1.5
            exp: 1e3
            yes_is_text: yes
            t: true
            n: null
            tilde: ~
            quoted: "1"
            tagged: !!str 12
            list: &l [1, a, { k: v }]
            again: *l
            "200": quoted key
"#,
    );
    let config = &v.scenario().gears[0].config;
    assert_eq!(
        config["steps"][0]["value"],
        serde_json::json!({
            "int": -2,
            "big": 18_446_744_073_709_551_615_u64,
            "hex": 31,
            "oct": 15,
            "float": 1.5,
            "exp": 1000.0,
            "yes_is_text": "yes",
            "t": true,
            "n": null,
            "tilde": null,
            "quoted": "1",
            "tagged": "12",
            "list": [1, "a", { "k": "v" }],
            "again": [1, "a", { "k": "v" }],
            "200": "quoted key",
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Errors from parsing: syntax, shapes, keys, names.

#[test]
fn yaml_syntax_error() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears: [ { name: a, type: log }
"#,
        "3:1: invalid YAML: while parsing a flow sequence, expected ',' or ']'",
    );
}

#[test]
fn scenario_must_be_a_map() {
    check(
        "- a\n- b\n",
        "1:1: a scenario must be a map with meta, racks, gears and wires, found a list",
    );
    check("", "1:1: the scenario is empty");
    check(
        "meta: { name: a, version: 1 }\n---\nmeta: {}\n",
        "2:1: a scenario is a single YAML document (found another `---`)",
    );
}

#[test]
fn wrong_shapes() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks: { name: a }
gears: log
wires:
  - [a.out, b.in]
"#,
        r#"
2:8: `racks` must be a list, found a map
3:8: `gears` must be a list, found a string
5:5: a wire must be a map, found a list
"#,
    );
}

#[test]
fn a_gear_needs_a_name_and_a_type() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - name: sink
  - type: log
  - name: other
    type:
"#,
        r#"
3:5: a gear needs a `type`
4:5: a gear needs a `name`
6:5: a gear needs a `type`
"#,
    );
}

#[test]
fn meta_needs_name_and_version() {
    check("gears: []\n", "1:1: the scenario needs `meta`");
    check(
        "meta:\n  description: x\n",
        r#"
2:3: `meta` needs a `name`
2:3: `meta` needs a `version`
"#,
    );
    check(
        "meta: { name: [a], version: 1 }\n",
        "1:15: `name` must be a string, found a list",
    );
}

#[test]
fn unknown_keys_are_refused() {
    check(
        r#"
meta: { name: demo, version: 1.0.0, author: me }
racks:
  - { name: a, lables: { x: y } }
gears:
  - name: sink
    type: log
    confg: {}
wires:
  - { from: sink.out, to: sink.in, lane: hot, via: x }
extra: 1
"#,
        r#"
1:37: unknown key `author` in `meta` (accepted: name, version, description, mixer_region)
3:16: unknown key `lables` in a rack (accepted: name, labels, config)
7:5: unknown key `confg` in a gear (accepted: name, type, deploy, config, labels, doc, ports, id)
9:47: unknown key `via` in a wire (accepted: from, to, lane, history, id)
10:1: unknown key `extra` in the scenario (accepted: meta, racks, gears, wires, pipes)
"#,
    );
}

#[test]
fn wires_and_pipes_together() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears: [ { name: sink, type: log } ]
wires: []
pipes: []
"#,
        "4:1: `pipes` is the docs alias of `wires`: use one of them, not both",
    );
}

#[test]
fn invalid_and_duplicate_names() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks:
  - name: Rack_A
  - name: b
  - name: b
gears:
  - { name: sink.one, type: log, deploy: b }
  - { name: sink, type: log, deploy: b }
  - { name: sink, type: log, deploy: b }
"#,
        r#"
3:11: invalid rack name `Rack_A`: use 1 to 64 of a-z, 0-9, '_' and '-'
5:11: duplicate rack name `b` (first at 4:11)
7:13: invalid gear name `sink.one`: use 1 to 64 of a-z, 0-9, '_' and '-'
9:13: duplicate gear name `sink` (first at 8:13)
"#,
    );
}

#[test]
fn rack_groups_are_refused() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks:
  - name: a
  - group: edge-gateways
    match: { labels: { role: gateway } }
"#,
        "4:5: rack groups are not supported: deploy gears with `deploy: { labels: {...} }` to select racks by label",
    );
}

#[test]
fn endpoint_syntax() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears: [ { name: sink, type: log } ]
wires:
  - { from: sink, to: sink.in }
  - { from: a.b.sink.out, to: sink.in }
  - { from: sink.Out, to: sink.in }
  - { from: sink.out, to: sink.in, lane: fast }
  - { from: sink.out }
"#,
        r#"
4:13: endpoint `sink` must be `gear.port` or `rack.gear.port` (port names never contain dots)
5:13: endpoint `a.b.sink.out` must be `gear.port` or `rack.gear.port` (port names never contain dots)
6:13: endpoint `sink.Out`: invalid segment `Out`: use 1 to 64 of a-z, 0-9, '_' and '-'
7:42: unknown lane `fast` (lanes: hot, guaranteed)
8:5: a wire needs a `to`
"#,
    );
}

#[test]
fn config_keys_and_numbers() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - name: edit
    type: transform
    config:
      steps:
        - set: data.x
          value: { 200: ok, inf: .inf }
"#,
        r#"
8:20: a config key must be a string, found an integer (quote it)
8:34: infinity and NaN cannot be used in a config (JSON has no such numbers)
"#,
    );
}

#[test]
fn yaml_features_refused() {
    check(
        "meta: &m { name: a, version: 1 }\nracks: [ { <<: *m } ]\n",
        "2:12: merge keys (`<<`) are not supported",
    );
    check(
        "meta: !custom { name: a, version: 1 }\n",
        "1:7: unsupported YAML tag `!custom`",
    );
    check(
        "meta: { [a]: 1 }\n",
        "1:9: a map key must be a scalar, not a collection",
    );
    check(
        "meta: { name: a, name: b, version: 1 }\n",
        "1:18: duplicate key `name`",
    );
}

// ---------------------------------------------------------------------------------------------
// Errors from validation: types, configs, ports, racks, lanes.

#[test]
fn unknown_gear_type() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - name: sink
    type: lgo
"#,
        &format!(
            "4:11: unknown gear type `lgo` (known: {})",
            gears::Factory::builtin()
                .type_names()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}

#[test]
fn config_problems_point_at_the_field() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - name: switch
    type: route
    config:
      rules:
        - when: { field: data.pan, prefix: "4" }
          to: visa
  - name: traffic
    type: generate
    config:
      count: many
  - name: edit
    type: transform
    config:
      stepz: []
  - name: quiet
    type: route
"#,
        r#"
8:15: gear `switch` (route): config.rules[0].to: "visa" is not an output port of route: name it out_<name> with a-z, 0-9, '_' or '-'
12:14: gear `traffic` (generate): config.count: "many" is not of type "integer"
16:7: gear `edit` (transform): config: "steps" is a required property
16:14: gear `edit` (transform): config: Additional properties are not allowed ('stepz' was unexpected)
17:5: gear `quiet` (route): config: "rules" is a required property
"#,
    );
}

#[test]
fn wire_gears_and_ports() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - { name: gen, type: generate }
  - name: switch
    type: route
    config: { rules: [ { when: { field: data.a, equals: b }, to: out_a } ] }
  - { name: sink, type: log }
wires:
  - { from: gen.out, to: gen.in }
  - { from: switch.out_b, to: sink.in }
  - { from: nope.out, to: sink.input }
  - { from: sink.in, to: switch.in }
"#,
        r#"
9:26: to: gear `gen` (generate) has no input port `in` (it has no input ports)
10:13: from: gear `switch` (route) has no output port `out_b` (outputs: error, out_a)
11:13: from: unknown gear `nope` in `nope.out`
11:27: to: gear `sink` (log) has no input port `input` (inputs: in)
12:13: from: gear `sink` (log) has no output port `in` (outputs: error, out)
"#,
    );
}

#[test]
fn wire_racks() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks: [ { name: a }, { name: b } ]
gears:
  - { name: gen, type: generate, deploy: a }
  - { name: sink, type: log, deploy: b }
wires:
  - { from: c.gen.out, to: sink.in }
  - { from: b.gen.out, to: sink.in }
  - { from: gen.out, to: sink.in, lane: hot }
  - { from: a.gen.out, to: b.sink.in, lane: guaranteed }
"#,
        r#"
7:13: from: unknown rack `c` in `c.gen.out` (racks: a, b)
8:13: from: gear `gen` is not deployed on rack `b` (it runs on: a)
9:41: lane hot cannot cross racks: gen runs on `a` and sink on `b` (use `lane: guaranteed` or leave `lane` out)
"#,
    );
}

/// `history` says where a guaranteed lane's new durable starts: `new` unless written; a
/// wire that is hot everywhere refuses it, a wire with a guaranteed instance takes it.
#[test]
fn wire_history() {
    let v = valid(
        r#"
meta: { name: demo, version: 1.0.0 }
racks: [ { name: a }, { name: b } ]
gears:
  - { name: gen, type: generate, deploy: a }
  - { name: sink, type: log, deploy: b }
  - { name: near, type: log, deploy: a }
wires:
  - { from: gen.out, to: sink.in, history: all }
  - { from: gen.out, to: near.in, lane: guaranteed, history: new }
"#,
    );
    assert_eq!(v.scenario().wires[0].history, Some(History::All));
    assert_eq!(v.scenario().wires[1].history, Some(History::New));
    let all = PlannedWire {
        history: History::All,
        ..wire(("a", "gen", "out"), ("b", "sink", "in"), Lane::Guaranteed)
    };
    assert_eq!(v.plan("b").wires, [all]);
    assert_eq!(
        v.plan("a").wires[1],
        wire(("a", "gen", "out"), ("a", "near", "in"), Lane::Guaranteed)
    );

    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks: [ { name: a }, { name: b } ]
gears:
  - { name: gen, type: generate, deploy: a }
  - { name: near, type: log, deploy: a }
  - { name: also, type: log, deploy: a }
wires:
  - { from: gen.out, to: near.in, history: all }
  - { from: gen.out, to: also.in, lane: hot, history: new }
"#,
        r#"
8:44: `history` applies to guaranteed lanes only, and this wire is hot on every rack (use `lane: guaranteed` or leave `history` out)
9:55: `history` applies to guaranteed lanes only, and this wire is hot on every rack (use `lane: guaranteed` or leave `history` out)
"#,
    );
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears: [ { name: sink, type: log } ]
wires:
  - { from: sink.out, to: sink.in, history: some }
  - { from: sink.out, to: sink.in, history: [all] }
"#,
        r#"
4:45: unknown history `some` (histories: new, all)
5:45: unknown history a list (histories: new, all)
"#,
    );
}

#[test]
fn deploy_shapes() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks:
  - { name: a, labels: { region: east } }
gears:
  - { name: three, type: log, deploy: { labels: {} } }
  - { name: four, type: log, deploy: { rack: a } }
  - { name: five, type: log, deploy: [a] }
"#,
        r#"
5:39: `deploy.labels` must name at least one label (leave `deploy` out to run the gear on every rack)
6:38: `deploy` as a map needs `labels` (a map of label: value)
6:40: unknown key `rack` in `deploy` (accepted: labels)
7:38: `deploy` must be a rack name or `{ labels: {...} }`, found a list
"#,
    );
}

#[test]
fn deploy_targets() {
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
racks:
  - { name: a, labels: { region: east, role: edge } }
gears:
  - { name: one, type: log, deploy: b }
  - { name: two, type: log, deploy: { labels: { region: east, role: core } } }
  - { name: three, type: log, deploy: { labels: { region: east } } }
"#,
        r#"
5:37: no rack `b` (racks: a)
6:37: no rack has the labels {region: east, role: core}
"#,
    );
    check(
        r#"
meta: { name: demo, version: 1.0.0 }
gears:
  - { name: one, type: log, deploy: a }
  - { name: two, type: log, deploy: { labels: { region: east } } }
"#,
        r#"
3:37: no rack `a`: the scenario declares no racks, so every gear runs on the implicit rack `local` (leave `deploy` out or declare `racks`)
4:37: no rack has the labels {region: east} (the scenario declares no racks)
"#,
    );
}

#[test]
fn every_problem_is_reported() {
    let err = Scenario::parse(text(
        r#"
meta: { name: demo }
gears:
  - { name: a, type: log, colour: red }
  - { name: a, type: log }
"#,
    ))
    .err();
    let problems = err.as_ref().map(|e| e.problems().len());
    assert_eq!(problems, Some(3), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Limits and hostile input: errors, never panics.

#[test]
fn limits() {
    let deep = format!("meta: {}{}", "[".repeat(100), "]".repeat(100));
    check(&deep, "1:70: nesting is deeper than 64 levels");
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        laughs.push_str(&format!(
            "{}: &{} [",
            (b'a' + i) as char,
            (b'a' + i) as char
        ));
        let prev = (b'a' + i - 1) as char;
        laughs.push_str(&vec![format!("*{prev}"); 10].join(", "));
        laughs.push_str("]\n");
    }
    check(
        &laughs,
        "5:32: the scenario has more than 100000 nodes (an alias counts as a copy of what it refers to)",
    );
    let big = format!(
        "meta: {{ name: a, version: 1, description: \"{}\" }}\n",
        "x".repeat(MAX_YAML_BYTES)
    );
    check(&big, "the scenario is 4194351 bytes; the limit is 4194304");
    // A 1 MiB scalar fits the size limit, and so do 100 aliases to it: charged by what they
    // expand to, they are refused before anything is copied past 16 MiB.
    let mut bomb = format!(
        "meta: {{ name: a, version: 1 }}\nx: &big \"{}\"\ny: [",
        "x".repeat(1 << 20)
    );
    bomb.push_str(&vec!["*big"; 100].join(", "));
    bomb.push_str("]\n");
    check(
        &bomb,
        "3:83: the scenario holds more than 16 MiB of text (an alias counts as a copy of what it refers to)",
    );
}

#[test]
fn hostile_input_does_not_panic() {
    let alphabet: &[u8] = b"{}[]:,-&*!|>'\"#%@`?.\n\n  \t abcz019~<<=\\\r\x00\xff";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let factory = gears::Factory::builtin();
    for _ in 0..3000 {
        let len = usize::try_from(next() % 200).unwrap_or(0);
        let bytes: Vec<u8> = (0..len)
            .map(|_| alphabet[usize::try_from(next()).unwrap_or(0) % alphabet.len()])
            .collect();
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(s) = Scenario::parse(&text) {
            let _ = s.validate(&factory);
        }
    }
    // Mutations of a valid scenario reach deeper.
    let base = FULL.as_bytes();
    for _ in 0..2000 {
        let mut bytes = base.to_vec();
        for _ in 0..(next() % 4 + 1) {
            let at = usize::try_from(next()).unwrap_or(0) % bytes.len();
            bytes[at] = alphabet[usize::try_from(next()).unwrap_or(0) % alphabet.len()];
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(s) = Scenario::parse(&text) {
            let _ = s.validate(&factory);
        }
    }
    for input in [
        "{".repeat(100_000),
        "[".repeat(100_000),
        "- ".repeat(10_000),
        "a: ".repeat(10_000),
        "&a a: *a".to_owned(),
        "a: &a [*a]".to_owned(),
        "*x".to_owned(),
        "\u{feff}meta: {}".to_owned(),
        "x".repeat(1_000_000),
    ] {
        assert!(Scenario::parse(&input).is_err());
    }
}

#[test]
fn from_file_reads_and_reports() {
    let dir = std::env::temp_dir().join(format!("rack-lib-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    let path = dir.join("ok.yaml");
    std::fs::write(&path, text(FULL)).ok();
    assert!(Scenario::from_file(&path).is_ok());
    let missing = Scenario::from_file(dir.join("missing.yaml")).err();
    let problem = missing.as_ref().map(|e| e.problems()[0].clone());
    assert!(
        problem
            .as_ref()
            .is_some_and(|p| p.pos.is_none() && p.message.starts_with("cannot read")),
        "{problem:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_wire_written_twice_is_refused() {
    let yaml = "meta: { name: s, version: 1.0.0 }
gears:
  - { name: a, type: filter, config: { pass_if: { field: id, exists: true } } }
  - { name: b, type: filter, config: { pass_if: { field: id, exists: true } } }
wires:
  - { from: a.out, to: b.in }
  - { from: a.out, to: b.in }
";
    let err = Scenario::parse(yaml)
        .expect("parses")
        .validate(&gears::Factory::builtin())
        .expect_err("refused")
        .to_string();
    assert_eq!(
        err,
        "7:5: the wire a.out -> b.in is already defined at 6:5; a second one would deliver every message twice"
    );
}
