//! What both front ends call; returns data and never prints.

pub mod control;
pub mod health;
pub mod resume;
pub mod shell;
pub mod start;
