//! Checking a scenario against the gear catalog, and what each rack runs.

use std::collections::HashMap;

use super::{Deploy, Endpoint, GearDef, History, Lane, Pos, Problem, Scenario, ScenarioError};

type Problems = Vec<Problem>;

/// A scenario that passed [`Scenario::validate`]: every gear builds, every wire joins an
/// output port to an input port on racks where the gears run, with a lane that can work.
#[derive(Debug, Clone)]
pub struct Validated {
    scenario: Scenario,
    /// Every rack gears can deploy on, in order.
    racks: Vec<String>,
    gears: Vec<Checked>,
    wires: Vec<PlannedWire>,
}

/// A gear with its concrete ports and the racks it runs on.
#[derive(Debug, Clone)]
struct Checked {
    gear: PlannedGear,
    racks: Vec<String>,
}

/// What one rack runs (see [`Validated::plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RackPlan {
    /// The rack.
    pub rack: String,
    /// The gears it runs, in scenario order.
    pub gears: Vec<PlannedGear>,
    /// Every wire instance with an end on this rack, in scenario order: local to local (hot
    /// or guaranteed), local to another rack (it publishes), another rack to local (it
    /// subscribes).
    pub wires: Vec<PlannedWire>,
}

/// One gear as a rack builds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedGear {
    /// Its name.
    pub name: String,
    /// Its type.
    pub gear_type: String,
    /// Its configuration, as the factory accepted it (`{}` for none).
    pub config: serde_json::Value,
    /// Its input ports, from its configuration.
    pub inputs: Vec<String>,
    /// Its output ports, from its configuration; the first is `error`.
    pub outputs: Vec<String>,
}

/// One wire between two gear instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWire {
    /// The output port.
    pub from: Instance,
    /// The input port.
    pub to: Instance,
    /// The lane: as written, or hot on one rack and guaranteed across racks.
    pub lane: Lane,
    /// Where the lane's durable consumer starts when it is created (guaranteed lanes only;
    /// [`History::New`] unless the wire says `history: all`).
    pub history: History,
}

/// A port of a gear on a given rack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance {
    /// The rack.
    pub rack: String,
    /// The gear.
    pub gear: String,
    /// The port.
    pub port: String,
}

impl Validated {
    /// The scenario as parsed.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The racks that run at least one gear, in scenario order ([`IMPLICIT_RACK`] when the
    /// scenario names none).
    ///
    /// [`IMPLICIT_RACK`]: super::IMPLICIT_RACK
    pub fn racks(&self) -> Vec<String> {
        self.racks
            .iter()
            .filter(|r| self.gears.iter().any(|g| g.racks.contains(r)))
            .cloned()
            .collect()
    }

    /// What `rack` runs: its gears and every wire with an end on it (empty for a rack that
    /// runs nothing or is not in the scenario).
    pub fn plan(&self, rack: &str) -> RackPlan {
        RackPlan {
            rack: rack.to_owned(),
            gears: self
                .gears
                .iter()
                .filter(|g| g.racks.iter().any(|r| r == rack))
                .map(|g| g.gear.clone())
                .collect(),
            wires: self
                .wires
                .iter()
                .filter(|w| w.from.rack == rack || w.to.rack == rack)
                .cloned()
                .collect(),
        }
    }
}

pub(crate) fn validate(
    scenario: &Scenario,
    factory: &gears::Factory,
) -> Result<Validated, ScenarioError> {
    let mut problems = Vec::new();
    let racks = scenario.rack_names();
    let mut checked: HashMap<&str, Option<Checked>> = HashMap::new();
    let mut order = Vec::new();
    for gear in &scenario.gears {
        let placed = placement(scenario, gear, &mut problems);
        let prepared = prepare(gear, factory, &mut problems);
        let entry = match (placed, prepared) {
            (Some(racks), Some(gear)) => Some(Checked { gear, racks }),
            _ => None,
        };
        // Duplicate names are refused by `parse`; keep the first.
        if !checked.contains_key(gear.name.as_str()) {
            checked.insert(&gear.name, entry);
            order.push(gear.name.as_str());
        }
    }
    let mut wires = Vec::new();
    let mut written = std::collections::BTreeMap::new();
    for wire in &scenario.wires {
        let key = (wire.from.to_string(), wire.to.to_string());
        if let Some(first) = written.get(&key) {
            problems.push(Problem::at(
                wire.pos,
                format!(
                    "the wire {} -> {} is already defined at {first}; a second one would \
                     deliver every message twice",
                    wire.from, wire.to
                ),
            ));
            continue;
        }
        written.insert(key, wire.pos);
        let from = end(
            &wire.from,
            wire.at.from,
            Side::From,
            &racks,
            &checked,
            &mut problems,
        );
        let to = end(
            &wire.to,
            wire.at.to,
            Side::To,
            &racks,
            &checked,
            &mut problems,
        );
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        let mut pairs = Vec::new();
        for rf in &from {
            if to.contains(rf) {
                pairs.push((rf, rf));
            } else {
                pairs.extend(to.iter().map(|rt| (rf, rt)));
            }
        }
        if wire.lane == Some(Lane::Hot)
            && let Some((rf, rt)) = pairs.iter().find(|(a, b)| a != b)
        {
            problems.push(Problem::at(
                wire.at.lane.unwrap_or(wire.pos),
                format!(
                    "lane hot cannot cross racks: {} runs on `{rf}` and {} on `{rt}` (use \
                     `lane: guaranteed` or leave `lane` out)",
                    wire.from.gear, wire.to.gear
                ),
            ));
            continue;
        }
        let lane_of = |rf: &String, rt: &String| {
            wire.lane.unwrap_or(if rf == rt {
                Lane::Hot
            } else {
                Lane::Guaranteed
            })
        };
        if wire.history.is_some()
            && !pairs.is_empty()
            && pairs.iter().all(|(rf, rt)| lane_of(rf, rt) == Lane::Hot)
        {
            problems.push(Problem::at(
                wire.at.history.unwrap_or(wire.pos),
                "`history` applies to guaranteed lanes only, and this wire is hot on every \
                 rack (use `lane: guaranteed` or leave `history` out)",
            ));
            continue;
        }
        for (rf, rt) in pairs {
            wires.push(PlannedWire {
                from: instance(rf, &wire.from),
                to: instance(rt, &wire.to),
                lane: lane_of(rf, rt),
                history: wire.history.unwrap_or_default(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ScenarioError::new(problems));
    }
    let gears = order
        .into_iter()
        .filter_map(|name| checked.remove(name).flatten())
        .collect();
    Ok(Validated {
        scenario: scenario.clone(),
        racks,
        gears,
        wires,
    })
}

fn instance(rack: &str, end: &Endpoint) -> Instance {
    Instance {
        rack: rack.to_owned(),
        gear: end.gear.clone(),
        port: end.port.clone(),
    }
}

/// The racks `gear` runs on.
fn placement(scenario: &Scenario, gear: &GearDef, problems: &mut Problems) -> Option<Vec<String>> {
    let pos = gear.at.deploy.unwrap_or(gear.pos);
    match &gear.deploy {
        Deploy::Global => Some(scenario.rack_names()),
        Deploy::Rack(rack) if scenario.racks.is_empty() => {
            problems.push(Problem::at(
                pos,
                format!(
                    "no rack `{rack}`: the scenario declares no racks, so every gear runs on \
                     the implicit rack `local` (leave `deploy` out or declare `racks`)"
                ),
            ));
            None
        }
        Deploy::Rack(rack) => {
            if scenario.racks.iter().any(|r| &r.name == rack) {
                Some(vec![rack.clone()])
            } else {
                problems.push(Problem::at(
                    pos,
                    format!(
                        "no rack `{rack}` (racks: {})",
                        scenario.rack_names().join(", ")
                    ),
                ));
                None
            }
        }
        Deploy::Labels(selector) => {
            let matching: Vec<String> = scenario
                .racks
                .iter()
                .filter(|r| selector.iter().all(|(k, v)| r.labels.get(k) == Some(v)))
                .map(|r| r.name.clone())
                .collect();
            if matching.is_empty() {
                let sel: Vec<String> = selector.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let why = if scenario.racks.is_empty() {
                    " (the scenario declares no racks)"
                } else {
                    ""
                };
                problems.push(Problem::at(
                    pos,
                    format!("no rack has the labels {{{}}}{why}", sel.join(", ")),
                ));
                None
            } else {
                Some(matching)
            }
        }
    }
}

fn prepare(
    gear: &GearDef,
    factory: &gears::Factory,
    problems: &mut Problems,
) -> Option<PlannedGear> {
    match factory.prepare(&gear.name, &gear.gear_type, &gear.config) {
        Ok(prepared) => Some(PlannedGear {
            name: gear.name.clone(),
            gear_type: gear.gear_type.clone(),
            config: prepared.config().clone(),
            inputs: prepared
                .ports()
                .inputs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            outputs: prepared
                .ports()
                .outputs()
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
        Err(gears::Error::UnknownType { gear_type, known }) => {
            problems.push(Problem::at(
                gear.at.gear_type,
                format!("unknown gear type `{gear_type}` (known: {known})"),
            ));
            None
        }
        Err(gears::Error::Gear(sdk::Error::Config { source, .. })) => {
            for field in source.problems() {
                let (pos, path) = if field.path.is_empty() {
                    (config_pos(gear, ""), "config".to_owned())
                } else {
                    (
                        config_pos(gear, &field.path),
                        format!("config.{}", field.path),
                    )
                };
                // A key the schema does not allow: point at the key itself when it is named.
                let pos = unexpected_key(&field.reason)
                    .map(|key| match field.path.as_str() {
                        "" => key.to_owned(),
                        path => format!("{path}.{key}"),
                    })
                    .and_then(|path| gear.at.fields.get(&path).copied())
                    .unwrap_or(pos);
                problems.push(Problem::at(
                    pos,
                    format!(
                        "gear `{}` ({}): {path}: {}",
                        gear.name, gear.gear_type, field.reason
                    ),
                ));
            }
            None
        }
        Err(e) => {
            problems.push(Problem::at(gear.pos, e.to_string()));
            None
        }
    }
}

/// The key named by a schema message "Additional properties are not allowed ('k' was
/// unexpected)", when there is exactly one.
fn unexpected_key(reason: &str) -> Option<&str> {
    let start = reason.find("('")? + 2;
    let rest = reason.get(start..)?;
    let end = rest.find("' was unexpected)")?;
    let key = rest.get(..end)?;
    (!key.contains('\'')).then_some(key)
}

/// The position of the node at `path` inside the gear's config, or of its nearest ancestor,
/// or of the `config:` key.
fn config_pos(gear: &GearDef, path: &str) -> Pos {
    let mut path = path;
    loop {
        if let Some(pos) = gear.at.fields.get(path) {
            return *pos;
        }
        match path.rfind(['.', '[']) {
            Some(cut) => path = &path[..cut],
            None if !path.is_empty() => path = "",
            None => return gear.at.config_key,
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    From,
    To,
}

/// The racks the endpoint's gear instances are on, after checking gear, port and rack.
fn end(
    end: &Endpoint,
    pos: Pos,
    side: Side,
    racks: &[String],
    checked: &HashMap<&str, Option<Checked>>,
    problems: &mut Problems,
) -> Option<Vec<String>> {
    let key = match side {
        Side::From => "from",
        Side::To => "to",
    };
    let Some(gear) = checked.get(end.gear.as_str()) else {
        problems.push(Problem::at(
            pos,
            format!("{key}: unknown gear `{}` in `{end}`", end.gear),
        ));
        return None;
    };
    if let Some(rack) = &end.rack
        && !racks.contains(rack)
    {
        problems.push(Problem::at(
            pos,
            format!(
                "{key}: unknown rack `{rack}` in `{end}` (racks: {})",
                racks.join(", ")
            ),
        ));
        return None;
    }
    // A gear that failed its own checks has been reported already.
    let gear = gear.as_ref()?;
    let (ports, dir) = match side {
        Side::From => (&gear.gear.outputs, "output"),
        Side::To => (&gear.gear.inputs, "input"),
    };
    let mut ok = true;
    if !ports.contains(&end.port) {
        let known = if ports.is_empty() {
            format!("it has no {dir} ports")
        } else {
            format!("{dir}s: {}", ports.join(", "))
        };
        problems.push(Problem::at(
            pos,
            format!(
                "{key}: gear `{}` ({}) has no {dir} port `{}` ({known})",
                end.gear, gear.gear.gear_type, end.port
            ),
        ));
        ok = false;
    }
    let on = match &end.rack {
        Some(rack) if !gear.racks.contains(rack) => {
            problems.push(Problem::at(
                pos,
                format!(
                    "{key}: gear `{}` is not deployed on rack `{rack}` (it runs on: {})",
                    end.gear,
                    gear.racks.join(", ")
                ),
            ));
            return None;
        }
        Some(rack) => vec![rack.clone()],
        None => gear.racks.clone(),
    };
    ok.then_some(on)
}
