//! The executor: trains a compiled plan with burn. The only module that touches burn, files and
//! the GPU. It consumes `plan` types, never the AST.

pub mod data;
pub mod device;
pub mod error;
pub mod experiment;
pub mod grow;
pub mod io;
pub mod kernels;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod plot;
pub mod precision;
pub mod report;
pub mod rng;
pub mod sample;
pub mod stop;
pub mod train;

pub use error::ExecError;
pub use io::checkpoint;
