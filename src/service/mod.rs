//! What both front ends call; returns data and never prints.

pub mod health;
pub mod image;
pub mod resume;
pub mod shell;
