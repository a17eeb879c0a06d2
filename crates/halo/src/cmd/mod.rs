pub mod check;
pub mod demo;
pub mod status;
