//! What the user asked for, read from each front door: the command line and the agent's file.

pub mod agent_file;
pub mod flags;
