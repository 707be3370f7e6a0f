use std::collections::BTreeMap;

use sdk::{DynGearType, GearType, Manifest, Prepared};

use crate::error::Error;

/// Type name → gear type (manifest, schema, constructor).
///
/// [`Factory::builtin`] holds the catalog of this crate; external gear packs add theirs with
/// one call to [`Factory::register_pack`]. A type name registered twice is an error, never a
/// silent override.
#[derive(Debug, Clone, Default)]
pub struct Factory {
    types: BTreeMap<String, DynGearType>,
}

impl Factory {
    /// A factory that knows no gear type.
    pub fn empty() -> Factory {
        Factory::default()
    }

    /// A factory with every built-in gear of this crate.
    pub fn builtin() -> Factory {
        let mut factory = Factory::empty();
        crate::register_builtin(&mut factory)
            .unwrap_or_else(|e| unreachable!("the built-in catalog registers cleanly: {e}"));
        factory
    }

    /// Registers the gear type `G`.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when its type name is taken; [`Error::Gear`] when its manifest or
    /// schema is unusable.
    pub fn register<G: GearType>(&mut self) -> Result<(), Error> {
        self.register_type(DynGearType::of::<G>()?)
    }

    /// Registers an already erased gear type.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when its type name is taken.
    pub fn register_type(&mut self, gear_type: DynGearType) -> Result<(), Error> {
        if self.types.contains_key(gear_type.gear_type()) {
            return Err(Error::Duplicate(gear_type.gear_type().to_owned()));
        }
        self.types
            .insert(gear_type.gear_type().to_owned(), gear_type);
        Ok(())
    }

    /// Registers a gear pack: a function that registers several types. Either all of them are
    /// registered or, on the first error, none.
    ///
    /// # Errors
    ///
    /// The first error the pack returned.
    pub fn register_pack(
        &mut self,
        pack: impl FnOnce(&mut Factory) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut staged = self.clone();
        pack(&mut staged)?;
        *self = staged;
        Ok(())
    }

    /// The gear type called `gear_type`.
    pub fn get(&self, gear_type: &str) -> Option<&DynGearType> {
        self.types.get(gear_type)
    }

    /// The type names, sorted.
    pub fn type_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.types.keys().map(String::as_str)
    }

    /// The manifests, sorted by type name.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> + '_ {
        self.types.values().map(DynGearType::manifest)
    }

    /// Validates `config` for a gear `name` of type `gear_type` and builds it (no tasks, no
    /// sockets): what a rack does for every gear of a scenario before anything runs.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownType`] (listing the known ones) or [`Error::Gear`] holding an
    /// [`sdk::Error::Config`] (every problem, with its field path).
    pub fn prepare(
        &self,
        name: &str,
        gear_type: &str,
        config: &serde_json::Value,
    ) -> Result<Prepared, Error> {
        let entry = self
            .types
            .get(gear_type)
            .ok_or_else(|| Error::UnknownType {
                gear_type: gear_type.to_owned(),
                known: self.type_names().collect::<Vec<_>>().join(", "),
            })?;
        entry.prepare(config).map_err(|source| {
            Error::Gear(sdk::Error::Config {
                gear: name.to_owned(),
                gear_type: gear_type.to_owned(),
                source,
            })
        })
    }
}
