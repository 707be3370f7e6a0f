//! The built-in gear catalog and the factory that turns a gear type name into a gear.
//!
//! Work in progress: the catalog lands gear by gear.

mod error;
mod expr;
mod factory;
mod field;
mod rule;
mod template;

pub mod filter;
pub mod generate;
pub mod io_http;
pub mod io_tcp;
pub mod log;
pub mod route;
pub mod transform;

pub use crate::error::Error;
pub use crate::factory::Factory;
pub use crate::rule::Condition;

fn register_builtin(factory: &mut Factory) -> Result<(), Error> {
    generate::register(factory)?;
    transform::register(factory)?;
    route::register(factory)?;
    filter::register(factory)?;
    log::register(factory)?;
    io_tcp::register(factory)?;
    io_http::register(factory)?;
    Ok(())
}
