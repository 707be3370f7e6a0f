//! The rack: the scenario engine that applications embed.
//!
//! It parses and validates scenarios, builds gears from the catalog, connects them with hot
//! (in-process, bounded) and guaranteed (JetStream) wires, and applies a changed scenario as a
//! diff, so that untouched gears keep running.
//!
//! It has no code yet: the engine arrives with its own issue.
