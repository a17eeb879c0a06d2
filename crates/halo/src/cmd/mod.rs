pub mod check;
pub mod demo;
pub mod lvs;
pub mod status;
