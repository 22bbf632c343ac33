//! What both front ends call; returns data and never prints.

pub mod clone;
pub mod completion;
pub mod control;
pub mod dashboard;
pub mod gc;
pub mod health;
pub mod image;
pub mod land;
pub mod logs;
pub mod reconciler;
pub mod repair;
pub mod resume;
pub mod review;
pub mod send;
pub mod shell;
pub mod spend;
pub mod start;
pub mod stats;
pub mod terminal;
