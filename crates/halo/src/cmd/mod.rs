pub mod check;
pub mod cl_status;
pub mod config;
pub mod demo;
pub mod lvs;
pub mod mon;
pub mod resourcemanager;
pub mod status;
