//! The built-in gear catalog and the factory that turns a gear type name into a running gear.
//!
//! Generation, transformation, routing, filtering, logging, TCP and HTTP I/O, and the host for
//! WebAssembly gears.
//!
//! It has no code yet: the catalog arrives with its own issue.
